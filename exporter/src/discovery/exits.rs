//! Processes leaving the table: an exit confirmed by /proc, a process found gone, a pid reused. Their
//! filter entry goes with them; a captured one teaches the minimum age its lifetime, and one that dies
//! provisional is counted as short-lived (its held data is dropped by capture).
//!
//! Metrics: `vigil_short_lived_processes_total`.

use std::time::{Duration, Instant};

use super::{
    Discovery,
    clock::{boot_time_ns, start_boot_ns},
    process::ProcessIdentity,
    retry::StepError,
    state::ProcessState,
};

impl Discovery {
    pub(super) fn confirm_exit(
        &mut self,
        identity: ProcessIdentity,
        now: Instant,
    ) -> Result<(), StepError> {
        match self.reader.is_alive(identity) {
            Ok(false) => {
                self.drop_process(identity, now);
                Ok(())
            }
            // Still exiting: the kernel fires the exit before the task is reaped. Not an error.
            Ok(true) => Err(StepError::StillExiting(identity.pid)),
            Err(error) => Err(StepError::ReadProc(error)),
        }
    }

    /// Drops a process /proc says is gone: its table entry, its decision and its filter entry. Its
    /// children, reparented by the kernel (to a subreaper or their namespace's init), are re-read so the
    /// tree shows their new parent.
    pub(super) fn drop_process(&mut self, identity: ProcessIdentity, now: Instant) {
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
    pub(super) fn forget_decision(&mut self, identity: ProcessIdentity, now: Instant) {
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
        self.release(identity.pid);
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

    /// Forgets the processes no longer in the table.
    pub(super) fn forget_departed(&mut self, now: Instant) {
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
}
