//! Root only: HTTP/2 and gRPC capture of real servers and clients in simulated pods (@grpc/grpc-js,
//! Python grpcio, node's http2 under h2load), counted against the clients' own tallies.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::Duration,
};

use vigil_integration::{
    Background, Pod, Vigil, eventually, free_port, require_root, samples, workspace,
};

const POD_LISTENERS: &str =
    "discovery:\n  instrument: [{open_ports: '1-65535', container: true}]\n";

const PLAN: &str = "Unary:ok:10,Unary:not_found:3,Unary:internal:2,ServerStream:5:4,Bidi:3:2,ClientStream:3:2,FailMidway:1:2";

/// The gRPC workloads: (program, server script, client script).
fn node_grpc() -> (&'static str, String, String) {
    let dir = workspace().join("integration/workloads/grpc");
    (
        "node",
        dir.join("server.js").display().to_string(),
        dir.join("client.js").display().to_string(),
    )
}

fn python_grpc() -> (&'static str, String, String) {
    let dir = workspace().join("integration/workloads/python");
    (
        "/usr/bin/python3",
        dir.join("grpc_server.py").display().to_string(),
        dir.join("grpc_client.py").display().to_string(),
    )
}

/// The service name of a Python process: its executable's name (`/usr/bin/python3` links to a
/// versioned one).
fn python_service() -> String {
    let exe = std::fs::canonicalize("/usr/bin/python3").expect("/usr/bin/python3");
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

/// Starts a server script in a pod on a free port and waits for it to listen.
fn server_pod(program: &str, script: &str, extra: &[&str]) -> (Pod, u16) {
    let port = free_port();
    let port_text = port.to_string();
    let mut args = vec![script, "--port", &port_text];
    args.extend_from_slice(extra);
    let mut pod = Pod::start(program, &args, |_| {});
    assert_eq!(pod.read_line(), format!("listening {port}"));
    (pod, port)
}

/// Runs a gRPC client (not in a pod: not captured) to completion; its tally by "Method/STATUS".
fn run_client(program: &str, script: &str, port: u16, plan: &str) -> BTreeMap<String, u64> {
    let output = Command::new(program)
        .args([script, "--port", &port.to_string(), "--plan", plan])
        .stderr(Stdio::inherit())
        .output()
        .expect("the gRPC client runs");
    assert!(output.status.success(), "client {script}: {output:?}");
    parse_tally(&String::from_utf8_lossy(&output.stdout))
}

/// The JSON tally a client prints last.
fn parse_tally(stdout: &str) -> BTreeMap<String, u64> {
    let line = stdout.lines().last().expect("a tally line");
    serde_json::from_str(line).unwrap_or_else(|error| panic!("tally {line:?}: {error}"))
}

/// gRPC calls in `/metrics` for `service`, by "Method/STATUS" (the service prefix dropped), from
/// `family`'s counts.
fn rpc_counts(vigil: &Vigil, family: &str, service: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (labels, value) in samples(&vigil.get("/metrics").1, &format!("{family}_count")) {
        if labels["service_name"] != service {
            continue;
        }
        assert_eq!(labels["rpc_system_name"], "grpc");
        let method = labels["rpc_method"].trim_start_matches("vigil.test.Echo/");
        let key = format!("{method}/{}", labels["rpc_response_status_code"]);
        *counts.entry(key).or_default() += value as u64;
    }
    counts
}

/// Waits until `got` equals `want`, then checks it stays so (nothing counted twice).
fn assert_settles(want: &BTreeMap<String, u64>, got: impl Fn() -> BTreeMap<String, u64>) {
    let settled = eventually(Duration::from_secs(10), || got() == *want);
    assert!(settled, "vigil  {:?}\nclient {want:?}", got());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got(), *want, "counted more than once");
}

fn served_calls_are_counted_by_method_and_status(
    server: (&'static str, String, String),
    client: (&'static str, String, String),
    service: &str,
) {
    let vigil = Vigil::start(POD_LISTENERS);
    let (_pod, port) = server_pod(server.0, &server.1, &[]);
    vigil.wait_captured(port);
    let tally = run_client(client.0, &client.2, port, PLAN);
    assert_eq!(tally.values().sum::<u64>(), 25, "{tally:?}");
    assert_eq!(tally.get("FailMidway/ABORTED"), Some(&2), "{tally:?}");
    assert_settles(&tally, || {
        rpc_counts(&vigil, "rpc_server_call_duration_seconds", service)
    });
    // gRPC calls are not HTTP requests too, and nothing was lost.
    assert!(
        samples(
            &vigil.metrics(),
            "http_server_request_duration_seconds_count"
        )
        .iter()
        .all(|(labels, _)| labels["service_name"] != service),
        "no HTTP series for {service}"
    );
    for reason in ["adopted", "frames", "headers", "streams"] {
        assert_eq!(
            vigil.metric(&format!("vigil_http2_desync_total{{reason=\"{reason}\"}}")),
            0.0,
            "{reason}"
        );
    }
    println!("{service}: {tally:?} counted exactly");
}

#[test]
fn grpc_js_server_calls_are_counted_by_method_and_status() {
    if !require_root("grpc_js_server_calls_are_counted_by_method_and_status") {
        return;
    }
    served_calls_are_counted_by_method_and_status(node_grpc(), python_grpc(), "node");
}

#[test]
fn grpcio_server_calls_are_counted_by_method_and_status() {
    if !require_root("grpcio_server_calls_are_counted_by_method_and_status") {
        return;
    }
    served_calls_are_counted_by_method_and_status(python_grpc(), node_grpc(), &python_service());
}

#[test]
fn a_grpc_client_in_a_pod_against_an_uninstrumented_server_gives_the_client_family() {
    if !require_root(
        "a_grpc_client_in_a_pod_against_an_uninstrumented_server_gives_the_client_family",
    ) {
        return;
    }
    let vigil = Vigil::start(
        "discovery:\n  min_process_age: 100ms\n  instrument: [{cmd_args: '*grpc/client.js*', container: true}]\n",
    );
    let (program, server, client) = node_grpc();
    // The server runs on the host: no selector matches it.
    let port = free_port();
    let mut server = Background::spawn(
        Command::new(program)
            .args([&server, "--port", &port.to_string()])
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), format!("listening {port}"));
    // The client in a pod: its calls start before discovery has evaluated it, and are held until it
    // is published.
    let port_text = port.to_string();
    let mut pod = Pod::start(
        program,
        &[&client, "--port", &port_text, "--plan", PLAN],
        |_| {},
    );
    let mut stdout = String::new();
    loop {
        let line = pod.read_line();
        if line.is_empty() {
            break;
        }
        stdout = line;
    }
    let tally = parse_tally(&stdout);
    assert_eq!(tally.values().sum::<u64>(), 25, "{tally:?}");
    assert_settles(&tally, || {
        rpc_counts(&vigil, "rpc_client_call_duration_seconds", "node")
    });
}

/// Runs h2load against `url`; the requests it saw succeed.
fn h2load(url: &str, requests: u32, connections: u32, streams: u32) -> u64 {
    let output = Command::new("h2load")
        .args([
            "-n",
            &requests.to_string(),
            "-c",
            &connections.to_string(),
            "-m",
            &streams.to_string(),
            url,
        ])
        .output()
        .expect("h2load (nghttp2-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "h2load: {stdout}");
    // "requests: 20000 total, 20000 started, 20000 done, 20000 succeeded, 0 failed, ..."
    let line = stdout
        .lines()
        .find(|line| line.starts_with("requests:"))
        .unwrap_or_else(|| panic!("h2load summary in {stdout}"));
    let done: u64 = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" done"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("done count in {line}"));
    assert!(stdout.contains("h2c"), "h2load spoke h2c: {stdout}");
    done
}

#[test]
fn h2load_with_a_hundred_streams_per_connection_is_counted_exactly() {
    if !require_root("h2load_with_a_hundred_streams_per_connection_is_counted_exactly") {
        return;
    }
    let vigil = Vigil::start(POD_LISTENERS);
    let script = workspace().join("integration/workloads/h2/h2c_server.js");
    let (_pod, port) = server_pod("node", &script.display().to_string(), &[]);
    vigil.wait_captured(port);
    let ok = h2load(&format!("http://127.0.0.1:{port}/hello"), 6_000, 3, 100);
    let missing = h2load(&format!("http://127.0.0.1:{port}/missing"), 1_000, 2, 100);
    let want = BTreeMap::from([
        (("/hello".to_owned(), "200".to_owned()), ok),
        (("/missing".to_owned(), "404".to_owned()), missing),
    ]);
    let got = || {
        let mut counts = BTreeMap::new();
        for (labels, value) in samples(
            &vigil.metrics(),
            "http_server_request_duration_seconds_count",
        ) {
            if labels["service_name"] == "node" {
                assert_eq!(labels["http_request_method"], "GET");
                *counts
                    .entry((
                        labels["http_route"].clone(),
                        labels["http_response_status_code"].clone(),
                    ))
                    .or_insert(0) += value as u64;
            }
        }
        counts
    };
    // The debug build the tests run decodes a few thousand HTTP/2 requests a second.
    let settled = eventually(Duration::from_secs(30), || got() == want);
    assert!(settled, "vigil  {:?}\nh2load {want:?}", got());
    assert_eq!(
        vigil.metric("vigil_ebpf_events_lost_total{source=\"io_events\"}"),
        0.0
    );
    println!(
        "h2load: {} requests over 100 streams per connection counted exactly",
        ok + missing
    );
}

#[test]
fn vigil_started_while_grpc_connections_are_busy_counts_later_calls_without_wrong_labels() {
    if !require_root(
        "vigil_started_while_grpc_connections_are_busy_counts_later_calls_without_wrong_labels",
    ) {
        return;
    }
    let (program, server, _) = node_grpc();
    let (_pod, port) = server_pod(program, &server, &[]);
    // A client busy on one connection before vigil starts.
    let (python, _, client) = python_grpc();
    let stop_file = std::env::temp_dir().join(format!("vigil-grpc-stop-{port}"));
    let _ = std::fs::remove_file(&stop_file);
    let mut client = Background::spawn(
        Command::new(python)
            .args([
                &client,
                "--port",
                &port.to_string(),
                "--loop",
                "--stop-file",
            ])
            .arg(&stop_file)
            .stdout(Stdio::piped()),
    );
    let mut client_out = std::io::BufReader::new(client.0.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut client_out, &mut line).unwrap();
    assert_eq!(line.trim(), "started");

    let vigil = Vigil::start(POD_LISTENERS);
    vigil.wait_captured(port);
    let counted = || rpc_counts(&vigil, "rpc_server_call_duration_seconds", "node");
    assert!(
        eventually(Duration::from_secs(10), || counted().values().sum::<u64>()
            >= 100),
        "later calls are counted: {:?}",
        counted()
    );
    std::fs::write(&stop_file, b"").unwrap();
    let mut tally = String::new();
    std::io::Read::read_to_string(&mut client_out, &mut tally).unwrap();
    let _ = std::fs::remove_file(&stop_file);
    let tally = parse_tally(&tally);
    let total = tally["Unary/OK"];
    std::thread::sleep(Duration::from_millis(500));
    let counted = counted();
    // Every label is what the call was, or _OTHER where vigil could not read it: never a guess.
    for key in counted.keys() {
        assert!(
            ["Unary/OK", "Unary/_OTHER", "_OTHER/OK", "_OTHER/_OTHER"].contains(&key.as_str()),
            "{key} in {counted:?}"
        );
    }
    let seen: u64 = counted.values().sum();
    assert!(seen <= total, "{seen} counted of {total} made");
    assert!(
        vigil.metric("vigil_http2_desync_total{reason=\"adopted\"}") >= 1.0,
        "the adoption is counted"
    );
    assert!(
        samples(
            &vigil.metrics(),
            "http_server_request_duration_seconds_count"
        )
        .iter()
        .all(|(labels, _)| labels["service_name"] != "node"),
        "no call counted as a plain HTTP request"
    );
    println!("{seen} of {total} calls counted after vigil started mid-connection: {counted:?}");
}
