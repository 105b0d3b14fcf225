// Validates Kubernetes objects against the schemas of kubernetes-models: the core API's (kubernetes-models)
// and the prometheus-operator's CRDs (@kubernetes-models/prometheus-operator: ServiceMonitor,
// PrometheusRule). Run by integration/tests/shipping.rs on `kubectl kustomize manifests/`.
//
//   node check.mjs FILE.yaml     every document of FILE (a multi-document YAML stream)
//
// Prints one line per object, "ok Kind/name" or "invalid Kind/name: why"; exits 0 when every object is
// valid, 1 when one is not or its kind has no model here, 2 when the file cannot be read. The models do
// not reject unknown fields (their schemas allow additional properties): kubernetes-validate --strict
// does that for the core objects.
//
// kubernetes-models 5 and @kubernetes-models/prometheus-operator 6 declare node >= 22; they run on this
// machine's node 20 (npm warns EBADENGINE), and shipping.rs proves the check still fails on a bad object.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// apiVersion → the module holding its models.
const MODULES = {
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};
const modulePath = (apiVersion) => MODULES[apiVersion] ?? `kubernetes-models/${apiVersion}`;

async function model(apiVersion, kind) {
  try {
    return (await import(modulePath(apiVersion)))[kind];
  } catch {
    return undefined;
  }
}

const [file] = process.argv.slice(2);
if (!file) {
  console.error("usage: node check.mjs FILE.yaml");
  process.exit(2);
}
let documents;
try {
  documents = parseAllDocuments(readFileSync(file, "utf8"));
} catch (error) {
  console.error(`${file}: ${error.message}`);
  process.exit(2);
}

let failures = 0;
let checked = 0;
for (const document of documents) {
  if (document.errors.length > 0) {
    console.error(`${file}: ${document.errors.map((error) => error.message).join("; ")}`);
    process.exit(2);
  }
  const object = document.toJS();
  if (object === null || object === undefined) continue;
  const name = `${object.kind}/${object.metadata?.name}`;
  const Model = await model(object.apiVersion, object.kind);
  checked += 1;
  if (!Model) {
    console.log(`invalid ${name}: no model for ${object.apiVersion} ${object.kind}`);
    failures += 1;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`invalid ${name}: ${error.message}`);
    failures += 1;
  }
}
if (checked === 0) {
  console.log(`invalid ${file}: no object`);
  process.exit(1);
}
process.exit(failures > 0 ? 1 : 0);
