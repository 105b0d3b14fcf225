//! Serving groups, for coverage: the captured processes of each pod (or, outside pods, of each network
//! namespace), with the network namespace they serve in and the ports they serve. A pod's containers
//! share one network namespace, so connections accepted in it are the pod's; where several pods or host
//! processes share one (host network), connections count for the group whose processes serve their
//! port. Those ports are known from the port selectors; without one, they are read here for the groups
//! of a shared namespace (the host's, or one several groups are in), so that a host-network pod never
//! claims the node's other connections.

use std::collections::{BTreeMap, BTreeSet};

use super::{Discovery, listeners::ListenerCache};

/// The captured processes of one pod (or of one network namespace, outside pods).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServingGroup {
    /// The namespace's inode (`/proc/PID/ns/net`).
    pub netns: u64,
    /// The pod UID; `None` for processes outside pods.
    pub pod_uid: Option<String>,
    pub tgids: Vec<u32>,
    /// The ports they serve (listen on, or hold connections accepted on).
    pub ports: BTreeSet<u16>,
    /// Whether other groups or the host's own processes serve in the same namespace: its connections
    /// are the group's only on its ports.
    pub shared_namespace: bool,
}

impl ServingGroup {
    /// Whether connections accepted on `port` of the group's namespace are the group's: the ports its
    /// processes serve, or any port of a pod's own namespace when none is known (no port selector).
    pub fn serves(&self, port: u16) -> bool {
        self.ports.contains(&port)
            || (self.ports.is_empty() && self.pod_uid.is_some() && !self.shared_namespace)
    }
}

impl Discovery {
    /// The captured processes grouped by pod and network namespace (one /proc read per captured
    /// process).
    pub fn serving_groups(&self) -> Vec<ServingGroup> {
        let mut groups: BTreeMap<(u64, Option<&str>), ServingGroup> = BTreeMap::new();
        for decision in self
            .decisions
            .values()
            .filter(|decision| decision.state.is_captured())
        {
            let pid = decision.identity.pid;
            let Some(info) = self
                .table
                .get(pid)
                .filter(|info| info.identity == decision.identity)
            else {
                continue;
            };
            // A process gone meanwhile, or unreadable: it serves nothing now.
            let Ok(netns) = self.reader.net_namespace(pid) else {
                continue;
            };
            let pod_uid = info.container.pod_uid.as_deref();
            let group = groups
                .entry((netns, pod_uid))
                .or_insert_with(|| ServingGroup {
                    netns,
                    pod_uid: pod_uid.map(str::to_owned),
                    ..ServingGroup::default()
                });
            group.tgids.push(pid);
            group.ports.extend(&decision.ports);
        }
        let mut groups: Vec<ServingGroup> = groups.into_values().collect();
        self.mark_shared_namespaces(&mut groups);
        groups
    }

    /// Marks the groups of a shared namespace (the host's: that of pid 1, or one several groups are
    /// in), and reads the ports of those that have none from the port selectors.
    fn mark_shared_namespaces(&self, groups: &mut [ServingGroup]) {
        let host = self.reader.net_namespace(1).ok();
        let mut groups_per_namespace: BTreeMap<u64, usize> = BTreeMap::new();
        for group in groups.iter() {
            *groups_per_namespace.entry(group.netns).or_default() += 1;
        }
        // Served sockets by namespace, read once per call, as the port selectors read them.
        let mut listeners = ListenerCache::new(self.metrics.socket_table_reads.clone());
        for group in groups.iter_mut() {
            group.shared_namespace =
                Some(group.netns) == host || groups_per_namespace[&group.netns] > 1;
            if !group.shared_namespace || !group.ports.is_empty() {
                continue;
            }
            for &tgid in &group.tgids {
                // A process gone or unreadable meanwhile serves nothing now.
                if let Ok(ports) = listeners.ports_of(&self.reader, tgid) {
                    group.ports.extend(ports);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_without_known_ports_claims_its_own_namespace_only() {
        let own = ServingGroup {
            netns: 1,
            pod_uid: Some("uid".to_owned()),
            ..ServingGroup::default()
        };
        assert!(own.serves(8080), "any port of the pod's own namespace");
        let shared = ServingGroup {
            shared_namespace: true,
            ..own.clone()
        };
        assert!(!shared.serves(8080), "host network: only its ports");
        let shared_with_port = ServingGroup {
            ports: BTreeSet::from([8080]),
            ..shared
        };
        assert!(shared_with_port.serves(8080));
        assert!(!shared_with_port.serves(9090));
        let host_process = ServingGroup {
            pod_uid: None,
            ..own
        };
        assert!(!host_process.serves(8080), "outside pods: only its ports");
    }
}
