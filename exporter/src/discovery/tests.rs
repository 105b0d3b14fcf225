//! The supervisor against real processes on this machine's /proc, with an in-memory filter.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use vigil_common::{
    ProcessEvent, ProcessEventKind,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN, TRACKED_BY_KERNEL},
};

use super::{clock::boot_time_ns, retry::Step, *};
use crate::kernel::FilterError;

/// A filter whose contents the test can see and tamper with.
#[derive(Clone, Default)]
struct SharedFilter(Arc<Mutex<BTreeSet<u32>>>);

impl ProcessFilter for SharedFilter {
    fn insert(&mut self, tgid: u32) -> Result<(), FilterError> {
        self.0.lock().unwrap().insert(tgid);
        Ok(())
    }
    fn remove(&mut self, tgid: u32) {
        self.0.lock().unwrap().remove(&tgid);
    }
    fn contains(&self, tgid: u32) -> bool {
        self.0.lock().unwrap().contains(&tgid)
    }
    fn tgids(&self) -> Vec<u32> {
        self.0.lock().unwrap().iter().copied().collect()
    }
}

/// The discovery settings of the tests; each test overrides some keys.
const BASE_CONFIG: &str = "instrument: [{cmd_args: '*sleep 30*'}]
exclude_instrument: []
reconcile_interval: 10s
heartbeat_interval: 2s
min_process_age: auto
min_process_age_min: 500ms
min_process_age_max: 10s";

/// Discovery with [`BASE_CONFIG`] overridden by the keys of `yaml`, on this machine's /proc.
fn discovery(yaml: &str) -> (Discovery, SharedFilter, prometheus::Registry) {
    let mut config: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(BASE_CONFIG).unwrap();
    let overrides: serde_yaml_ng::Mapping = serde_yaml_ng::from_str(yaml).unwrap();
    config.extend(overrides);
    let config: DiscoveryConfig =
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(config)).unwrap();
    let registry = prometheus::Registry::new();
    let filter = SharedFilter::default();
    let metrics = DiscoveryMetrics::register(&registry);
    let discovery = Discovery::new(
        Path::new("/proc"),
        &config,
        Box::new(filter.clone()),
        metrics,
    );
    (discovery, filter, registry)
}

fn sample(registry: &prometheus::Registry, sample: &str) -> f64 {
    let text = crate::metrics::encode(registry);
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn sleeper(tag: &str) -> Child {
    Command::new("sh")
        .args(["-c", &format!("exec sleep 30 # {tag}")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

/// A kernel event about task `pid` of process `tgid`, stamped now.
fn event(kind: ProcessEventKind, flags: u32, pid: u32, tgid: u32) -> ProcessEvent {
    ProcessEvent {
        kind: kind as u32,
        flags,
        pid,
        tgid,
        related_pid: 0,
        reserved: 0,
        boot_time_ns: boot_time_ns(),
        cgroup_id: 0,
        comm: [0; 16],
    }
}

/// Carries out the releases decided so far, with no newer kernel event waiting.
fn apply_releases(discovery: &mut Discovery) {
    discovery.apply_releases(&mut Vec::new(), |_| {});
}

fn state_of(discovery: &Discovery, pid: u32) -> Option<ProcessState> {
    discovery.decisions.get(&pid).map(|decision| decision.state)
}

/// A `sleep 30` child, seen by a first scan with [`BASE_CONFIG`] and captured (provisional).
fn instrumented_sleeper(tag: &str) -> (Child, Discovery, SharedFilter, prometheus::Registry) {
    let child = sleeper(tag);
    let (mut discovery, filter, registry) = discovery("{}");
    std::thread::sleep(Duration::from_millis(50));
    discovery.reconcile(Instant::now()).unwrap();
    assert!(
        filter.contains(child.id()),
        "{tag}: the sleeper is instrumented"
    );
    (child, discovery, filter, registry)
}

#[test]
fn first_scan_instruments_matching_processes_and_never_vigil_itself() {
    let mut child = sleeper("first-scan");
    let (mut discovery, filter, registry) =
        discovery("{instrument: [{cmd_args: '*'}], exclude_instrument: [{exe_path: '*/sh'}]}");
    // `exec sleep` may not have happened yet: wait for the child's exe to be sleep.
    while std::fs::read_link(format!("/proc/{}/exe", child.id()))
        .is_ok_and(|exe| exe.ends_with("sh"))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    discovery.reconcile(Instant::now()).unwrap();
    assert_eq!(
        state_of(&discovery, child.id()),
        Some(ProcessState::Provisional),
        "captured at once, published only at the minimum age"
    );
    assert!(filter.contains(child.id()));
    assert_eq!(
        state_of(&discovery, std::process::id()),
        Some(ProcessState::Excluded),
        "vigil itself"
    );
    assert!(!filter.contains(std::process::id()));
    assert!(
        sample(
            &registry,
            "vigil_discovered_processes{state=\"provisional\"}"
        ) >= 1.0
    );

    std::thread::sleep(Duration::from_millis(600));
    discovery.advance(Instant::now());
    assert_eq!(
        state_of(&discovery, child.id()),
        Some(ProcessState::Instrumented),
        "published once 500 ms old"
    );
    assert!(sample(&registry, "vigil_instrumented_processes") >= 1.0);
    assert!(sample(&registry, "vigil_published_processes_total") >= 1.0);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn heartbeat_drops_the_dead_and_repairs_a_missing_filter_entry() {
    let (mut child, mut discovery, filter, registry) = instrumented_sleeper("heartbeat");
    let pid = child.id();

    // Someone removed the entry from the kernel map: the heartbeat puts it back and counts it.
    filter.0.lock().unwrap().remove(&pid);
    discovery.heartbeat(Instant::now());
    assert!(filter.contains(pid));
    assert_eq!(
        sample(
            &registry,
            "vigil_heartbeat_failures_total{reason=\"filter_entry_missing\"}"
        ),
        1.0
    );

    // The process dies without any exit event reaching discovery: the heartbeat notices.
    child.kill().unwrap();
    child.wait().unwrap();
    discovery.heartbeat(Instant::now());
    apply_releases(&mut discovery);
    assert!(!filter.contains(pid));
    assert_eq!(state_of(&discovery, pid), None);
    assert_eq!(
        sample(
            &registry,
            "vigil_heartbeat_failures_total{reason=\"process_gone\"}"
        ),
        1.0
    );
}

#[test]
fn a_late_listener_is_instrumented_when_it_listens() {
    // This test process itself plays the late listener; the selector matches its port only.
    let (mut discovery, filter, _) = discovery("{instrument: [{open_ports: '1-65535'}]}");
    discovery.policy.own_pid = 0; // evaluate this process as if it were anyone else
    let me = std::process::id();
    discovery.reconcile(Instant::now()).unwrap();
    assert_eq!(
        state_of(&discovery, me),
        Some(ProcessState::Candidate),
        "no listener yet"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = event(ProcessEventKind::Listen, 0, me, me);
    discovery.handle(&[listen], Instant::now());
    assert!(state_of(&discovery, me).is_some_and(ProcessState::is_captured));
    assert!(filter.contains(me));
    let port = listener.local_addr().unwrap().port();
    assert!(
        discovery.decisions[&me].ports.contains(&port),
        "its port {port} was read"
    );
}

#[test]
fn an_exit_event_drops_the_process_once_proc_agrees() {
    let (mut child, mut discovery, filter, _) = instrumented_sleeper("exit");
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let exit = event(ProcessEventKind::Exit, EXIT_GROUP_DEAD, pid, pid);
    discovery.handle(&[exit], Instant::now());
    apply_releases(&mut discovery);
    assert!(discovery.table.get(pid).is_none());
    assert!(!filter.contains(pid));
}

#[test]
fn an_unconfirmed_exit_of_a_live_process_is_a_thread_exit_and_not_retried() {
    let (mut child, mut discovery, filter, _) = instrumented_sleeper("unconfirmed");
    let pid = child.id();
    let exit = event(
        ProcessEventKind::Exit,
        EXIT_GROUP_DEAD_UNKNOWN,
        pid + 1,
        pid,
    );
    discovery.handle(&[exit], Instant::now());
    assert!(filter.contains(pid), "still instrumented");
    assert!(
        discovery.retries.is_empty(),
        "nothing left to retry: {:?}",
        discovery.retries
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_matching_process_that_dies_young_is_short_lived_and_never_published() {
    // A lower bound far above the sleeper's life, so that a loaded machine (the test is timed by the
    // kill below, not by a clock) never lets it reach the minimum age first.
    let mut child = sleeper("short-lived");
    let (mut discovery, filter, registry) =
        discovery("{min_process_age_min: 20s, min_process_age_max: 60s}");
    std::thread::sleep(Duration::from_millis(50));
    discovery.reconcile(Instant::now()).unwrap();
    let pid = child.id();
    assert!(filter.contains(pid), "the sleeper is instrumented");
    assert_eq!(state_of(&discovery, pid), Some(ProcessState::Provisional));
    child.kill().unwrap();
    child.wait().unwrap();
    discovery.handle(
        &[event(ProcessEventKind::Exit, EXIT_GROUP_DEAD, pid, pid)],
        Instant::now(),
    );
    discovery.advance(Instant::now());
    apply_releases(&mut discovery);
    assert!(!filter.contains(pid));
    assert_eq!(sample(&registry, "vigil_short_lived_processes_total"), 1.0);
    assert_eq!(sample(&registry, "vigil_published_processes_total"), 0.0);
    // It lived ~50 ms: twice that is under the lower bound.
    assert_eq!(sample(&registry, "vigil_min_process_age_seconds"), 20.0);
}

#[test]
fn young_deaths_after_publication_still_teach_the_threshold() {
    let child = sleeper("teach");
    let (mut discovery, _, registry) = discovery("{min_process_age_min: 1ms}");
    std::thread::sleep(Duration::from_millis(50));
    discovery.reconcile(Instant::now()).unwrap();
    let pid = child.id();
    assert_eq!(
        state_of(&discovery, pid),
        Some(ProcessState::Instrumented),
        "older than 1 ms: published at once"
    );
    std::thread::sleep(Duration::from_millis(400));
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    discovery.handle(
        &[event(ProcessEventKind::Exit, EXIT_GROUP_DEAD, pid, pid)],
        Instant::now(),
    );
    assert_eq!(sample(&registry, "vigil_short_lived_processes_total"), 0.0);
    let threshold = sample(&registry, "vigil_min_process_age_seconds");
    // Lifetime ~450 ms (start ticks are 10 ms coarse, the sleeps may run long): twice that.
    assert!((0.85..1.3).contains(&threshold), "threshold {threshold}");
}

#[test]
fn a_fixed_minimum_age_is_used_as_given() {
    let (discovery, _, registry) = discovery("{min_process_age: 3s}");
    assert_eq!(sample(&registry, "vigil_min_process_age_seconds"), 3.0);
    assert_eq!(discovery.min_age.current(), Duration::from_secs(3));
}

#[test]
fn a_pid_reused_without_an_exit_event_loses_the_old_capture() {
    let mut child = sleeper("reuse");
    let pid = child.id();
    let (mut discovery, filter, _) = discovery("{instrument: [{cmd_args: '*vigil-reuse-old*'}]}");
    std::thread::sleep(Duration::from_millis(50));
    let mut old = discovery.reader.read(pid).unwrap();
    // An earlier program that held the pid and matched; its exit event was lost.
    old.identity.start_ticks -= 1;
    old.cmdline = "server vigil-reuse-old".into();
    discovery.table.upsert(old);
    assert!(discovery.evaluate(pid, None, Instant::now()).is_ok());
    assert!(filter.contains(pid), "the old program is captured");

    discovery.handle(
        &[event(ProcessEventKind::Exec, 0, pid, pid)],
        Instant::now(),
    );
    assert_eq!(state_of(&discovery, pid), Some(ProcessState::Candidate));
    apply_releases(&mut discovery);
    assert!(
        !filter.contains(pid),
        "the new program does not inherit the capture"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A filter whose next `failures` inserts fail, as a full or broken kernel map would.
#[derive(Clone, Default)]
struct FlakyFilter {
    inner: SharedFilter,
    failures: Arc<Mutex<u32>>,
}

impl ProcessFilter for FlakyFilter {
    fn insert(&mut self, tgid: u32) -> Result<(), FilterError> {
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(FilterError(tgid));
        }
        self.inner.insert(tgid)
    }
    fn remove(&mut self, tgid: u32) {
        self.inner.remove(tgid);
    }
    fn contains(&self, tgid: u32) -> bool {
        self.inner.contains(tgid)
    }
    fn tgids(&self) -> Vec<u32> {
        self.inner.tgids()
    }
}

/// Calls `advance` until `done` or two seconds pass (the longest backoff is 2 s).
fn advance_until(discovery: &mut Discovery, mut done: impl FnMut(&Discovery) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        discovery.advance(Instant::now());
        if done(discovery) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_failed_filter_insert_is_retried_until_it_holds() {
    let mut child = sleeper("flaky-filter");
    let filter = FlakyFilter::default();
    *filter.failures.lock().unwrap() = 2;
    let config: DiscoveryConfig = serde_yaml_ng::from_str(BASE_CONFIG).unwrap();
    let registry = prometheus::Registry::new();
    let mut discovery = Discovery::new(
        Path::new("/proc"),
        &config,
        Box::new(filter.clone()),
        DiscoveryMetrics::register(&registry),
    );
    std::thread::sleep(Duration::from_millis(50));
    discovery.reconcile(Instant::now()).unwrap();
    let pid = child.id();
    assert_eq!(state_of(&discovery, pid), Some(ProcessState::Candidate));
    assert!(
        discovery.decisions[&pid]
            .reason
            .contains("past the filter bitmap")
    );
    assert!(discovery.retries.contains_key(&pid), "a retry is pending");
    assert!(
        advance_until(&mut discovery, |discovery| state_of(discovery, pid)
            .is_some_and(ProcessState::is_captured)),
        "captured once the map takes the entry"
    );
    assert!(filter.contains(pid));
    assert_eq!(
        sample(
            &registry,
            "vigil_instrumentation_errors_total{reason=\"map_update\",stage=\"filter_insert\"}"
        ),
        2.0
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_failed_proc_read_is_retried_with_its_reason_until_it_succeeds() {
    // A procfs tree holding a copy of a real process, whose stat is caught half-written.
    let child = sleeper("fixture");
    std::thread::sleep(Duration::from_millis(50));
    let pid = child.id();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(pid.to_string());
    std::fs::create_dir(&dir).unwrap();
    for file in ["status", "cmdline", "cgroup"] {
        std::fs::copy(format!("/proc/{pid}/{file}"), dir.join(file)).unwrap();
    }
    std::os::unix::fs::symlink("/usr/bin/sleep", dir.join("exe")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    std::fs::write(dir.join("stat"), &stat[..stat.len() / 3]).unwrap();

    let config: DiscoveryConfig = serde_yaml_ng::from_str(BASE_CONFIG).unwrap();
    let registry = prometheus::Registry::new();
    let filter = SharedFilter::default();
    let mut discovery = Discovery::new(
        root.path(),
        &config,
        Box::new(filter.clone()),
        DiscoveryMetrics::register(&registry),
    );
    discovery.handle(
        &[event(ProcessEventKind::Exec, 0, pid, pid)],
        Instant::now(),
    );
    assert!(discovery.table.get(pid).is_none());
    let retry = discovery.retries.get(&pid).expect("the read is retried");
    assert_eq!(retry.step, Step::Read);
    let errors: f64 = ["incomplete", "other"]
        .iter()
        .map(|reason| {
            sample(
                &registry,
                &format!(
                    "vigil_instrumentation_errors_total{{reason=\"{reason}\",stage=\"read_proc\"}}"
                ),
            )
        })
        .sum();
    assert_eq!(errors, 1.0, "the failure is counted with its reason");

    // Retried again while it stays broken, then succeeds once /proc answers.
    std::thread::sleep(Duration::from_millis(100));
    discovery.advance(Instant::now());
    assert!(discovery.retries[&pid].attempts >= 2);
    std::fs::write(dir.join("stat"), &stat).unwrap();
    assert!(
        advance_until(&mut discovery, |_| filter.contains(pid)),
        "read and captured after the retry"
    );
    assert!(discovery.retries.is_empty());
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_listener_the_kernel_captured_is_released_unless_it_matches() {
    // This test process listens; the selector wants another port. The kernel captured it at listen.
    let (mut discovery, filter, registry) = discovery("{instrument: [{open_ports: '1'}]}");
    discovery.policy.own_pid = 0; // evaluate this process as if it were anyone else
    let me = std::process::id();
    discovery.reconcile(Instant::now()).unwrap();
    let _listener = TcpListener::bind("127.0.0.1:0").unwrap();
    filter.0.lock().unwrap().insert(me);
    discovery.handle(
        &[event(ProcessEventKind::Listen, TRACKED_BY_KERNEL, me, me)],
        Instant::now(),
    );
    assert_eq!(state_of(&discovery, me), Some(ProcessState::Candidate));
    apply_releases(&mut discovery);
    assert!(!filter.contains(me), "released after evaluation");
    assert_eq!(discovery.publication(me), Publication::NotSelected);

    // Its listen event was lost: the reconcile removes the entry and counts it.
    filter.0.lock().unwrap().insert(me);
    discovery.reconcile(Instant::now()).unwrap();
    apply_releases(&mut discovery);
    assert!(!filter.contains(me));
    assert_eq!(
        sample(
            &registry,
            "vigil_reconcile_corrections_total{kind=\"stale_filter_entry\"}"
        ),
        1.0
    );
}

#[test]
fn a_bit_the_kernel_set_again_is_not_cleared_for_an_older_event() {
    // This test process listens on a port the selector does not want; the kernel captured it at its
    // listen, and listens again (setting the bit again) while discovery decides on the first listen.
    let (mut discovery, filter, _registry) = discovery("{instrument: [{open_ports: '1'}]}");
    discovery.policy.own_pid = 0; // evaluate this process as if it were anyone else
    let me = std::process::id();
    discovery.reconcile(Instant::now()).unwrap();
    let _listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = event(ProcessEventKind::Listen, TRACKED_BY_KERNEL, me, me);
    filter.0.lock().unwrap().insert(me);
    discovery.handle(&[listen], Instant::now());
    assert!(
        filter.contains(me),
        "a release waits for the end of the batch"
    );

    // The second listen is in the ring when the batch ends: the bit stays, and that event is kept
    // for the next batch.
    let mut pending = Vec::new();
    let mut drains = 0;
    discovery.apply_releases(&mut pending, |events| {
        drains += 1;
        if drains == 1 {
            events.push(listen);
        }
    });
    assert!(
        filter.contains(me),
        "not cleared under a newer kernel event"
    );
    assert_eq!(pending.len(), 1);

    // Applying it releases the bit again; this time the kernel sets it (a third listen) just before
    // the clear, and its event arrives in the drain right after.
    let next = std::mem::take(&mut pending);
    discovery.handle(&next, Instant::now());
    drains = 0;
    discovery.apply_releases(&mut pending, |events| {
        drains += 1;
        if drains == 2 {
            events.push(listen);
        }
    });
    assert!(filter.contains(me), "set again after the clear");

    // No newer event: cleared.
    let next = std::mem::take(&mut pending);
    discovery.handle(&next, Instant::now());
    apply_releases(&mut discovery);
    assert!(!filter.contains(me));
    assert_eq!(state_of(&discovery, me), Some(ProcessState::Candidate));
}

#[test]
fn a_batch_of_listens_reads_the_socket_tables_once() {
    let (mut discovery, filter, registry) = discovery("{instrument: [{open_ports: '1-65535'}]}");
    discovery.policy.own_pid = 0; // evaluate this process as if it were anyone else
    let me = std::process::id();
    discovery.reconcile(Instant::now()).unwrap();
    let reads = || sample(&registry, "vigil_socket_table_reads_total");
    let before = reads();
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = event(ProcessEventKind::Listen, 0, me, me);
    discovery.handle(&[listen, listen], Instant::now());
    assert_eq!(reads() - before, 1.0, "one read for the batch");
    assert!(filter.contains(me));
    let ports = &discovery.decisions[&me].ports;
    for listener in [&first, &second] {
        let port = listener.local_addr().unwrap().port();
        assert!(ports.contains(&port), "{port} in {ports:?}");
    }
    // A batch without a listen reads nothing again.
    discovery.handle(&[event(ProcessEventKind::Exec, 0, me, me)], Instant::now());
    assert_eq!(reads() - before, 1.0);
}

/// The pid of `parent`'s child running `exe_suffix`, once it does.
fn child_running(parent: u32, exe_suffix: &str) -> u32 {
    for _ in 0..400 {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|pid| pid.parse().ok())
        {
            if std::fs::read_link(format!("/proc/{child}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().ends_with(exe_suffix))
            {
                return child;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no child of {parent} runs {exe_suffix}");
}

#[test]
fn a_worker_forked_by_a_captured_process_is_captured_and_its_other_children_are_not() {
    // A captured shell (it matches by its marker) runs a second shell in the background, which runs
    // `sleep`: the second shell is the same executable and never matches by itself (a worker of the
    // first); `sleep` is another program.
    let mut parent = Command::new("sh")
        .args(["-c", "sh -c 'sleep 30.7; true' & wait # vigil-worker-test"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let worker = child_running(parent.id(), "sh");
    let sleep = child_running(worker, "sleep");
    let (mut discovery, filter, _registry) =
        discovery("{instrument: [{cmd_args: '*vigil-worker-test*'}]}");
    discovery.reconcile(Instant::now()).unwrap();
    assert!(filter.contains(parent.id()), "the parent matches");
    assert!(filter.contains(worker), "its worker is captured with it");
    assert!(
        discovery.decisions[&worker]
            .reason
            .contains(&format!("a worker of captured pid {}", parent.id())),
        "{}",
        discovery.decisions[&worker].reason
    );
    // The kernel captures every child of a captured process at its fork; evaluation releases the
    // ones that run another program.
    filter.0.lock().unwrap().insert(sleep);
    discovery.handle(
        &[event(
            ProcessEventKind::Fork,
            TRACKED_BY_KERNEL,
            sleep,
            sleep,
        )],
        Instant::now(),
    );
    assert_eq!(state_of(&discovery, sleep), Some(ProcessState::Candidate));
    apply_releases(&mut discovery);
    assert!(!filter.contains(sleep), "released after evaluation");
    let _ = parent.kill();
    let _ = Command::new("kill").arg(worker.to_string()).status();
    let _ = Command::new("kill").arg(sleep.to_string()).status();
    let _ = parent.wait();
}

#[test]
fn a_process_holding_a_connection_accepted_on_a_selected_port_serves_it() {
    // This test process listens on one port and accepts a connection on it; a child that inherits
    // only the accepted connection serves the port without listening.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    // The child inherits the accepted socket (std opens sockets close-on-exec; this one is made
    // inheritable) and not the listener.
    rustix::io::fcntl_setfd(&accepted, rustix::io::FdFlags::empty()).unwrap();
    let accepted_fd = std::os::fd::AsRawFd::as_raw_fd(&accepted);
    // bash, not sh: dash reads only single-digit descriptors in a redirection, and tests running
    // beside this one (a tokio runtime) push the accepted socket's number past 9.
    let mut child = Command::new("bash")
        .args(["-c", &format!("exec 3<&{accepted_fd}; exec sleep 30.8")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (mut discovery, filter, _registry) = discovery(&format!(
        "{{instrument: [{{open_ports: '{port}', cmd_args: 'sleep 30.8'}}]}}"
    ));
    let served = eventually_captured(&mut discovery, &filter, child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        served,
        "the child serves {port} through the accepted connection it holds"
    );
    assert_eq!(
        discovery.decisions[&child.id()].ports,
        BTreeSet::from([port])
    );
}

/// Reconciles until `pid` is captured (its shell has exec'd), for up to ten seconds (a loaded machine
/// may take a while to run the exec).
fn eventually_captured(discovery: &mut Discovery, filter: &SharedFilter, pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        discovery.reconcile(Instant::now()).unwrap();
        if filter.contains(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
