//! Discovery: which processes run on the node, kept true while they come and go.
//!
//! The table is seeded by one /proc scan at start, kept current by the kernel's exec/fork/exit events,
//! and reconciled against a full /proc scan every `discovery.reconcile_interval`. Thread events never
//! touch it: a process leaves only on a `group_dead` exit (or, on kernels without it, any exit) confirmed
//! by /proc, or when a reconcile finds it gone. A /proc read that fails is retried with backoff until it
//! succeeds or the process is gone; nothing is one-shot.
//!
//! Metrics:
//! - `vigil_reconcile_corrections_total{kind}`: corrections a reconcile made (`missed_exec`,
//!   `missed_exit`, `pid_reused`); a non-zero rate means the event path lost something.
//! - `vigil_instrumentation_errors_total{stage,reason}`: failed steps, each retried; stage `read_proc`
//!   with reason `permission_denied`, `incomplete` or `other`.
//! - `vigil_process_table_entries`: processes in the table.

mod process;
mod table;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use vigil_common::{ProcessEvent, ProcessEventKind, process::EXIT_GROUP_DEAD_UNKNOWN};

pub use process::{ProcReader, ProcessIdentity, ProcessInfo, ReadError};
pub use table::{Corrections, ProcessTable, Upsert};

use crate::metrics::register;

/// First retry delay after a failed step; doubled per attempt up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The metric families of this stage.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    corrections: IntCounterVec,
    errors: IntCounterVec,
    table_entries: IntGauge,
}

impl DiscoveryMetrics {
    pub fn register(registry: &Registry) -> Self {
        let corrections = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "vigil_reconcile_corrections_total",
                    "Corrections the /proc reconcile made to the process table, by kind; non-zero means the kernel event path lost something.",
                ),
                &["kind"],
            )
            .expect("static"),
        );
        for kind in ["missed_exec", "missed_exit", "pid_reused"] {
            corrections.with_label_values(&[kind]);
        }
        DiscoveryMetrics {
            corrections,
            errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "vigil_instrumentation_errors_total",
                        "Failed discovery or instrumentation steps, by stage and reason; every one is retried.",
                    ),
                    &["stage", "reason"],
                )
                .expect("static"),
            ),
            table_entries: register(
                registry,
                IntGauge::new("vigil_process_table_entries", "Processes in vigil's process table.")
                    .expect("static"),
            ),
        }
    }
}

/// A step waiting to be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingStep {
    /// Read the process from /proc and record it.
    Read,
    /// The process exited according to the kernel; drop it once /proc agrees.
    ConfirmExit(ProcessIdentity),
}

#[derive(Clone, Debug)]
struct Retry {
    step: PendingStep,
    attempts: u32,
    due: Instant,
    last_error: Option<ReadError>,
}

/// The discovery state: the process table and the steps still to retry.
pub struct Discovery {
    reader: ProcReader,
    table: ProcessTable,
    retries: BTreeMap<u32, Retry>,
    metrics: DiscoveryMetrics,
    ticks_per_second: u64,
}

/// One process as `/debug/discovery` shows it.
#[derive(Serialize)]
struct ProcessView<'a> {
    pid: u32,
    ns_pid: Option<u32>,
    start_ticks: u64,
    parent_pid: u32,
    exe: Option<&'a Path>,
    cmdline: &'a str,
    cgroup: Option<&'a str>,
    age_seconds: f64,
}

impl Discovery {
    pub fn new(procfs: &Path, metrics: DiscoveryMetrics) -> Self {
        Discovery {
            reader: ProcReader::new(procfs),
            table: ProcessTable::default(),
            retries: BTreeMap::new(),
            metrics,
            ticks_per_second: procfs::ticks_per_second(),
        }
    }

    /// A full /proc scan: processes that vanish mid-scan are skipped, other failures are queued for retry.
    fn scan(&mut self, now: Instant) -> Result<Vec<ProcessInfo>, ReadError> {
        let mut live = Vec::new();
        for pid in self.reader.pids()? {
            match self.reader.read(pid) {
                Ok(info) => live.push(info),
                Err(ReadError::NotFound) => {}
                Err(error) => self.schedule(pid, PendingStep::Read, error, now),
            }
        }
        Ok(live)
    }

    /// Makes the table match /proc and counts the corrections. The first call seeds the table (its
    /// insertions are not corrections).
    pub fn reconcile(&mut self, now: Instant) -> Result<Corrections, ReadError> {
        let live = self.scan(now)?;
        let seeding = self.table.is_empty();
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
        self.metrics.table_entries.set(self.table.len() as i64);
        Ok(corrections)
    }

    /// Applies kernel events to the table.
    pub fn handle(&mut self, events: &[ProcessEvent], now: Instant) {
        for event in events {
            match ProcessEventKind::from_u32(event.kind) {
                Some(
                    ProcessEventKind::Exec
                    | ProcessEventKind::Fork
                    | ProcessEventKind::ForkUnclassified,
                ) => {
                    self.retries.remove(&event.tgid);
                    self.try_step(event.tgid, PendingStep::Read, 0, now);
                }
                Some(ProcessEventKind::Exit) => {
                    let group_dead = event.flags & vigil_common::process::EXIT_GROUP_DEAD != 0;
                    let unconfirmed = event.flags & EXIT_GROUP_DEAD_UNKNOWN != 0;
                    if let Some(info) = self.table.get(event.tgid)
                        && (group_dead || unconfirmed)
                    {
                        let step = PendingStep::ConfirmExit(info.identity);
                        self.try_step(event.tgid, step, 0, now);
                    }
                }
                Some(ProcessEventKind::ThreadSpawn) | None => {}
            }
        }
        self.metrics.table_entries.set(self.table.len() as i64);
    }

    /// Tries again every step whose backoff has passed.
    pub fn retry_due(&mut self, now: Instant) {
        let due: Vec<(u32, Retry)> = self
            .retries
            .iter()
            .filter(|(_, retry)| retry.due <= now)
            .map(|(pid, retry)| (*pid, retry.clone()))
            .collect();
        for (pid, retry) in due {
            self.retries.remove(&pid);
            self.try_step(pid, retry.step, retry.attempts, now);
        }
        self.metrics.table_entries.set(self.table.len() as i64);
    }

    fn try_step(&mut self, pid: u32, step: PendingStep, attempts: u32, now: Instant) {
        let result = match step {
            PendingStep::Read => match self.reader.read(pid) {
                Ok(info) => {
                    if let Upsert::Replaced(old) = self.table.upsert(info) {
                        tracing::debug!(pid, old_start_ticks = old.start_ticks, "pid reused");
                    }
                    Ok(())
                }
                // Gone, or a thread: nothing to record. A reused pid's old owner goes too.
                Err(ReadError::NotFound | ReadError::Thread { .. }) => Ok(()),
                Err(error) => Err(error),
            },
            PendingStep::ConfirmExit(identity) => match self.reader.is_alive(identity) {
                Ok(false) => {
                    self.table.remove(identity);
                    Ok(())
                }
                // Still exiting: the kernel fires the exit before the task is reaped.
                Ok(true) => Err(ReadError::Incomplete(format!("pid {pid} still exiting"))),
                Err(error) => Err(error),
            },
        };
        if let Err(error) = result {
            if !matches!(step, PendingStep::ConfirmExit(_)) {
                self.metrics
                    .errors
                    .with_label_values(&["read_proc", error.reason()])
                    .inc();
            }
            self.schedule_after(pid, step, error, attempts + 1, now);
        }
    }

    fn schedule(&mut self, pid: u32, step: PendingStep, error: ReadError, now: Instant) {
        self.metrics
            .errors
            .with_label_values(&["read_proc", error.reason()])
            .inc();
        self.schedule_after(pid, step, error, 1, now);
    }

    fn schedule_after(
        &mut self,
        pid: u32,
        step: PendingStep,
        error: ReadError,
        attempts: u32,
        now: Instant,
    ) {
        let delay = RETRY_FIRST
            .saturating_mul(1 << attempts.min(16))
            .min(RETRY_MAX);
        tracing::debug!(pid, ?step, attempts, %error, ?delay, "step failed; retrying");
        self.retries.insert(
            pid,
            Retry {
                step,
                attempts,
                due: now + delay,
                last_error: Some(error),
            },
        );
    }

    /// The table for `/debug/discovery`.
    pub fn to_json(&self) -> serde_json::Value {
        let now_ticks = boot_time_ticks(self.ticks_per_second);
        let processes: Vec<ProcessView> = self
            .table
            .iter()
            .map(|info| ProcessView {
                pid: info.identity.pid,
                ns_pid: info.ns_pid,
                start_ticks: info.identity.start_ticks,
                parent_pid: info.parent_pid,
                exe: info.exe.as_deref(),
                cmdline: &info.cmdline,
                cgroup: info.cgroup.as_deref(),
                age_seconds: now_ticks.saturating_sub(info.identity.start_ticks) as f64
                    / self.ticks_per_second as f64,
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
                    "last_error": retry.last_error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        serde_json::json!({ "processes": processes, "pending_retries": retries })
    }
}

/// Time since boot in clock ticks, the unit of `/proc/PID/stat` start times.
fn boot_time_ticks(ticks_per_second: u64) -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    now.tv_sec as u64 * ticks_per_second + now.tv_nsec as u64 * ticks_per_second / 1_000_000_000
}
