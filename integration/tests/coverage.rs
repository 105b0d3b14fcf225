//! Root only: the unmonitored-pod gauge grounded in traffic, with pods announced by the in-test API
//! server. A pod serving HTTP through io_uring (its traffic never reaches a syscall vigil hooks) reads
//! `traffic_not_captured` while it serves and `monitored` again once the window has passed; a pod serving
//! a line protocol that is not HTTP reads `unrecognized_protocol`; a node `cluster` pod and a pm2
//! cluster-mode pod, whose requests are counted, read `monitored` throughout.

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
    free_port, http_client, load, require_root, samples, workload_binary, workspace,
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
