//! Serving groups, for coverage: the captured processes of each pod (or, outside pods, of each network
//! namespace), with the network namespace they serve in and the ports they serve. A pod's containers
//! share one network namespace, so connections accepted in it are the pod's; where several pods or host
//! processes share one (host network), connections count for the group whose processes serve their
//! port.

use std::collections::{BTreeMap, BTreeSet};

use super::Discovery;

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
}

impl ServingGroup {
    /// Whether connections accepted on `port` of the group's namespace are the group's: the ports its
    /// processes serve, or any port of a pod's namespace when none is known (no port selector).
    pub fn serves(&self, port: u16) -> bool {
        self.ports.contains(&port) || (self.ports.is_empty() && self.pod_uid.is_some())
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
        groups.into_values().collect()
    }
}
