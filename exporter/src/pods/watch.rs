//! The pod watch: a node-scoped watch of the API server (`kube` watcher with `spec.nodeName=<node>`,
//! backoff on errors, a relist after `410 Gone`) that keeps the [`PodStore`] current, each pod stripped
//! to a [`PodMeta`] with its owner resolved ([`super::owners`]).
//!
//! Without a kubeconfig and outside a pod (no service account), vigil runs node-only and says so once.
//!
//! Metrics: `vigil_kube_watch_restarts_total` (watch errors, each followed by a backoff and a new
//! watch or list), `vigil_kube_last_event_age_seconds`, `vigil_kube_pods{phase}`.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};
use prometheus::{Gauge, IntCounter, IntGaugeVec, Registry};

use super::{
    owners::OwnerResolver,
    store::{PodMeta, PodStore},
};
use crate::{
    config::KubernetesConfig,
    metrics::{gauge_vec, register},
};

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
                    "Errors of the pod watch, each followed by a backoff and a new watch (or a relist).",
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
        for pod in self.store.lock().expect("pod store lock").iter() {
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
        store: Arc::new(Mutex::new(PodStore::default())),
        last_event: Arc::new(Mutex::new(Instant::now())),
        node_name: node_name.clone(),
        metrics,
    };
    let task = watch.clone();
    tokio::spawn(async move {
        let mut owners = OwnerResolver::new(client.clone());
        let api: Api<Pod> = Api::all(client);
        let selector = format!("spec.nodeName={node_name}");
        let stream = watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
        futures::pin_mut!(stream);
        // Pods listed since the last (re)start of the watch, swapped in whole when the list is done.
        let mut listed: Vec<PodMeta> = Vec::new();
        while let Some(event) = stream.next().await {
            *task.last_event.lock().expect("lock") = Instant::now();
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    task.metrics.restarts.inc();
                    tracing::warn!(%error, "pod watch failed; retrying with backoff");
                    continue;
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
    });
    watch
}
