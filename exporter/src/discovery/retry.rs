//! Nothing is one-shot: every discovery step ([`Step`]) that fails is recorded with its stage and reason
//! and tried again with exponential backoff ([`RETRY_FIRST`] doubling up to [`RETRY_MAX`]) until it
//! succeeds or the process is gone.
//!
//! Metrics: `vigil_instrumentation_errors_total{stage,reason}`.

use std::time::{Duration, Instant};

use super::{
    Discovery,
    process::{ProcessIdentity, ReadError},
    table::Upsert,
};
use crate::kernel::FilterError;

/// First retry delay after a failed step; doubled per attempt up to [`RETRY_MAX`].
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(20);
pub(super) const RETRY_MAX: Duration = Duration::from_secs(2);

/// A step waiting to be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
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
pub(super) struct Retry {
    pub(super) step: Step,
    pub(super) attempts: u32,
    pub(super) due: Instant,
    /// Boot-clock time of the event that started this step, for the latency histogram.
    pub(super) trigger_boot_ns: Option<u64>,
    pub(super) last_error: String,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    /// Reading the process from /proc.
    #[error("{0}")]
    ReadProc(ReadError),
    /// Reading its listening ports.
    #[error("{0}")]
    ReadPorts(ReadError),
    /// Writing its filter entry.
    #[error("{0}")]
    FilterInsert(#[from] FilterError),
    /// The kernel reported it gone and /proc still shows it: expected for a moment (the exit event fires
    /// before the task is reaped), retried, not an error.
    #[error("pid {0} still exiting")]
    StillExiting(u32),
}

impl StepError {
    /// The `stage` label of `vigil_instrumentation_errors_total`.
    fn stage(&self) -> &'static str {
        match self {
            StepError::ReadProc(_) => "read_proc",
            StepError::ReadPorts(_) => "read_ports",
            StepError::FilterInsert(_) => "filter_insert",
            StepError::StillExiting(_) => "confirm_exit",
        }
    }

    /// The `reason` label of `vigil_instrumentation_errors_total`.
    fn reason(&self) -> &'static str {
        match self {
            StepError::ReadProc(error) | StepError::ReadPorts(error) => error.reason(),
            StepError::FilterInsert(_) => "map_update",
            StepError::StillExiting(_) => "still_exiting",
        }
    }
}

impl Discovery {
    pub(super) fn try_step(
        &mut self,
        pid: u32,
        step: Step,
        trigger: Option<u64>,
        attempts: u32,
        now: Instant,
    ) {
        let result = match step {
            Step::Read => match self.reader.read(pid) {
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
                Err(error) => Err(StepError::ReadProc(error)),
            },
            Step::Evaluate => self.evaluate(pid, trigger, now),
            Step::ConfirmExit(identity) => self.confirm_exit(identity, now),
            Step::CheckExit(identity) => match self.confirm_exit(identity, now) {
                Err(StepError::StillExiting(_)) => Ok(()),
                other => other,
            },
        };
        if let Err(error) = result {
            self.fail(pid, step, trigger, error, attempts + 1, now);
        }
    }

    pub(super) fn fail(
        &mut self,
        pid: u32,
        step: Step,
        trigger: Option<u64>,
        error: StepError,
        attempts: u32,
        now: Instant,
    ) {
        if !matches!(error, StepError::StillExiting(_)) {
            self.metrics
                .errors
                .with_label_values(&[error.stage(), error.reason()])
                .inc();
        }
        let attempts = attempts.max(1);
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
                trigger_boot_ns: trigger,
                last_error: error.to_string(),
            },
        );
    }
}
