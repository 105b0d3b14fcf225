//! Discovery: which processes run on the node, which are instrumented, and keeping that true while
//! processes come and go.
//!
//! The table is seeded by one /proc scan at start, kept current by the kernel's exec/fork/exit/listen
//! events, and reconciled against a full /proc scan every `discovery.reconcile_interval`. Thread events
//! never touch it: a process leaves on a `group_dead` exit (or, on kernels without it, any exit)
//! confirmed by /proc, when a reconcile finds it gone, or when the heartbeat finds it dead.
//!
//! Each process is `candidate` (matches no selector yet: a port selector waits for a listener),
//! `provisional` (matches; its tgid is in the in-kernel filter map, so it is captured from then on, but
//! it is younger than the minimum process age and nothing from it is published yet), `instrumented`
//! (captured and published) or `excluded` (matches an exclusion, or is vigil). A process is re-evaluated
//! when it execs, when it starts listening (an eBPF event, no polling), and on every reconcile. Every
//! failed step (reading /proc, inserting the filter entry) is retried with backoff until it succeeds or
//! the process is gone; nothing is one-shot. Every `discovery.heartbeat_interval` each captured process
//! is checked: alive with the same start time, and its filter entry present (repaired when not).
//!
//! A provisional process becomes instrumented when it reaches the minimum age (see [`age`]); one that
//! dies before is counted as short-lived, its lifetime teaches the threshold, and its data is dropped.
//!
//! Metrics:
//! - `vigil_discovered_processes{state}`, `vigil_instrumented_processes`: processes by state.
//! - `vigil_instrumentation_latency_seconds`: from the exec, fork or listen event that made a process
//!   match to its filter entry being in place (capture starting).
//! - `vigil_min_process_age_seconds`: the minimum age now; `vigil_short_lived_processes_total`: matching
//!   processes that died younger (their data dropped); `vigil_published_processes_total`: processes
//!   that reached it.
//! - `vigil_reconcile_corrections_total{kind}`: `missed_exec`, `missed_exit`, `pid_reused`.
//! - `vigil_heartbeat_failures_total{reason}`: `process_gone`, `filter_entry_missing` (repaired), or a
//!   /proc read failure reason.
//! - `vigil_instrumentation_errors_total{stage,reason}`: failed steps, each retried; stages `read_proc`,
//!   `read_ports`, `filter_insert`.
//! - `vigil_process_table_entries`: processes in the table.

mod age;
mod cgroup;
mod process;
mod selector;
mod table;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use serde::Serialize;
use vigil_common::{
    ProcessEvent, ProcessEventKind,
    process::{EXIT_GROUP_DEAD, EXIT_GROUP_DEAD_UNKNOWN},
};

use age::AgeThreshold;
pub use cgroup::ContainerRef;
pub use process::{ProcReader, ProcessIdentity, ProcessInfo, ReadError};
use selector::{CompiledSelector, Match};
pub use table::{Corrections, ProcessTable, Upsert};

use crate::{
    config::DiscoveryConfig,
    kubernetes::{
        monitoring::INSTRUMENT_ANNOTATION,
        pods::{PodMeta, PodStore},
    },
    metrics::register,
};

/// First retry delay after a failed step; doubled per attempt up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// A process the kernel reported gone is still in /proc: expected for a moment, retried, not an error.
const STILL_EXITING: &str = "still_exiting";

/// The in-kernel set of instrumented tgids (the `TRACKED_TGIDS` map; a plain set in tests).
pub trait ProcessFilter: Send {
    fn insert(&mut self, tgid: u32) -> Result<(), String>;
    fn remove(&mut self, tgid: u32);
    fn contains(&self, tgid: u32) -> bool;
    /// Every tgid in the filter, whoever added it.
    fn tgids(&self) -> Vec<u32>;
}

/// Where a process stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Candidate,
    PendingMetadata,
    Provisional,
    Instrumented,
    Excluded,
}

impl ProcessState {
    const ALL: [ProcessState; 5] = [
        ProcessState::Candidate,
        ProcessState::PendingMetadata,
        ProcessState::Provisional,
        ProcessState::Instrumented,
        ProcessState::Excluded,
    ];

    fn label(self) -> &'static str {
        match self {
            ProcessState::Candidate => "candidate",
            ProcessState::PendingMetadata => "pending_metadata",
            ProcessState::Provisional => "provisional",
            ProcessState::Instrumented => "instrumented",
            ProcessState::Excluded => "excluded",
        }
    }

    /// Whether the process's tgid is in the in-kernel filter (it is being captured).
    fn is_captured(self) -> bool {
        matches!(
            self,
            ProcessState::PendingMetadata | ProcessState::Provisional | ProcessState::Instrumented
        )
    }
}

/// Whether what is captured from a process may become series, and as which service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publication {
    /// Instrumented: publish.
    Published,
    /// Captured, but younger than the minimum process age: hold until it is published or gone.
    Provisional,
    /// Known and not captured (no selector matches, or excluded): what the kernel captured of it
    /// between its `listen` and its evaluation is dropped.
    NotSelected,
    /// Not in the table: gone (or never seen).
    NotCaptured,
}

impl Publication {
    /// Whether the process is being captured (published or not yet).
    pub fn is_captured(&self) -> bool {
        matches!(self, Publication::Published | Publication::Provisional)
    }
}

/// The metric families of this stage.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    discovered: IntGaugeVec,
    instrumented: IntGauge,
    latency: Histogram,
    corrections: IntCounterVec,
    heartbeat_failures: IntCounterVec,
    errors: IntCounterVec,
    table_entries: IntGauge,
    min_process_age: Gauge,
    short_lived: IntCounter,
    published: IntCounter,
}

impl DiscoveryMetrics {
    pub fn register(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("static"),
            )
        };
        let metrics = DiscoveryMetrics {
            discovered: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("vigil_discovered_processes", "Processes in the process table, by state."),
                    &["state"],
                )
                .expect("static"),
            ),
            instrumented: register(
                registry,
                IntGauge::new(
                    "vigil_instrumented_processes",
                    "Processes captured and published (state instrumented); provisional ones are captured but not yet published.",
                )
                .expect("static"),
            ),
            latency: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "vigil_instrumentation_latency_seconds",
                        "Time from the exec, fork or listen event that made a process match to its filter entry being in place.",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )
                .expect("static"),
            ),
            corrections: counter(
                "vigil_reconcile_corrections_total",
                "Corrections the /proc reconcile made to the process table, by kind; non-zero means the kernel event path lost something.",
                &["kind"],
            ),
            heartbeat_failures: counter(
                "vigil_heartbeat_failures_total",
                "Heartbeat checks of instrumented processes that found something wrong, by reason (each is repaired).",
                &["reason"],
            ),
            errors: counter(
                "vigil_instrumentation_errors_total",
                "Failed discovery or instrumentation steps, by stage and reason; every one is retried.",
                &["stage", "reason"],
            ),
            table_entries: register(
                registry,
                IntGauge::new("vigil_process_table_entries", "Processes in vigil's process table.")
                    .expect("static"),
            ),
            min_process_age: register(
                registry,
                Gauge::new(
                    "vigil_min_process_age_seconds",
                    "Age a matching process must reach before what was captured from it is published.",
                )
                .expect("static"),
            ),
            short_lived: register(
                registry,
                IntCounter::new(
                    "vigil_short_lived_processes_total",
                    "Matching processes that died younger than the minimum age; their captured data was dropped.",
                )
                .expect("static"),
            ),
            published: register(
                registry,
                IntCounter::new(
                    "vigil_published_processes_total",
                    "Matching processes that reached the minimum age, from when their data is published.",
                )
                .expect("static"),
            ),
        };
        for kind in [
            "missed_exec",
            "missed_exit",
            "pid_reused",
            "stale_filter_entry",
        ] {
            metrics.corrections.with_label_values(&[kind]);
        }
        for reason in ["process_gone", "filter_entry_missing"] {
            metrics.heartbeat_failures.with_label_values(&[reason]);
        }
        metrics
    }
}

/// A step waiting to be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingStep {
    /// Read the process from /proc, record and evaluate it.
    Read,
    /// Re-read its listening ports and evaluate it again.
    Evaluate,
    /// The process exited according to the kernel (`group_dead`); drop it once /proc agrees.
    ConfirmExit(ProcessIdentity),
    /// A task of the process exited on a kernel that cannot say whether it was the last: drop the
    /// process if /proc says it is gone, else it was a thread (checked once, not retried).
    CheckExit(ProcessIdentity),
}

#[derive(Clone, Debug)]
struct Retry {
    step: PendingStep,
    attempts: u32,
    due: Instant,
    /// Boot-clock time of the event that started this step, for the latency histogram.
    trigger_boot_ns: Option<u64>,
    last_error: String,
}

/// What discovery decided for one process.
#[derive(Clone, Debug)]
struct Decision {
    identity: ProcessIdentity,
    state: ProcessState,
    reason: String,
    ports: BTreeSet<u16>,
    last_heartbeat: Option<Instant>,
    /// Boot-clock time its filter entry went in (capture started).
    captured_boot_ns: Option<u64>,
    /// Boot-clock time of the kernel's exit event, once seen: the end of its lifetime.
    exited_boot_ns: Option<u64>,
    /// `service_name` of what it serves: its executable's file name.
    service_name: String,
    /// Its filter entry could not be written (retried).
    attach_failed: bool,
    /// It runs in a pod the watcher had not delivered when this was decided (re-evaluated on the
    /// heartbeat until it has: namespace and annotation rules apply then).
    decided_without_pod: bool,
}

/// The processes of one pod, by what discovery made of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodProcesses {
    pub instrumented: usize,
    pub provisional: usize,
    pub pending_metadata: usize,
    pub attach_failed: usize,
    /// Candidates and excluded processes.
    pub not_selected: usize,
}

/// Why a step failed: its stage and error, for the error counter.
struct StepError {
    stage: &'static str,
    reason: &'static str,
    message: String,
}

impl From<ReadError> for StepError {
    fn from(error: ReadError) -> Self {
        StepError {
            stage: "read_proc",
            reason: error.reason(),
            message: error.to_string(),
        }
    }
}

/// The discovery state.
pub struct Discovery {
    reader: ProcReader,
    table: ProcessTable,
    decisions: BTreeMap<u32, Decision>,
    retries: BTreeMap<u32, Retry>,
    instrument: Vec<CompiledSelector>,
    exclude: Vec<CompiledSelector>,
    /// Whether any selector matches on ports (only then are a process's sockets read).
    selectors_need_ports: bool,
    own_pid: u32,
    filter: Box<dyn ProcessFilter>,
    metrics: DiscoveryMetrics,
    min_age: AgeThreshold,
    /// The pod watcher's store, when vigil watches Kubernetes (for the `k8s_*` selectors and the
    /// namespace and annotation rules).
    pods: Option<Arc<Mutex<PodStore>>>,
    /// `k8s.excluded_namespaces`: their pods' processes are never instrumented.
    excluded_namespaces: Vec<String>,
    /// The pod store's generation when processes in pods were last re-evaluated.
    pods_seen: u64,
    /// Listening sockets (inode → port) by network namespace inode, read once and kept until a process
    /// listens or a reconcile starts.
    listeners: BTreeMap<u64, BTreeMap<u64, u16>>,
    ticks_per_second: u64,
}

impl Discovery {
    pub fn new(
        procfs: &Path,
        config: &DiscoveryConfig,
        filter: Box<dyn ProcessFilter>,
        metrics: DiscoveryMetrics,
    ) -> Self {
        let instrument: Vec<CompiledSelector> = config
            .instrument
            .iter()
            .map(CompiledSelector::from)
            .collect();
        let exclude: Vec<CompiledSelector> = config
            .exclude_instrument
            .iter()
            .map(CompiledSelector::from)
            .collect();
        let selectors_need_ports = instrument
            .iter()
            .chain(&exclude)
            .any(CompiledSelector::needs_ports);
        let min_age = AgeThreshold::new(config.min_process_age, config.min_process_age_bounds());
        metrics.min_process_age.set(min_age.current().as_secs_f64());
        Discovery {
            reader: ProcReader::new(procfs),
            table: ProcessTable::default(),
            decisions: BTreeMap::new(),
            retries: BTreeMap::new(),
            instrument,
            exclude,
            selectors_need_ports,
            own_pid: std::process::id(),
            filter,
            min_age,
            listeners: BTreeMap::new(),
            pods: None,
            excluded_namespaces: Vec::new(),
            pods_seen: 0,
            metrics,
            ticks_per_second: procfs::ticks_per_second(),
        }
    }

    /// Decides with the pods of the watcher's `store`: the `k8s_*` selectors, `excluded_namespaces` and
    /// the `vigil.io/instrument` annotation.
    pub fn with_pods(
        mut self,
        store: Arc<Mutex<PodStore>>,
        excluded_namespaces: &[String],
    ) -> Self {
        self.pods = Some(store);
        self.excluded_namespaces = excluded_namespaces.to_vec();
        self
    }

    /// Makes the table match /proc, counts the corrections, and re-evaluates every process that is not
    /// captured (its ports may have changed unseen) or whose executable changed unseen. The first call
    /// seeds the table.
    pub fn reconcile(&mut self, now: Instant) -> Result<Corrections, ReadError> {
        self.listeners.clear();
        let mut live = Vec::new();
        for pid in self.reader.pids()? {
            match self.reader.read(pid) {
                Ok(info) => live.push(info),
                Err(ReadError::NotFound | ReadError::Thread { .. }) => {}
                Err(error) => self.fail(pid, PendingStep::Read, None, error.into(), 0, now),
            }
        }
        let seeding = self.table.is_empty();
        let exe_before: BTreeMap<ProcessIdentity, Option<std::path::PathBuf>> = self
            .table
            .iter()
            .map(|info| (info.identity, info.exe.clone()))
            .collect();
        let corrections = self.table.reconcile(live);
        if !seeding {
            for (kind, count) in [
                ("missed_exec", corrections.missed_exec),
                ("missed_exit", corrections.missed_exit),
                ("pid_reused", corrections.pid_reused),
            ] {
                self.metrics
                    .corrections
                    .with_label_values(&[kind])
                    .inc_by(count);
            }
            if corrections != Corrections::default() {
                tracing::info!(?corrections, "reconcile corrected the process table");
            }
        }
        self.forget_departed(now);
        self.remove_stale_filter_entries();
        let to_evaluate: Vec<u32> = self
            .table
            .iter()
            .filter(|info| {
                self.decisions
                    .get(&info.identity.pid)
                    .is_none_or(|decision| decision.state == ProcessState::Candidate)
                    || exe_before
                        .get(&info.identity)
                        .is_some_and(|exe| *exe != info.exe)
            })
            .map(|info| info.identity.pid)
            .collect();
        for pid in to_evaluate {
            self.try_step(pid, PendingStep::Evaluate, None, 0, now);
        }
        self.update_gauges();
        Ok(corrections)
    }

    /// Applies kernel events.
    pub fn handle(&mut self, events: &[ProcessEvent], now: Instant) {
        for event in events {
            let trigger = Some(event.boot_time_ns);
            match ProcessEventKind::from_u32(event.kind) {
                Some(
                    ProcessEventKind::Exec
                    | ProcessEventKind::Fork
                    | ProcessEventKind::ForkUnclassified,
                ) => {
                    self.retries.remove(&event.tgid);
                    self.try_step(event.tgid, PendingStep::Read, trigger, 0, now);
                }
                Some(ProcessEventKind::Listen) => {
                    // A new listening socket: the cached tables no longer tell the whole truth.
                    self.listeners.clear();
                    let step = match self.table.get(event.tgid) {
                        Some(_) => PendingStep::Evaluate,
                        None => PendingStep::Read,
                    };
                    self.try_step(event.tgid, step, trigger, 0, now);
                    // The kernel captures a process from its listen on (CAPTURE_ON_LISTEN), before
                    // this evaluation: undo that unless it matched.
                    if !self
                        .decisions
                        .get(&event.tgid)
                        .is_some_and(|decision| decision.state.is_captured())
                    {
                        self.filter.remove(event.tgid);
                    }
                }
                Some(ProcessEventKind::Exit)
                    if event.flags & (EXIT_GROUP_DEAD | EXIT_GROUP_DEAD_UNKNOWN) != 0 =>
                {
                    if let Some(info) = self.table.get(event.tgid) {
                        let identity = info.identity;
                        let step = match event.flags & EXIT_GROUP_DEAD != 0 {
                            true => PendingStep::ConfirmExit(identity),
                            false => PendingStep::CheckExit(identity),
                        };
                        if let Some(decision) = self
                            .decisions
                            .get_mut(&event.tgid)
                            .filter(|decision| decision.identity == identity)
                        {
                            decision.exited_boot_ns.get_or_insert(event.boot_time_ns);
                        }
                        self.try_step(event.tgid, step, None, 0, now);
                    }
                }
                Some(ProcessEventKind::Exit | ProcessEventKind::ThreadSpawn) | None => {}
            }
        }
        self.update_gauges();
    }

    /// What discovery made of the processes of each pod (by pod UID, from their cgroups).
    pub fn pod_processes(&self) -> HashMap<&str, PodProcesses> {
        let mut pods: HashMap<&str, PodProcesses> = HashMap::new();
        for info in self.table.iter() {
            let Some(pod_uid) = info.container.pod_uid.as_deref() else {
                continue;
            };
            let processes = pods.entry(pod_uid).or_default();
            match self
                .decisions
                .get(&info.identity.pid)
                .filter(|decision| decision.identity == info.identity)
            {
                Some(decision) if decision.state == ProcessState::Instrumented => {
                    processes.instrumented += 1
                }
                Some(decision) if decision.state == ProcessState::Provisional => {
                    processes.provisional += 1
                }
                Some(decision) if decision.state == ProcessState::PendingMetadata => {
                    processes.pending_metadata += 1
                }
                Some(decision) if decision.attach_failed => processes.attach_failed += 1,
                _ => processes.not_selected += 1,
            }
        }
        pods
    }

    /// The UID of the pod vigil itself runs in, if any.
    pub fn own_pod_uid(&self) -> Option<&str> {
        self.table.get(self.own_pid)?.container.pod_uid.as_deref()
    }

    /// The default `service_name` (its executable's name) and the cgroup placement of a captured
    /// process.
    pub fn service_of(&self, tgid: u32) -> Option<(&str, &ContainerRef)> {
        let decision = self.decisions.get(&tgid)?;
        let info = self
            .table
            .get(tgid)
            .filter(|info| info.identity == decision.identity)?;
        Some((decision.service_name.as_str(), &info.container))
    }

    /// Whether what was captured from `tgid` may be published now.
    pub fn publication(&self, tgid: u32) -> Publication {
        match self.decisions.get(&tgid) {
            Some(decision) if decision.state == ProcessState::Instrumented => {
                Publication::Published
            }
            Some(decision)
                if matches!(
                    decision.state,
                    ProcessState::Provisional | ProcessState::PendingMetadata
                ) =>
            {
                Publication::Provisional
            }
            Some(_) => Publication::NotSelected,
            None => Publication::NotCaptured,
        }
    }

    /// Tries again every step whose backoff has passed, and publishes provisional processes that have
    /// reached the minimum age.
    pub fn advance(&mut self, now: Instant) {
        let due: Vec<(u32, Retry)> = self
            .retries
            .iter()
            .filter(|(_, retry)| retry.due <= now)
            .map(|(pid, retry)| (*pid, retry.clone()))
            .collect();
        for (pid, retry) in due {
            self.retries.remove(&pid);
            self.try_step(pid, retry.step, retry.trigger_boot_ns, retry.attempts, now);
        }
        self.min_age.expire(now);
        self.publish_old_enough();
        self.update_gauges();
    }

    /// Moves every provisional process at least the minimum age old to instrumented.
    fn publish_old_enough(&mut self) {
        let min_age = self.min_age.current();
        for decision in self.decisions.values_mut() {
            publish_if_old_enough(decision, min_age, self.ticks_per_second, &self.metrics);
        }
    }

    /// Re-evaluates the processes in pods when the pods changed: a pod's labels, annotations or
    /// namespace decide with the `k8s_*` selectors (captured processes are re-evaluated on the
    /// heartbeat while they were decided without their pod).
    fn reevaluate_if_pods_changed(&mut self, now: Instant) {
        let Some(generation) = self
            .pods
            .as_ref()
            .map(|pods| pods.lock().expect("pod store lock").generation())
        else {
            return;
        };
        if generation == self.pods_seen {
            return;
        }
        self.pods_seen = generation;
        let in_pods: Vec<u32> = self
            .table
            .iter()
            .filter(|info| info.container.pod_uid.is_some())
            .filter(|info| {
                self.decisions
                    .get(&info.identity.pid)
                    .is_none_or(|decision| !decision.state.is_captured())
            })
            .map(|info| info.identity.pid)
            .collect();
        for pid in in_pods {
            self.try_step(pid, PendingStep::Evaluate, None, 0, now);
        }
    }

    /// Confirms every captured process is alive (same start time, not a zombie) and still in the
    /// filter; drops the dead and repairs missing entries.
    pub fn heartbeat(&mut self, now: Instant) {
        self.reevaluate_if_pods_changed(now);
        let captured: Vec<ProcessIdentity> = self
            .decisions
            .values()
            .filter(|decision| decision.state.is_captured())
            .map(|decision| decision.identity)
            .collect();
        for identity in captured {
            match self.reader.is_alive(identity) {
                Ok(true) => {}
                Ok(false) => {
                    self.metrics
                        .heartbeat_failures
                        .with_label_values(&["process_gone"])
                        .inc();
                    self.drop_process(identity, now);
                    continue;
                }
                Err(error) => {
                    self.metrics
                        .heartbeat_failures
                        .with_label_values(&[error.reason()])
                        .inc();
                    continue;
                }
            }
            if !self.filter.contains(identity.pid) {
                self.metrics
                    .heartbeat_failures
                    .with_label_values(&["filter_entry_missing"])
                    .inc();
                tracing::warn!(
                    pid = identity.pid,
                    "filter entry of an instrumented process was missing; restoring it"
                );
                if let Err(message) = self.filter.insert(identity.pid) {
                    let error = StepError {
                        stage: "filter_insert",
                        reason: "map_update",
                        message,
                    };
                    self.fail(identity.pid, PendingStep::Evaluate, None, error, 0, now);
                    continue;
                }
            }
            if let Some(decision) = self.decisions.get_mut(&identity.pid) {
                decision.last_heartbeat = Some(now);
                if decision.state == ProcessState::PendingMetadata || decision.decided_without_pod {
                    // Its pod may have arrived since.
                    self.try_step(identity.pid, PendingStep::Evaluate, None, 0, now);
                }
            }
        }
        self.update_gauges();
    }

    fn try_step(
        &mut self,
        pid: u32,
        step: PendingStep,
        trigger: Option<u64>,
        attempts: u32,
        now: Instant,
    ) {
        let result = match step {
            PendingStep::Read => match self.reader.read(pid) {
                Ok(info) => {
                    if let Upsert::Replaced(old) = self.table.upsert(info) {
                        tracing::debug!(pid, old_start_ticks = old.start_ticks, "pid reused");
                        self.forget_decision(old, now);
                    }
                    self.evaluate(pid, trigger, now)
                }
                // Gone, or a thread: nothing to record. What the table held for the pid is stale.
                Err(ReadError::NotFound | ReadError::Thread { .. }) => {
                    if let Some(info) = self.table.get(pid).cloned() {
                        self.confirm_exit(info.identity, now)
                    } else {
                        Ok(())
                    }
                }
                Err(error) => Err(error.into()),
            },
            PendingStep::Evaluate => self.evaluate(pid, trigger, now),
            PendingStep::ConfirmExit(identity) => self.confirm_exit(identity, now),
            PendingStep::CheckExit(identity) => match self.confirm_exit(identity, now) {
                Err(error) if error.reason == STILL_EXITING => Ok(()),
                other => other,
            },
        };
        if let Err(error) = result {
            self.fail(pid, step, trigger, error, attempts + 1, now);
        }
    }

    fn confirm_exit(&mut self, identity: ProcessIdentity, now: Instant) -> Result<(), StepError> {
        match self.reader.is_alive(identity) {
            Ok(false) => {
                self.drop_process(identity, now);
                Ok(())
            }
            // Still exiting: the kernel fires the exit before the task is reaped. Not an error.
            Ok(true) => Err(StepError {
                stage: "confirm_exit",
                reason: STILL_EXITING,
                message: format!("pid {} still exiting", identity.pid),
            }),
            Err(error) => Err(error.into()),
        }
    }

    /// Decides the state of `pid` (in the table) and applies it to the filter.
    fn evaluate(&mut self, pid: u32, trigger: Option<u64>, now: Instant) -> Result<(), StepError> {
        let Some(info) = self.table.get(pid).cloned() else {
            return Ok(());
        };
        let ports = match self.selectors_need_ports {
            true => match self.listening_ports(pid) {
                Ok(ports) => ports,
                Err(ReadError::NotFound) => return self.confirm_exit(info.identity, now),
                Err(error) => {
                    return Err(StepError {
                        stage: "read_ports",
                        reason: error.reason(),
                        message: error.to_string(),
                    });
                }
            },
            false => BTreeSet::new(),
        };
        let pods = self
            .pods
            .as_ref()
            .map(|pods| pods.lock().expect("pod store lock"));
        let pod = pods
            .as_ref()
            .zip(info.container.pod_uid.as_deref())
            .and_then(|(pods, uid)| pods.get(uid));
        let decided_without_pod =
            pods.is_some() && info.container.pod_uid.is_some() && pod.is_none();
        let (verdict, reason) = self.verdict(&info, &ports, pod);
        drop(pods);

        let previous = self
            .decisions
            .remove(&pid)
            .filter(|old| old.identity == info.identity);
        let was_captured = previous.as_ref().is_some_and(|old| old.state.is_captured());
        let captures = matches!(
            verdict,
            ProcessState::Instrumented | ProcessState::PendingMetadata
        );
        let mut decision = Decision {
            identity: info.identity,
            state: verdict,
            reason,
            ports,
            last_heartbeat: previous.as_ref().and_then(|old| old.last_heartbeat),
            captured_boot_ns: None,
            exited_boot_ns: previous.as_ref().and_then(|old| old.exited_boot_ns),
            service_name: service_name(&info),
            attach_failed: false,
            decided_without_pod,
        };
        match (captures, was_captured) {
            (true, true) => {
                let previous = previous.expect("was captured");
                decision.state = match (verdict, previous.state) {
                    (ProcessState::PendingMetadata, _) => ProcessState::PendingMetadata,
                    (_, ProcessState::Instrumented) => ProcessState::Instrumented,
                    _ => ProcessState::Provisional,
                };
                decision.captured_boot_ns = previous.captured_boot_ns;
            }
            (true, false) => {
                if let Err(message) = self.filter.insert(pid) {
                    decision.state = ProcessState::Candidate;
                    decision.attach_failed = true;
                    decision.reason = format!("filter insert failed: {message}");
                    self.decisions.insert(pid, decision);
                    return Err(StepError {
                        stage: "filter_insert",
                        reason: "map_update",
                        message,
                    });
                }
                let captured_ns = boot_time_ns();
                if let Some(trigger) = trigger {
                    let elapsed_ns = captured_ns.saturating_sub(trigger);
                    self.metrics.latency.observe(elapsed_ns as f64 / 1e9);
                }
                // Capture starts now whatever its age; publication waits for the minimum age (a process
                // found already old, as on a restart, is published at once) and for its pod's metadata
                // when a selector needs it.
                decision.state = match verdict {
                    ProcessState::PendingMetadata => ProcessState::PendingMetadata,
                    _ => ProcessState::Provisional,
                };
                decision.captured_boot_ns = Some(captured_ns);
                tracing::info!(pid, exe = ?info.exe, cmdline = %info.cmdline, "instrumented");
            }
            (false, true) => self.filter.remove(pid),
            (false, false) => {}
        }
        publish_if_old_enough(
            &mut decision,
            self.min_age.current(),
            self.ticks_per_second,
            &self.metrics,
        );
        self.decisions.insert(pid, decision);
        Ok(())
    }

    /// The TCP ports `pid` listens on: its socket fds matched against the listening sockets of its network
    /// namespace (cached).
    fn listening_ports(&mut self, pid: u32) -> Result<BTreeSet<u16>, ReadError> {
        let sockets = self.reader.socket_inodes(pid)?;
        if sockets.is_empty() {
            return Ok(BTreeSet::new());
        }
        let namespace = self.reader.net_namespace(pid)?;
        let listening = match self.listeners.entry(namespace) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(self.reader.listening_sockets(pid)?)
            }
        };
        Ok(sockets
            .iter()
            .filter_map(|inode| listening.get(inode).copied())
            .collect())
    }

    /// What the selectors (and the process's pod) say of a process: `Instrumented` for a match (then
    /// captured provisionally at first), `PendingMetadata` when a `k8s_*` selector needs its pod and the
    /// watcher has not delivered it yet, `Excluded` or `Candidate`; with the reason.
    fn verdict(
        &self,
        info: &ProcessInfo,
        ports: &BTreeSet<u16>,
        pod: Option<&PodMeta>,
    ) -> (ProcessState, String) {
        if info.identity.pid == self.own_pid {
            return (ProcessState::Excluded, "vigil itself".to_owned());
        }
        let annotation = pod
            .and_then(|pod| pod.annotations.get(INSTRUMENT_ANNOTATION))
            .map(String::as_str);
        if let Some(pod) = pod {
            if self.excluded_namespaces.contains(&pod.namespace) {
                return (
                    ProcessState::Excluded,
                    format!("namespace {} is in k8s.excluded_namespaces", pod.namespace),
                );
            }
            if annotation == Some("false") {
                return (
                    ProcessState::Excluded,
                    format!("pod annotated {INSTRUMENT_ANNOTATION}: \"false\""),
                );
            }
        }
        let excluded = self
            .exclude
            .iter()
            .map(|selector| selector.matches_in(info, ports, pod))
            .collect::<Vec<_>>();
        if excluded.contains(&Match::Yes) {
            return (
                ProcessState::Excluded,
                "matches discovery.exclude_instrument".to_owned(),
            );
        }
        if excluded.contains(&Match::NeedsPod) {
            return (
                ProcessState::PendingMetadata,
                "an exclusion needs its pod, not known yet".to_owned(),
            );
        }
        let mut needs_pod = false;
        for (index, selector) in self.instrument.iter().enumerate() {
            match selector.matches_in(info, ports, pod) {
                Match::Yes => {
                    return (
                        ProcessState::Instrumented,
                        format!("matches discovery.instrument[{index}]"),
                    );
                }
                Match::NeedsPod => needs_pod = true,
                Match::No => {}
            }
        }
        if annotation == Some("true") {
            return (
                ProcessState::Instrumented,
                format!("pod annotated {INSTRUMENT_ANNOTATION}: \"true\""),
            );
        }
        match needs_pod {
            true => (
                ProcessState::PendingMetadata,
                "a discovery.instrument selector needs its pod, not known yet".to_owned(),
            ),
            false => (
                ProcessState::Candidate,
                "matches no discovery.instrument selector (yet)".to_owned(),
            ),
        }
    }

    /// Drops a process /proc says is gone: its table entry, its decision and its filter entry. Its
    /// children, reparented by the kernel (to a subreaper or their namespace's init), are re-read so the
    /// tree shows their new parent.
    fn drop_process(&mut self, identity: ProcessIdentity, now: Instant) {
        self.table.remove(identity);
        self.forget_decision(identity, now);
        let orphans: Vec<ProcessIdentity> = self
            .table
            .iter()
            .filter(|info| info.parent_pid == identity.pid)
            .map(|info| info.identity)
            .collect();
        for orphan in orphans {
            // A failed read leaves the old parent until the next reconcile; the orphan itself is fine.
            if let Ok(info) = self.reader.read(orphan.pid)
                && info.identity == orphan
            {
                self.table.upsert(info);
            }
        }
    }

    /// Forgets what was decided for `identity` (gone, or its pid now holds another process): removes its
    /// filter entry, and when it was captured learns its lifetime and counts it if it died provisional.
    fn forget_decision(&mut self, identity: ProcessIdentity, now: Instant) {
        let Some(decision) = self
            .decisions
            .remove(&identity.pid)
            .filter(|decision| decision.identity == identity)
        else {
            return;
        };
        if !decision.state.is_captured() {
            return;
        }
        self.filter.remove(identity.pid);
        let ended_ns = decision.exited_boot_ns.unwrap_or_else(boot_time_ns);
        let lifetime_ns = ended_ns.saturating_sub(start_boot_ns(identity, self.ticks_per_second));
        self.min_age.record(Duration::from_nanos(lifetime_ns), now);
        self.metrics
            .min_process_age
            .set(self.min_age.current().as_secs_f64());
        if decision.state == ProcessState::Provisional {
            self.metrics.short_lived.inc();
            tracing::debug!(
                pid = identity.pid,
                lifetime_seconds = lifetime_ns as f64 / 1e9,
                "short-lived process gone before publication; its data is dropped"
            );
        }
    }

    /// Removes the filter entries no captured process backs: left by the kernel at a `listen` whose
    /// event was lost, or by anything else that wrote the map.
    fn remove_stale_filter_entries(&mut self) {
        for tgid in self.filter.tgids() {
            let backed = self
                .decisions
                .get(&tgid)
                .is_some_and(|decision| decision.state.is_captured());
            if !backed {
                tracing::debug!(tgid, "removing a filter entry no captured process backs");
                self.filter.remove(tgid);
                self.metrics
                    .corrections
                    .with_label_values(&["stale_filter_entry"])
                    .inc();
            }
        }
    }

    /// Forgets the processes no longer in the table.
    fn forget_departed(&mut self, now: Instant) {
        let departed: Vec<ProcessIdentity> = self
            .decisions
            .values()
            .filter(|decision| {
                self.table
                    .get(decision.identity.pid)
                    .is_none_or(|info| info.identity != decision.identity)
            })
            .map(|decision| decision.identity)
            .collect();
        for identity in departed {
            self.forget_decision(identity, now);
        }
    }

    fn fail(
        &mut self,
        pid: u32,
        step: PendingStep,
        trigger: Option<u64>,
        error: StepError,
        attempts: u32,
        now: Instant,
    ) {
        if error.reason != STILL_EXITING {
            self.metrics
                .errors
                .with_label_values(&[error.stage, error.reason])
                .inc();
        }
        let attempts = attempts.max(1);
        let delay = RETRY_FIRST
            .saturating_mul(1 << attempts.min(16))
            .min(RETRY_MAX);
        tracing::debug!(pid, ?step, attempts, error = %error.message, ?delay, "step failed; retrying");
        self.retries.insert(
            pid,
            Retry {
                step,
                attempts,
                due: now + delay,
                trigger_boot_ns: trigger,
                last_error: error.message,
            },
        );
    }

    fn update_gauges(&self) {
        let mut counts = [0i64; ProcessState::ALL.len()];
        for decision in self.decisions.values() {
            counts[decision.state as usize] += 1;
        }
        for state in ProcessState::ALL {
            let count = counts[state as usize];
            self.metrics
                .discovered
                .with_label_values(&[state.label()])
                .set(count);
        }
        self.metrics
            .instrumented
            .set(counts[ProcessState::Instrumented as usize]);
        self.metrics.table_entries.set(self.table.len() as i64);
    }

    /// The table for `/debug/discovery`.
    pub fn to_json(&self, now: Instant) -> serde_json::Value {
        let now_ticks =
            (u128::from(boot_time_ns()) * u128::from(self.ticks_per_second) / 1_000_000_000) as u64;
        let pods = self
            .pods
            .as_ref()
            .map(|pods| pods.lock().expect("pod store lock"));
        let processes: Vec<serde_json::Value> = self
            .table
            .iter()
            .map(|info| {
                let decision = self.decisions.get(&info.identity.pid).filter(|d| d.identity == info.identity);
                serde_json::json!({
                    "pid": info.identity.pid,
                    "ns_pid": info.ns_pid,
                    "start_ticks": info.identity.start_ticks,
                    "parent_pid": info.parent_pid,
                    "exe": info.exe,
                    "cmdline": info.cmdline,
                    "cgroup": info.cgroup,
                    "container_id": info.container.container_id,
                    "pod_uid": info.container.pod_uid,
                    "pod": pods.as_ref().zip(info.container.pod_uid.as_deref())
                        .and_then(|(pods, uid)| pods.get(uid))
                        .map(|pod| format!("{}/{}", pod.namespace, pod.name)),
                    "state": decision.map(|d| d.state),
                    "reason": decision.map(|d| d.reason.as_str()),
                    "listening_ports": decision.map(|d| &d.ports),
                    "age_seconds": now_ticks.saturating_sub(info.identity.start_ticks) as f64 / self.ticks_per_second as f64,
                    "capture_started_after_seconds": decision
                        .and_then(|d| d.captured_boot_ns)
                        .map(|at| at.saturating_sub(start_boot_ns(info.identity, self.ticks_per_second)) as f64 / 1e9),
                    "last_heartbeat_seconds_ago": decision
                        .and_then(|d| d.last_heartbeat)
                        .map(|at| now.duration_since(at).as_secs_f64()),
                })
            })
            .collect();
        let retries: Vec<serde_json::Value> = self
            .retries
            .iter()
            .map(|(pid, retry)| {
                serde_json::json!({
                    "pid": pid,
                    "step": format!("{:?}", retry.step),
                    "attempts": retry.attempts,
                    "last_error": retry.last_error,
                })
            })
            .collect();
        serde_json::json!({
            "min_process_age_seconds": self.min_age.current().as_secs_f64(),
            "processes": processes,
            "pending_retries": retries,
        })
    }
}

/// The default `service_name` of a process: its executable's file name, else its command's.
fn service_name(info: &ProcessInfo) -> String {
    let program = info
        .exe
        .as_deref()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .or_else(|| {
            let command = info.cmdline.split(' ').next()?;
            command.rsplit('/').next()
        })
        .filter(|name| !name.is_empty());
    program.unwrap_or("unknown").to_owned()
}

/// Moves a provisional process at least `min_age` old to instrumented.
fn publish_if_old_enough(
    decision: &mut Decision,
    min_age: Duration,
    ticks_per_second: u64,
    metrics: &DiscoveryMetrics,
) {
    let age_ns = boot_time_ns().saturating_sub(start_boot_ns(decision.identity, ticks_per_second));
    if decision.state == ProcessState::Provisional && age_ns >= min_age.as_nanos() as u64 {
        decision.state = ProcessState::Instrumented;
        metrics.published.inc();
        tracing::debug!(pid = decision.identity.pid, "old enough; publishing");
    }
}

/// When `identity` started, on the boot clock (to the resolution of clock ticks).
fn start_boot_ns(identity: ProcessIdentity, ticks_per_second: u64) -> u64 {
    (u128::from(identity.start_ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1))) as u64
}

/// `CLOCK_BOOTTIME` in nanoseconds: the clock of `bpf_ktime_get_boot_ns`.
fn boot_time_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

#[cfg(test)]
mod tests;
