//! Benchmark: what vigil costs as its node fills. Figures, no assertions; needs root (vigil loads eBPF).
//!
//! Pods are simulated pods (own PID namespace, kubelet-style cgroup) announced through the API double,
//! each a Python `http.server` answering any path; vigil selects them with a `k8s_namespace` selector,
//! with its route caps and node budget raised so that the label sets grow as far as asked. For 10, 50,
//! 100 and 200 pods (a fresh vigil each time), and 1 000, 10 000 and 50 000 label sets spread over
//! those pods (one route each, one GET per route), it prints vigil's RSS after the scrapes and its peak,
//! the CPU one scrape costs (vigil's CPU over three scrapes, less its idle rate), the exposition's size
//! plain and gzip, the scrape time (curl, gzip as Prometheus asks for it), and the drain intervals longer
//! than 1.5 × `ebpf.drain_interval` during the scrapes. Then, in one pod (a node server), vigil's RSS
//! against open keep-alive connections (100 to 10 000), each having made one request.
//!
//! Usage: `make bench-growth` (`make bench-growth ARGS=--quick`: 10 and 50 pods, 1 000 and 10 000 label
//! sets, up to 1 000 connections).

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use vigil_integration::{
    Pod, Vigil, eventually,
    fake_apiserver::{FakeApiServer, pod},
    free_port,
    http_client::Connection,
    raise_open_files, require_root, sample_value, word, workspace,
};

const NAMESPACE: &str = "bench";
const NODE: &str = "node-a";
const LONG_AGO: &str = "2026-01-01T00:00:00Z";
const DRAIN_INTERVAL_SECONDS: f64 = 0.02;

fn main() {
    if !require_root("bench-growth") {
        return;
    }
    let quick = std::env::args().any(|arg| arg == "--quick");
    raise_open_files();
    let (pod_levels, label_set_levels, connection_levels): (&[usize], &[usize], &[usize]) =
        match quick {
            true => (&[10, 50], &[1_000, 10_000], &[100, 1_000]),
            false => (
                &[10, 50, 100, 200],
                &[1_000, 10_000, 50_000],
                &[100, 1_000, 5_000, 10_000],
            ),
        };
    let started = Instant::now();
    let api = FakeApiServer::start();
    let mut pods: Vec<(Pod, u16)> = Vec::new();
    let mut rows = Vec::new();
    for &level in pod_levels {
        while pods.len() < level {
            pods.push(python_pod(&api, pods.len()));
        }
        eprintln!("{level} pods started after {:?}", started.elapsed());
        let vigil = start_vigil(&api);
        wait_monitored(&vigil, level);
        eprintln!("{level} pods monitored after {:?}", started.elapsed());
        rows.push(measure(&vigil, level, 0));
        let mut routes_sent = 0;
        for &label_sets in label_set_levels {
            let per_pod = label_sets.div_ceil(level);
            send_routes(&pods, routes_sent..per_pod);
            eprintln!("{label_sets} label sets sent after {:?}", started.elapsed());
            routes_sent = per_pod;
            let want = (per_pod * level) as f64;
            assert!(
                eventually(Duration::from_secs(120), || vigil
                    .try_metric("vigil_red_label_sets")
                    .is_some_and(|got| got >= want)),
                "{want} label sets: {:?}",
                vigil.try_metric("vigil_red_label_sets")
            );
            eprintln!(
                "{label_sets} label sets counted after {:?}",
                started.elapsed()
            );
            rows.push(measure(&vigil, level, per_pod * level));
        }
        eprintln!("{level} pods measured after {:?}", started.elapsed());
    }
    drop(pods);

    let connections = connections(connection_levels);
    println!("\n### vigil's cost against pods and RED label sets\n");
    println!(
        "| pods | captured processes | label sets | series | RSS after scrape | peak RSS | CPU per scrape | exposition plain | gzip | scrape time (gzip) | scrape time (plain) | drain intervals > {} ms during scrapes |",
        DRAIN_INTERVAL_SECONDS * 1.5 * 1000.0
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.0} ms | {:.1} MB | {:.2} MB | {:.3} s | {:.3} s | {} of {} |",
            row.pods,
            row.processes,
            row.label_sets,
            row.series,
            mib(row.rss),
            mib(row.peak_rss),
            row.cpu_per_scrape * 1000.0,
            row.plain_bytes as f64 / 1e6,
            row.gzip_bytes as f64 / 1e6,
            row.gzip_seconds,
            row.plain_seconds,
            row.late_drains,
            row.drains
        );
    }
    println!("\n### vigil's RSS against open keep-alive connections (one pod)\n");
    println!("| connections | RSS |");
    println!("| --- | --- |");
    for (count, rss) in connections {
        println!("| {count} | {:.1} MiB |", mib(rss));
    }
    println!("\n(total {:.0} s)", started.elapsed().as_secs_f64());
}

/// One measurement at a number of pods and label sets.
struct Row {
    pods: usize,
    processes: f64,
    label_sets: usize,
    /// Sample lines (not comments) of the exposition.
    series: usize,
    rss: u64,
    peak_rss: u64,
    cpu_per_scrape: f64,
    plain_bytes: u64,
    gzip_bytes: u64,
    gzip_seconds: f64,
    plain_seconds: f64,
    late_drains: u64,
    drains: u64,
}

/// Waits until vigil reports `pods` pods of the namespace monitored.
fn wait_monitored(vigil: &Vigil, pods: usize) {
    let monitored = format!("vigil_monitored_pods{{k8s_namespace_name=\"{NAMESPACE}\"}}");
    assert!(
        eventually(Duration::from_secs(60), || vigil.try_metric(&monitored)
            == Some(pods as f64)),
        "{pods} pods monitored: {:?}\n{}",
        vigil.try_metric(&monitored),
        vigil.debug_discovery()["pods"],
    );
}

fn start_vigil(api: &FakeApiServer) -> Vigil {
    let config = format!(
        "discovery:\n  instrument: [{{k8s_namespace: {NAMESPACE}}}]\n\
         k8s:\n  node_name: {NODE}\n\
         metrics:\n  max_routes_per_service: 1000000\n  max_segment_values: 1000000\n  max_label_sets: 1000000\n"
    );
    let kubeconfig = api.kubeconfig();
    let vigil = Vigil::spawn(&config, &["--kubeconfig", kubeconfig.to_str().unwrap()]);
    vigil.wait_ready(Duration::from_secs(30));
    vigil
}

/// Pod number `n`: a Python server in namespace `bench`, announced to the API double.
fn python_pod(api: &FakeApiServer, n: usize) -> (Pod, u16) {
    let port = free_port();
    let script = workspace().join("integration/workloads/python/any_path_server.py");
    let mut simulated = Pod::start(
        "/usr/bin/python3",
        &[script.to_str().unwrap(), &port.to_string()],
        |_| {},
    );
    let mut announced = pod(
        NAMESPACE,
        &format!("web-{}-5d8f7c9b4-{n:05}", n % 10),
        &simulated.uid,
        NODE,
        &simulated.container_id,
        LONG_AGO,
    );
    // Ten Deployments, as a node's pods come from several.
    announced["metadata"]["ownerReferences"][0]["name"] =
        format!("web-{}-5d8f7c9b4", n % 10).into();
    api.apply(announced);
    assert_eq!(simulated.read_line(), format!("listening {port}"));
    (simulated, port)
}

/// One GET per route `/catalog/<word(n)>` for `n` in `routes`, to every pod, one keep-alive
/// connection per pod, eight pods at a time (more in parallel overflows vigil's I/O ring on this 2-core
/// machine, and the label sets would then depend on the load generator).
fn send_routes(pods: &[(Pod, u16)], routes: std::ops::Range<usize>) {
    let ports: Vec<u16> = pods.iter().map(|(_, port)| *port).collect();
    thread::scope(|scope| {
        for group in ports.chunks(ports.len().div_ceil(8)) {
            let routes = routes.clone();
            scope.spawn(move || {
                for port in group {
                    let mut connection = Connection::open(*port);
                    for n in routes.clone() {
                        assert_eq!(connection.get(&format!("/catalog/{}", word(n))), 200);
                    }
                }
            });
        }
    });
}

fn measure(vigil: &Vigil, pods: usize, label_sets: usize) -> Row {
    let pid = vigil.pid();
    let processes = vigil.metric("vigil_instrumented_processes");
    // vigil's CPU rate without scrapes (drains, heartbeats), to take out of the scrapes' CPU.
    let idle_start = (Instant::now(), cpu_seconds(pid));
    thread::sleep(Duration::from_secs(2));
    let idle_rate = (cpu_seconds(pid) - idle_start.1) / idle_start.0.elapsed().as_secs_f64();
    let drains_before = late_drains(&vigil.metrics());
    let (cpu_before, wall_before) = (cpu_seconds(pid), Instant::now());
    let mut gzip = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..3 {
        gzip.push(curl_scrape(vigil.port, true));
    }
    plain.push(curl_scrape(vigil.port, false));
    let scrapes = (gzip.len() + plain.len()) as f64;
    let cpu = cpu_seconds(pid) - cpu_before - idle_rate * wall_before.elapsed().as_secs_f64();
    let exposition = vigil.metrics();
    let drains_after = late_drains(&exposition);
    gzip.sort_by(|a, b| a.1.total_cmp(&b.1));
    let series = exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .count();
    let (rss, peak_rss) = memory(pid);
    Row {
        pods,
        processes,
        label_sets,
        series,
        rss,
        peak_rss,
        cpu_per_scrape: cpu.max(0.0) / scrapes,
        plain_bytes: plain[0].0,
        gzip_bytes: gzip[1].0,
        gzip_seconds: gzip[1].1,
        plain_seconds: plain[0].1,
        late_drains: drains_after.0 - drains_before.0,
        drains: drains_after.1 - drains_before.1,
    }
}

/// (bytes, seconds) of one `/metrics` scrape by curl, with `Accept-Encoding: gzip` or without.
fn curl_scrape(port: u16, gzip: bool) -> (u64, f64) {
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "60",
        "-w",
        "%{size_download} %{time_total}",
    ]);
    if gzip {
        curl.args(["-H", "Accept-Encoding: gzip"]);
    }
    let output = curl
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let (bytes, seconds) = text.split_once(' ').expect("curl's -w output");
    (bytes.parse().unwrap(), seconds.parse().unwrap())
}

/// (drain intervals longer than 1.5 × the drain interval, all drain intervals) so far.
fn late_drains(exposition: &str) -> (u64, u64) {
    let bucket = format!(
        "vigil_drain_interval_seconds_bucket{{le=\"{}\"}}",
        DRAIN_INTERVAL_SECONDS * 1.5
    );
    let on_time = sample_value(exposition, &bucket).expect("the 30 ms bucket") as u64;
    let all = sample_value(exposition, "vigil_drain_interval_seconds_count").unwrap_or(0.0) as u64;
    (all - on_time, all)
}

/// In one pod (a node server), vigil's RSS with each number of keep-alive connections open.
fn connections(levels: &[usize]) -> Vec<(usize, u64)> {
    let api = FakeApiServer::start();
    let port = free_port();
    let mut server = Pod::start("node", &["server.js"], |command| {
        command
            .current_dir(workspace().join("integration/workloads/http-server"))
            .env("PORT", port.to_string());
    });
    api.apply(pod(
        NAMESPACE,
        "web-0-5d8f7c9b4-conns",
        &server.uid,
        NODE,
        &server.container_id,
        LONG_AGO,
    ));
    assert_eq!(server.read_line(), format!("listening {port}"));
    let vigil = start_vigil(&api);
    wait_monitored(&vigil, 1);
    let mut open = Vec::new();
    let mut rows = vec![(0, memory(vigil.pid()).0)];
    for &level in levels {
        while open.len() < level {
            let mut connection = Connection::open(port);
            assert_eq!(connection.get("/health"), 200);
            open.push(connection);
        }
        // Let capture and a heartbeat see them all.
        thread::sleep(Duration::from_secs(3));
        let _ = vigil.metrics();
        rows.push((level, memory(vigil.pid()).0));
    }
    rows
}

/// (VmRSS, VmHWM) of `pid`, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / ticks
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
