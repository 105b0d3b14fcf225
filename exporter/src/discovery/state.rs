//! What discovery decides of a process ([`Decision`], [`ProcessState`]), what that means for capture
//! ([`Publication`]), and what it adds up to per pod ([`PodProcesses`]).

use std::{collections::BTreeSet, time::Instant};

use serde::Serialize;

use super::{process::ProcessIdentity, service::ServiceIdentity};

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
    pub(super) const ALL: [ProcessState; 5] = [
        ProcessState::Candidate,
        ProcessState::PendingMetadata,
        ProcessState::Provisional,
        ProcessState::Instrumented,
        ProcessState::Excluded,
    ];

    pub(super) fn label(self) -> &'static str {
        match self {
            ProcessState::Candidate => "candidate",
            ProcessState::PendingMetadata => "pending_metadata",
            ProcessState::Provisional => "provisional",
            ProcessState::Instrumented => "instrumented",
            ProcessState::Excluded => "excluded",
        }
    }

    /// Whether the process's tgid is in the in-kernel filter (it is being captured).
    pub(super) fn is_captured(self) -> bool {
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

/// What discovery decided for one process.
#[derive(Clone, Debug)]
pub(super) struct Decision {
    pub(super) identity: ProcessIdentity,
    pub(super) state: ProcessState,
    pub(super) reason: String,
    pub(super) ports: BTreeSet<u16>,
    pub(super) last_heartbeat: Option<Instant>,
    /// Boot-clock time its filter entry went in (capture started).
    pub(super) captured_boot_ns: Option<u64>,
    /// Boot-clock time of the kernel's exit event, once seen: the end of its lifetime.
    pub(super) exited_boot_ns: Option<u64>,
    /// What names the service it belongs to (its environment is read once it is captured).
    pub(super) service: ServiceIdentity,
    /// Its filter entry could not be written (retried).
    pub(super) attach_failed: bool,
    /// It runs in a pod the watcher had not delivered when this was decided (re-evaluated on the
    /// heartbeat until it has: namespace and annotation rules apply then).
    pub(super) decided_without_pod: bool,
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
