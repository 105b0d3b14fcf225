//! Root only: discovery under load, with real workloads in simulated pods. Scenario 2 (a scale-out
//! burst on saturated cores), 3 (short-lived noise) and 4 (thread churn) of the discovery issue.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_integration::{Background, Pod, Vigil, eventually, free_port, require_root, workspace};

/// Listeners in containers (the simulated pods) only, so that whatever else listens on the machine does
/// not disturb the counts.
const POD_LISTENERS: &str = "discovery:
  instrument: [{open_ports: '1-65535', container: true}]
";

/// `node server.js` (the npm-server workload, without npm) as the container of a new pod.
fn node_replica(port: u16) -> Pod {
    Pod::start("node", &["server.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/npm-server"))
            .env("PORT", port.to_string());
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[test]
fn scale_out_burst_on_saturated_cores_instruments_every_replica() {
    if !require_root("scale_out_burst_on_saturated_cores_instruments_every_replica") {
        return;
    }
    const REPLICAS: usize = 20;
    let vigil = Vigil::start(POD_LISTENERS);
    let latency_sum = vigil.metric("vigil_instrumentation_latency_seconds_sum");
    let latency_count = vigil.metric("vigil_instrumentation_latency_seconds_count");
    // One busy loop per core: the replicas and vigil compete for CPU.
    let _hogs: Vec<Background> = (0..2)
        .map(|_| Background::spawn(Command::new("sh").args(["-c", "while :; do :; done"])))
        .collect();
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let started = Instant::now();
    let mut pods: Vec<Pod> = ports.iter().map(|port| node_replica(*port)).collect();
    for (pod, port) in pods.iter_mut().zip(&ports) {
        assert_eq!(pod.read_line(), format!("listening {port}"));
    }
    let all_listening = started.elapsed();

    let mut replicas: Vec<Value> = Vec::new();
    let all_published = eventually(Duration::from_secs(15), || {
        let processes = vigil.processes();
        replicas = ports
            .iter()
            .filter_map(|port| {
                processes.iter().find(|process| {
                    process["listening_ports"]
                        .as_array()
                        .is_some_and(|ports| ports.contains(&Value::from(*port)))
                })
            })
            .cloned()
            .collect();
        replicas.len() == REPLICAS && replicas.iter().all(|node| node["state"] == "instrumented")
    });
    assert!(
        all_published,
        "{} of {REPLICAS} replicas listed; states: {:?}",
        replicas.len(),
        replicas
            .iter()
            .map(|node| &node["state"])
            .collect::<Vec<_>>()
    );
    for (node, pod) in replicas.iter().zip(&pods) {
        assert_eq!(node["pod_uid"], pod.uid.as_str(), "{node}");
    }

    let mut start_to_capture: Vec<f64> = replicas
        .iter()
        .map(|node| node["capture_started_after_seconds"].as_f64().unwrap())
        .collect();
    start_to_capture.sort_by(f64::total_cmp);
    let listens = vigil.metric("vigil_instrumentation_latency_seconds_count") - latency_count;
    let listen_to_capture_mean =
        (vigil.metric("vigil_instrumentation_latency_seconds_sum") - latency_sum) / listens;
    println!(
        "scale-out burst, {REPLICAS} node replicas on 2 saturated cores: all listening after {:.2} s; \
         process start → capture (exec, node start-up and listen included): min {:.3} s, p50 {:.3} s, \
         p90 {:.3} s, max {:.3} s; listen → capture mean {:.1} ms over {listens} events",
        all_listening.as_secs_f64(),
        start_to_capture[0],
        quantile(&start_to_capture, 0.5),
        quantile(&start_to_capture, 0.9),
        start_to_capture[REPLICAS - 1],
        listen_to_capture_mean * 1e3,
    );
    assert!(listens >= REPLICAS as f64, "each replica's listen was seen");
    assert_eq!(vigil.metric("vigil_short_lived_processes_total"), 0.0);
}

#[test]
fn short_lived_noise_is_never_published_and_the_threshold_adapts() {
    if !require_root("short_lived_noise_is_never_published_and_the_threshold_adapts") {
        return;
    }
    // Whole command lines in /debug/discovery: the processes are told apart by their last argument.
    let vigil = Vigil::start(
        "web:\n  debug_command_lines: true\ndiscovery:\n  instrument: [{cmd_args: '*vigil-noise*'}]\n",
    );
    assert_eq!(vigil.metric("vigil_min_process_age_seconds"), 0.5);
    // About 500 matching processes a minute: `sh -c true` and `node -e 0`, four of each a second. The
    // generator builds the marker at run time so that its own command line does not match.
    let mut noise = Pod::start(
        "sh",
        &[
            "-c",
            "m=vigil; m=$m-noise; i=0; while [ $i -lt 60 ]; do \
               sh -c true $m; node -e 0 $m; sh -c true $m; node -e 0 $m; i=$((i+1)); sleep 0.2; \
             done; echo done",
        ],
        |_| {},
    );
    assert_eq!(noise.read_line(), "done");
    let short_lived = vigil.metric("vigil_short_lived_processes_total");
    assert!(
        short_lived >= 10.0,
        "node -e 0 lives long enough to be captured: {short_lived} short-lived"
    );
    assert_eq!(vigil.metric("vigil_published_processes_total"), 0.0);
    // Twice their lifetimes is still under the 500 ms lower bound.
    assert_eq!(vigil.metric("vigil_min_process_age_seconds"), 0.5);

    // Noise that lives ~0.35 s: the threshold rises to cover it, and still nothing is published.
    let mut slower_noise = Pod::start(
        "sh",
        &[
            "-c",
            "m=vigil; m=$m-noise; i=0; while [ $i -lt 10 ]; do \
               node -e 'setTimeout(() => {}, 300)' $m; i=$((i+1)); \
             done; echo done",
        ],
        |_| {},
    );
    assert_eq!(slower_noise.read_line(), "done");
    let threshold = vigil.metric("vigil_min_process_age_seconds");
    assert!(
        (0.6..3.0).contains(&threshold),
        "the threshold covers ~0.35 s lifetimes with a margin: {threshold}"
    );
    assert_eq!(vigil.metric("vigil_published_processes_total"), 0.0);
    assert!(
        eventually(Duration::from_secs(3), || vigil.processes().iter().all(
            |process| {
                !process["cmdline"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("vigil-noise")
            }
        )),
        "no noise process stays in the table"
    );
    println!(
        "noise: {} short-lived processes dropped, none published; threshold {threshold:.3} s",
        vigil.metric("vigil_short_lived_processes_total")
    );

    // A matching process that lives on is captured at once and published at the learned age.
    let mut service = Pod::start(
        "sh",
        &[
            "-c",
            "m=vigil; exec sh -c 'echo started; sleep 30' $m-noise-service",
        ],
        |_| {},
    );
    assert_eq!(service.read_line(), "started");
    let service_process = || {
        vigil.processes().into_iter().find(|process| {
            process["cmdline"]
                .as_str()
                .is_some_and(|cmdline| cmdline.ends_with("vigil-noise-service"))
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || service_process()
            .is_some_and(|process| process["state"] == "instrumented")),
        "the service was published: {:?}",
        service_process()
    );
    let service_state = service_process().unwrap();
    let age = service_state["age_seconds"].as_f64().unwrap();
    // `age_seconds` counts clock ticks since the process started (/proc's start time, 1/100 s), so it
    // may read up to one tick under the age discovery published it at.
    let clock_tick = 0.01;
    assert!(
        age >= threshold - clock_tick,
        "published at {age} s, threshold {threshold}"
    );
    assert!(
        service_state["capture_started_after_seconds"]
            .as_f64()
            .unwrap()
            < threshold,
        "captured before it was published: {service_state}"
    );
    assert_eq!(vigil.metric("vigil_published_processes_total"), 1.0);
}

#[test]
fn a_process_churning_a_thousand_threads_a_second_is_never_dropped() {
    if !require_root("a_process_churning_a_thousand_threads_a_second_is_never_dropped") {
        return;
    }
    const RATE: u64 = 1000;
    const SECONDS: u64 = 8;
    let vigil = Vigil::start(&format!("{POD_LISTENERS}  heartbeat_interval: 200ms\n"));
    // The baseline: 0 before the first thread exit (the series is created by its first increment),
    // once the family is exported.
    vigil.wait_for_process_events();
    let thread_exits = vigil.metric_or_zero("vigil_process_events_total{event=\"thread_exit\"}");
    let port = free_port();
    let mut pod = Pod::start(
        vigil_integration::workload_binary("thread-churn")
            .to_str()
            .unwrap(),
        &[
            "serve",
            &port.to_string(),
            &RATE.to_string(),
            &SECONDS.to_string(),
        ],
        |command| {
            command.stderr(Stdio::inherit());
        },
    );
    assert_eq!(pod.read_line(), format!("listening {port}"));
    assert!(
        eventually(Duration::from_secs(3), || vigil
            .listener_on(port)
            .is_some_and(|process| process["state"] == "instrumented")),
        "the churning process was published"
    );
    let first = vigil.listener_on(port).unwrap();
    let pid = first["pid"].as_u64().unwrap();
    // Through the whole churn: the same process, captured once, never dropped or re-captured.
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut checks = 0;
    while Instant::now() < deadline {
        let process = vigil
            .process(pid)
            .expect("the churning process stays in the table");
        assert_eq!(process["state"], "instrumented", "{process}");
        assert_eq!(process["start_ticks"], first["start_ticks"]);
        assert_eq!(
            process["capture_started_after_seconds"], first["capture_started_after_seconds"],
            "captured once"
        );
        assert!(vigil_integration::tracked_tgids().contains(&(pid as u32)));
        checks += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let churned: u64 = pod
        .read_line()
        .strip_prefix("churned ")
        .and_then(|n| n.parse().ok())
        .expect("churned N");
    let exits = vigil.metric("vigil_process_events_total{event=\"thread_exit\"}") - thread_exits;
    println!(
        "thread churn: {churned} threads in {SECONDS} s, {exits} thread exits seen, {checks} checks"
    );
    assert!(
        exits >= churned as f64 * 0.9,
        "the thread exits reached vigil: {exits} of {churned}"
    );
    assert_eq!(
        vigil.metric("vigil_heartbeat_failures_total{reason=\"process_gone\"}"),
        0.0
    );
    assert_eq!(vigil.metric("vigil_short_lived_processes_total"), 0.0);
    let process = vigil
        .process(pid)
        .expect("still in the table after the churn");
    assert_eq!(process["state"], "instrumented", "{process}");
}
