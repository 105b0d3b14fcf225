//! Root only: discovery scenarios with real workloads on the real kernel, watched through
//! `/debug/discovery` and `/metrics`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_integration::{Vigil, eventually, free_port, require_root, signal, workspace};

/// `npm start` in the npm-server workload; returns once node printed that it listens.
fn npm_start(port: u16, listen_delay_ms: u64) -> Child {
    let mut child = Command::new("npm")
        .arg("start")
        .arg("--silent")
        .current_dir(workspace().join("integration/workloads/npm-server"))
        .env("PORT", port.to_string())
        .env("LISTEN_DELAY_MS", listen_delay_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("npm (installed by scripts/setup.sh --test)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("listening {port}"));
    child
}

fn processes(vigil: &Vigil) -> Vec<Value> {
    let (_, body) = vigil.get("/debug/discovery");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["processes"].as_array().unwrap().clone()
}

/// The process listening on `port`, as discovery shows it.
fn listener_on(vigil: &Vigil, port: u16) -> Option<Value> {
    processes(vigil).into_iter().find(|process| {
        process["listening_ports"]
            .as_array()
            .is_some_and(|ports| ports.contains(&Value::from(port)))
    })
}

fn state_of_pid(vigil: &Vigil, pid: u64) -> Option<String> {
    processes(vigil)
        .into_iter()
        .find(|process| process["pid"] == pid)
        .and_then(|process| process["state"].as_str().map(str::to_owned))
}

#[test]
fn npm_start_node_is_instrumented_and_survives_its_parents() {
    if !require_root("npm_start_node_is_instrumented_and_survives_its_parents") {
        return;
    }
    let vigil = Vigil::start("discovery:\n  heartbeat_interval: 200ms\n");
    let port = free_port();
    let mut npm = npm_start(port, 0);
    assert!(
        eventually(Duration::from_secs(5), || listener_on(&vigil, port)
            .is_some_and(|node| node["state"] == "instrumented")),
        "node not instrumented: {:?}",
        listener_on(&vigil, port)
    );
    let node = listener_on(&vigil, port).unwrap();
    let node_pid = node["pid"].as_u64().unwrap();
    assert!(node["exe"].as_str().unwrap().ends_with("node"), "{node}");
    // Its parent is sh, whose parent is npm: neither listens, so neither is instrumented.
    let sh_pid = node["parent_pid"].as_u64().unwrap();
    assert_eq!(state_of_pid(&vigil, sh_pid).as_deref(), Some("candidate"));
    assert_eq!(
        state_of_pid(&vigil, u64::from(npm.id())).as_deref(),
        Some("candidate")
    );

    // Kill npm and sh: node is orphaned, keeps its port and stays instrumented through heartbeats.
    signal(npm.id(), libc::SIGKILL);
    signal(sh_pid as u32, libc::SIGKILL);
    npm.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let node = listener_on(&vigil, port).expect("node still listed");
    assert_eq!(node["pid"].as_u64(), Some(node_pid));
    assert_eq!(node["state"], "instrumented");
    assert!(
        node["last_heartbeat_seconds_ago"]
            .as_f64()
            .is_some_and(|age| age < 1.0),
        "{node}"
    );
    assert_eq!(
        state_of_pid(&vigil, u64::from(npm.id())),
        None,
        "npm left the table"
    );
    signal(node_pid as u32, libc::SIGKILL);
    assert!(
        eventually(Duration::from_secs(5), || state_of_pid(&vigil, node_pid)
            .is_none()),
        "node left the table once killed"
    );
    assert_eq!(vigil.metric("vigil_instrumented_processes"), 0.0);
}

#[test]
fn a_late_listener_is_instrumented_when_it_listens() {
    if !require_root("a_late_listener_is_instrumented_when_it_listens") {
        return;
    }
    // Reconcile far away, so that only the listen event can explain a prompt instrumentation.
    let vigil = Vigil::start("discovery:\n  reconcile_interval: 5m\n");
    let latency_count = vigil.metric("vigil_instrumentation_latency_seconds_count");
    let port = free_port();
    let started = Instant::now();
    let mut npm = npm_start(port, 3000);
    let listened = Instant::now();
    assert!(listened - started >= Duration::from_secs(3));
    assert!(
        eventually(Duration::from_secs(1), || listener_on(&vigil, port)
            .is_some_and(|node| node["state"] == "instrumented")),
        "not instrumented within 1 s of listening: {:?}",
        listener_on(&vigil, port)
    );
    assert!(vigil.metric("vigil_instrumentation_latency_seconds_count") > latency_count);
    assert!(vigil.metric("vigil_process_events_total{event=\"listen\"}") >= 1.0);
    let node_pid = listener_on(&vigil, port).unwrap()["pid"].as_u64().unwrap() as u32;
    signal(node_pid, libc::SIGKILL);
    signal(npm.id(), libc::SIGKILL);
    npm.wait().unwrap();
}
