//! The /proc reconcile: every `discovery.reconcile_interval` the table is made to match a full /proc
//! scan (the first scan seeds it), each correction counted, stale filter entries removed, and every
//! process that is not captured (its ports may have changed unseen) or whose executable changed unseen
//! evaluated again.
//!
//! Metrics: `vigil_reconcile_corrections_total{kind}`.

use std::{collections::BTreeMap, time::Instant};

use super::{
    Discovery,
    process::{ProcessIdentity, ReadError},
    retry::{Step, StepError},
    state::ProcessState,
    table::Corrections,
};

impl Discovery {
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
                Err(error) => self.fail(pid, Step::Read, None, StepError::ReadProc(error), 0, now),
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
            self.try_step(pid, Step::Evaluate, None, 0, now);
        }
        self.update_gauges();
        Ok(corrections)
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
                self.release(tgid);
                self.metrics
                    .corrections
                    .with_label_values(&["stale_filter_entry"])
                    .inc();
            }
        }
    }
}
