//! Shipping: the Kubernetes manifests (`manifests/`) and the alert rules, proven with the real tools and
//! no cluster. `kubectl kustomize` renders what `kubectl apply -k manifests/` installs;
//! `kubernetes-validate --strict` checks its core objects against the Kubernetes API's schemas, and
//! kubernetes-models (`integration/workloads/manifests-check`) its ServiceMonitor and PrometheusRule
//! against the prometheus-operator's; `promtool` checks the rules and runs their unit tests; the
//! DaemonSet grants exactly the capabilities vigil checks for at start, and its configuration passes
//! `vigil --check-config`. Every external check is also fed a broken object or rule, to prove it can
//! fail. No root needed and no vigil started (`--check-config` builds vigil, then only parses).
//!
//! The tools come from `scripts/setup.sh --test`: kubectl and kubernetes-validate in a venv at
//! [`TOOLS_VENV`] (pinned in `scripts/test-tools-requirements.txt`), the manifests check's npm packages,
//! and promtool (Debian's `prometheus`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde::Deserialize as _;
use serde_yaml_ng::Value;
use tempfile::TempDir;
use vigil_integration::{vigil_binary, workspace};

/// The venv `scripts/setup.sh --test` installs kubectl and kubernetes-validate into.
const TOOLS_VENV: &str = "/opt/vigil-test-tools";

/// Every kind `kubectl apply -k manifests/` installs, each exactly once.
const KINDS: [&str; 9] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
    "Service",
    "ServiceMonitor",
    "PrometheusRule",
];

/// The prometheus-operator's kinds: custom resources, which kubernetes-validate has no schema for.
const OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

/// Kubernetes versions whose schemas the core objects must pass: an older release managed clusters still
/// run, and the newest kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

/// A tool of `scripts/setup.sh --test`'s venv.
fn venv_tool(name: &str) -> PathBuf {
    let path = Path::new(TOOLS_VENV).join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup.sh --test",
        path.display()
    );
    path
}

/// Runs `command` to its end; panics if it cannot start.
fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"))
}

/// stdout and stderr of `output`, for assertions and failure messages.
fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `kubectl kustomize manifests/`: the objects `kubectl apply -k manifests/` installs, rendered once.
fn rendered() -> &'static str {
    static RENDERED: OnceLock<String> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let output = run(Command::new(venv_tool("kubectl"))
            .arg("kustomize")
            .arg(workspace().join("manifests")));
        assert!(
            output.status.success(),
            "kubectl kustomize: {}",
            text(&output)
        );
        String::from_utf8(output.stdout).unwrap()
    })
}

/// The documents of a YAML stream.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .collect()
}

/// A YAML stream of `objects`.
fn stream(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|object| serde_yaml_ng::to_string(object).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one rendered object of `wanted` kind.
fn object(wanted: &str) -> Value {
    let mut found: Vec<Value> = documents(rendered())
        .into_iter()
        .filter(|object| kind(object) == wanted)
        .collect();
    assert_eq!(found.len(), 1, "one {wanted} in the rendered manifests");
    found.remove(0)
}

/// A file in a temporary directory holding `contents` (the directory goes when the guard is dropped).
fn temp_file(name: &str, contents: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("a list: {value:?}"))
        .iter()
        .map(|item| item.as_str().unwrap().to_owned())
        .collect()
}

// --- 1. kustomize ---------------------------------------------------------------------------------

#[test]
fn kustomize_renders_each_kind_exactly_once_in_vigils_namespace() {
    let objects = documents(rendered());
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for object in &objects {
        *kinds.entry(kind(object)).or_default() += 1;
    }
    let expected: BTreeMap<&str, usize> = KINDS.iter().map(|kind| (*kind, 1)).collect();
    assert_eq!(kinds, expected, "kinds rendered by kubectl kustomize");

    for object in &objects {
        let namespace = object["metadata"]["namespace"].as_str();
        match kind(object) {
            "Namespace" => assert_eq!(name(object), "vigil"),
            "ClusterRole" | "ClusterRoleBinding" => assert_eq!(namespace, None),
            other => assert_eq!(namespace, Some("vigil"), "{other}'s namespace"),
        }
    }
}

// --- 2. kubernetes-validate -------------------------------------------------------------------------

/// `kubernetes-validate --strict` against Kubernetes `version`.
fn kubernetes_validate(file: &Path, version: &str) -> Output {
    run(Command::new(venv_tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", version])
        .arg(file))
}

/// The rendered objects kubernetes-validate has schemas for (all but the operator's).
fn core_objects() -> Vec<Value> {
    documents(rendered())
        .into_iter()
        .filter(|object| !OPERATOR_KINDS.contains(&kind(object)))
        .collect()
}

#[test]
fn core_objects_pass_kubernetes_validate_strict() {
    let objects = core_objects();
    let (_dir, file) = temp_file("core.yaml", &stream(&objects));
    for version in KUBERNETES_VERSIONS {
        let output = kubernetes_validate(&file, version);
        let report = text(&output);
        println!("kubernetes-validate --strict -k {version}:\n{report}");
        assert!(output.status.success(), "kubernetes-validate {version}");
        assert!(!report.contains("Couldn't find schema"), "{report}");
        // Each object was validated, none skipped.
        for object in &objects {
            let line = format!(
                "passed for resource {}/{}",
                kind(object).to_lowercase(),
                name(object)
            );
            assert!(report.contains(&line), "{line:?} missing from:\n{report}");
        }
    }
}

#[test]
fn kubernetes_validate_strict_refuses_an_unknown_field() {
    let broken = stream(&core_objects()).replace("hostPID: true", "hostPid: true");
    assert!(broken.contains("hostPid"));
    let (_dir, file) = temp_file("broken.yaml", &broken);
    let output = kubernetes_validate(&file, KUBERNETES_VERSIONS[0]);
    let report = text(&output);
    println!("kubernetes-validate --strict on a DaemonSet with `hostPid`:\n{report}");
    assert!(!output.status.success(), "a misspelt field must fail");
    assert!(
        report.contains("daemonset/vigil") && report.contains("'hostPid' was unexpected"),
        "{report}"
    );
}

// --- 3. kubernetes-models (npm) ----------------------------------------------------------------------

/// `node check.mjs FILE` of the manifests check (kubernetes-models' `validate()` on every object).
fn kubernetes_models_check(yaml: &str) -> Output {
    let dir = workspace().join("integration/workloads/manifests-check");
    assert!(
        dir.join("node_modules/@kubernetes-models/prometheus-operator")
            .exists(),
        "the manifests check's npm packages are missing: run scripts/setup.sh --test"
    );
    let (_dir, file) = temp_file("manifests.yaml", yaml);
    run(Command::new("node")
        .arg("check.mjs")
        .arg(&file)
        .current_dir(dir))
}

#[test]
fn operator_objects_pass_kubernetes_models() {
    let output = kubernetes_models_check(rendered());
    let report = text(&output);
    println!("kubernetes-models:\n{report}");
    assert!(output.status.success(), "{report}");
    for object in documents(rendered()) {
        let line = format!("ok {}/{}", kind(&object), name(&object));
        assert!(report.lines().any(|l| l == line), "{line:?} missing");
    }
}

#[test]
fn kubernetes_models_refuses_a_broken_service_monitor_and_rule() {
    let operator_objects: Vec<Value> = documents(rendered())
        .into_iter()
        .filter(|object| OPERATOR_KINDS.contains(&kind(object)))
        .collect();
    let broken = stream(&operator_objects)
        .replace("interval: 30s", "interval: 30 seconds")
        .replace("for: 10m", "for: ten minutes");
    let output = kubernetes_models_check(&broken);
    let report = text(&output);
    println!("kubernetes-models on broken durations:\n{report}");
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.contains("invalid ServiceMonitor/vigil: data/spec/endpoints/0/interval"),
        "{report}"
    );
    assert!(
        report.contains("invalid PrometheusRule/vigil: data/spec/groups/0/rules/0/for"),
        "{report}"
    );
}

// --- 4. promtool ------------------------------------------------------------------------------------

fn promtool(args: &[&str], dir: &Path) -> Output {
    run(Command::new("promtool").args(args).current_dir(dir))
}

fn alerts_dir() -> PathBuf {
    workspace().join("manifests/alerts")
}

#[test]
fn promtool_checks_the_rules_files_and_the_prometheusrule() {
    let output = promtool(
        &["check", "rules", "vigil-rules.yaml", "red-examples.yaml"],
        &alerts_dir(),
    );
    println!("promtool check rules:\n{}", text(&output));
    assert!(output.status.success(), "{}", text(&output));

    // The rules the operator loads: the PrometheusRule's spec, as kubectl would apply it.
    let spec = serde_yaml_ng::to_string(&object("PrometheusRule")["spec"]).unwrap();
    let (dir, _) = temp_file("prometheusrule-spec.yaml", &spec);
    let output = promtool(&["check", "rules", "prometheusrule-spec.yaml"], dir.path());
    println!(
        "promtool check rules (PrometheusRule spec):\n{}",
        text(&output)
    );
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn promtool_check_rules_refuses_a_bad_expression() {
    let broken = read("manifests/alerts/vigil-rules.yaml").replace(
        "increase(vigil_ebpf_events_lost_total[10m]) > 0",
        "increase(vigil_ebpf_events_lost_total) > 0",
    );
    let (dir, _) = temp_file("broken-rules.yaml", &broken);
    let output = promtool(&["check", "rules", "broken-rules.yaml"], dir.path());
    println!(
        "promtool check rules on a range vector without a range:\n{}",
        text(&output)
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("FAILED"), "{}", text(&output));
}

#[test]
fn promtool_unit_tests_pass() {
    let output = promtool(&["test", "rules", "vigil-rules.test.yaml"], &alerts_dir());
    println!("promtool test rules:\n{}", text(&output));
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("SUCCESS"), "{}", text(&output));
}

#[test]
fn promtool_unit_tests_fail_when_an_alert_changes() {
    // The same tests against rules that alert on unrecognized_protocol too: the test that shows it
    // excluded must fail.
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "vigil-rules.test.yaml",
        "red-examples.yaml",
        "vigil-rules.yaml",
    ] {
        std::fs::copy(alerts_dir().join(file), dir.path().join(file)).unwrap();
    }
    let rules = dir.path().join("vigil-rules.yaml");
    let original = std::fs::read_to_string(&rules).unwrap();
    let changed = original.replace(
        "process_too_young|metadata_pending|unrecognized_protocol",
        "process_too_young|metadata_pending",
    );
    assert_ne!(original, changed);
    std::fs::write(&rules, changed).unwrap();
    let output = promtool(&["test", "rules", "vigil-rules.test.yaml"], dir.path());
    println!(
        "promtool test rules, unrecognized_protocol alerted on:\n{}",
        text(&output)
    );
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("alertname: VigilUnmonitoredPods"),
        "{}",
        text(&output)
    );
}

#[test]
fn prometheusrule_is_generated_from_the_rules_file() {
    // The script's own check: the file is what it would write now.
    let output = run(Command::new("/usr/bin/python3")
        .arg("scripts/gen-prometheusrule.py")
        .arg("--check")
        .current_dir(workspace()));
    assert!(
        output.status.success(),
        "manifests/prometheusrule.yaml is stale: {}",
        text(&output)
    );
    // And what kustomize renders of it holds the same rules as the plain file, whatever the text.
    let plain: Value = serde_yaml_ng::from_str(&read("manifests/alerts/vigil-rules.yaml")).unwrap();
    assert_eq!(object("PrometheusRule")["spec"], plain);
}

// --- 5. the DaemonSet against vigil ------------------------------------------------------------------

/// The capabilities vigil checks for at start: `capability: "CAP_..."` in `REQUIREMENTS`
/// (exporter/src/privileges.rs), without the `CAP_` prefix, as Kubernetes names them.
fn required_capabilities() -> BTreeSet<String> {
    let source = read("exporter/src/privileges.rs");
    let capabilities: BTreeSet<String> = source
        .lines()
        .filter_map(|line| line.trim().strip_prefix("capability: \"CAP_"))
        .map(|rest| rest.trim_end_matches("\",").to_owned())
        .collect();
    assert!(
        capabilities.len() >= 4,
        "capabilities parsed from privileges.rs: {capabilities:?}"
    );
    capabilities
}

#[test]
fn daemonset_adds_exactly_the_capabilities_vigil_requires() {
    let daemonset = object("DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    let added: BTreeSet<String> = strings(&security["capabilities"]["add"])
        .into_iter()
        .collect();
    assert_eq!(added, required_capabilities(), "capabilities added");
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(security["privileged"], Value::Bool(false));
    assert_eq!(security["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(security["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(security["runAsUser"], Value::from(0));
    assert_eq!(pod["hostPID"], Value::Bool(true));
    assert!(pod["hostNetwork"].is_null(), "not hostNetwork");
    assert_eq!(
        pod["priorityClassName"],
        Value::from("system-node-critical")
    );
    let tolerations = pod["tolerations"].as_sequence().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|toleration| toleration["operator"] == "Exists" && toleration["key"].is_null()),
        "a toleration of every taint: {tolerations:?}"
    );
    let node_name = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|variable| variable["name"] == "NODE_NAME")
        .expect("NODE_NAME in the environment");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        Value::from("spec.nodeName")
    );
    // Host mounts: tracefs and BTF read-only, no bpffs.
    let mounts: BTreeMap<String, bool> = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|mount| {
            (
                mount["mountPath"].as_str().unwrap().to_owned(),
                mount["readOnly"] == Value::Bool(true),
            )
        })
        .collect();
    assert_eq!(mounts.get("/sys/kernel/tracing"), Some(&true));
    assert_eq!(mounts.get("/sys/kernel/btf"), Some(&true));
    assert!(!mounts.contains_key("/sys/fs/bpf"), "vigil pins nothing");
}

#[test]
fn service_monitor_scrapes_vigils_port_through_the_service() {
    let daemonset = object("DaemonSet");
    let template = &daemonset["spec"]["template"];
    let container = &template["spec"]["containers"][0];
    let port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|port| port["name"] == "metrics")
        .expect("a container port named metrics")
        .clone();
    assert_eq!(port["containerPort"], Value::from(10420));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], Value::from("metrics"));
    }
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        Value::from("/live")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        Value::from("/ready")
    );

    let matches = |selector: &Value, labels: &Value| {
        let selector = selector.as_mapping().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(key, value)| &labels[key] == value)
    };
    let service = object("Service");
    assert!(matches(
        &service["spec"]["selector"],
        &template["metadata"]["labels"]
    ));
    let service_port = &service["spec"]["ports"][0];
    assert_eq!(service_port["name"], Value::from("metrics"));
    assert_eq!(service_port["targetPort"], Value::from("metrics"));

    let monitor = object("ServiceMonitor");
    assert!(matches(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        Value::from("metrics")
    );
    // The operator names the job after the Service: the alerts' job="vigil".
    assert_eq!(name(&service), "vigil");
    assert!(read("manifests/alerts/vigil-rules.yaml").contains(r#"up{job="vigil"}"#));
}

/// The rendered ConfigMap's vigil configuration, and the path the DaemonSet passes with `--config`.
fn configured_file() -> (String, String) {
    let config_map = object("ConfigMap");
    let daemonset = object("DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|volume| volume["configMap"]["name"] == config_map["metadata"]["name"])
        .expect("the ConfigMap is mounted (kustomize rewrites its hashed name)");
    let mount = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|mount| mount["name"] == volume["name"])
        .expect("the ConfigMap's volume is mounted");
    let (key, yaml) = config_map["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .next()
        .expect("one file in the ConfigMap");
    let path = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap(),
        key.as_str().unwrap()
    );
    let args = strings(&container["args"]);
    assert!(
        args.contains(&format!("--config={path}")),
        "--config={path} in {args:?}"
    );
    (yaml.as_str().unwrap().to_owned(), path)
}

#[test]
fn configmap_is_mounted_and_passed_with_config() {
    let (yaml, _) = configured_file();
    let config: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    // The port the Service, the ServiceMonitor and the probes use.
    assert_eq!(config["web"]["listen_address"], Value::from(":10420"));
    // $NODE_NAME from the downward API decides the node, and the in-cluster account the cluster.
    assert_eq!(config["k8s"]["node_name"], Value::from(""));
    assert_eq!(config["k8s"]["kubeconfig"], Value::from(""));
}

/// Builds vigil (`vigil_binary`): run it where building is welcome (`make test`, CI).
#[test]
fn configmap_config_passes_vigil_check_config() {
    let (yaml, _) = configured_file();
    let check = |yaml: &str| {
        let (_dir, file) = temp_file("vigil.yaml", yaml);
        let mut command = Command::new(vigil_binary());
        command.arg("--check-config").arg("--config").arg(&file);
        // Only the file counts, not this environment's VIGIL_* variables.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VIGIL_") {
                command.env_remove(key);
            }
        }
        run(&mut command)
    };
    let output = check(&yaml);
    println!("vigil --check-config:\n{}", text(&output));
    assert!(output.status.success(), "{}", text(&output));
    let effective: Value = serde_yaml_ng::from_slice(&output.stdout).unwrap();
    assert_eq!(
        effective["discovery"]["instrument"][0]["container"],
        Value::Bool(true),
        "the file was read"
    );

    // The same check refuses a misspelt key: the file is really checked.
    let output = check(&yaml.replace("traffic_window:", "traffic_windw:"));
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    assert!(text(&output).contains("traffic_windw"), "{}", text(&output));
}

// --- the runbook and the metrics the rules use --------------------------------------------------------

/// The anchors GitHub gives the headings of a Markdown file (lower case; spaces to `-`; punctuation
/// other than `-` and `_` dropped).
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|line| line.starts_with('#'))
        .map(|line| {
            line.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The `vigil_unmonitored_pods` reasons of docs/metrics.md's table (`| reason | means | fix |`).
fn documented_reasons() -> BTreeSet<String> {
    let metrics = read("docs/metrics.md");
    let table = metrics
        .split("| reason | means | fix |")
        .nth(1)
        .expect("the reasons table in docs/metrics.md");
    let reasons: BTreeSet<String> = table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            line.split('|')
                .nth(1)
                .unwrap()
                .trim()
                .trim_matches('`')
                .to_owned()
        })
        .collect();
    assert!(reasons.len() >= 6, "reasons parsed: {reasons:?}");
    reasons
}

/// Every rule of the plain rules files.
fn rules(path: &str) -> Vec<Value> {
    let file: Value = serde_yaml_ng::from_str(&read(path)).unwrap();
    file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap().clone())
        .collect()
}

#[test]
fn runbook_has_a_section_for_every_reason_and_alert() {
    let anchors = heading_anchors(&read("docs/runbook.md"));
    let rules = rules("manifests/alerts/vigil-rules.yaml");
    // The reasons the unmonitored-pods alert leaves out must be documented too.
    let unmonitored = rules
        .iter()
        .find(|rule| rule["alert"] == "VigilUnmonitoredPods")
        .unwrap();
    let excluded = unmonitored["expr"]
        .as_str()
        .unwrap()
        .split("reason!~\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the excluded reasons")
        .split('|')
        .map(str::to_owned);
    let reasons: BTreeSet<String> = documented_reasons().into_iter().chain(excluded).collect();
    for reason in &reasons {
        assert!(
            anchors.contains(reason),
            "no runbook section for reason {reason}"
        );
    }
    for rule in &rules {
        let alert = rule["alert"].as_str().unwrap();
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
        let (page, anchor) = url.split_once('#').unwrap();
        assert!(page.ends_with("/docs/runbook.md"), "{alert}: {url}");
        if anchor == "{{ $labels.reason }}" {
            // Every reason the alert can carry has its section (checked above).
            continue;
        }
        assert!(anchors.contains(anchor), "{alert}: no section #{anchor}");
        assert!(
            anchors.contains(&alert.to_lowercase()),
            "no section for {alert}"
        );
    }
}

#[test]
fn alert_rules_use_documented_metrics() {
    let metrics = read("docs/metrics.md");
    let mut used = BTreeSet::new();
    for path in [
        "manifests/alerts/vigil-rules.yaml",
        "manifests/alerts/red-examples.yaml",
    ] {
        for rule in rules(path) {
            // Outside the label matchers' quoted values (`program!~"vigil_ssl_.*"`).
            let expr: String = rule["expr"]
                .as_str()
                .unwrap()
                .split('"')
                .step_by(2)
                .collect();
            for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if word.starts_with("vigil_") || word.starts_with("http_server_") {
                    used.insert(word.to_owned());
                }
            }
        }
    }
    for metric in &used {
        // Histogram series are documented by their family's name.
        let family = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| metric.strip_suffix(suffix))
            .unwrap_or(metric);
        assert!(
            metrics.contains(&format!("`{family}`")),
            "{metric} is not in docs/metrics.md"
        );
    }
    assert!(used.len() >= 7, "metrics found in the rules: {used:?}");
}

fn hadolint(dockerfile: &Path) -> Output {
    run(Command::new(venv_tool("hadolint"))
        .arg("--no-color")
        .arg(dockerfile))
}

#[test]
fn hadolint_accepts_the_dockerfile() {
    let output = hadolint(&workspace().join("Dockerfile"));
    assert!(output.status.success(), "{}", text(&output));
}

#[test]
fn hadolint_refuses_an_unpinned_package_without_a_reason() {
    let dockerfile = read("Dockerfile").replace("# hadolint ignore=DL3008\n", "");
    let (_dir, path) = temp_file("Dockerfile", &dockerfile);
    let output = hadolint(&path);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("DL3008"), "{}", text(&output));
}

#[test]
fn the_dockerfile_builds_with_the_toolchain_of_setup() {
    let toolchain = read("scripts/toolchain.env");
    let value = |key: &str| {
        toolchain
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in scripts/toolchain.env"))
            .to_owned()
    };
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains(&format!(
            "FROM rust:{}-bookworm AS build",
            value("RUST_VERSION")
        )),
        "the build stage's image is RUST_VERSION"
    );
    // Every other version comes from the file, never a copy of it.
    for key in ["RUST_NIGHTLY", "LLVM_MAJOR", "BPF_LINKER_VERSION"] {
        assert!(
            !dockerfile.contains(&value(key)),
            "{key} copied into the Dockerfile"
        );
        assert!(
            dockerfile.contains(&format!("${key}")),
            "{key} used by the Dockerfile"
        );
    }
    let setup = read("scripts/setup.sh");
    assert!(setup.contains(". \"$(dirname \"$0\")/toolchain.env\""));
    let rust_toolchain = Command::new("rustc").arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&rust_toolchain.stdout)
            .starts_with(&format!("rustc {}", value("RUST_VERSION"))),
        "this machine's rustc is RUST_VERSION"
    );
}

/// The effective capabilities of process `pid` (`CapEff` of /proc/PID/status).
fn effective_capabilities(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .expect("CapEff")
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Root only: vigil run as the DaemonSet runs it — root with every capability dropped but the ones the
/// DaemonSet adds (setpriv's bounding set; no ambient or inheritable ones) — becomes ready and counts
/// the requests of a server it captures.
#[test]
fn vigil_with_exactly_the_daemonsets_capabilities_is_ready_and_captures_requests() {
    if !vigil_integration::require_root(
        "vigil_with_exactly_the_daemonsets_capabilities_is_ready_and_captures_requests",
    ) {
        return;
    }
    let daemonset = object("DaemonSet");
    let added = strings(
        &daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]
            ["add"],
    );
    let bounding = format!(
        "--bounding-set=-all,{}",
        added
            .iter()
            .map(|capability| format!("+{}", capability.to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let port = vigil_integration::free_port();
    let vigil = vigil_integration::Vigil::spawn_wrapped(
        &[
            "setpriv",
            "--inh-caps=-all",
            "--ambient-caps=-all",
            &bounding,
        ],
        &format!("discovery:\n  instrument: [{{open_ports: '{port}'}}]\n"),
        &[],
    );
    vigil.wait_ready(std::time::Duration::from_secs(20));
    // Exactly the DaemonSet's capabilities, by their bit numbers (capability.h).
    let bits: BTreeMap<&str, u32> = [
        ("DAC_READ_SEARCH", 2),
        ("SYS_PTRACE", 19),
        ("PERFMON", 38),
        ("BPF", 39),
    ]
    .into();
    let wanted = added
        .iter()
        .map(|capability| 1u64 << bits[capability.as_str()])
        .fold(0, |mask, bit| mask | bit);
    assert_eq!(
        effective_capabilities(vigil.pid()),
        wanted,
        "vigil's CapEff"
    );

    let mut server = Command::new("node")
        .arg("server.js")
        .current_dir(workspace().join("integration/workloads/http-server"))
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), format!("listening {port}"));
    vigil.wait_captured(port);
    for _ in 0..20 {
        assert_eq!(vigil_integration::http_client::get_once(port, "/"), 200);
    }
    let counted = || {
        vigil_integration::samples(
            &vigil.metrics(),
            "http_server_request_duration_seconds_count",
        )
        .iter()
        .map(|(_, value)| *value)
        .sum::<f64>()
    };
    let all =
        vigil_integration::eventually(std::time::Duration::from_secs(10), || counted() == 20.0);
    let _ = server.kill();
    let _ = server.wait();
    assert!(all, "{} of 20 requests counted", counted());
}
