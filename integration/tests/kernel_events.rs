//! Root only: vigil on the real kernel. Process events reach /metrics with thread and process exits told
//! apart, /ready waits for attach, /metrics passes promtool, and SIGTERM leaves no program behind.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use vigil_integration::{Vigil, eventually, require_root, sample_value, workload_binary};

const PROGRAMS: [&str; 5] = [
    "vigil_exec",
    "vigil_newtask",
    "vigil_fork",
    "vigil_exit",
    "vigil_listen",
];

/// `vigil_process_events_total{event}`, 0 before the first such event (the series is created by its
/// first increment); the family must be exported ([`Vigil::wait_for_process_events`]).
fn events(vigil: &Vigil, event: &str) -> f64 {
    vigil.metric_or_zero(&format!("vigil_process_events_total{{event=\"{event}\"}}"))
}

#[test]
fn exec_and_process_exit_of_a_short_process_are_counted() {
    if !require_root("exec_and_process_exit_of_a_short_process_are_counted") {
        return;
    }
    let vigil = Vigil::start("");
    vigil.wait_for_process_events();
    let (exec, exit) = (events(&vigil, "exec"), events(&vigil, "process_exit"));
    let status = Command::new("sh")
        .args(["-c", "sleep 0.2"])
        .status()
        .unwrap();
    assert!(status.success());
    // sh and sleep were exec'd (dash may fork sleep or exec it in place), and at least one process ended.
    assert!(
        eventually(Duration::from_secs(5), || events(&vigil, "exec")
            >= exec + 2.0
            && events(&vigil, "process_exit") >= exit + 1.0),
        "exec {exec} → {}, process_exit {exit} → {}",
        events(&vigil, "exec"),
        events(&vigil, "process_exit")
    );
}

/// Runs thread-churn, returning once it has exited.
fn churn(threads: usize, leader_exits_first: bool) {
    let mut command = Command::new(workload_binary("thread-churn"));
    command
        .arg(threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if leader_exits_first {
        command.arg("--leader-exits-first");
    }
    let mut child = command.spawn().expect("thread-churn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "churned");
    writeln!(child.stdin.take().unwrap()).ok();
    assert!(child.wait().unwrap().success());
}

#[test]
fn thread_exits_never_count_as_process_exits() {
    if !require_root("thread_exits_never_count_as_process_exits") {
        return;
    }
    let vigil = Vigil::start("");
    vigil.wait_for_process_events();
    for leader_exits_first in [false, true] {
        let before = |event| events(&vigil, event);
        let (spawned, thread_exits, process_exits) = (
            before("thread_spawn"),
            before("thread_exit"),
            before("process_exit"),
        );
        churn(200, leader_exits_first);
        // 200 churn threads (+ the leader, when it exits first) end as threads; one process ends.
        let expected_thread_exits = 200.0 + f64::from(u8::from(leader_exits_first));
        assert!(
            eventually(Duration::from_secs(5), || events(&vigil, "thread_exit")
                - thread_exits
                >= expected_thread_exits
                && events(&vigil, "process_exit") > process_exits),
            "leader_exits_first={leader_exits_first}: thread_exit +{}, process_exit +{}",
            events(&vigil, "thread_exit") - thread_exits,
            events(&vigil, "process_exit") - process_exits
        );
        assert!(events(&vigil, "thread_spawn") - spawned >= 200.0);
        // Were thread exits miscounted, this would be +200; allow a few unrelated processes ending.
        let process_exit_delta = events(&vigil, "process_exit") - process_exits;
        assert!(
            process_exit_delta < 10.0,
            "leader_exits_first={leader_exits_first}: process_exit +{process_exit_delta}"
        );
    }
}

#[test]
fn ready_flips_only_after_attach() {
    if !require_root("ready_flips_only_after_attach") {
        return;
    }
    let vigil = Vigil::spawn("", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_not_ready = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "never ready; log:\n{}",
            vigil.log()
        );
        match vigil.try_get("/ready") {
            Some((503, body)) => {
                assert!(body.contains("not ready"), "{body}");
                saw_not_ready = true;
            }
            Some((200, _)) => break,
            Some((status, body)) => panic!("/ready answered {status}: {body}"),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        saw_not_ready,
        "the admin server starts before the probes are attached, so /ready must say 503 first"
    );
    let (_, metrics) = vigil.get("/metrics");
    for program in PROGRAMS {
        let sample = format!("vigil_probes_attached{{program=\"{program}\"}}");
        assert_eq!(
            sample_value(&metrics, &sample),
            Some(1.0),
            "{sample} once ready"
        );
    }
    assert!(
        vigil.metric("vigil_process_table_entries") > 0.0,
        "first /proc scan seeded the table"
    );
}

#[test]
fn metrics_pass_promtool_and_landing_page_links_endpoints() {
    if !require_root("metrics_pass_promtool_and_landing_page_links_endpoints") {
        return;
    }
    let vigil = Vigil::start("");
    let (status, metrics) = vigil.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("vigil_build_info{"), "{metrics}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by scripts/setup.sh --test)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let (_, landing) = vigil.get("/");
    for link in ["/metrics", "/ready", "/live", "/debug/discovery"] {
        assert!(
            landing.contains(&format!("href=\"{link}\"")),
            "{link} in {landing}"
        );
    }
    assert_eq!(vigil.get("/live").0, 200);
    let (status, discovery) = vigil.get("/debug/discovery");
    assert_eq!(status, 200);
    assert!(
        discovery.contains(&format!("\"pid\":{}", vigil.pid())),
        "vigil itself is in the table"
    );
}

fn loaded_vigil_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|info| info.name_as_str().map(str::to_owned))
        .filter(|name| PROGRAMS.contains(&name.as_str()))
        .collect()
}

#[test]
fn sigterm_detaches_everything() {
    if !require_root("sigterm_detaches_everything") {
        return;
    }
    let vigil = Vigil::start("");
    assert_eq!(
        loaded_vigil_programs().len(),
        PROGRAMS.len(),
        "loaded while running"
    );
    let status = vigil.terminate(Duration::from_secs(10));
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        eventually(Duration::from_secs(3), || loaded_vigil_programs()
            .is_empty()),
        "programs left loaded: {:?}",
        loaded_vigil_programs()
    );
    let pinned: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .map(|dir| dir.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(
        pinned
            .iter()
            .all(|entry| !entry.file_name().to_string_lossy().contains("vigil")),
        "pinned leftovers"
    );
}

#[test]
fn tracefs_not_mounted_is_one_clear_error() {
    if !require_root("tracefs_not_mounted_is_one_clear_error") {
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(vigil_integration::vigil_binary())
        .args(["--web.listen-address", "127.0.0.1:0"])
        .env("VIGIL_PATHS__TRACEFS", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("tracefs") || line.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "one error: {stderr}");
    assert!(
        errors[0].contains(&format!(
            "tracefs is not mounted at {}",
            empty.path().display()
        )) && errors[0].contains("paths.tracefs"),
        "{stderr}"
    );
}

#[test]
fn bpffs_not_mounted_changes_nothing() {
    if !require_root("bpffs_not_mounted_changes_nothing") {
        return;
    }
    // vigil in a mount namespace of its own without /sys/fs/bpf: it pins nothing, so it loads,
    // attaches and serves as usual.
    let vigil = Vigil::spawn_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "umount /sys/fs/bpf && exec \"$0\" \"$@\"",
        ],
        "",
        &[],
    );
    vigil.wait_ready(Duration::from_secs(30));
    let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", vigil.pid())).unwrap();
    assert!(
        !mounts.lines().any(|line| line.contains(" /sys/fs/bpf ")),
        "{mounts}"
    );
    for program in PROGRAMS {
        assert_eq!(
            vigil.metric(&format!("vigil_probes_attached{{program=\"{program}\"}}")),
            1.0,
            "{program}"
        );
    }
}

#[test]
fn refuses_to_start_without_capabilities_naming_them() {
    if !require_root("refuses_to_start_without_capabilities_naming_them") {
        return;
    }
    // Root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN: setpriv drops them from every set.
    let output = Command::new("setpriv")
        .args([
            "--inh-caps=-bpf,-perfmon,-sys_admin",
            "--bounding-set=-bpf,-perfmon,-sys_admin",
            "--",
        ])
        .arg(vigil_integration::vigil_binary())
        .args(["--web.listen-address", "127.0.0.1:0"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("CAP_BPF (or CAP_SYS_ADMIN)"), "{stderr}");
    assert!(
        stderr.contains("CAP_PERFMON (or CAP_SYS_ADMIN)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CAP_SYS_PTRACE"),
        "only what is missing is named: {stderr}"
    );
}

#[test]
fn a_program_that_cannot_load_is_reported_and_vigil_keeps_serving() {
    if !require_root("a_program_that_cannot_load_is_reported_and_vigil_keeps_serving") {
        return;
    }
    // A tracefs copy whose task_newtask has no format file: vigil_newtask cannot be prepared.
    let tracefs = tempfile::tempdir().unwrap();
    for (category, name) in [
        ("sched", "sched_process_exec"),
        ("sched", "sched_process_fork"),
        ("sched", "sched_process_exit"),
        ("syscalls", "sys_exit_listen"),
    ] {
        let dir = tracefs.path().join("events").join(category).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let real = format!("/sys/kernel/tracing/events/{category}/{name}/format");
        std::fs::copy(real, dir.join("format")).unwrap();
    }
    let vigil = Vigil::start(&format!(
        "paths:\n  tracefs: {}\n",
        tracefs.path().display()
    ));
    assert_eq!(
        vigil.metric("vigil_probes_attached{program=\"vigil_newtask\"}"),
        0.0
    );
    assert_eq!(
        vigil.metric("vigil_probe_errors_total{program=\"vigil_newtask\",stage=\"layout\"}"),
        1.0
    );
    assert_eq!(
        vigil.metric("vigil_probes_attached{program=\"vigil_exit\"}"),
        1.0
    );
    assert!(
        vigil.log().contains("task_newtask"),
        "the log names what failed:\n{}",
        vigil.log()
    );
    // Without clone flags, forks still arrive, as unclassified: nothing is lost.
    vigil.wait_for_process_events();
    let before = events(&vigil, "fork_unclassified");
    Command::new("true").status().unwrap();
    assert!(eventually(Duration::from_secs(5), || events(
        &vigil,
        "fork_unclassified"
    ) > before));
}

#[test]
fn kernel_map_sizes_follow_the_config() {
    if !require_root("kernel_map_sizes_follow_the_config") {
        return;
    }
    // Odd sizes no default has, so that the maps found are this vigil's.
    let sizes = [
        ("SERVED_PORTS", "served_ports_entries", 1031),
        ("HTTP2_CONNECTIONS", "http2_connections_entries", 1033),
        ("SSL_CALLS", "tls_calls_entries", 1039),
        ("CLONE_KINDS", "clone_kinds_entries", 1049),
    ];
    let config: String = sizes
        .iter()
        .map(|(_, key, entries)| format!("  {key}: {entries}\n"))
        .collect();
    let vigil = Vigil::start(&format!("ebpf:\n{config}"));
    // The kernel keeps 15 characters of a map's name.
    let loaded: Vec<(String, u32)> = aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .filter_map(|info| Some((info.name_as_str()?.to_owned(), info.max_entries())))
        .collect();
    for (map, key, entries) in sizes {
        let name = &map[..map.len().min(15)];
        assert!(
            loaded.contains(&(name.to_owned(), entries)),
            "{map} loaded with ebpf.{key} = {entries}: {loaded:?}"
        );
    }
    drop(vigil);
}
