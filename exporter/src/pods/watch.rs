//! The pod watch: a node-scoped watch of the API server (`kube` watcher with `spec.nodeName=<node>`)
//! that keeps the [`PodStore`] current, each pod stripped to a [`PodMeta`] with its owner resolved
//! ([`super::owners`]). A watch that ends is resumed from its resource version; a watch that fails
//! (the API server unreachable, an error, `410 Gone`) is followed, after a backoff ([`RETRY_FIRST`]
//! doubling up to [`RETRY_MAX`]), by a new list: the list is what says the store is current again,
//! since a resumed watch says nothing until a pod changes. One failure is routine (a watch whose
//! resource version expired) and the list after it usually succeeds; a second failure in a row marks
//! the store stale until a list completes. Meanwhile capture labels the requests of pods it does not
//! know with what the node knows, and coverage keeps the verdicts it had (see [`Freshness`]).
//!
//! Without a kubeconfig and outside a pod (no service account), vigil runs node-only and says so once.
//!
//! Metrics: `vigil_kube_watch_restarts_total` (watch failures, each followed by a backoff and a new
//! list), `vigil_kube_watch_up` (1 while the store is current), `vigil_kube_last_event_age_seconds`,
//! `vigil_kube_pods{phase}`.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, runtime::watcher};
use prometheus::{Gauge, IntCounter, IntGauge, IntGaugeVec, Registry};

use super::{
    owners::OwnerResolver,
    store::{Freshness, PodMeta, PodStore},
};
use crate::{
    config::KubernetesConfig,
    metrics::{gauge_vec, register},
};

/// Wait after a failed watch before listing again; doubled per failure in a row up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why the API server cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use the in-cluster service account: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// The metric families of the watcher.
#[derive(Clone)]
pub struct KubeMetrics {
    restarts: IntCounter,
    up: IntGauge,
    last_event_age: Gauge,
    pods: IntGaugeVec,
}

impl KubeMetrics {
    pub fn register(registry: &Registry) -> Self {
        KubeMetrics {
            restarts: register(
                registry,
                IntCounter::new(
                    "vigil_kube_watch_restarts_total",
                    "Failures of the pod watch, each followed by a backoff and a new list of the node's pods.",
                )
                .expect("static"),
            ),
            up: register(
                registry,
                IntGauge::new(
                    "vigil_kube_watch_up",
                    "1 while vigil's pod store reflects the API server (listed, and watched since); 0 before the first list, and from the second watch or list failure in a row until a list completes.",
                )
                .expect("static"),
            ),
            last_event_age: register(
                registry,
                Gauge::new(
                    "vigil_kube_last_event_age_seconds",
                    "Seconds since the pod watch last delivered an event (bookmarks included).",
                )
                .expect("static"),
            ),
            pods: gauge_vec(
                registry,
                "vigil_kube_pods",
                "Pods of this node known to vigil, by phase.",
                &["phase"],
            ),
        }
    }
}

/// The pods of this node and when the watch last said something.
#[derive(Clone)]
pub struct PodWatch {
    pub store: Arc<Mutex<PodStore>>,
    last_event: Arc<Mutex<Instant>>,
    pub node_name: String,
    metrics: KubeMetrics,
}

impl PodWatch {
    /// Updates the watcher's gauges (called on the heartbeat).
    pub fn update_gauges(&self) {
        let age = self.last_event.lock().expect("lock").elapsed();
        self.metrics.last_event_age.set(age.as_secs_f64());
        self.metrics.pods.reset();
        let store = self.store.lock().expect("pod store lock");
        self.metrics
            .up
            .set(i64::from(store.freshness() == Freshness::Current));
        for pod in store.iter() {
            self.metrics.pods.with_label_values(&[&pod.phase]).inc();
        }
    }
}

/// A client for the configured cluster: `k8s.kubeconfig` if set, else the in-cluster service account
/// when vigil runs in a pod; `None` when there is neither.
pub async fn connect(config: &KubernetesConfig) -> Result<Option<Client>, KubernetesError> {
    let client_config = if !config.kubeconfig.is_empty() {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(&config.kubeconfig).map_err(|source| {
                KubernetesError::Kubeconfig {
                    path: config.kubeconfig.clone(),
                    source,
                }
            })?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|source| KubernetesError::Kubeconfig {
                path: config.kubeconfig.clone(),
                source,
            })?
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        kube::Config::incluster()?
    } else {
        return Ok(None);
    };
    Ok(Some(Client::try_from(client_config)?))
}

/// The node whose pods are watched: `k8s.node_name`, else `$NODE_NAME`, else the host name.
pub fn node_name(config: &KubernetesConfig) -> String {
    if !config.node_name.is_empty() {
        return config.node_name.clone();
    }
    std::env::var("NODE_NAME").unwrap_or_else(|_| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// Starts watching the pods of `node_name`; the returned handle sees the store the task keeps current.
pub fn watch_pods(client: Client, node_name: String, metrics: KubeMetrics) -> PodWatch {
    let watch = PodWatch {
        store: Arc::new(Mutex::new(PodStore::for_node(&node_name))),
        last_event: Arc::new(Mutex::new(Instant::now())),
        node_name: node_name.clone(),
        metrics,
    };
    let task = watch.clone();
    tokio::spawn(async move {
        let mut owners = OwnerResolver::new(client.clone());
        let api: Api<Pod> = Api::all(client);
        let selector = format!("spec.nodeName={node_name}");
        // A doubling delay with a cap, written here: the watcher's own backoff resumes the watch
        // without a list, and only a list says the store is current again.
        let mut retry = RETRY_FIRST;
        // Failures since the last completed list.
        let mut failures = 0;
        loop {
            let stream = watcher(api.clone(), watcher::Config::default().fields(&selector));
            futures::pin_mut!(stream);
            // Pods listed since the start of this watch, swapped in whole when the list is done.
            let mut listed: Vec<PodMeta> = Vec::new();
            while let Some(event) = stream.next().await {
                *task.last_event.lock().expect("lock") = Instant::now();
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        task.metrics.restarts.inc();
                        failures += 1;
                        if failures == 2 {
                            task.store.lock().expect("pod store lock").mark_stale();
                            tracing::warn!(
                                "pods of this node are stale until a list completes: pod verdicts kept, unknown pods labelled with what the node knows"
                            );
                        }
                        tracing::warn!(%error, retry_in = ?retry, "pod watch failed; listing the node's pods again after a backoff");
                        break;
                    }
                };
                let meta = match &event {
                    watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                        owners.resolve(pod).await
                    }
                    _ => None,
                };
                let mut store = task.store.lock().expect("pod store lock");
                match event {
                    watcher::Event::Init => listed.clear(),
                    watcher::Event::InitApply(_) => listed.extend(meta),
                    watcher::Event::InitDone => {
                        store.replace(std::mem::take(&mut listed));
                        retry = RETRY_FIRST;
                        failures = 0;
                        tracing::info!(pods = store.len(), node = %node_name, "pods of this node listed");
                    }
                    watcher::Event::Apply(_) => {
                        if let Some(meta) = meta {
                            store.apply(meta);
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        if let Some(uid) = pod.metadata.uid.as_deref() {
                            store.delete(uid);
                        }
                    }
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY_MAX);
        }
    });
    watch
}
