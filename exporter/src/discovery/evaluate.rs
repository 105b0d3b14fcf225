//! Evaluating one process: the ports it serves (when a selector needs them), its pod, whether it is a
//! worker of a captured parent, the selection policy's verdict ([`super::policy`]), and applying that
//! to the in-kernel filter: a process that matches is captured at once (provisional until the minimum
//! age, see [`super::age`]), one that no longer does leaves the filter.
//!
//! Metrics: `vigil_instrumentation_latency_seconds`, `vigil_published_processes_total`.

use std::{collections::BTreeSet, time::Instant};

use super::{
    Discovery,
    age::publish_if_old_enough,
    clock::boot_time_ns,
    process::{ProcessInfo, ReadError},
    retry::{Step, StepError},
    service::ServiceIdentity,
    state::{Decision, ProcessState},
};

impl Discovery {
    /// Decides the state of `pid` (in the table) and applies it to the filter.
    pub(super) fn evaluate(
        &mut self,
        pid: u32,
        trigger: Option<u64>,
        now: Instant,
    ) -> Result<(), StepError> {
        let Some(info) = self.table.get(pid).cloned() else {
            return Ok(());
        };
        let ports = match self.policy.needs_ports {
            true => match self.listeners.ports_of(&self.reader, pid) {
                Ok(ports) => ports,
                Err(ReadError::NotFound) => return self.confirm_exit(info.identity, now),
                Err(error) => return Err(StepError::ReadPorts(error)),
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
        let serving_parent = self.serving_parent(&info);
        let (verdict, reason) = self.policy.verdict(&info, &ports, pod, serving_parent);
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
            // Read again on every evaluation that captures: an exec changes the program and its
            // environment.
            service: match captures {
                true => self.service_identity(&info),
                false => ServiceIdentity::executable_only(&info),
            },
            attach_failed: false,
            decided_without_pod,
        };
        let mut newly_captured = false;
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
                if let Err(error) = self.track(pid) {
                    decision.state = ProcessState::Candidate;
                    decision.attach_failed = true;
                    decision.reason = format!("filter insert failed: {error}");
                    self.decisions.insert(pid, decision);
                    return Err(error.into());
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
                // The command line is redacted: its arguments may carry secrets, and logs travel.
                tracing::info!(pid, command = %info.redacted_command_line(), "instrumented");
                newly_captured = true;
            }
            (false, true) => self.release(pid),
            // What the kernel did before discovery saw the process (its capture at a `listen`, or at
            // a fork by a captured parent) is undone by the handler of that event, which knows the
            // evaluation answers it: an evaluation for another reason may read a listening-socket
            // table from before the `listen`, and must not release what that `listen` captured.
            (false, false) => {}
        }
        publish_if_old_enough(
            &mut decision,
            self.min_age.current(),
            self.ticks_per_second,
            &self.metrics,
        );
        self.decisions.insert(pid, decision);
        if newly_captured {
            self.capture_workers_of(&info, now);
        }
        Ok(())
    }

    /// Evaluates again the children of a process just captured that run its executable: workers it
    /// forked before it matched (a node `cluster` primary forks its workers before it listens, and the
    /// kernel captures only what a captured process forks).
    fn capture_workers_of(&mut self, parent: &ProcessInfo, now: Instant) {
        let workers: Vec<u32> = self
            .table
            .iter()
            .filter(|child| child.parent_pid == parent.identity.pid && child.exe == parent.exe)
            .map(|child| child.identity.pid)
            .filter(|child| {
                self.decisions
                    .get(child)
                    .is_none_or(|decision| !decision.state.is_captured())
            })
            .collect();
        for worker in workers {
            self.try_step(worker, Step::Evaluate, None, 0, now);
        }
    }

    /// The service identity of a process about to be captured: its executable, and the OpenTelemetry
    /// variables of its environment when it can be read (when not, the executable alone; logged).
    fn service_identity(&self, info: &ProcessInfo) -> ServiceIdentity {
        match self.reader.environment(info.identity.pid) {
            Ok(environment) => ServiceIdentity::of(info, &environment),
            Err(error) => {
                tracing::debug!(pid = info.identity.pid, %error, "environment unreadable; service named by its executable");
                ServiceIdentity::executable_only(info)
            }
        }
    }

    /// The captured parent of `info` when `info` is its worker: forked by it and running the same
    /// executable.
    fn serving_parent(&self, info: &ProcessInfo) -> Option<u32> {
        let parent = self.table.get(info.parent_pid)?;
        let captured = self
            .decisions
            .get(&parent.identity.pid)
            .is_some_and(|decision| {
                decision.identity == parent.identity && decision.state.is_captured()
            });
        (captured && parent.exe.is_some() && parent.exe == info.exe).then_some(parent.identity.pid)
    }
}
