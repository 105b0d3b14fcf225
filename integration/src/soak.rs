//! The soak: process churn plus load against one vigil for a while, then what must come back does.
//!
//! One steady server (a node server on the host, one keep-alive connection, a request every cycle)
//! sets the baseline. Each cycle then starts three simulated pods (a Python `http.server` each, in its
//! own PID namespace and cgroup), sends each 100 requests over four new keep-alive connections (two
//! fixed routes and one with an id), waits until vigil counts every one of them (the Python servers'
//! series share one label set per route: each cycle's processes add to what the last ones left),
//! stops the pods, and runs 30 short processes (`sh -c exit`) and one listener that exits at once (a short-lived
//! match: captured at its `listen`, dropped). When the churn stops, and after `metrics.ttl` (10 s here)
//! has removed the churned servers' series, vigil's table sizes, connections, series and held requests
//! must be back where they were, and its RSS near it. [`run`] measures; callers assert and print.

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    Pod, Vigil, eventually, free_port, http_client, node_http_server, rss_mib, samples, workspace,
};

/// vigil's configuration for the soak: every listener is a candidate, series idle for 10 s go, and
/// the minimum process age is fixed (the short-lived listeners would otherwise raise it past the
/// churned servers' lifetime).
const CONFIG: &str = "discovery:\n  instrument: [{open_ports: '1-65535'}]\n  heartbeat_interval: 500ms\n  min_process_age: 500ms\nmetrics:\n  ttl: 10s\n";

/// Requests each churned server receives per cycle.
const REQUESTS_PER_POD: usize = 100;
const PODS_PER_CYCLE: usize = 3;

/// What is compared before and after the churn.
#[derive(Clone, Debug, PartialEq)]
pub struct Gauges {
    pub rss_mib: f64,
    /// `vigil_process_table_entries`, and the processes in /proc when it was read.
    pub table_entries: f64,
    pub processes_on_node: usize,
    pub instrumented: f64,
    /// `vigil_capture_connections`, and how many of the connections followed are not the steady
    /// server's (`/debug/connections`).
    pub connections: f64,
    pub connections_of_others: usize,
    pub label_sets: f64,
    pub held_requests: f64,
}

/// What the soak measured.
#[derive(Debug)]
pub struct Report {
    pub baseline: Gauges,
    pub after: Gauges,
    /// vigil's RSS at the end of each cycle (seconds since the churn started, MiB).
    pub rss: Vec<(f64, f64)>,
    pub cycles: usize,
    pub pods_started: usize,
    pub requests_sent: u64,
    /// Cycles whose requests vigil had not all counted 10 s after they were sent: (cycle, counted,
    /// sent).
    pub cycles_short: Vec<(usize, u64, u64)>,
    /// `vigil_ebpf_events_lost_total`, `vigil_http_dropped_requests_total`, summed, at the end.
    pub events_lost: f64,
    pub requests_dropped: f64,
    pub vigil_ready: bool,
}

/// Runs the soak for `churn_for` of churn (plus about 30 s of warm-up and cool-down). Needs root.
pub fn run(churn_for: Duration) -> Report {
    let vigil = Vigil::start(CONFIG);
    let steady_port = free_port();
    let steady_server = node_http_server(steady_port, &[]);
    let steady_pid = steady_server.0.id();
    let mut steady = http_client::Connection::open(steady_port);
    let script = workspace().join("integration/workloads/python/any_path_server.py");

    // Warm-up: one cycle and its cool-down, so that the baseline has every table and pool used once.
    let mut sent = 0;
    cycle(&vigil, &script, &mut steady, 0, &mut sent);
    let baseline = cool_down(&vigil, &mut steady, steady_pid);

    let started = Instant::now();
    let (mut cycles, mut rss, mut cycles_short) = (0, Vec::new(), Vec::new());
    while started.elapsed() < churn_for {
        cycles += 1;
        if let Some((counted, want)) = cycle(&vigil, &script, &mut steady, cycles, &mut sent) {
            cycles_short.push((cycles, counted, want));
        }
        rss.push((started.elapsed().as_secs_f64(), rss_mib(vigil.pid())));
    }
    let after = cool_down(&vigil, &mut steady, steady_pid);
    let metrics = vigil.metrics();
    let sum = |name: &str| -> f64 { samples(&metrics, name).iter().map(|(_, value)| value).sum() };
    Report {
        baseline,
        after,
        rss,
        cycles,
        pods_started: (cycles + 1) * PODS_PER_CYCLE,
        requests_sent: sent,
        cycles_short,
        events_lost: sum("vigil_ebpf_events_lost_total"),
        requests_dropped: sum("vigil_http_dropped_requests_total"),
        vigil_ready: vigil
            .try_get("/ready")
            .is_some_and(|(status, _)| status == 200),
    }
}

/// One cycle of churn (see the module header), adding what it sent to `sent`; `Some((counted, sent))`
/// when vigil had not counted every one of its requests 10 s after they were sent.
fn cycle(
    vigil: &Vigil,
    script: &std::path::Path,
    steady: &mut http_client::Connection,
    number: usize,
    sent: &mut u64,
) -> Option<(u64, u64)> {
    steady.get("/steady");
    // The Python servers' series as the last cycle left them (the pause between two cycles is
    // shorter than their TTL).
    let before = python_requests(&vigil.metrics());
    let pods: Vec<(Pod, u16)> = (0..PODS_PER_CYCLE)
        .map(|_| {
            let port = free_port();
            let mut pod = Pod::start(
                "/usr/bin/python3",
                &[script.to_str().unwrap(), &port.to_string()],
                |_| {},
            );
            assert_eq!(pod.read_line(), format!("listening {port}"));
            (pod, port)
        })
        .collect();
    let paths = [
        "/orders".to_owned(),
        "/cart".to_owned(),
        format!("/items/{number}"),
    ];
    let mut this_cycle = 0;
    for (_, port) in &pods {
        let tally = http_client::keep_alive_load(*port, 4, REQUESTS_PER_POD / 4, &paths);
        this_cycle += tally.values().sum::<u64>();
    }
    *sent += this_cycle;
    let mut counted = 0;
    let all_counted = eventually(Duration::from_secs(10), || {
        counted = python_requests(&vigil.metrics()) - before;
        counted == this_cycle
    });
    drop(pods);
    for _ in 0..30 {
        let _ = Command::new("sh").args(["-c", "exit 0"]).status();
    }
    let _ = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()",
        ])
        .stdout(Stdio::null())
        .status();
    (!all_counted).then_some((counted, this_cycle))
}

/// Requests vigil counted for the Python servers (their service is named after the executable).
fn python_requests(metrics: &str) -> u64 {
    samples(metrics, "http_server_request_duration_seconds_count")
        .iter()
        .filter(|(labels, _)| {
            labels
                .get("service_name")
                .is_some_and(|name| name.starts_with("python"))
        })
        .map(|(_, value)| *value as u64)
        .sum()
}

/// Waits until the churned servers' series are gone (their TTL, 10 s, and a heartbeat), keeping the
/// steady server's (process `steady_pid`) alive, and reads the gauges.
fn cool_down(vigil: &Vigil, steady: &mut http_client::Connection, steady_pid: u32) -> Gauges {
    let until = Instant::now() + Duration::from_secs(13);
    while Instant::now() < until {
        steady.get("/steady");
        thread::sleep(Duration::from_secs(2));
    }
    let metrics = vigil.metrics();
    let value = |sample: &str| {
        crate::sample_value(&metrics, sample).unwrap_or_else(|| panic!("{sample} not exported"))
    };
    let processes_on_node = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    Gauges {
        rss_mib: rss_mib(vigil.pid()),
        table_entries: value("vigil_process_table_entries"),
        processes_on_node,
        instrumented: value("vigil_instrumented_processes"),
        connections: value("vigil_capture_connections"),
        connections_of_others: vigil
            .connections()
            .iter()
            .filter(|row| row["pid"].as_u64() != Some(u64::from(steady_pid)))
            .count(),
        label_sets: value("vigil_red_label_sets"),
        held_requests: value("vigil_http_held_requests"),
    }
}
