//! Selectors compiled for matching: which processes to instrument (`discovery.instrument`) and which never
//! (`discovery.exclude_instrument`). Within a selector every criterion given must match. The `k8s_*`
//! criteria match the pod of the process (by the pod UID in its cgroup): a process outside any pod
//! never matches them, and one whose pod the watcher does not know yet cannot be decided.

use std::collections::{BTreeMap, BTreeSet};

use globset::GlobMatcher;

use super::process::ProcessInfo;
use crate::{
    config::{PortRanges, Selector},
    pods::PodMeta,
};

/// One selector, with its globs compiled.
#[derive(Clone, Debug)]
pub struct CompiledSelector {
    open_ports: Option<PortRanges>,
    exe_path: Option<GlobMatcher>,
    cmd_args: Option<GlobMatcher>,
    container: Option<bool>,
    k8s_namespace: Option<GlobMatcher>,
    k8s_pod_name: Option<GlobMatcher>,
    k8s_deployment_name: Option<GlobMatcher>,
    k8s_owner_name: Option<GlobMatcher>,
    k8s_container_name: Option<GlobMatcher>,
    k8s_pod_labels: Option<BTreeMap<String, GlobMatcher>>,
    k8s_pod_annotations: Option<BTreeMap<String, GlobMatcher>>,
}

/// Whether a process matches a selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Yes,
    No,
    /// The selector has `k8s_*` criteria and the process's pod is not known yet.
    NeedsPod,
}

impl From<&Selector> for CompiledSelector {
    fn from(selector: &Selector) -> Self {
        let glob = |glob: &Option<globset::Glob>| glob.as_ref().map(|glob| glob.compile_matcher());
        let globs = |map: &Option<BTreeMap<String, globset::Glob>>| {
            map.as_ref().map(|map| {
                map.iter()
                    .map(|(key, glob)| (key.clone(), glob.compile_matcher()))
                    .collect()
            })
        };
        CompiledSelector {
            k8s_namespace: glob(&selector.k8s_namespace),
            k8s_pod_name: glob(&selector.k8s_pod_name),
            k8s_deployment_name: glob(&selector.k8s_deployment_name),
            k8s_owner_name: glob(&selector.k8s_owner_name),
            k8s_container_name: glob(&selector.k8s_container_name),
            k8s_pod_labels: globs(&selector.k8s_pod_labels),
            k8s_pod_annotations: globs(&selector.k8s_pod_annotations),
            open_ports: selector.open_ports.clone(),
            exe_path: selector
                .exe_path
                .as_ref()
                .map(|glob| glob.compile_matcher()),
            cmd_args: selector
                .cmd_args
                .as_ref()
                .map(|glob| glob.compile_matcher()),
            container: selector.container,
        }
    }
}

impl CompiledSelector {
    /// Whether matching needs the process's listening ports (reading them costs /proc reads).
    pub fn needs_ports(&self) -> bool {
        self.open_ports.is_some()
    }

    /// Whether the selector has `k8s_*` criteria.
    pub fn needs_pod(&self) -> bool {
        self.k8s_namespace.is_some()
            || self.k8s_pod_name.is_some()
            || self.k8s_deployment_name.is_some()
            || self.k8s_owner_name.is_some()
            || self.k8s_container_name.is_some()
            || self.k8s_pod_labels.is_some()
            || self.k8s_pod_annotations.is_some()
    }

    /// Whether `process`, listening on `ports`, in `pod` (if known), matches every criterion.
    pub fn matches_in(
        &self,
        process: &ProcessInfo,
        ports: &BTreeSet<u16>,
        pod: Option<&PodMeta>,
    ) -> Match {
        if !self.matches(process, ports) {
            return Match::No;
        }
        if !self.needs_pod() {
            return Match::Yes;
        }
        let Some(pod) = pod else {
            return match process.container.pod_uid {
                Some(_) => Match::NeedsPod,
                None => Match::No,
            };
        };
        let is = |glob: &Option<GlobMatcher>, value: Option<&str>| {
            glob.as_ref()
                .is_none_or(|glob| value.is_some_and(|value| glob.is_match(value)))
        };
        let all = |globs: &Option<BTreeMap<String, GlobMatcher>>,
                   map: &BTreeMap<String, String>| {
            globs.as_ref().is_none_or(|globs| {
                globs
                    .iter()
                    .all(|(key, glob)| map.get(key).is_some_and(|value| glob.is_match(value)))
            })
        };
        let owner = pod.owner.as_ref().map(|(_, name)| name.as_str());
        let deployment = pod
            .owner
            .as_ref()
            .filter(|(kind, _)| kind == "Deployment")
            .map(|(_, name)| name.as_str());
        let container = pod
            .container(process.container.container_id.as_deref())
            .map(|container| container.name.as_str());
        let matched = is(&self.k8s_namespace, Some(&pod.namespace))
            && is(&self.k8s_pod_name, Some(&pod.name))
            && is(&self.k8s_deployment_name, deployment)
            && is(&self.k8s_owner_name, owner)
            && is(&self.k8s_container_name, container)
            && all(&self.k8s_pod_labels, &pod.labels)
            && all(&self.k8s_pod_annotations, &pod.annotations);
        match matched {
            true => Match::Yes,
            false => Match::No,
        }
    }

    /// Whether `process`, listening on `ports`, matches every criterion but the `k8s_*` ones.
    fn matches(&self, process: &ProcessInfo, ports: &BTreeSet<u16>) -> bool {
        let exe_matches = self
            .exe_path
            .as_ref()
            .is_none_or(|glob| process.exe.as_deref().is_some_and(|exe| glob.is_match(exe)));
        let cmd_matches = self
            .cmd_args
            .as_ref()
            .is_none_or(|glob| glob.is_match(&process.cmdline));
        let container_matches = self
            .container
            .is_none_or(|wanted| process.container.container_id.is_some() == wanted);
        let ports_match = self
            .open_ports
            .as_ref()
            .is_none_or(|ranges| ports.iter().any(|&port| ranges.contains(port)));
        exe_matches && cmd_matches && container_matches && ports_match
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{ContainerRef, ProcessIdentity};

    fn node(container: bool) -> ProcessInfo {
        ProcessInfo {
            identity: ProcessIdentity {
                pid: 7,
                start_ticks: 1,
            },
            parent_pid: 1,
            ns_pid: None,
            exe: Some("/usr/bin/node".into()),
            cmdline: "node server.js".into(),
            arguments: 1,
            cgroup: None,
            container: ContainerRef {
                container_id: container.then(|| "a".repeat(64)),
                pod_uid: None,
            },
        }
    }

    fn selector(yaml: &str) -> CompiledSelector {
        let selector: Selector = serde_yaml_ng::from_str(yaml).unwrap();
        CompiledSelector::from(&selector)
    }

    #[test]
    fn every_given_criterion_must_match() {
        let ports = BTreeSet::from([8080]);
        assert!(
            selector("{exe_path: '*/node', open_ports: '8000-8999'}").matches(&node(false), &ports)
        );
        assert!(
            !selector("{exe_path: '*/python3', open_ports: '8000-8999'}")
                .matches(&node(false), &ports)
        );
        assert!(!selector("{exe_path: '*/node', open_ports: 9090}").matches(&node(false), &ports));
        assert!(selector("{cmd_args: '*server.js*'}").matches(&node(false), &BTreeSet::new()));
        assert!(selector("{}").matches(&node(false), &BTreeSet::new()));
    }

    #[test]
    fn a_port_selector_waits_for_a_listener() {
        let by_port = selector("{open_ports: '1-65535'}");
        assert!(by_port.needs_ports());
        assert!(!by_port.matches(&node(false), &BTreeSet::new()));
        assert!(by_port.matches(&node(false), &BTreeSet::from([3000])));
    }

    #[test]
    fn container_criterion_tells_pods_from_host() {
        assert!(selector("{container: true}").matches(&node(true), &BTreeSet::new()));
        assert!(!selector("{container: true}").matches(&node(false), &BTreeSet::new()));
        assert!(selector("{container: false}").matches(&node(false), &BTreeSet::new()));
    }

    #[test]
    fn a_process_without_a_readable_exe_never_matches_an_exe_glob() {
        let mut process = node(false);
        process.exe = None;
        assert!(!selector("{exe_path: '*'}").matches(&process, &BTreeSet::new()));
    }

    fn pod(namespace: &str, labels: &[(&str, &str)]) -> PodMeta {
        PodMeta {
            uid: "u1".into(),
            namespace: namespace.into(),
            name: "web-5d8f7c9b4-x2x9z".into(),
            node_name: "node-a".into(),
            phase: "Running".into(),
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            annotations: Default::default(),
            owner: Some(("Deployment".into(), "web".into())),
            replica_set: Some("web-5d8f7c9b4".into()),
            containers: vec![crate::pods::ContainerMeta {
                name: "app".into(),
                container_id: Some("a".repeat(64)),
            }],
            ready_since: None,
        }
    }

    fn in_pod() -> ProcessInfo {
        let mut process = node(true);
        process.container.pod_uid = Some("u1".into());
        process
    }

    #[test]
    fn kubernetes_criteria_match_the_process_pod() {
        let ports = BTreeSet::from([8080]);
        let shop = pod("shop", &[("app", "web"), ("tier", "front")]);
        for yaml in [
            "{k8s_namespace: 'sh*'}",
            "{k8s_deployment_name: web, k8s_container_name: app}",
            "{k8s_owner_name: 'w*', k8s_pod_name: 'web-*'}",
            "{k8s_pod_labels: {app: web, tier: 'f*'}, open_ports: 8080}",
        ] {
            assert_eq!(
                selector(yaml).matches_in(&in_pod(), &ports, Some(&shop)),
                Match::Yes,
                "{yaml}"
            );
        }
        for yaml in [
            "{k8s_namespace: kube-system}",
            "{k8s_pod_labels: {app: web, missing: '*'}}",
            "{k8s_pod_annotations: {team: '*'}}",
            "{k8s_deployment_name: web, open_ports: 9090}",
        ] {
            assert_eq!(
                selector(yaml).matches_in(&in_pod(), &ports, Some(&shop)),
                Match::No,
                "{yaml}"
            );
        }
    }

    #[test]
    fn without_its_pod_a_process_in_a_pod_waits_and_a_host_process_never_matches() {
        let by_namespace = selector("{k8s_namespace: shop}");
        assert_eq!(
            by_namespace.matches_in(&in_pod(), &BTreeSet::new(), None),
            Match::NeedsPod
        );
        assert_eq!(
            by_namespace.matches_in(&node(false), &BTreeSet::new(), None),
            Match::No
        );
        // Criteria without k8s_* never wait.
        assert_eq!(
            selector("{}").matches_in(&in_pod(), &BTreeSet::new(), None),
            Match::Yes
        );
    }
}
