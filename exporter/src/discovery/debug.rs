//! `/debug/discovery`: a snapshot of the process table, taken under the discovery lock (a copy of plain
//! rows) and serialised by the admin server after the lock is released.

use std::{collections::BTreeSet, path::PathBuf, time::Instant};

use serde::Serialize;

use super::{
    Discovery,
    clock::{boot_time_ns, start_boot_ns},
    state::ProcessState,
};

/// How `/debug/discovery` shows command lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandLines {
    /// Whole (`web.debug_command_lines: true`).
    Whole,
    /// The executable and the argument count: `/usr/bin/python3 [+3 arguments]`.
    Redacted,
}

/// The process table as `/debug/discovery` shows it.
#[derive(Debug, Serialize)]
pub struct DiscoverySnapshot {
    pub min_process_age_seconds: f64,
    pub processes: Vec<ProcessRow>,
    pub pending_retries: Vec<RetryRow>,
}

/// One process of the table and what was decided of it.
#[derive(Debug, Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub ns_pid: Option<u32>,
    pub start_ticks: u64,
    pub parent_pid: u32,
    pub exe: Option<PathBuf>,
    /// Whole or redacted, as [`CommandLines`] says.
    pub cmdline: String,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// `namespace/name` of its pod, when the pod watcher knows it.
    pub pod: Option<String>,
    pub state: Option<ProcessState>,
    pub reason: Option<String>,
    pub listening_ports: Option<BTreeSet<u16>>,
    /// In whole clock ticks (1/100 s on most kernels).
    pub age_seconds: f64,
    pub capture_started_after_seconds: Option<f64>,
    pub last_heartbeat_seconds_ago: Option<f64>,
    /// Its TLS probes, when captured: attached to which binary, none mapped, or why attaching failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
}

/// A step waiting to be tried again.
#[derive(Debug, Serialize)]
pub struct RetryRow {
    pub pid: u32,
    pub step: String,
    pub attempts: u32,
    pub last_error: String,
}

impl Discovery {
    /// The table for `/debug/discovery`, command lines shown as `command_lines` says.
    pub fn snapshot(&self, now: Instant, command_lines: CommandLines) -> DiscoverySnapshot {
        let ticks_per_second = self.ticks_per_second;
        let now_ticks =
            (u128::from(boot_time_ns()) * u128::from(ticks_per_second) / 1_000_000_000) as u64;
        let pods = self
            .pods
            .as_ref()
            .map(|pods| pods.lock().expect("pod store lock"));
        let processes = self
            .table
            .iter()
            .map(|info| {
                let decision = self
                    .decisions
                    .get(&info.identity.pid)
                    .filter(|decision| decision.identity == info.identity);
                ProcessRow {
                    pid: info.identity.pid,
                    ns_pid: info.ns_pid,
                    start_ticks: info.identity.start_ticks,
                    parent_pid: info.parent_pid,
                    exe: info.exe.clone(),
                    cmdline: match command_lines {
                        CommandLines::Whole => info.cmdline.clone(),
                        CommandLines::Redacted => info.redacted_command_line(),
                    },
                    cgroup: info.cgroup.clone(),
                    container_id: info.container.container_id.clone(),
                    pod_uid: info.container.pod_uid.clone(),
                    pod: pods
                        .as_ref()
                        .zip(info.container.pod_uid.as_deref())
                        .and_then(|(pods, uid)| pods.get(uid))
                        .map(|pod| format!("{}/{}", pod.namespace, pod.name)),
                    state: decision.map(|decision| decision.state),
                    reason: decision.map(|decision| decision.reason.clone()),
                    listening_ports: decision.map(|decision| decision.ports.clone()),
                    age_seconds: now_ticks.saturating_sub(info.identity.start_ticks) as f64
                        / ticks_per_second as f64,
                    capture_started_after_seconds: decision
                        .and_then(|decision| decision.captured_boot_ns)
                        .map(|at| {
                            at.saturating_sub(start_boot_ns(info.identity, ticks_per_second)) as f64
                                / 1e9
                        }),
                    last_heartbeat_seconds_ago: decision
                        .and_then(|decision| decision.last_heartbeat)
                        .map(|at| now.duration_since(at).as_secs_f64()),
                    tls: self.tls_state(info.identity.pid),
                }
            })
            .collect();
        let pending_retries = self
            .retries
            .iter()
            .map(|(pid, retry)| RetryRow {
                pid: *pid,
                step: format!("{:?}", retry.step),
                attempts: retry.attempts,
                last_error: retry.last_error.clone(),
            })
            .collect();
        DiscoverySnapshot {
            min_process_age_seconds: self.min_age.current().as_secs_f64(),
            processes,
            pending_retries,
        }
    }
}
