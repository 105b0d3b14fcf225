//! Root only: discovery recovering the truth. Scenario 5 (pid reuse), 6 (lost kernel events) and 7
//! (vigil killed and restarted) of the discovery issue.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_integration::{
    Background, Pod, Vigil, eventually, free_port, require_root, tracked_tgids, workspace,
};

/// A python listener on `port` whose command line carries `marker`, outside any pod: the scenario
/// needs to steer the host pid it gets.
fn python_listener(port: u16, marker: &str) -> Background {
    Background::spawn(
        Command::new("python3")
            .args([
                "-c",
                "import socket, sys, time\n\
                 s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n\
                 time.sleep(60)",
                &port.to_string(),
                marker,
            ])
            .stdin(Stdio::null()),
    )
}

/// Starts `sleep 30` as host pid `pid` (through `ns_last_pid`), retrying while other processes race for
/// it; `None` when it never got it.
fn sleep_as_pid(pid: u32) -> Option<Background> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("writing ns_last_pid (root)");
        let sleeper = Background::spawn(Command::new("sleep").arg("30"));
        if sleeper.0.id() == pid {
            return Some(sleeper);
        }
    }
    None
}

#[test]
fn a_reused_pid_never_inherits_the_old_process_instrumentation() {
    if !require_root("a_reused_pid_never_inherits_the_old_process_instrumentation") {
        return;
    }
    let vigil = Vigil::start("discovery:\n  instrument: [{cmd_args: '*vigil-reuse*'}]\n");
    let port = free_port();
    let mut old = python_listener(port, "vigil-reuse");
    let pid = old.0.id();
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .process(u64::from(pid))
            .is_some_and(|process| process["state"] == "instrumented")),
        "the python listener was instrumented"
    );
    let old_start = vigil.process(u64::from(pid)).unwrap()["start_ticks"].clone();
    assert!(
        tracked_tgids().contains(&pid),
        "its tgid is in the kernel filter"
    );

    // Kill it and at once give its pid to another program, within one drain interval of vigil.
    old.0.kill().unwrap();
    old.0.wait().unwrap();
    let _new = sleep_as_pid(pid).expect("sleep got the reused pid");
    let is_the_new_process = |process: &Value| {
        process["exe"]
            .as_str()
            .is_some_and(|exe| exe.ends_with("/sleep"))
    };
    assert!(
        eventually(Duration::from_secs(5), || vigil
            .process(u64::from(pid))
            .is_some_and(|process| is_the_new_process(&process))),
        "the table shows the new program: {:?}",
        vigil.process(u64::from(pid))
    );
    let new = vigil.process(u64::from(pid)).unwrap();
    assert_ne!(new["start_ticks"], old_start, "{new}");
    assert_eq!(new["state"], "candidate", "{new}");
    assert!(
        !tracked_tgids().contains(&pid),
        "the kernel filter no longer captures the pid"
    );
    assert_eq!(vigil.metric("vigil_instrumented_processes"), 0.0);
}

#[test]
fn lost_events_are_restored_and_counted_by_the_reconcile() {
    if !require_root("lost_events_are_restored_and_counted_by_the_reconcile") {
        return;
    }
    // The smallest ring, drained once a second, against thousands of forks a second: most events are
    // lost. The heartbeat is out of the way so that only the reconcile can repair the table. Whole
    // command lines in /debug/discovery: the sleepers are told apart by their last argument.
    let vigil = Vigil::start(
        "web:\n  debug_command_lines: true\nebpf:\n  process_events_ring_bytes: 4096\n  drain_interval: 1s\n\
         discovery:\n  instrument: [{cmd_args: '*vigil-lost*'}]\n  reconcile_interval: 1s\n  \
         heartbeat_interval: 1h\n",
    );
    // Ten matching sleepers started in the middle of a fork flood, in a pod.
    let flood = "m=vigil; m=$m-lost; i=0; while [ $i -lt 3000 ]; do /bin/true; \
                 if [ $i -eq 1000 ]; then j=0; while [ $j -lt 10 ]; do \
                 sh -c 'sleep 60' $m & j=$((j+1)); done; fi; i=$((i+1)); done; echo done; wait";
    let mut pod = Pod::start("sh", &["-c", flood], |_| {});
    assert_eq!(pod.read_line(), "done");
    assert!(
        vigil.metric("vigil_ebpf_events_lost_total{source=\"process_events\"}") > 0.0,
        "the ring overflowed"
    );
    let sleepers = |vigil: &Vigil| -> Vec<Value> {
        vigil
            .processes()
            .into_iter()
            .filter(|process| {
                process["cmdline"]
                    .as_str()
                    .is_some_and(|cmdline| cmdline.ends_with("vigil-lost"))
            })
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let sleepers = sleepers(&vigil);
            sleepers.len() == 10
                && sleepers
                    .iter()
                    .all(|process| process["state"] != "candidate")
        }),
        "all ten sleepers captured: {:?}",
        sleepers(&vigil)
    );
    let missed_exec = vigil.metric("vigil_reconcile_corrections_total{kind=\"missed_exec\"}");
    assert!(missed_exec > 0.0, "the reconcile counted the lost execs");
    let captured: Vec<u32> = sleepers(&vigil)
        .iter()
        .map(|process| process["pid"].as_u64().unwrap() as u32)
        .collect();
    let in_filter = tracked_tgids();
    assert!(captured.iter().all(|pid| in_filter.contains(pid)));

    // Kill the sleepers during another flood: their exits are lost too, and the reconcile drops them.
    let second_flood = Background::spawn(Command::new("sh").args([
        "-c",
        "i=0; while [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done",
    ]));
    std::thread::sleep(Duration::from_millis(300));
    pod.kill();
    drop(second_flood);
    assert!(
        eventually(Duration::from_secs(5), || sleepers(&vigil).is_empty()),
        "the sleepers left the table"
    );
    let in_filter = tracked_tgids();
    assert!(captured.iter().all(|pid| !in_filter.contains(pid)));
    let missed_exit = vigil.metric("vigil_reconcile_corrections_total{kind=\"missed_exit\"}");
    println!(
        "lost events: {} lost; reconcile corrections: missed_exec {missed_exec}, missed_exit {missed_exit}",
        vigil.metric("vigil_ebpf_events_lost_total{source=\"process_events\"}")
    );
    assert!(missed_exit > 0.0, "the reconcile counted the lost exits");
}

#[test]
fn after_a_kill_dash_nine_a_restarted_vigil_instruments_every_replica_at_once() {
    if !require_root("after_a_kill_dash_nine_a_restarted_vigil_instruments_every_replica_at_once") {
        return;
    }
    const REPLICAS: usize = 5;
    let config = "discovery:\n  instrument: [{open_ports: '1-65535', container: true}]\n";
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut pods: Vec<Pod> = ports
        .iter()
        .map(|port| {
            Pod::start("node", &["server.js"], |command| {
                command
                    .current_dir(workspace().join("integration/workloads/npm-server"))
                    .env("PORT", port.to_string());
            })
        })
        .collect();
    for (pod, port) in pods.iter_mut().zip(&ports) {
        assert_eq!(pod.read_line(), format!("listening {port}"));
    }
    let all_instrumented = |vigil: &Vigil| -> bool {
        let processes = vigil.processes();
        ports.iter().all(|port| {
            processes.iter().any(|process| {
                process["state"] == "instrumented"
                    && process["listening_ports"]
                        .as_array()
                        .is_some_and(|ports| ports.contains(&Value::from(*port)))
            })
        })
    };
    let first = Vigil::start(config);
    assert!(eventually(Duration::from_secs(5), || all_instrumented(
        &first
    )));
    first.kill_hard();

    let started = Instant::now();
    let second = Vigil::spawn(config, &[]);
    second.wait_ready(Duration::from_secs(20));
    let ready_after = started.elapsed();
    // The first answer after ready already has every replica: the start-up scan found them, old enough
    // to be published at once.
    assert!(
        all_instrumented(&second),
        "not all replicas instrumented when ready: {:?}",
        second.processes()
    );
    let in_filter = tracked_tgids();
    for pod in &pods {
        let pids = pod.host_pids();
        assert!(
            pids.iter().any(|pid| in_filter.contains(pid)),
            "pod {} is captured by the new vigil's filter",
            pod.uid
        );
    }
    assert_eq!(
        second.metric("vigil_instrumented_processes"),
        REPLICAS as f64
    );
    println!(
        "restart after kill -9: ready with {REPLICAS} replicas instrumented after {ready_after:?}"
    );
}
