//! The bundled Grafana dashboards (`dashboards/*.json`, written by `dashboards/generate.py` with the
//! Grafana Foundation SDK of `scripts/setup.sh --test`'s venv).
//!
//! - The committed JSON is what the generator writes now (it never drifts from the code), portable (the
//!   data source is the `datasource` variable; the only uids are the dashboards' own) and every panel
//!   is described. No root needed.
//! - Root only: every panel query, and every variable query, is evaluated by a real Prometheus
//!   (Debian's `/usr/bin/prometheus`) scraping a running vigil while real HTTP and gRPC servers and
//!   clients in simulated pods exchange traffic: each must succeed, and each must return a series with
//!   a finite value (not NaN) except the few listed in [`MAY_BE_EMPTY`], with the reason this scenario
//!   gives them none.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;
use vigil_integration::{
    Background, Pod, Vigil, eventually, free_port, require_root, samples, workspace,
};

/// The venv `scripts/setup.sh --test` installs grafana-foundation-sdk into.
const TOOLS_PYTHON: &str = "/opt/vigil-test-tools/bin/python";

/// The dashboards the generator writes, by file name.
const DASHBOARDS: [&str; 2] = ["vigil-red.json", "vigil-coverage.json"];

/// Servers (any port, in a pod) and the two clients (node's client.js, Python's grpc_client.py), also
/// in pods: both sides of HTTP and gRPC are captured. A short minimum age, so that the clients' calls
/// (a few hundred ms) are published.
const CONFIG: &str = "discovery:\n  min_process_age: 100ms\n  instrument:\n    \
    - {open_ports: '1-65535', container: true}\n    \
    - {cmd_args: '*client.js*', container: true}\n    \
    - {cmd_args: '*grpc_client.py*', container: true}\n";

/// Panel targets (dashboard file, panel title, refId) this scenario legitimately leaves empty, and why.
/// Every other target must return at least one series with a finite value.
const MAY_BE_EMPTY: [(&str, &str, &str, &str); 5] = [
    // vigil watches no Kubernetes API in this test (node only): the pod gauges are not served.
    (
        "vigil-coverage.json",
        "Unmonitored pods",
        "A",
        "no Kubernetes API",
    ),
    (
        "vigil-coverage.json",
        "Unmonitored pods by reason",
        "A",
        "no Kubernetes API",
    ),
    (
        "vigil-coverage.json",
        "Monitored pods",
        "A",
        "no Kubernetes API",
    ),
    // These counters get a series with their first failure; every probe attaches and every step works.
    (
        "vigil-coverage.json",
        "Probe errors",
        "A",
        "no probe failed",
    ),
    (
        "vigil-coverage.json",
        "Instrumentation errors",
        "A",
        "no step failed",
    ),
];

/// What Grafana substitutes for the dashboards' variables, for an instant query: "All" (`.*`, the
/// variables' `allValue`) and a rate window of 30 one-second scrapes.
const SUBSTITUTIONS: [(&str, &str); 6] = [
    ("$__rate_interval", "30s"),
    ("$__interval", "1s"),
    ("$namespace", ".*"),
    ("$service", ".*"),
    ("$pod", ".*"),
    ("$instance", ".*"),
];

fn dashboards_dir() -> PathBuf {
    workspace().join("dashboards")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every panel of a dashboard, those in rows included (rows themselves excluded).
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            found.extend(panel["panels"].as_array().into_iter().flatten());
        } else {
            found.push(panel);
        }
    }
    found
}

/// A query of a dashboard: (file, panel title or `variable NAME`, refId, PromQL as written).
type Query = (String, String, String, String);

/// Every panel target of every dashboard.
fn panel_targets() -> Vec<Query> {
    let mut targets = Vec::new();
    for file in DASHBOARDS {
        let dashboard = read_json(&dashboards_dir().join(file));
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().expect("a title");
            for target in panel["targets"].as_array().expect("targets") {
                targets.push((
                    file.to_owned(),
                    title.to_owned(),
                    target["refId"].as_str().expect("a refId").to_owned(),
                    target["expr"].as_str().expect("an expr").to_owned(),
                ));
            }
        }
    }
    targets
}

/// Every query variable as the PromQL that returns its values: `label_values(SELECTOR, LABEL)` is
/// `group by (LABEL) (SELECTOR)`.
fn variable_queries() -> Vec<Query> {
    let mut queries = Vec::new();
    for file in DASHBOARDS {
        let dashboard = read_json(&dashboards_dir().join(file));
        for variable in dashboard["templating"]["list"]
            .as_array()
            .expect("variables")
        {
            if variable["type"] != "query" {
                continue;
            }
            let query = variable["query"].as_str().expect("a query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
                .unwrap_or_else(|| panic!("label_values(…) expected: {query}"));
            let (selector, label) = inner
                .rsplit_once(',')
                .expect("label_values(selector, label)");
            queries.push((
                file.to_owned(),
                format!("variable {}", variable["name"].as_str().unwrap()),
                "-".to_owned(),
                format!("group by ({}) ({selector})", label.trim()),
            ));
        }
    }
    queries
}

fn substitute(expr: &str) -> String {
    SUBSTITUTIONS
        .iter()
        .fold(expr.to_owned(), |expr, (variable, value)| {
            expr.replace(variable, value)
        })
}

#[test]
fn committed_dashboards_are_what_the_generator_writes() {
    let python = Path::new(TOOLS_PYTHON);
    assert!(
        python.exists(),
        "{TOOLS_PYTHON} is missing: run scripts/setup.sh --test"
    );
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(python)
        .arg(dashboards_dir().join("generate.py"))
        .arg(out.path())
        .output()
        .expect("running dashboards/generate.py");
    assert!(
        output.status.success(),
        "generate.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in DASHBOARDS {
        let committed = std::fs::read_to_string(dashboards_dir().join(file)).unwrap();
        let generated = std::fs::read_to_string(out.path().join(file)).unwrap();
        if committed != generated {
            let line = committed
                .lines()
                .zip(generated.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "its end".to_owned(), |n| format!("line {}", n + 1));
            panic!(
                "dashboards/{file} differs from what dashboards/generate.py writes (first at {line}): \
                 run {TOOLS_PYTHON} dashboards/generate.py"
            );
        }
    }
}

/// Every `datasource` object in `value`, wherever it is.
fn datasources<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "datasource" && inner.is_object() {
                    found.push(inner);
                } else {
                    datasources(inner, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| datasources(item, found)),
        _ => {}
    }
}

#[test]
fn dashboards_are_portable_and_every_panel_is_described() {
    for file in DASHBOARDS {
        let dashboard = read_json(&dashboards_dir().join(file));
        let uid = dashboard["uid"].as_str().unwrap_or_default();
        assert!(uid.starts_with("vigil-"), "{file}: fixed uid, got {uid:?}");
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables
                .iter()
                .any(|variable| variable["name"] == "datasource"
                    && variable["type"] == "datasource"
                    && variable["query"] == "prometheus"),
            "{file}: a prometheus `datasource` variable"
        );
        let mut found = Vec::new();
        datasources(&dashboard, &mut found);
        assert!(!found.is_empty(), "{file}: panels name their data source");
        for datasource in found {
            assert_eq!(
                datasource,
                &serde_json::json!({"type": "prometheus", "uid": "${datasource}"}),
                "{file}: every data source is the variable, never a hard-coded uid"
            );
        }
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                !panel["description"].as_str().unwrap_or_default().is_empty(),
                "{file}: panel {title:?} has a description"
            );
            assert!(
                panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
                "{file}: panel {title:?} has a query"
            );
        }
    }
}

/// Percent-encodes `text` for a URL query (RFC 3986 unreserved characters pass).
fn url_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A Prometheus on 127.0.0.1 scraping one vigil every second, killed when dropped.
struct Prometheus {
    _process: Background,
    _storage: tempfile::TempDir,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(vigil_port: u16) -> Prometheus {
        let storage = tempfile::tempdir().unwrap();
        let config = storage.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
                 - job_name: vigil\n    static_configs:\n      - targets: ['127.0.0.1:{vigil_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = storage.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let process = Background::spawn(
            Command::new("/usr/bin/prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    storage.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file),
        );
        let prometheus = Prometheus {
            _process: process,
            _storage: storage,
            port,
            log,
        };
        let ready = eventually(Duration::from_secs(30), || {
            prometheus
                .get("/-/ready")
                .is_some_and(|(status, _)| status == 200)
        });
        assert!(ready, "Prometheus ready; log:\n{}", prometheus.log());
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` over HTTP/1.0 (the server closes the connection): status and body.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// `/api/v1/query` at the current time: the whole JSON answer (errors included).
    fn query(&self, expr: &str) -> Value {
        let (_, body) = self
            .get(&format!("/api/v1/query?query={}", url_encode(expr)))
            .unwrap_or_else(|| panic!("Prometheus answered {expr}; log:\n{}", self.log()));
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("{error}: {body}"))
    }

    /// The result vector of a successful query.
    fn vector(&self, expr: &str) -> Vec<Value> {
        let answer = self.query(expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query returning one series, if it does.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.vector(expr);
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

/// The four RED families (their `_count`) the traffic fills.
const RED_COUNTS: [&str; 4] = [
    "http_server_request_duration_seconds_count",
    "http_client_request_duration_seconds_count",
    "rpc_server_call_duration_seconds_count",
    "rpc_client_call_duration_seconds_count",
];

/// The sum of a family's samples in vigil's `/metrics`.
fn vigil_sum(vigil: &Vigil, family: &str) -> f64 {
    samples(&vigil.metrics(), family)
        .iter()
        .map(|(_, value)| value)
        .sum()
}

/// A node server in a pod, serving on `port` (given in `args` or `env`); waits until it listens and is
/// captured.
fn server_pod(vigil: &Vigil, port: u16, args: &[&str], env: &[(&str, String)]) -> Pod {
    let mut pod = Pod::start("node", args, |command| {
        command.envs(env.iter().map(|(key, value)| (key, value)));
    });
    assert_eq!(pod.read_line(), format!("listening {port}"));
    vigil.wait_captured(port);
    pod
}

/// One round of traffic: plain GETs to the HTTP server (200, 404, 500), the node HTTP client in a pod
/// (the same three), and the Python (grpcio) gRPC client in a pod (OK and INTERNAL).
fn traffic(http_port: u16, grpc_port: u16) {
    use vigil_integration::http_client::get_once;
    for n in 0..30 {
        let path = match n % 3 {
            0 => format!("/users/{n}"),
            1 => "/missing/x".to_owned(),
            _ => "/fail".to_owned(),
        };
        get_once(http_port, &path);
    }
    let mut http_client = Pod::start("node", &["client.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", http_port.to_string())
            .env("REQUESTS", "30");
    });
    let report = http_client.read_line();
    assert!(report.contains("200="), "the HTTP client's tally: {report}");
    let grpc_client = workspace().join("integration/workloads/python/grpc_client.py");
    let port_text = grpc_port.to_string();
    let mut grpc = Pod::start(
        "/usr/bin/python3",
        &[
            grpc_client.to_str().unwrap(),
            "--port",
            &port_text,
            "--plan",
            "Unary:ok:20,Unary:internal:3",
        ],
        |_| {},
    );
    let mut tally = String::new();
    loop {
        let line = grpc.read_line();
        if line.is_empty() {
            break;
        }
        tally = line;
    }
    assert!(
        tally.contains("Unary/INTERNAL"),
        "the gRPC client's tally: {tally}"
    );
}

#[test]
fn every_panel_query_returns_data_from_a_prometheus_scraping_vigil() {
    if !require_root("every_panel_query_returns_data_from_a_prometheus_scraping_vigil") {
        return;
    }
    let vigil = Vigil::start(CONFIG);
    let prometheus = Prometheus::start(vigil.port);
    let http_server = workspace().join("integration/workloads/http-server/server.js");
    let http_port = free_port();
    let _http_pod = server_pod(
        &vigil,
        http_port,
        &[http_server.to_str().unwrap()],
        &[("PORT", http_port.to_string())],
    );
    let grpc_server = workspace().join("integration/workloads/grpc/server.js");
    let grpc_port = free_port();
    let grpc_port_text = grpc_port.to_string();
    let _grpc_pod = server_pod(
        &vigil,
        grpc_port,
        &[grpc_server.to_str().unwrap(), "--port", &grpc_port_text],
        &[],
    );

    // Two rounds of traffic, scraped in between and after: the rates over the window are not zero.
    traffic(http_port, grpc_port);
    let mut first = BTreeMap::new();
    for family in RED_COUNTS {
        let seen = eventually(Duration::from_secs(30), || {
            prometheus
                .scalar(&format!("sum({family})"))
                .is_some_and(|value| value > 0.0)
        });
        assert!(seen, "Prometheus has {family}; vigil:\n{}", vigil.metrics());
        first.insert(family, vigil_sum(&vigil, family));
    }
    traffic(http_port, grpc_port);
    for family in RED_COUNTS {
        // The second round counted by vigil, and that count scraped.
        let scraped = eventually(Duration::from_secs(30), || {
            let counted = vigil_sum(&vigil, family);
            counted > first[family] && prometheus.scalar(&format!("sum({family})")) == Some(counted)
        });
        assert!(scraped, "Prometheus has the second round of {family}");
    }
    let scrapes = prometheus.scalar("count_over_time(up{job=\"vigil\"}[1m])");
    assert!(
        scrapes.is_some_and(|count| count >= 3.0),
        "Prometheus scraped vigil a few times: {scrapes:?}"
    );
    // One more scrape after the last change.
    thread::sleep(Duration::from_secs(2));

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let queries = panel_targets().into_iter().chain(variable_queries());
    for (file, panel, ref_id, expr) in queries {
        let promql = substitute(&expr);
        let answer = prometheus.query(&promql);
        let exempt = MAY_BE_EMPTY
            .iter()
            .find(|(f, p, r, _)| *f == file && *p == panel && *r == ref_id)
            .map(|(_, _, _, why)| *why);
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let series = result.len();
        // A number, not NaN (a ratio or quantile over a window without traffic): the data is there.
        let finite = result
            .iter()
            .filter_map(|series| series["value"][1].as_str()?.parse::<f64>().ok())
            .filter(|value| value.is_finite())
            .count();
        if answer["status"] != "success" {
            failures.push(format!("{file} / {panel} / {ref_id}: {answer}\n  {promql}"));
        } else if finite == 0 && exempt.is_none() {
            failures.push(format!(
                "{file} / {panel} / {ref_id}: no series with a value ({series} series)\n  {promql}"
            ));
        }
        let note = match exempt {
            Some(why) => format!("may be empty: {why}"),
            None => String::new(),
        };
        rows.push(format!(
            "{:<15} {:<43} {:<3} {:>6} {:>6}  {note}",
            file.trim_end_matches(".json"),
            panel,
            ref_id,
            series,
            finite
        ));
    }
    println!(
        "{:<15} {:<43} {:<3} {:>6} {:>6}\n{}",
        "dashboard",
        "panel",
        "ref",
        "series",
        "finite",
        rows.join("\n")
    );
    // An exemption that no longer names a target is stale.
    let targets = panel_targets();
    for (file, panel, ref_id, _) in MAY_BE_EMPTY {
        assert!(
            targets
                .iter()
                .any(|(f, p, r, _)| f == file && p == panel && r == ref_id),
            "MAY_BE_EMPTY names no target: {file} / {panel} / {ref_id}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
