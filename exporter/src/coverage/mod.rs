//! Coverage: which pods should be monitored and are not, the gauge an alert can fire on. It runs after
//! discovery on every heartbeat, consuming what discovery made of each pod's processes
//! ([`PodProcesses`]) and the pod store; it feeds nothing back.
//!
//! A pod is **expected** when it is `Running` on this node, outside `k8s.excluded_namespaces`, not
//! vigil's own pod, not opted out (`vigil.io/instrument: "false"`), and has been `Ready` for longer
//! than `k8s.unmonitored_grace`. It is **monitored** when at least one of its processes (joined by the
//! pod UID in their cgroups) is instrumented. An expected pod that is not monitored gets the first
//! reason that applies:
//!
//! - `process_too_young`: a process of it is captured but younger than the minimum process age.
//! - `metadata_pending`: a process of it waits for a `k8s_*` selector to be decided (re-evaluated on the
//!   next heartbeat now that the pod is known).
//! - `attach_failed`: its filter entry could not be written (retried; see
//!   `vigil_instrumentation_errors_total`).
//! - `no_matching_process`: it has processes, none matches `discovery.instrument` (or all are excluded).
//! - `no_process_found`: no process on this node carries its UID in its cgroup (its containers run
//!   under another cgroup layout, or vigil cannot see them: `hostPID`, `paths.procfs`).
//!
//! A pod monitored by its processes' state is checked against its traffic ([`traffic`]): when, over
//! `k8s.traffic_window`, the TCP stack accepted connections on the ports its captured processes serve
//! and capture recognised none of their requests, it is not monitored after all:
//!
//! - `unrecognized_protocol`: capture saw its server connections and could not parse them; the status
//!   series and `/debug/discovery` carry a `protocol` hint (`tls`, `http2`, `unknown`).
//! - `traffic_not_captured`: capture saw none of those connections' bytes (accepted through io_uring,
//!   handed to a process vigil does not capture, or a shape vigil does not know).
//!
//! Metrics: `vigil_monitored_pods{k8s_namespace_name}`,
//! `vigil_unmonitored_pods{k8s_namespace_name,reason}` and
//! `vigil_pod_monitoring_status{k8s_namespace_name,k8s_pod_name,status,protocol}` (1 for the pod's
//! current status: `monitored` or a reason; expected pods only), and those of [`traffic`].

mod traffic;

pub use traffic::{TrafficWindow, Uncounted};

use std::time::SystemTime;

use prometheus::{IntGaugeVec, Registry};

use crate::{
    config::KubernetesConfig,
    discovery::{Discovery, PodProcesses, ServingGroup},
    metrics::gauge_vec,
    pods::{
        PodMeta, PodStore,
        rules::{self, OptOut},
    },
};

/// What vigil makes of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodReport {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub owner: Option<(String, String)>,
    /// Whether it should be monitored; if not, why not.
    pub expected: Result<(), &'static str>,
    /// `monitored`, an unmonitored reason, or `not_expected`.
    pub status: &'static str,
    /// What its unparseable traffic looks like (`unrecognized_protocol` only).
    pub protocol: Option<&'static str>,
}

/// The metric families of this stage.
#[derive(Clone)]
pub struct MonitoringMetrics {
    monitored: IntGaugeVec,
    unmonitored: IntGaugeVec,
    status: IntGaugeVec,
}

impl MonitoringMetrics {
    pub fn register(registry: &Registry) -> Self {
        let gauge =
            |name: &str, help: &str, labels: &[&str]| gauge_vec(registry, name, help, labels);
        MonitoringMetrics {
            monitored: gauge(
                "vigil_monitored_pods",
                "Pods expected to be monitored that are (a process of theirs is instrumented).",
                &["k8s_namespace_name"],
            ),
            unmonitored: gauge(
                "vigil_unmonitored_pods",
                "Pods expected to be monitored that are not, by reason (see docs/metrics.md).",
                &["k8s_namespace_name", "reason"],
            ),
            status: gauge(
                "vigil_pod_monitoring_status",
                "1 for the monitoring status of each expected pod: monitored or the reason it is not (protocol: what unrecognized traffic looks like, else empty).",
                &["k8s_namespace_name", "k8s_pod_name", "status", "protocol"],
            ),
        }
    }

    /// Replaces the gauges with what `reports` say.
    pub fn publish(&self, reports: &[PodReport]) {
        self.monitored.reset();
        self.unmonitored.reset();
        self.status.reset();
        for report in reports.iter().filter(|report| report.expected.is_ok()) {
            let namespace = report.namespace.as_str();
            match report.status {
                "monitored" => self.monitored.with_label_values(&[namespace]).inc(),
                reason => self
                    .unmonitored
                    .with_label_values(&[namespace, reason])
                    .inc(),
            }
            self.status
                .with_label_values(&[
                    namespace,
                    &report.name,
                    report.status,
                    report.protocol.unwrap_or(""),
                ])
                .set(1);
        }
    }
}

/// Every pod of `store`, expected or not, with its status now: from its processes' state, then from
/// the traffic of its serving group (`groups`, as `traffic` saw them over the window).
pub fn evaluate(
    store: &PodStore,
    discovery: &Discovery,
    config: &KubernetesConfig,
    now: SystemTime,
    traffic: &TrafficWindow,
    groups: &[ServingGroup],
) -> Vec<PodReport> {
    let processes = discovery.pod_processes();
    let own_pod = discovery.own_pod_uid();
    let mut reports: Vec<PodReport> = store
        .iter()
        .map(|pod| {
            let expected = expectation(pod, config, own_pod, now);
            let mut status = match expected {
                Err(_) => "not_expected",
                Ok(()) => status(processes.get(pod.uid.as_str())),
            };
            let mut protocol = None;
            let uncounted = groups
                .iter()
                .find(|group| group.pod_uid.as_deref() == Some(pod.uid.as_str()))
                .and_then(|group| traffic.uncounted(group));
            if let (Some(uncounted), "monitored") = (uncounted, status) {
                status = uncounted.reason();
                protocol = uncounted.protocol().map(|hint| hint.label());
            }
            PodReport {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                phase: pod.phase.clone(),
                owner: pod.owner.clone(),
                expected,
                status,
                protocol,
            }
        })
        .collect();
    reports.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    reports
}

fn expectation(
    pod: &PodMeta,
    config: &KubernetesConfig,
    own_pod: Option<&str>,
    now: SystemTime,
) -> Result<(), &'static str> {
    if pod.phase != "Running" {
        return Err("not running");
    }
    match rules::opt_out(pod, &config.excluded_namespaces) {
        Some(OptOut::ExcludedNamespace) => {
            return Err("namespace excluded (k8s.excluded_namespaces)");
        }
        _ if own_pod == Some(pod.uid.as_str()) => return Err("vigil's own pod"),
        Some(OptOut::Annotated) => return Err("opted out (vigil.io/instrument: \"false\")"),
        None => {}
    }
    let ready_for = pod
        .ready_since
        .and_then(|since| now.duration_since(since).ok());
    match ready_for {
        Some(ready_for) if ready_for >= config.unmonitored_grace => Ok(()),
        Some(_) => Err("ready for less than k8s.unmonitored_grace"),
        None => Err("not ready"),
    }
}

fn status(processes: Option<&PodProcesses>) -> &'static str {
    match processes {
        None => "no_process_found",
        Some(processes) if processes.instrumented > 0 => "monitored",
        Some(processes) if processes.provisional > 0 => "process_too_young",
        Some(processes) if processes.pending_metadata > 0 => "metadata_pending",
        Some(processes) if processes.attach_failed > 0 => "attach_failed",
        Some(_) => "no_matching_process",
    }
}

/// The reports as `/debug/discovery` shows them.
pub fn to_json(reports: &[PodReport]) -> serde_json::Value {
    let pods: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| {
            serde_json::json!({
                "namespace": report.namespace,
                "name": report.name,
                "uid": report.uid,
                "phase": report.phase,
                "owner": report.owner.as_ref().map(|(kind, name)| format!("{kind}/{name}")),
                "expected": report.expected.is_ok(),
                "not_expected_because": report.expected.err(),
                "status": report.status,
                "protocol": report.protocol,
            })
        })
        .collect();
    serde_json::Value::Array(pods)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> KubernetesConfig {
        KubernetesConfig {
            kubeconfig: String::new(),
            node_name: "node-a".into(),
            unmonitored_grace: Duration::from_secs(30),
            traffic_window: Duration::from_secs(30),
            excluded_namespaces: vec!["kube-system".into()],
        }
    }

    fn pod(now: SystemTime) -> PodMeta {
        PodMeta {
            uid: "u1".into(),
            namespace: "shop".into(),
            name: "web-1".into(),
            node_name: "node-a".into(),
            phase: "Running".into(),
            labels: Default::default(),
            annotations: Default::default(),
            owner: None,
            replica_set: None,
            containers: Vec::new(),
            ready_since: Some(now - Duration::from_secs(60)),
        }
    }

    #[test]
    fn a_pod_is_expected_only_when_running_ready_past_the_grace_and_not_excluded() {
        let now = SystemTime::now();
        assert_eq!(expectation(&pod(now), &config(), None, now), Ok(()));
        let mut young = pod(now);
        young.ready_since = Some(now - Duration::from_secs(10));
        assert!(expectation(&young, &config(), None, now).is_err());
        let mut unready = pod(now);
        unready.ready_since = None;
        assert!(expectation(&unready, &config(), None, now).is_err());
        let mut pending = pod(now);
        pending.phase = "Pending".into();
        assert!(expectation(&pending, &config(), None, now).is_err());
        let mut system = pod(now);
        system.namespace = "kube-system".into();
        assert!(expectation(&system, &config(), None, now).is_err());
        let mut opted_out = pod(now);
        opted_out
            .annotations
            .insert(rules::INSTRUMENT_ANNOTATION.into(), "false".into());
        assert!(expectation(&opted_out, &config(), None, now).is_err());
        assert!(
            expectation(&pod(now), &config(), Some("u1"), now).is_err(),
            "vigil's own pod"
        );
    }

    #[test]
    fn the_status_names_the_first_reason_that_applies() {
        let processes = |instrumented, provisional, attach_failed, not_selected| PodProcesses {
            instrumented,
            provisional,
            pending_metadata: 0,
            attach_failed,
            not_selected,
        };
        assert_eq!(status(None), "no_process_found");
        assert_eq!(status(Some(&processes(1, 1, 1, 1))), "monitored");
        assert_eq!(status(Some(&processes(0, 1, 1, 1))), "process_too_young");
        assert_eq!(status(Some(&processes(0, 0, 1, 1))), "attach_failed");
        assert_eq!(status(Some(&processes(0, 0, 0, 3))), "no_matching_process");
    }
}
