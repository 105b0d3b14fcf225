//! The identity labels every RED series carries: `service_name`, `service_namespace` and the `k8s_*`
//! labels of the process's pod (empty outside Kubernetes). Capture resolves them
//! (`capture::labels`); this stage only records them.

/// The identity label names, in the order of [`ServiceLabels::values`].
pub const NAMES: [&str; 12] = [
    "service_name",
    "service_namespace",
    "k8s_namespace_name",
    "k8s_pod_name",
    "k8s_pod_uid",
    "k8s_container_name",
    "k8s_node_name",
    "k8s_deployment_name",
    "k8s_replicaset_name",
    "k8s_statefulset_name",
    "k8s_daemonset_name",
    "k8s_owner_name",
];

/// Identity label values of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceLabels {
    values: [String; NAMES.len()],
}

impl ServiceLabels {
    /// A process outside Kubernetes: `service_name` and `service_namespace` only.
    pub fn host(service_name: &str, service_namespace: &str) -> ServiceLabels {
        let mut labels = ServiceLabels::default();
        labels.values[0] = service_name.to_owned();
        labels.values[1] = service_namespace.to_owned();
        labels
    }

    /// The labels of a process in a pod, in the order of [`NAMES`].
    pub fn from_values(values: [String; NAMES.len()]) -> ServiceLabels {
        ServiceLabels { values }
    }

    /// The values, in the order of [`NAMES`].
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(String::as_str)
    }

    /// The `service_name` value.
    pub fn service_name(&self) -> &str {
        &self.values[0]
    }
}
