//! Root only: discovery scenarios with real workloads on the real kernel, watched through
//! `/debug/discovery` and `/metrics`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_integration::{Pod, Vigil, eventually, free_port, require_root, signal, workspace};

/// `npm start` of the npm-server workload in a new pod; returns once node printed that it listens.
fn npm_start(port: u16, listen_delay_ms: u64) -> Pod {
    let mut pod = Pod::start("npm", &["start", "--silent"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/npm-server"))
            .env("PORT", port.to_string())
            .env("LISTEN_DELAY_MS", listen_delay_ms.to_string())
            .stderr(Stdio::null());
    });
    assert_eq!(pod.read_line(), format!("listening {port}"));
    pod
}

/// Discovery settings of these scenarios: listeners in containers (the simulated pods) only, so that
/// whatever else listens on the machine does not disturb the counts.
const POD_LISTENERS: &str = "discovery:
  instrument: [{open_ports: '1-65535', container: true}]
  heartbeat_interval: 200ms
";

fn pid_of(process: &Value) -> u32 {
    process["pid"].as_u64().unwrap() as u32
}

#[test]
fn npm_start_node_is_instrumented_and_survives_its_parents() {
    if !require_root("npm_start_node_is_instrumented_and_survives_its_parents") {
        return;
    }
    let vigil = Vigil::start(POD_LISTENERS);
    let port = free_port();
    let pod = npm_start(port, 0);
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .listener_on(port)
            .is_some_and(|node| node["state"] == "instrumented")),
        "node not instrumented: {:?}",
        vigil.listener_on(port)
    );
    let node = vigil.listener_on(port).unwrap();
    let node_pid = pid_of(&node);
    assert!(node["exe"].as_str().unwrap().ends_with("node"), "{node}");
    // pod-init is 1 in the pod's namespace and npm 2; node came later. All share the container cgroup.
    let node_ns_pid = node["ns_pid"].as_u64().unwrap();
    assert!(
        (3..1000).contains(&node_ns_pid) && node_ns_pid != u64::from(node_pid),
        "{node}"
    );
    assert_eq!(node["pod_uid"], pod.uid.as_str(), "{node}");
    assert_eq!(node["container_id"], pod.container_id.as_str(), "{node}");
    // Its parent is sh, whose parent is npm: neither listens, so neither is instrumented.
    let sh_pid = node["parent_pid"].as_u64().unwrap();
    let sh = vigil.process(sh_pid).expect("sh in the table");
    assert_eq!(sh["state"], "candidate", "{sh}");
    let npm_pid = sh["parent_pid"].as_u64().unwrap();
    let npm = vigil.process(npm_pid).expect("npm in the table");
    assert_eq!(npm["state"], "candidate", "{npm}");
    assert_eq!(npm["ns_pid"], 2, "{npm}");

    // Kill npm and sh: node is orphaned (pod-init adopts it), keeps its port and stays instrumented
    // through heartbeats.
    signal(npm_pid as u32, libc::SIGKILL);
    signal(sh_pid as u32, libc::SIGKILL);
    assert!(
        eventually(Duration::from_secs(5), || vigil.process(npm_pid).is_none()
            && vigil.process(sh_pid).is_none()),
        "npm and sh left the table"
    );
    std::thread::sleep(Duration::from_secs(1));
    let node = vigil.listener_on(port).expect("node still listed");
    assert_eq!(pid_of(&node), node_pid);
    assert_eq!(node["state"], "instrumented");
    assert!(
        node["last_heartbeat_seconds_ago"]
            .as_f64()
            .is_some_and(|age| age < 1.0),
        "{node}"
    );
    let init_ns_pid = vigil
        .process(node["parent_pid"].as_u64().unwrap())
        .map(|init| init["ns_pid"].clone());
    assert_eq!(
        init_ns_pid,
        Some(Value::from(1)),
        "node was adopted by the pod's init"
    );
    pod.kill();
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .process(u64::from(node_pid))
            .is_none()),
        "node left the table once killed"
    );
    assert_eq!(vigil.metric("vigil_instrumented_processes"), 0.0);
    assert_eq!(vigil.metric("vigil_short_lived_processes_total"), 0.0);
}

#[test]
fn a_late_listener_is_instrumented_when_it_listens() {
    if !require_root("a_late_listener_is_instrumented_when_it_listens") {
        return;
    }
    // Reconcile far away, so that only the listen event can explain a prompt instrumentation.
    let vigil = Vigil::start(&format!("{POD_LISTENERS}  reconcile_interval: 5m\n"));
    let latency_count = vigil.metric("vigil_instrumentation_latency_seconds_count");
    let port = free_port();
    let started = Instant::now();
    let pod = npm_start(port, 3000);
    let listened = Instant::now();
    assert!(listened - started >= Duration::from_secs(3));
    assert!(
        eventually(Duration::from_secs(1), || vigil
            .listener_on(port)
            .is_some_and(|node| node["state"] == "instrumented")),
        "not instrumented within 1 s of listening: {:?}",
        vigil.listener_on(port)
    );
    assert!(vigil.metric("vigil_instrumentation_latency_seconds_count") > latency_count);
    assert!(vigil.metric("vigil_process_events_total{event=\"listen\"}") >= 1.0);
    pod.kill();
}

/// Starts `program args` in a pod and waits for its `listening PORT` line.
fn serving_pod(port: u16, program: &str, args: &[&str]) -> Pod {
    let mut pod = Pod::start(program, args, |command| {
        command
            .current_dir(workspace().join("integration/workloads"))
            .env("PORT", port.to_string());
    });
    assert_eq!(pod.read_line(), format!("listening {port}"));
    pod
}

/// The pod's processes listening on `port`, once all `count` of them are instrumented.
fn instrumented_listeners(vigil: &Vigil, pod: &Pod, port: u16, count: usize) -> Vec<Value> {
    let listeners = || -> Vec<Value> {
        vigil
            .processes()
            .into_iter()
            .filter(|process| {
                process["pod_uid"] == pod.uid.as_str()
                    && process["listening_ports"]
                        .as_array()
                        .is_some_and(|ports| ports.contains(&Value::from(port)))
            })
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let listeners = listeners();
            listeners.len() == count
                && listeners
                    .iter()
                    .all(|process| process["state"] == "instrumented")
        }),
        "expected {count} instrumented listeners on {port}: {:?}",
        listeners()
    );
    listeners()
}

#[test]
fn every_process_tree_shape_ends_with_its_servers_instrumented() {
    if !require_root("every_process_tree_shape_ends_with_its_servers_instrumented") {
        return;
    }
    let vigil = Vigil::start(POD_LISTENERS);

    // An exec chain: sh -c 'exec node …' becomes node, same pid.
    let port = free_port();
    let pod = serving_pod(port, "sh", &["-c", "exec node npm-server/server.js"]);
    let node = instrumented_listeners(&vigil, &pod, port, 1).remove(0);
    assert!(node["exe"].as_str().unwrap().ends_with("/node"), "{node}");
    assert_eq!(
        node["ns_pid"], 2,
        "the exec kept pod-init's first child's pid: {node}"
    );

    // A pre-fork server: workers forked without exec inherit the listening socket and are served too.
    let port = free_port();
    let pod = serving_pod(
        port,
        "python3",
        &["python/forking_server.py", "prefork", &port.to_string()],
    );
    let servers = instrumented_listeners(&vigil, &pod, port, 3);
    let master = servers
        .iter()
        .find(|process| process["ns_pid"] == 2)
        .expect("the master");
    let workers = servers
        .iter()
        .filter(|process| process["parent_pid"] == master["pid"])
        .count();
    assert_eq!(workers, 2, "{servers:?}");

    // A daemon: double fork and setsid; the first two generations exit, the grandchild serves,
    // adopted by the pod's init.
    let port = free_port();
    let pod = serving_pod(
        port,
        "python3",
        &["python/forking_server.py", "daemon", &port.to_string()],
    );
    let daemon = instrumented_listeners(&vigil, &pod, port, 1).remove(0);
    let parent = vigil.process(daemon["parent_pid"].as_u64().unwrap());
    assert_eq!(
        parent.map(|init| init["ns_pid"].clone()),
        Some(Value::from(1)),
        "the daemon was adopted by the pod's init: {daemon}"
    );
    assert_eq!(vigil.metric("vigil_short_lived_processes_total"), 0.0);
}
