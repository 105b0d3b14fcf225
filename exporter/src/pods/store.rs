//! The pods of this node as vigil needs them: the fields of a `Pod` that matter here and nothing else,
//! with the owner resolved by the controllers' naming rules (ReplicaSet → Deployment, Job → CronJob);
//! the watcher replaces that with the API's answer when it can get one.

use std::{
    collections::{BTreeMap, HashMap},
    time::SystemTime,
};

use k8s_openapi::api::core::v1::Pod;

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// 64 hex digits, without the runtime prefix (`containerd://`); `None` until it has started.
    pub container_id: Option<String>,
}

/// A pod, stripped to what vigil uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The controller that owns the pod, after resolution: kind (`Deployment`, `StatefulSet`,
    /// `DaemonSet`, `CronJob`, `Job`, `ReplicaSet`, …) and name.
    pub owner: Option<(String, String)>,
    /// The ReplicaSet between the pod and its Deployment, if any.
    pub replica_set: Option<String>,
    pub containers: Vec<ContainerMeta>,
    /// Since when the pod's `Ready` condition has been true, if it is.
    pub ready_since: Option<SystemTime>,
}

impl PodMeta {
    /// Strips `pod` to a `PodMeta`; `None` without the identity fields every pod has.
    pub fn from_pod(pod: &Pod) -> Option<PodMeta> {
        let metadata = &pod.metadata;
        let labels = metadata.labels.clone().unwrap_or_default();
        let controller = metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .or_else(|| metadata.owner_references.iter().flatten().next());
        let (owner, replica_set) = match controller {
            Some(owner) if owner.kind == "ReplicaSet" => {
                match deployment_of_replica_set(&owner.name, labels.get("pod-template-hash")) {
                    Some(deployment) => (
                        Some(("Deployment".to_owned(), deployment)),
                        Some(owner.name.clone()),
                    ),
                    None => (Some(("ReplicaSet".to_owned(), owner.name.clone())), None),
                }
            }
            Some(owner) if owner.kind == "Job" => match cron_job_of_job(&owner.name) {
                Some(cron_job) => (Some(("CronJob".to_owned(), cron_job)), None),
                None => (Some(("Job".to_owned(), owner.name.clone())), None),
            },
            Some(owner) => (Some((owner.kind.clone(), owner.name.clone())), None),
            None => (None, None),
        };
        let status = pod.status.as_ref();
        let containers = status
            .and_then(|status| status.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|container| ContainerMeta {
                name: container.name.clone(),
                container_id: container
                    .container_id
                    .as_deref()
                    .map(|id| id.rsplit("://").next().unwrap_or(id).to_owned()),
            })
            .collect();
        let ready_since = status
            .and_then(|status| status.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|condition| condition.type_ == "Ready" && condition.status == "True")
            .and_then(|condition| condition.last_transition_time.as_ref())
            .map(|time| SystemTime::from(time.0));
        Some(PodMeta {
            uid: metadata.uid.clone()?,
            namespace: metadata.namespace.clone()?,
            name: metadata.name.clone()?,
            node_name: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.node_name.clone())
                .unwrap_or_default(),
            phase: status
                .and_then(|status| status.phase.clone())
                .unwrap_or_else(|| "Unknown".to_owned()),
            labels,
            annotations: metadata.annotations.clone().unwrap_or_default(),
            owner,
            replica_set,
            containers,
            ready_since,
        })
    }
}

impl PodMeta {
    /// Its started container with id `container_id` (`None` for a process outside any container).
    pub fn container(&self, container_id: Option<&str>) -> Option<&ContainerMeta> {
        let container_id = container_id?;
        self.containers
            .iter()
            .find(|known| known.container_id.as_deref() == Some(container_id))
    }
}

/// A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
fn deployment_of_replica_set(replica_set: &str, template_hash: Option<&String>) -> Option<String> {
    let hash = template_hash?;
    replica_set
        .strip_suffix(hash.as_str())?
        .strip_suffix('-')
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// A CronJob names its Jobs `<cronjob>-<scheduled time in minutes>`.
fn cron_job_of_job(job: &str) -> Option<String> {
    let (cron_job, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= 8 && suffix.bytes().all(|byte| byte.is_ascii_digit()) && !cron_job.is_empty())
        .then(|| cron_job.to_owned())
}

/// Whether the store reflects the API server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// Before the first list completes.
    #[default]
    Listing,
    /// Listed, and watched since.
    Current,
    /// The watch failed, and the list after it too: the API server is unreachable (or refuses vigil)
    /// until a list completes. The pods are those known before; pods created, changed or deleted
    /// since are not seen.
    Stale,
}

/// The pods the watcher knows, by UID.
#[derive(Debug, Default)]
pub struct PodStore {
    pods: HashMap<String, PodMeta>,
    /// Bumped on every change, so that readers can tell whether to look again.
    generation: u64,
    freshness: Freshness,
    /// The node the pods run on (the `k8s_node_name` label).
    node_name: String,
}

impl PodStore {
    /// An empty store of the pods of `node_name`, listing.
    pub fn for_node(node_name: &str) -> PodStore {
        PodStore {
            node_name: node_name.to_owned(),
            ..PodStore::default()
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// The watch failed: what the store holds may be out of date until the next full list.
    pub fn mark_stale(&mut self) {
        self.freshness = Freshness::Stale;
    }

    pub fn apply(&mut self, pod: PodMeta) {
        if self.pods.get(&pod.uid) != Some(&pod) {
            self.pods.insert(pod.uid.clone(), pod);
            self.generation += 1;
        }
    }

    pub fn delete(&mut self, uid: &str) {
        if self.pods.remove(uid).is_some() {
            self.generation += 1;
        }
    }

    /// Replaces everything (after a full list): the store is current.
    pub fn replace(&mut self, pods: Vec<PodMeta>) {
        self.pods = pods.into_iter().map(|pod| (pod.uid.clone(), pod)).collect();
        self.generation += 1;
        self.freshness = Freshness::Current;
    }

    /// Changes so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, uid: &str) -> Option<&PodMeta> {
        self.pods.get(uid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PodMeta> {
        self.pods.values()
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> PodMeta {
        PodMeta::from_pod(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn owned_by(kind: &str, name: &str, labels: serde_json::Value) -> PodMeta {
        pod(serde_json::json!({
            "metadata": {
                "uid": "u1", "namespace": "shop", "name": "web-1", "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "o1", "controller": true}],
            },
            "spec": {"nodeName": "node-a", "containers": []},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
                    "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                }],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-24T10:00:00Z"}],
            },
        }))
    }

    #[test]
    fn a_replica_set_resolves_to_its_deployment() {
        let meta = owned_by(
            "ReplicaSet",
            "web-7d4b9c8f6",
            serde_json::json!({"pod-template-hash": "7d4b9c8f6"}),
        );
        assert_eq!(meta.owner, Some(("Deployment".into(), "web".into())));
        assert_eq!(meta.replica_set.as_deref(), Some("web-7d4b9c8f6"));
        // Without the hash label the name rule cannot be trusted: the ReplicaSet is the owner.
        let meta = owned_by("ReplicaSet", "web-7d4b9c8f6", serde_json::json!({}));
        assert_eq!(
            meta.owner,
            Some(("ReplicaSet".into(), "web-7d4b9c8f6".into()))
        );
    }

    #[test]
    fn a_job_resolves_to_its_cron_job_and_others_stay() {
        let meta = owned_by("Job", "report-29412345", serde_json::json!({}));
        assert_eq!(meta.owner, Some(("CronJob".into(), "report".into())));
        let meta = owned_by("Job", "migrate", serde_json::json!({}));
        assert_eq!(meta.owner, Some(("Job".into(), "migrate".into())));
        let meta = owned_by("StatefulSet", "db", serde_json::json!({}));
        assert_eq!(meta.owner, Some(("StatefulSet".into(), "db".into())));
    }

    #[test]
    fn container_ids_lose_their_runtime_prefix_and_readiness_is_kept() {
        let meta = owned_by("DaemonSet", "agent", serde_json::json!({}));
        assert_eq!(
            meta.containers[0].container_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert_eq!(meta.phase, "Running");
        assert_eq!(meta.node_name, "node-a");
        assert!(meta.ready_since.is_some());
    }
}
