//! Resolving the identity labels of a process's series ([`ServiceLabels`]): `service_name`,
//! `service_namespace` and the `k8s_*` labels of its pod, joined by the pod UID and container id of its
//! cgroup.
//!
//! A process in a pod the watcher does not know yet, or whose container the pod's statuses do not list
//! yet, is *pending metadata*: its requests are held, not published without their pod labels, until
//! the join holds. Without Kubernetes (or for a host process) the k8s labels are empty. While the API
//! server is unreachable (the pod store is [`Freshness::Stale`]), a process of a pod vigil does not
//! know is not held for as long as the outage lasts: its requests get the labels the node knows
//! (`service_name`, `service_namespace` from its environment or executable, `k8s_pod_uid` from its
//! cgroup, `k8s_node_name`), and its pod's labels once the pods are listed again.
//!
//! `service_name` is, the first that is set, as OpenTelemetry and Beyla users expect: the process's
//! `OTEL_SERVICE_NAME`, `service.name` in its `OTEL_RESOURCE_ATTRIBUTES`, the pod's annotation
//! `resource.opentelemetry.io/service.name`, its label `app.kubernetes.io/name`, its owner's name
//! (the Deployment, StatefulSet, DaemonSet, CronJob, …), the executable's name. `service_namespace`:
//! `service.namespace` in `OTEL_RESOURCE_ATTRIBUTES`, the annotation
//! `resource.opentelemetry.io/service.namespace`, the pod's namespace; empty for a host process.

use std::sync::{Arc, Mutex};

use foldhash::HashMap;

use super::view::ProcessView;
use crate::{
    discovery::{ContainerRef, ServiceIdentity},
    metrics::{ServiceLabels, labels::NAMES},
    pods::{Freshness, PodMeta, PodStore},
};

/// The pod annotation that names its service, as the OpenTelemetry operator reads it.
pub const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
/// The pod annotation that names its service's namespace.
pub const SERVICE_NAMESPACE_ANNOTATION: &str = "resource.opentelemetry.io/service.namespace";
/// The recommended Kubernetes label naming an application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The labels of process `service` of `pod`, in its container `container_id` (the order of
/// `service_name` and `service_namespace` sources in the module header).
pub fn of_pod(
    pod: &PodMeta,
    container_id: Option<&str>,
    service: &ServiceIdentity,
) -> ServiceLabels {
    let container = pod
        .container(container_id)
        .map(|container| container.name.clone())
        .unwrap_or_default();
    let owned = |kind: &str| {
        pod.owner
            .as_ref()
            .filter(|(owner_kind, _)| owner_kind == kind)
            .map(|(_, name)| name.clone())
            .unwrap_or_default()
    };
    let owner_name = pod.owner.as_ref().map(|(_, name)| name.clone());
    let set = |value: Option<&String>| value.filter(|value| !value.is_empty()).cloned();
    let service_name = service
        .otel_name
        .clone()
        .or_else(|| set(pod.annotations.get(SERVICE_NAME_ANNOTATION)))
        .or_else(|| set(pod.labels.get(NAME_LABEL)))
        .or_else(|| owner_name.clone())
        .unwrap_or_else(|| service.executable.clone());
    let service_namespace = service
        .otel_namespace
        .clone()
        .or_else(|| set(pod.annotations.get(SERVICE_NAMESPACE_ANNOTATION)))
        .unwrap_or_else(|| pod.namespace.clone());
    ServiceLabels::from_values([
        service_name,
        service_namespace,
        pod.namespace.clone(),
        pod.name.clone(),
        pod.uid.clone(),
        container,
        pod.node_name.clone(),
        owned("Deployment"),
        pod.replica_set
            .clone()
            .unwrap_or_else(|| owned("ReplicaSet")),
        owned("StatefulSet"),
        owned("DaemonSet"),
        owner_name.unwrap_or_default(),
    ])
}

/// Resolves the labels of a process from its service identity, its cgroup and the pod watcher's store,
/// if there is one.
pub fn resolve(
    service: &ServiceIdentity,
    container: &ContainerRef,
    pods: Option<&Arc<Mutex<PodStore>>>,
) -> Option<ServiceLabels> {
    let (Some(pods), Some(pod_uid)) = (pods, container.pod_uid.as_deref()) else {
        let name = service.otel_name.as_ref().unwrap_or(&service.executable);
        let namespace = service.otel_namespace.as_deref().unwrap_or_default();
        return Some(ServiceLabels::host(name, namespace));
    };
    let pods = pods.lock().expect("pod store lock");
    let container_id = container.container_id.as_deref();
    let labels = pods.get(pod_uid).and_then(|pod| {
        // A process outside any container of the pod (its container not reported started yet) waits.
        let started = pod.container(container_id).is_some()
            || (container_id.is_none()
                && pod
                    .containers
                    .iter()
                    .any(|known| known.container_id.is_none()));
        started.then(|| of_pod(pod, container_id, service))
    });
    match labels {
        None if pods.freshness() == Freshness::Stale => {
            Some(node_only(service, pod_uid, pods.node_name()))
        }
        labels => labels,
    }
}

/// The labels of process `service` of pod `pod_uid` when the pod's metadata cannot be had.
fn node_only(service: &ServiceIdentity, pod_uid: &str, node_name: &str) -> ServiceLabels {
    let mut values: [String; NAMES.len()] = Default::default();
    for (value, name) in values.iter_mut().zip(NAMES) {
        *value = match name {
            "service_name" => service
                .otel_name
                .clone()
                .unwrap_or_else(|| service.executable.clone()),
            "service_namespace" => service.otel_namespace.clone().unwrap_or_default(),
            "k8s_pod_uid" => pod_uid.to_owned(),
            "k8s_node_name" => node_name.to_owned(),
            _ => String::new(),
        };
    }
    ServiceLabels::from_values(values)
}

/// Identity labels by tgid, resolved once and forgotten on every [`LabelCache::refresh`] (pods change).
pub(super) struct LabelCache {
    /// The pod watcher's store, when vigil watches Kubernetes.
    pods: Option<Arc<Mutex<PodStore>>>,
    current: HashMap<u32, Arc<ServiceLabels>>,
    /// The last labels each captured process had: a process whose pod was deleted while it lingers
    /// keeps its pod's labels rather than waiting for a pod that will not come back.
    last: HashMap<u32, Arc<ServiceLabels>>,
}

impl LabelCache {
    pub(super) fn new(pods: Option<Arc<Mutex<PodStore>>>) -> Self {
        LabelCache {
            pods,
            current: HashMap::default(),
            last: HashMap::default(),
        }
    }

    /// The identity labels of `tgid`; `None` while its pod is not known yet (or it is gone).
    pub(super) fn labels_of(
        &mut self,
        tgid: u32,
        processes: &dyn ProcessView,
    ) -> Option<Arc<ServiceLabels>> {
        if let Some(labels) = self.current.get(&tgid) {
            return Some(labels.clone());
        }
        let (service, container) = processes.service_of(tgid)?;
        let Some(labels) = resolve(service, container, self.pods.as_ref()) else {
            return self.last.get(&tgid).cloned();
        };
        let labels = Arc::new(labels);
        self.current.insert(tgid, labels.clone());
        self.last.insert(tgid, labels.clone());
        Some(labels)
    }

    /// Forgets the resolved labels (pods change), and the last labels of processes no longer captured.
    pub(super) fn refresh(&mut self, processes: &dyn ProcessView) {
        self.current.clear();
        self.last
            .retain(|tgid, _| processes.publication(*tgid).is_captured());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::labels::NAMES, pods::ContainerMeta};

    fn pod(owner: Option<(&str, &str)>) -> PodMeta {
        PodMeta {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "web-5d8f7c9b4-x2x9z".into(),
            node_name: "node-a".into(),
            phase: "Running".into(),
            labels: Default::default(),
            annotations: Default::default(),
            owner: owner.map(|(kind, name)| (kind.into(), name.into())),
            replica_set: owner
                .filter(|(kind, _)| *kind == "Deployment")
                .map(|_| "web-5d8f7c9b4".into()),
            containers: vec![ContainerMeta {
                name: "app".into(),
                container_id: Some("c".repeat(64)),
            }],
            ready_since: None,
        }
    }

    fn labels(labels: &ServiceLabels) -> Vec<(&str, &str)> {
        NAMES.iter().copied().zip(labels.values()).collect()
    }

    /// A `node` process with no OpenTelemetry variables.
    fn node() -> ServiceIdentity {
        ServiceIdentity {
            executable: "node".into(),
            ..ServiceIdentity::default()
        }
    }

    #[test]
    fn a_deployment_pod_is_its_deployment() {
        let container_id = "c".repeat(64);
        let labels = of_pod(
            &pod(Some(("Deployment", "web"))),
            Some(&container_id),
            &node(),
        );
        assert_eq!(
            super::tests::labels(&labels),
            [
                ("service_name", "web"),
                ("service_namespace", "shop"),
                ("k8s_namespace_name", "shop"),
                ("k8s_pod_name", "web-5d8f7c9b4-x2x9z"),
                ("k8s_pod_uid", "u1"),
                ("k8s_container_name", "app"),
                ("k8s_node_name", "node-a"),
                ("k8s_deployment_name", "web"),
                ("k8s_replicaset_name", "web-5d8f7c9b4"),
                ("k8s_statefulset_name", ""),
                ("k8s_daemonset_name", ""),
                ("k8s_owner_name", "web"),
            ]
        );
    }

    #[test]
    fn a_bare_pods_service_is_its_executable_and_an_unknown_container_has_no_name() {
        let labels = of_pod(&pod(None), Some("d"), &node());
        assert_eq!(labels.service_name(), "node");
        assert!(super::tests::labels(&labels).contains(&("k8s_container_name", "")));
    }

    #[test]
    fn service_names_come_from_otel_then_annotations_then_the_name_label_then_the_owner() {
        let container_id = "c".repeat(64);
        let mut deployment = pod(Some(("Deployment", "web")));
        let name = |pod: &PodMeta, service: &ServiceIdentity| {
            let labels = of_pod(pod, Some(&container_id), service);
            let values: Vec<&str> = labels.values().take(2).collect();
            (values[0].to_owned(), values[1].to_owned())
        };
        assert_eq!(name(&deployment, &node()), ("web".into(), "shop".into()));
        deployment
            .labels
            .insert(NAME_LABEL.into(), "storefront".into());
        assert_eq!(
            name(&deployment, &node()),
            ("storefront".into(), "shop".into())
        );
        deployment
            .annotations
            .insert(SERVICE_NAME_ANNOTATION.into(), "front".into());
        deployment
            .annotations
            .insert(SERVICE_NAMESPACE_ANNOTATION.into(), "retail".into());
        assert_eq!(
            name(&deployment, &node()),
            ("front".into(), "retail".into())
        );
        let otel = ServiceIdentity {
            executable: "node".into(),
            otel_name: Some("checkout".into()),
            otel_namespace: Some("payments".into()),
        };
        assert_eq!(
            name(&deployment, &otel),
            ("checkout".into(), "payments".into())
        );
        // A host process: its own variables, else its executable.
        assert_eq!(
            resolve(&otel, &ContainerRef::default(), None),
            Some(ServiceLabels::host("checkout", "payments"))
        );
    }

    #[test]
    fn a_pod_not_known_yet_is_pending_and_a_host_process_is_not() {
        let store = Arc::new(Mutex::new(PodStore::default()));
        let in_pod = ContainerRef {
            container_id: Some("c".repeat(64)),
            pod_uid: Some("u1".into()),
        };
        assert_eq!(
            resolve(&node(), &in_pod, Some(&store)),
            None,
            "pending metadata"
        );
        let mut without_status = pod(Some(("StatefulSet", "db")));
        without_status.containers[0].container_id = None;
        store.lock().unwrap().apply(without_status);
        assert_eq!(
            resolve(&node(), &in_pod, Some(&store)),
            None,
            "pending until the container status lists it"
        );
        store
            .lock()
            .unwrap()
            .apply(pod(Some(("StatefulSet", "db"))));
        assert_eq!(
            resolve(&node(), &in_pod, Some(&store))
                .unwrap()
                .service_name(),
            "db"
        );
        assert_eq!(
            resolve(&node(), &ContainerRef::default(), Some(&store)),
            Some(ServiceLabels::host("node", ""))
        );
        assert_eq!(
            resolve(&node(), &in_pod, None),
            Some(ServiceLabels::host("node", ""))
        );
    }

    #[test]
    fn while_the_api_server_is_unreachable_an_unknown_pod_gets_the_labels_the_node_knows() {
        let store = Arc::new(Mutex::new(PodStore::for_node("node-a")));
        let in_pod = ContainerRef {
            container_id: Some("c".repeat(64)),
            pod_uid: Some("u2".into()),
        };
        store
            .lock()
            .unwrap()
            .replace(vec![pod(Some(("StatefulSet", "db")))]);
        assert_eq!(resolve(&node(), &in_pod, Some(&store)), None, "pending");
        store.lock().unwrap().mark_stale();
        let labels = resolve(&node(), &in_pod, Some(&store)).unwrap();
        let values: Vec<&str> = labels.values().collect();
        assert_eq!(
            values,
            ["node", "", "", "", "u2", "", "node-a", "", "", "", "", ""]
        );
        // A pod known before the outage keeps its labels.
        let known = ContainerRef {
            container_id: Some("c".repeat(64)),
            pod_uid: Some("u1".into()),
        };
        assert_eq!(
            resolve(&node(), &known, Some(&store))
                .unwrap()
                .service_name(),
            "db"
        );
        // Listed again: the unknown pod waits for its metadata again.
        store.lock().unwrap().replace(Vec::new());
        assert_eq!(resolve(&node(), &in_pod, Some(&store)), None);
    }
}
