//! Root only: serving processes that never listen. node `cluster` (the primary accepts every
//! connection and hands it to a worker) and pm2's cluster mode, with vigil's default configuration:
//! every request is counted, every worker is captured from its fork, a worker killed under load is
//! replaced by one whose first requests are counted, and the primary's IPC with its workers never
//! becomes series.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use vigil_integration::{
    Pod, Vigil, eventually, free_port, http_client, load, require_root, samples, signal, workspace,
};

const CLUSTER_WORKLOAD: &str = "integration/workloads/cluster";

/// The host pid of the process of `pod` whose pid in the pod's PID namespace is `ns_pid`.
fn host_pid(pod: &Pod, ns_pid: u32) -> u32 {
    let found = pod.host_pids().into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("NSpid:"))
                .and_then(|pids| pids.split_whitespace().last()?.parse().ok())
                == Some(ns_pid)
        })
    });
    found.unwrap_or_else(|| panic!("no process of the pod has pid {ns_pid} in it"))
}

/// The node `cluster` workload with `workers` workers in a new pod: (pod, primary pid, worker pids),
/// host pids.
fn node_cluster(port: u16, workers: u32) -> (Pod, u32, Vec<u32>) {
    let mut pod = Pod::start("node", &["cluster.js"], |command| {
        command
            .current_dir(workspace().join(CLUSTER_WORKLOAD))
            .env("PORT", port.to_string())
            .env("WORKERS", workers.to_string());
    });
    let line = pod.read_line();
    let pids: Vec<u32> = line
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("cluster said {line:?}"))
        .split(' ')
        .map(|pid| host_pid(&pod, pid.parse().unwrap()))
        .collect();
    assert_eq!(pids.len(), workers as usize);
    // The primary is the parent of the workers (host pids; /proc shows it).
    let primary = parent_of(pids[0]);
    (pod, primary, pids)
}

fn parent_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Server requests in `/metrics` by status, of every series of `service`.
fn by_status(vigil: &Vigil, service: &str) -> load::Statuses {
    let mut statuses = BTreeMap::new();
    for (labels, value) in samples(
        &vigil.metrics(),
        "http_server_request_duration_seconds_count",
    ) {
        if labels.get("service_name").map(String::as_str) == Some(service) {
            let status = labels["http_response_status_code"].clone();
            *statuses.entry(status).or_default() += value as u64;
        }
    }
    statuses
}

/// Whether `pid` is captured (provisional or instrumented) in `/debug/discovery`.
fn captured(vigil: &Vigil, pid: u32) -> Option<Value> {
    vigil
        .process(u64::from(pid))
        .filter(|process| process["state"] == "provisional" || process["state"] == "instrumented")
}

/// Waits until every one of `workers` is captured as a worker of `primary`, or, for a worker that
/// holds the listening socket itself (pm2 hands it to its workers), by the selector its port matches:
/// whichever of its fork and its `listen` discovery handled first gives the reason.
fn assert_workers_captured(vigil: &Vigil, primary: u32, workers: &[u32]) {
    let reason = format!("a worker of captured pid {primary}");
    let all = eventually(Duration::from_secs(5), || {
        workers.iter().all(|worker| {
            captured(vigil, *worker).is_some_and(|process| {
                let listens = process["listening_ports"]
                    .as_array()
                    .is_some_and(|ports| !ports.is_empty());
                process["reason"].as_str().is_some_and(|got| {
                    got.starts_with(&reason)
                        || (listens && got.starts_with("matches discovery.instrument"))
                })
            })
        })
    });
    let seen: Vec<Option<Value>> = workers
        .iter()
        .map(|worker| vigil.process(u64::from(*worker)))
        .collect();
    assert!(
        all,
        "every worker captured as a worker of {primary}: {seen:?}"
    );
}

/// The difference of two tallies by status (`after` − `before`), zero entries left out.
fn since(before: &load::Statuses, after: &load::Statuses) -> load::Statuses {
    after
        .iter()
        .map(|(status, count)| {
            (
                status.clone(),
                count - before.get(status).copied().unwrap_or(0),
            )
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// Waits until `got()` equals `want`, then checks it stays so (nothing counted twice).
fn assert_settles(want: &load::Statuses, got: impl Fn() -> load::Statuses) {
    let settled = eventually(Duration::from_secs(10), || got() == *want);
    assert!(settled, "vigil {:?}\nclient {want:?}", got());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(got(), *want, "counted more than once");
}

#[test]
fn node_cluster_workers_are_counted_with_the_default_configuration() {
    if !require_root("node_cluster_workers_are_counted_with_the_default_configuration") {
        return;
    }
    let vigil = Vigil::start("");
    let port = free_port();
    let (_pod, primary, workers) = node_cluster(port, 4);
    assert!(captured(&vigil, primary).is_some(), "the primary listens");
    assert_workers_captured(&vigil, primary, &workers);

    // wrk: keep-alive connections, every worker serving some of them.
    let connections = 8;
    let completed = load::wrk_status_mix(port, connections);
    // wrk does not count the responses in flight when it stops (at most one per connection).
    let settled = eventually(Duration::from_secs(10), || {
        load::counted_beyond(&by_status(&vigil, "node"), &completed)
            .is_some_and(|extra| extra <= u64::from(connections))
    });
    assert!(
        settled,
        "vigil {:?}\nwrk   {completed:?}",
        by_status(&vigil, "node")
    );
    std::thread::sleep(Duration::from_millis(500));

    // hey: an exact number of requests, counted exactly.
    let before = by_status(&vigil, "node");
    let mut received = load::hey(port, 2_000, 8, "/users/7");
    for (status, count) in load::hey(port, 400, 4, "/missing/x") {
        *received.entry(status).or_default() += count;
    }
    assert_eq!(received.values().sum::<u64>(), 2_400, "{received:?}");
    assert_settles(&received, || since(&before, &by_status(&vigil, "node")));

    // Eight keep-alive connections, handed round-robin to the four workers: each worker follows its
    // connections as their server; the primary, which only accepts them and hands them over its IPC
    // channel, parses nothing (its IPC channel is followed, no request is found on it).
    let mut open: Vec<http_client::Connection> = (0..8)
        .map(|_| http_client::Connection::open(port))
        .collect();
    for connection in &mut open {
        assert_eq!(connection.get("/users/1"), 200);
    }
    let serves = |connection: &Value, pid: u32| {
        connection["pid"] == pid
            && connection["role"] == "server"
            && connection["transport"] == "inet"
    };
    let followed = eventually(Duration::from_secs(5), || {
        let connections = vigil.connections();
        workers.iter().all(|worker| {
            connections
                .iter()
                .any(|connection| serves(connection, *worker))
        })
    });
    let connections = vigil.connections();
    assert!(
        followed,
        "every worker serves a connection: {connections:?}"
    );
    assert!(
        connections
            .iter()
            .filter(|connection| connection["pid"] == primary)
            .all(|connection| connection["role"].is_null()),
        "the primary parses no request: {connections:?}"
    );
    println!(
        "node cluster, 4 workers: wrk {} and hey {} requests counted",
        completed.values().sum::<u64>(),
        received.values().sum::<u64>()
    );
}

#[test]
fn a_worker_killed_under_load_is_replaced_by_one_whose_first_requests_are_counted() {
    if !require_root(
        "a_worker_killed_under_load_is_replaced_by_one_whose_first_requests_are_counted",
    ) {
        return;
    }
    let vigil = Vigil::start("");
    let port = free_port();
    let (mut pod, primary, workers) = node_cluster(port, 2);
    assert_workers_captured(&vigil, primary, &workers);

    // One request per connection until told to stop: (responses by status, failed requests, the pids
    // that answered).
    let stop = Arc::new(AtomicBool::new(false));
    let answered_by = Arc::new(Mutex::new(BTreeMap::<u32, u64>::new()));
    let load = std::thread::spawn({
        let (stop, answered_by) = (stop.clone(), answered_by.clone());
        move || {
            let mut statuses = load::Statuses::new();
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match pid_request(port) {
                    Ok((status, pid)) => {
                        *statuses.entry(status.to_string()).or_default() += 1;
                        *answered_by.lock().unwrap().entry(pid).or_default() += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (statuses, failed)
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    signal(workers[0], libc::SIGKILL);
    let line = pod.read_line();
    let replacement_in_pod: u32 = line
        .strip_prefix("respawned ")
        .unwrap_or_else(|| panic!("cluster said {line:?}"))
        .parse()
        .unwrap();
    let replacement = host_pid(&pod, replacement_in_pod);
    // The load goes on until the replacement has answered a hundred requests.
    let served = |count: u64| {
        answered_by
            .lock()
            .unwrap()
            .get(&replacement_in_pod)
            .is_some_and(|answered| *answered >= count)
    };
    let replaced = eventually(Duration::from_secs(15), || served(100));
    stop.store(true, Ordering::Relaxed);
    let (completed, failed) = load.join().unwrap();
    let answered_by = answered_by.lock().unwrap().clone();
    assert!(replaced, "the replacement served: {answered_by:?}");
    assert!(captured(&vigil, replacement).is_some());
    // Every completed request is counted; a request in flight on the killed worker failed at the
    // client, and was counted only if the worker answered it before it died.
    let settled = eventually(Duration::from_secs(10), || {
        load::counted_beyond(&by_status(&vigil, "node"), &completed)
            .is_some_and(|extra| extra <= failed)
    });
    assert!(
        settled,
        "vigil {:?}\nclient {completed:?}, {failed} failed",
        by_status(&vigil, "node")
    );
    println!(
        "worker killed under load: {} requests completed ({} by the replacement), {failed} failed",
        completed.values().sum::<u64>(),
        answered_by[&replacement_in_pod]
    );
}

/// `GET /pid` on a new connection: the status and the pid (in its pod) of the worker that answered; an
/// error when the connection failed or was not answered (its worker was killed).
fn pid_request(port: u16) -> std::io::Result<(u16, u32)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    // A connection the primary handed to a worker killed meanwhile is never answered.
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok());
    let pid = response
        .rsplit("\r\n\r\n")
        .next()
        .and_then(|body| body.trim().parse().ok());
    status
        .zip(pid)
        .ok_or_else(|| std::io::Error::other(format!("unexpected response {response:?}")))
}

#[test]
fn pm2_cluster_mode_is_counted_with_the_default_configuration() {
    if !require_root("pm2_cluster_mode_is_counted_with_the_default_configuration") {
        return;
    }
    let vigil = Vigil::start("");
    let port = free_port();
    let pm2_home = tempfile::tempdir().unwrap();
    let pod = Pod::start(
        "node_modules/.bin/pm2-runtime",
        &["start", "app.js", "-i", "2"],
        |command| {
            command
                .current_dir(workspace().join(CLUSTER_WORKLOAD))
                .env("PORT", port.to_string())
                .env("PM2_HOME", pm2_home.path());
        },
    );
    let answered = eventually(Duration::from_secs(20), || pid_request(port).is_ok());
    assert!(answered, "pm2's workers answer on {port}");
    // Which processes answer: pm2's workers (the second may start a little later), children of the pm2
    // process that listens.
    let mut workers = BTreeMap::<u32, u64>::new();
    let both = eventually(Duration::from_secs(20), || {
        if let Ok((_, pid)) = pid_request(port) {
            *workers.entry(pid).or_default() += 1;
        }
        workers.len() == 2
    });
    assert!(both, "both workers answer: {workers:?}");
    let workers: Vec<u32> = workers.into_keys().map(|pid| host_pid(&pod, pid)).collect();
    let primary = parent_of(workers[0]);
    assert!(captured(&vigil, primary).is_some(), "pm2's listener");
    assert_workers_captured(&vigil, primary, &workers);

    std::thread::sleep(Duration::from_millis(500));
    let before = by_status(&vigil, "node");
    let mut received = load::hey(port, 1_000, 4, "/users/3");
    for (status, count) in load::hey(port, 200, 2, "/fail") {
        *received.entry(status).or_default() += count;
    }
    assert_eq!(received.values().sum::<u64>(), 1_200, "{received:?}");
    assert_settles(&received, || since(&before, &by_status(&vigil, "node")));
    println!("pm2 cluster mode, 2 workers: 1200 requests counted");
}
