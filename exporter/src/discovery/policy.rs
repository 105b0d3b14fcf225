//! The selection policy, a pure function of a process, the ports it serves, its pod and its parent:
//! vigil itself and opted-out pods ([`crate::pods::rules`]) are excluded, then
//! `discovery.exclude_instrument`, then the first matching `discovery.instrument` selector (or the
//! pod's `vigil.io/instrument: "true"`) captures it; so does being a worker of a captured process
//! (forked by it and running its executable: the workers of node `cluster` and pm2 never listen, the
//! primary hands them connections); a `k8s_*` selector whose pod is not known yet leaves it pending
//! its metadata.

use std::collections::BTreeSet;

use super::{
    process::ProcessInfo,
    selector::{CompiledSelector, Match},
    state::ProcessState,
};
use crate::{
    config::DiscoveryConfig,
    pods::{
        PodMeta,
        rules::{self, INSTRUMENT_ANNOTATION, OptOut},
    },
};

/// The selectors and rules a process is decided by.
pub(super) struct Policy {
    instrument: Vec<CompiledSelector>,
    exclude: Vec<CompiledSelector>,
    /// Whether any selector matches on ports (only then are a process's sockets read).
    pub(super) needs_ports: bool,
    /// vigil's own pid: never captured.
    pub(super) own_pid: u32,
    /// `k8s.excluded_namespaces`: their pods' processes are never captured.
    excluded_namespaces: Vec<String>,
}

impl Policy {
    pub(super) fn new(config: &DiscoveryConfig, own_pid: u32) -> Self {
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
        let needs_ports = instrument
            .iter()
            .chain(&exclude)
            .any(CompiledSelector::needs_ports);
        Policy {
            instrument,
            exclude,
            needs_ports,
            own_pid,
            excluded_namespaces: Vec::new(),
        }
    }

    /// Applies `k8s.excluded_namespaces` too.
    pub(super) fn exclude_namespaces(&mut self, namespaces: &[String]) {
        self.excluded_namespaces = namespaces.to_vec();
    }

    /// What the selectors (and the process's pod) say of a process that serves `ports` and, when
    /// `serving_parent` is set, was forked by that captured process and runs its executable (a worker:
    /// node `cluster`, pm2, a pre-fork server): `Instrumented` for a match or a worker (then captured
    /// provisionally at first), `PendingMetadata` when a `k8s_*` selector needs its pod and the watcher
    /// has not delivered it yet, `Excluded` or `Candidate`; with the reason.
    pub(super) fn verdict(
        &self,
        info: &ProcessInfo,
        ports: &BTreeSet<u16>,
        pod: Option<&PodMeta>,
        serving_parent: Option<u32>,
    ) -> (ProcessState, String) {
        if info.identity.pid == self.own_pid {
            return (ProcessState::Excluded, "vigil itself".to_owned());
        }
        if let Some(pod) = pod {
            match rules::opt_out(pod, &self.excluded_namespaces) {
                Some(OptOut::ExcludedNamespace) => {
                    return (
                        ProcessState::Excluded,
                        format!("namespace {} is in k8s.excluded_namespaces", pod.namespace),
                    );
                }
                Some(OptOut::Annotated) => {
                    return (
                        ProcessState::Excluded,
                        format!("pod annotated {INSTRUMENT_ANNOTATION}: \"false\""),
                    );
                }
                None => {}
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
        if pod.and_then(rules::instrument_annotation) == Some(true) {
            return (
                ProcessState::Instrumented,
                format!("pod annotated {INSTRUMENT_ANNOTATION}: \"true\""),
            );
        }
        if let Some(parent) = serving_parent {
            return (
                ProcessState::Instrumented,
                format!("a worker of captured pid {parent} (forked by it, same executable)"),
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
}
