//! The heartbeat: every `discovery.heartbeat_interval` each captured process is checked alive with the
//! same start time and still in the filter (its entry restored when not); processes in pods are
//! evaluated again when the pods changed, and those decided without their pod until it arrives.
//!
//! Metrics: `vigil_heartbeat_failures_total{reason}`.

use std::time::Instant;

use super::{Discovery, process::ProcessIdentity, retry::Step, state::ProcessState};

impl Discovery {
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
            self.try_step(pid, Step::Evaluate, None, 0, now);
        }
    }

    /// Confirms every captured process is alive (same start time, not a zombie) and still in the
    /// filter; drops the dead and repairs missing entries.
    pub fn heartbeat(&mut self, now: Instant) {
        self.reevaluate_if_pods_changed(now);
        self.sync_tls(true);
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
                if let Err(error) = self.track(identity.pid) {
                    self.fail(identity.pid, Step::Evaluate, None, error.into(), 0, now);
                    continue;
                }
            }
            if let Some(decision) = self.decisions.get_mut(&identity.pid) {
                decision.last_heartbeat = Some(now);
                if decision.state == ProcessState::PendingMetadata || decision.decided_without_pod {
                    // Its pod may have arrived since.
                    self.try_step(identity.pid, Step::Evaluate, None, 0, now);
                }
            }
        }
        self.update_gauges();
    }
}
