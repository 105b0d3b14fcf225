//! Root only: HTTPS servers that terminate TLS themselves, counted from their TLS library's plaintext
//! (uprobes per binary): node (OpenSSL linked statically into the executable) and Python's `ssl`
//! (the system `libssl.so.3`), each started after vigil and before it, against the client's tally.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use vigil_integration::{
    Pod, Vigil, eventually, free_port, require_root, samples, self_signed_certificate, workspace,
};

const POD_LISTENERS: &str =
    "discovery:\n  instrument: [{open_ports: '1-65535', container: true}]\n";

const PLAN: &str = "/ok:40,/missing:7,/fail:3";

/// An HTTPS server workload: (program, script).
fn node_https() -> (&'static str, String) {
    let script = workspace().join("integration/workloads/tls/https_server.js");
    ("node", script.display().to_string())
}

fn python_https() -> (&'static str, String) {
    let script = workspace().join("integration/workloads/python/https_server.py");
    ("/usr/bin/python3", script.display().to_string())
}

fn start_server(server: &(&'static str, String), cert: &Path, key: &Path) -> (Pod, u16) {
    let port = free_port();
    let (port_text, cert, key) = (
        port.to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let mut pod = Pod::start(
        server.0,
        &[
            &server.1, "--port", &port_text, "--cert", &cert, "--key", &key,
        ],
        |_| {},
    );
    assert_eq!(pod.read_line(), format!("listening {port}"));
    (pod, port)
}

/// Waits until the process listening on `port` is captured with its TLS probes attached.
fn wait_tls_attached(vigil: &Vigil, port: u16) -> String {
    let attached = eventually(Duration::from_secs(10), || {
        vigil.listener_on(port).is_some_and(|process| {
            process["tls"]
                .as_str()
                .is_some_and(|tls| tls.starts_with("attached to"))
        })
    });
    let process = vigil.listener_on(port);
    assert!(attached, "TLS probes of the server on {port}: {process:?}");
    process.unwrap()["tls"].as_str().unwrap().to_owned()
}

/// Runs the HTTPS client (on the host: not captured) over one keep-alive connection; its tally by
/// (path, status).
fn run_client(port: u16) -> BTreeMap<(String, String), u64> {
    let script = workspace().join("integration/workloads/python/https_client.py");
    let output = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--plan", PLAN])
        .output()
        .expect("the HTTPS client runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tally: BTreeMap<String, u64> = serde_json::from_str(stdout.trim()).unwrap();
    tally
        .into_iter()
        .map(|(key, count)| {
            let (path, status) = key.split_once(' ').unwrap();
            ((path.to_owned(), status.to_owned()), count)
        })
        .collect()
}

/// Server requests of the process serving `port`'s service in `/metrics`, by (route, status).
fn server_counts(vigil: &Vigil, service: &str) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for (labels, value) in samples(
        &vigil.metrics(),
        "http_server_request_duration_seconds_count",
    ) {
        if labels["service_name"] == service {
            *counts
                .entry((
                    labels["http_route"].clone(),
                    labels["http_response_status_code"].clone(),
                ))
                .or_default() += value as u64;
        }
    }
    counts
}

fn service_of(program: &str) -> String {
    let exe = std::fs::canonicalize(which(program)).unwrap();
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

fn which(program: &str) -> PathBuf {
    if program.starts_with('/') {
        return PathBuf::from(program);
    }
    std::env::var("PATH")
        .unwrap()
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{program} on PATH"))
}

/// Starts vigil and the server in the order asked, runs the client, and checks every request is
/// counted once with its route and status.
fn counted_exactly(server: (&'static str, String), vigil_first: bool, library: &str) {
    let (_dir, cert, key) = self_signed_certificate();
    let (vigil, (_pod, port)) = match vigil_first {
        true => {
            let vigil = Vigil::start(POD_LISTENERS);
            (vigil, start_server(&server, &cert, &key))
        }
        false => {
            let pod = start_server(&server, &cert, &key);
            (Vigil::start(POD_LISTENERS), pod)
        }
    };
    let tls = wait_tls_attached(&vigil, port);
    assert!(tls.contains(library), "{tls} names {library}");
    let tally = run_client(port);
    assert_eq!(tally.values().sum::<u64>(), 50, "{tally:?}");
    let service = service_of(server.0);
    let settled = eventually(Duration::from_secs(10), || {
        server_counts(&vigil, &service) == tally
    });
    assert!(
        settled,
        "vigil  {:?}\nclient {tally:?}",
        server_counts(&vigil, &service)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server_counts(&vigil, &service),
        tally,
        "counted more than once"
    );
    assert!(
        vigil.metric("vigil_probes_attached{program=\"vigil_ssl_read_return\"}") >= 1.0,
        "the binary counts in vigil_probes_attached"
    );
    println!("{service} ({tls}): {tally:?} counted exactly");
}

#[test]
fn node_https_server_started_after_vigil_is_counted_from_its_static_openssl() {
    if !require_root("node_https_server_started_after_vigil_is_counted_from_its_static_openssl") {
        return;
    }
    counted_exactly(node_https(), true, "/exe");
}

#[test]
fn node_https_server_started_before_vigil_is_counted_from_its_static_openssl() {
    if !require_root("node_https_server_started_before_vigil_is_counted_from_its_static_openssl") {
        return;
    }
    counted_exactly(node_https(), false, "/exe");
}

#[test]
fn python_https_server_started_after_vigil_is_counted_from_libssl() {
    if !require_root("python_https_server_started_after_vigil_is_counted_from_libssl") {
        return;
    }
    counted_exactly(python_https(), true, "libssl.so");
}

#[test]
fn python_https_server_started_before_vigil_is_counted_from_libssl() {
    if !require_root("python_https_server_started_before_vigil_is_counted_from_libssl") {
        return;
    }
    counted_exactly(python_https(), false, "libssl.so");
}

#[test]
fn http2_over_tls_is_counted_exactly_from_the_plaintext() {
    if !require_root("http2_over_tls_is_counted_exactly_from_the_plaintext") {
        return;
    }
    let (_dir, cert, key) = self_signed_certificate();
    let vigil = Vigil::start(POD_LISTENERS);
    let script = workspace().join("integration/workloads/tls/h2_server.js");
    let (_pod, port) = start_server(&("node", script.display().to_string()), &cert, &key);
    wait_tls_attached(&vigil, port);
    let mut want = BTreeMap::new();
    for (path, status, requests) in [("/hello", "200", 3_000), ("/missing", "404", 500)] {
        let output = Command::new("h2load")
            .args(["-n", &requests.to_string(), "-c", "2", "-m", "50"])
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("h2load");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("Application protocol: h2"),
            "h2 over TLS: {stdout}"
        );
        // h2load counts 4xx responses as done, not succeeded.
        assert!(stdout.contains(&format!("{requests} done")), "{stdout}");
        want.insert((path.to_owned(), status.to_owned()), requests);
    }
    let settled = eventually(Duration::from_secs(30), || {
        server_counts(&vigil, "node") == want
    });
    assert!(
        settled,
        "vigil  {:?}\nh2load {want:?}",
        server_counts(&vigil, "node")
    );
    for reason in ["adopted", "frames", "headers", "streams"] {
        assert_eq!(
            vigil.metric(&format!("vigil_http2_desync_total{{reason=\"{reason}\"}}")),
            0.0,
            "{reason}"
        );
    }
    println!("HTTP/2 over TLS: {want:?} counted exactly");
}
