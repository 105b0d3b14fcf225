//! Discovery: which processes run on the node, which are instrumented, and keeping that true while
//! processes come and go. Inputs: the kernel's process events and filter ([`crate::kernel`]), /proc
//! ([`process`], [`cgroup`]), and the pod store ([`crate::pods`]). Capture and coverage read what it
//! decided ([`Discovery::publication`], [`Discovery::pod_processes`]); it reads nothing of them.
//!
//! One file per job: the table ([`table`]) and its /proc reads ([`process`], [`cgroup`]); the selectors
//! ([`selector`]) and the selection policy as a pure function ([`policy`]); listening ports
//! ([`listeners`]); evaluating a process and applying the verdict to the filter ([`evaluate`]); kernel
//! events ([`events`]); clearing filter bits the kernel may have set again ([`release`]); exits
//! ([`exits`]); the reconcile ([`reconcile`]) and heartbeat ([`heartbeat`]); retries ([`retry`]); the
//! minimum age ([`age`]); the families ([`metrics`]); `/debug/discovery` ([`debug`]); the serving
//! groups coverage grounds in traffic ([`serving`]).
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
//! - `vigil_socket_table_reads_total`: reads of a namespace's TCP socket tables ([`listeners`]).

mod age;
mod cgroup;
mod clock;
mod debug;
mod evaluate;
mod events;
mod exits;
mod heartbeat;
mod listeners;
mod metrics;
mod policy;
pub(crate) mod process;
mod reconcile;
mod release;
mod retry;
mod selector;
pub(crate) mod service;
mod serving;
mod state;
mod table;
mod tls;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

use age::{AgeThreshold, publish_if_old_enough};
pub use cgroup::ContainerRef;
pub use debug::{CommandLines, DiscoverySnapshot, ProcessRow, RetryRow};
use listeners::ListenerCache;
pub use metrics::DiscoveryMetrics;
use policy::Policy;
pub use process::{ProcReader, ProcessIdentity, ProcessInfo, ReadError};
use retry::Retry;
pub use service::ServiceIdentity;
pub use serving::ServingGroup;
use state::Decision;
pub use state::{PodProcesses, ProcessState, Publication};
pub use table::{Corrections, ProcessTable, Upsert};

use crate::{
    config::DiscoveryConfig,
    kernel::{ProcessFilter, TlsProbes},
    pods::PodStore,
};

/// The discovery state.
pub struct Discovery {
    reader: ProcReader,
    table: ProcessTable,
    decisions: BTreeMap<u32, Decision>,
    retries: BTreeMap<u32, Retry>,
    policy: Policy,
    filter: Box<dyn ProcessFilter>,
    metrics: DiscoveryMetrics,
    min_age: AgeThreshold,
    /// The pod watcher's store, when vigil watches Kubernetes (for the `k8s_*` selectors and the
    /// namespace and annotation rules).
    pods: Option<Arc<Mutex<PodStore>>>,
    /// The pod store's generation when processes in pods were last re-evaluated.
    pods_seen: u64,
    listeners: ListenerCache,
    /// Filter bits to clear at the next [`Discovery::apply_releases`].
    released: BTreeSet<u32>,
    ticks_per_second: u64,
    /// The TLS uprobes, attached for captured processes ([`tls`]); none in tests.
    tls: Option<TlsProbes>,
}

impl Discovery {
    pub fn new(
        procfs: &Path,
        config: &DiscoveryConfig,
        filter: Box<dyn ProcessFilter>,
        metrics: DiscoveryMetrics,
    ) -> Self {
        let min_age = AgeThreshold::new(config.min_process_age, config.min_process_age_bounds());
        metrics.min_process_age.set(min_age.current().as_secs_f64());
        Discovery {
            reader: ProcReader::new(procfs),
            table: ProcessTable::default(),
            decisions: BTreeMap::new(),
            retries: BTreeMap::new(),
            policy: Policy::new(config, std::process::id()),
            filter,
            min_age,
            listeners: ListenerCache::new(metrics.socket_table_reads.clone()),
            released: BTreeSet::new(),
            pods: None,
            pods_seen: 0,
            metrics,
            ticks_per_second: procfs::ticks_per_second(),
            tls: None,
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
        self.policy.exclude_namespaces(excluded_namespaces);
        self
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
        self.sync_tls(false);
        self.update_gauges();
    }

    /// Moves every provisional process at least the minimum age old to instrumented.
    fn publish_old_enough(&mut self) {
        let min_age = self.min_age.current();
        for decision in self.decisions.values_mut() {
            publish_if_old_enough(decision, min_age, self.ticks_per_second, &self.metrics);
        }
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
        self.table
            .get(self.policy.own_pid)?
            .container
            .pod_uid
            .as_deref()
    }

    /// The service identity (executable, OpenTelemetry variables) and the cgroup placement of a
    /// captured process.
    pub fn service_of(&self, tgid: u32) -> Option<(&ServiceIdentity, &ContainerRef)> {
        let decision = self.decisions.get(&tgid)?;
        let info = self
            .table
            .get(tgid)
            .filter(|info| info.identity == decision.identity)?;
        Some((&decision.service, &info.container))
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

    pub(super) fn update_gauges(&self) {
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
}

#[cfg(test)]
mod tests;
