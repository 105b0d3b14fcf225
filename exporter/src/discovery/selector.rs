//! Selectors compiled for matching: which processes to instrument (`discovery.instrument`) and which never
//! (`discovery.exclude_instrument`). Within a selector every criterion given must match.

use std::collections::BTreeSet;

use globset::GlobMatcher;

use super::process::ProcessInfo;
use crate::config::{PortRanges, Selector};

/// One selector, with its globs compiled.
#[derive(Clone, Debug)]
pub struct CompiledSelector {
    open_ports: Option<PortRanges>,
    exe_path: Option<GlobMatcher>,
    cmd_args: Option<GlobMatcher>,
    container: Option<bool>,
}

impl From<&Selector> for CompiledSelector {
    fn from(selector: &Selector) -> Self {
        CompiledSelector {
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

    /// Whether `process`, listening on `ports`, matches every criterion of this selector.
    pub fn matches(&self, process: &ProcessInfo, ports: &BTreeSet<u16>) -> bool {
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
            cgroup: None,
            container: ContainerRef {
                container_id: container.then(|| "a".repeat(64)),
                pod_uid: None,
            },
        }
    }

    fn selector(yaml: &str) -> CompiledSelector {
        let selector: Selector = serde_yaml::from_str(yaml).unwrap();
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
}
