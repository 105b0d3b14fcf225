//! Root only: the unmonitored-pod gauge grounded in traffic, with pods announced by the in-test API
//! server. A pod serving HTTP through io_uring (its traffic never reaches a syscall vigil hooks) reads
//! `traffic_not_captured` while it serves and `monitored` again once the window has passed; a pod serving
//! a line protocol that is not HTTP reads `unrecognized_protocol`; a node `cluster` pod and a pm2
//! cluster-mode pod, whose requests are counted, read `monitored` throughout. Pods that share the host's
//! network namespace, selected without a port, are judged on the ports they serve, not on the node's
//! other connections.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use vigil_integration::{
    Pod, Vigil, eventually,
    fake_apiserver::{FakeApiServer, pod},
    free_port, http_client, load, require_root, samples, self_signed_certificate, workload_binary,
    workspace,
};

const NODE: &str = "node-a";
const LONG_AGO: &str = "2026-01-01T00:00:00Z";

/// A pod running `program` with `PORT` set, announced to the API server as `name`.
fn start_announced(
    server: &FakeApiServer,
    name: &str,
    program: &str,
    args: &[&str],
    directory: &str,
) -> (Pod, u16) {
    let port = free_port();
    let pm2_home = std::env::temp_dir().join(format!("vigil-pm2-{port}"));
    let simulated = Pod::start(program, args, |command| {
        command
            .current_dir(workspace().join(directory))
            .env("PORT", port.to_string())
            .env("WORKERS", "2")
            .env("PM2_HOME", pm2_home);
    });
    server.apply(pod(
        "shop",
        name,
        &simulated.uid,
        NODE,
        &simulated.container_id,
        LONG_AGO,
    ));
    (simulated, port)
}

/// [`start_announced`], returning once the pod prints that it listens.
fn announced(
    server: &FakeApiServer,
    name: &str,
    program: &str,
    args: &[&str],
    directory: &str,
) -> (Pod, u16) {
    let (mut simulated, port) = start_announced(server, name, program, args, directory);
    let line = simulated.read_line();
    assert!(
        line == format!("listening {port}") || line.starts_with("ready "),
        "{name} said {line:?}"
    );
    (simulated, port)
}

/// Each pod's status in `vigil_pod_monitoring_status`, with its protocol hint.
fn statuses(vigil: &Vigil) -> Vec<(String, String, String)> {
    samples(&vigil.metrics(), "vigil_pod_monitoring_status")
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .map(|(labels, _)| {
            (
                labels["k8s_pod_name"].clone(),
                labels["status"].clone(),
                labels["protocol"].clone(),
            )
        })
        .collect()
}

fn status_of(vigil: &Vigil, name: &str) -> Option<(String, String)> {
    statuses(vigil)
        .into_iter()
        .find(|(pod, _, _)| pod == name)
        .map(|(_, status, protocol)| (status, protocol))
}

/// Runs `request` in a loop on a thread until the returned flag is set.
fn keep_sending(
    request: impl Fn() + Send + 'static,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                request();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    (stop, thread)
}

#[test]
fn the_gauge_says_unmonitored_for_traffic_vigil_does_not_count() {
    if !require_root("the_gauge_says_unmonitored_for_traffic_vigil_does_not_count") {
        return;
    }
    let server = FakeApiServer::start();
    let kubeconfig = server.kubeconfig();
    let heartbeat = Duration::from_millis(500);
    let window = Duration::from_secs(3);
    let config = format!(
        "discovery:\n  instrument: [{{open_ports: '1-65535', container: true}}]\n  heartbeat_interval: {}ms\n\
         k8s:\n  node_name: {NODE}\n  traffic_window: {}s\n",
        heartbeat.as_millis(),
        window.as_secs()
    );
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(20));

    let uring_binary = workload_binary("uring-server");
    let (_uring, uring_port) = announced(
        &server,
        "uring",
        uring_binary.to_str().unwrap(),
        &[],
        "integration",
    );
    let (_lines, lines_port) = announced(
        &server,
        "lines",
        "/usr/bin/python3",
        &["line_server.py"],
        "integration/workloads/python",
    );
    let (_cluster, cluster_port) = announced(
        &server,
        "cluster",
        "node",
        &["cluster.js"],
        "integration/workloads/cluster",
    );
    // pm2's cluster mode: ready once it listens (its workers' `listen` makes pm2 listen).
    let (_pm2, pm2_port) = start_announced(
        &server,
        "pm2",
        "node_modules/.bin/pm2-runtime",
        &["start", "app.js", "-i", "2"],
        "integration/workloads/cluster",
    );
    assert!(
        eventually(Duration::from_secs(20), || TcpStream::connect((
            "127.0.0.1",
            pm2_port
        ))
        .is_ok()),
        "pm2 listens"
    );
    // Idle, every pod is monitored by its processes' state.
    let all_monitored = || {
        ["uring", "lines", "cluster", "pm2"]
            .iter()
            .all(|name| status_of(&vigil, name).is_some_and(|(status, _)| status == "monitored"))
    };
    assert!(
        eventually(Duration::from_secs(10), all_monitored),
        "{:?}",
        statuses(&vigil)
    );

    // Traffic starts on all three.
    let started = Instant::now();
    let uring = keep_sending(move || {
        assert_eq!(http_client::get_once(uring_port, "/"), 200);
    });
    let lines = keep_sending(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", lines_port)).unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).unwrap();
        assert_eq!(reply, "+PONG\r\n");
    });
    let cluster = keep_sending(move || {
        assert_eq!(http_client::get_once(cluster_port, "/users/1"), 200);
    });
    let pm2 = keep_sending(move || {
        assert_eq!(http_client::get_once(pm2_port, "/users/1"), 200);
    });
    let mut cluster_statuses = Vec::new();
    let (mut uring_flagged, mut lines_flagged) = (None, None);
    let flagged = eventually(Duration::from_secs(5), || {
        cluster_statuses.extend(status_of(&vigil, "cluster"));
        cluster_statuses.extend(status_of(&vigil, "pm2"));
        if status_of(&vigil, "uring") == Some(("traffic_not_captured".into(), String::new())) {
            uring_flagged.get_or_insert(started.elapsed());
        }
        if status_of(&vigil, "lines") == Some(("unrecognized_protocol".into(), "unknown".into())) {
            lines_flagged.get_or_insert(started.elapsed());
        }
        uring_flagged.is_some() && lines_flagged.is_some()
    });
    assert!(flagged, "{:?}", statuses(&vigil));
    assert_eq!(
        vigil.metric(
            "vigil_unmonitored_pods{k8s_namespace_name=\"shop\",reason=\"traffic_not_captured\"}"
        ),
        1.0
    );
    assert_eq!(
        vigil.metric(
            "vigil_unmonitored_pods{k8s_namespace_name=\"shop\",reason=\"unrecognized_protocol\"}"
        ),
        1.0
    );
    assert!(
        vigil.metric("vigil_uncaptured_connections_total{reason=\"traffic_not_captured\"}") > 0.0
    );
    assert!(
        vigil.metric("vigil_uncaptured_connections_total{reason=\"unrecognized_protocol\"}") > 0.0
    );
    // The cluster and pm2 pods, whose requests are counted, stay monitored while the others are
    // flagged.
    std::thread::sleep(2 * heartbeat);
    cluster_statuses.extend(status_of(&vigil, "cluster"));
    cluster_statuses.extend(status_of(&vigil, "pm2"));
    assert!(
        cluster_statuses
            .iter()
            .all(|(status, _)| status == "monitored"),
        "{cluster_statuses:?}"
    );

    // The traffic stops: once the window has passed, the state of their processes speaks again.
    for (stop, thread) in [uring, lines, cluster, pm2] {
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
    }
    let stopped = Instant::now();
    assert!(
        eventually(window + Duration::from_secs(5), all_monitored),
        "{:?}",
        statuses(&vigil)
    );
    let cleared_after = stopped.elapsed();
    assert!(
        load::hey(cluster_port, 200, 2, "/users/2").get("200") == Some(&200),
        "the cluster still answers"
    );
    println!(
        "traffic vigil does not count flagged {:?} (io_uring) and {:?} (line protocol) after it started (heartbeat {heartbeat:?}); cleared {:.2} s after it stopped (window {window:?})",
        uring_flagged.unwrap(),
        lines_flagged.unwrap(),
        cleared_after.as_secs_f64()
    );
}

#[test]
fn host_network_pods_without_a_port_selector_are_judged_on_their_own_ports() {
    if !require_root("host_network_pods_without_a_port_selector_are_judged_on_their_own_ports") {
        return;
    }
    // Simulated pods share the host's network namespace, as host-network pods do; the selector names
    // no port, so vigil reads the ports each pod serves to tell their connections from the node's.
    let server = FakeApiServer::start();
    let kubeconfig = server.kubeconfig();
    let config = format!(
        "discovery:\n  instrument: [{{k8s_namespace: shop}}]\n  heartbeat_interval: 500ms\n\
         k8s:\n  node_name: {NODE}\n  traffic_window: 3s\n"
    );
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(20));
    let (_idle, _) = announced(
        &server,
        "idle",
        "/usr/bin/python3",
        &["any_path_server.py"],
        "integration/workloads/python",
    );
    let uring_binary = workload_binary("uring-server");
    let (_uring, uring_port) = announced(
        &server,
        "uring",
        uring_binary.to_str().unwrap(),
        &[],
        "integration",
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            status_of(&vigil, "idle").is_some_and(|(status, _)| status == "monitored")
                && status_of(&vigil, "uring").is_some_and(|(status, _)| status == "monitored")
        }),
        "{:?}",
        statuses(&vigil)
    );
    // A server of the node itself (no pod, not captured) takes connections all along.
    let host_port = free_port();
    let mut host_server = std::process::Command::new("/usr/bin/python3");
    host_server
        .arg(workspace().join("integration/workloads/python/any_path_server.py"))
        .arg(host_port.to_string())
        .stdout(std::process::Stdio::piped());
    let mut host_server = vigil_integration::Background::spawn(&mut host_server);
    let mut line = String::new();
    BufReader::new(host_server.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("listening {host_port}"));
    let host = keep_sending(move || {
        assert_eq!(http_client::get_once(host_port, "/"), 200);
    });
    // Four windows of node traffic: the idle pod stays monitored.
    let mut idle_statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline {
        idle_statuses.extend(status_of(&vigil, "idle"));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !idle_statuses.is_empty()
            && idle_statuses
                .iter()
                .all(|(status, _)| status == "monitored"),
        "the node's connections were taken for the idle pod's: {idle_statuses:?}"
    );
    // The io_uring pod's own traffic, which vigil does not see, is still caught on its port.
    let uring = keep_sending(move || {
        assert_eq!(http_client::get_once(uring_port, "/"), 200);
    });
    assert!(
        eventually(Duration::from_secs(6), || status_of(&vigil, "uring")
            == Some(("traffic_not_captured".into(), String::new()))),
        "{:?}",
        statuses(&vigil)
    );
    assert_eq!(
        status_of(&vigil, "idle"),
        Some(("monitored".into(), String::new()))
    );
    for (stop, thread) in [host, uring] {
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
    }
}

/// Builds the Go HTTPS server (stdlib only, offline) next to vigil's binary.
fn go_https_server() -> std::path::PathBuf {
    let binary = workload_binary("go-https-server");
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(workspace().join("integration/workloads/go/https_server.go"))
        .env("CGO_ENABLED", "0")
        .status()
        .expect("go (Debian golang-go)");
    assert!(status.success(), "building the Go HTTPS server");
    binary
}

/// One HTTPS request on a new connection (curl, certificate not verified); its status.
fn https_get(port: u16) -> String {
    let output = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}/ok"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn tls_vigil_cannot_read_is_reported_and_tls_it_reads_is_monitored() {
    if !require_root("tls_vigil_cannot_read_is_reported_and_tls_it_reads_is_monitored") {
        return;
    }
    let go_server = go_https_server();
    let (_certs, cert, key) = self_signed_certificate();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let server = FakeApiServer::start();
    let kubeconfig = server.kubeconfig();
    let config = format!(
        "discovery:\n  instrument: [{{open_ports: '1-65535', container: true}}]\n  heartbeat_interval: 500ms\n\
         k8s:\n  node_name: {NODE}\n  traffic_window: 3s\n"
    );
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(20));
    let tls_args = |port: &str| ["--port", port, "--cert", &cert, "--key", &key].map(str::to_owned);
    let announce = |name: &str, program: &str, script: Option<&str>| {
        let port = free_port();
        let mut args: Vec<String> = script.into_iter().map(str::to_owned).collect();
        args.extend(tls_args(&port.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut simulated = Pod::start(program, &args, |command| {
            command.current_dir(workspace());
        });
        server.apply(pod(
            "shop",
            name,
            &simulated.uid,
            NODE,
            &simulated.container_id,
            LONG_AGO,
        ));
        assert_eq!(simulated.read_line(), format!("listening {port}"));
        (simulated, port)
    };
    let (_go, go_port) = announce("go-tls", go_server.to_str().unwrap(), None);
    let (_node, node_port) = announce(
        "node-tls",
        "node",
        Some("integration/workloads/tls/https_server.js"),
    );
    // Node's TLS probes are attached within a drain tick of its capture; the traffic starts after.
    assert!(
        eventually(Duration::from_secs(10), || vigil
            .listener_on(node_port)
            .is_some_and(|process| process["tls"]
                .as_str()
                .is_some_and(|tls| tls.starts_with("attached")))),
        "node's TLS probes: {:?}",
        vigil.listener_on(node_port)
    );
    let go = keep_sending(move || assert_eq!(https_get(go_port), "200"));
    let node = keep_sending(move || assert_eq!(https_get(node_port), "200"));
    let mut node_statuses = Vec::new();
    let flagged = eventually(Duration::from_secs(8), || {
        node_statuses.extend(status_of(&vigil, "node-tls"));
        status_of(&vigil, "go-tls") == Some(("unrecognized_protocol".into(), "tls".into()))
    });
    assert!(flagged, "{:?}", statuses(&vigil));
    std::thread::sleep(Duration::from_secs(1));
    node_statuses.extend(status_of(&vigil, "node-tls"));
    for (stop, thread) in [go, node] {
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap();
    }
    // Young, it may still read process_too_young (provisional); never a reason of traffic vigil
    // does not count.
    assert!(
        node_statuses
            .last()
            .is_some_and(|(status, _)| status == "monitored")
            && node_statuses
                .iter()
                .all(|(status, _)| status == "monitored" || status == "process_too_young"),
        "node's TLS is read: {node_statuses:?}"
    );
    let node_requests: f64 = samples(
        &vigil.metrics(),
        "http_server_request_duration_seconds_count",
    )
    .iter()
    .filter(|(labels, _)| labels["k8s_pod_name"] == "node-tls")
    .map(|(_, value)| value)
    .sum();
    assert!(node_requests > 0.0, "node's HTTPS requests are counted");
    println!(
        "Go's TLS reported unrecognized (tls); node's read and counted ({node_requests} requests)"
    );
}
