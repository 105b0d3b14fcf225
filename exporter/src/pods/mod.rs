//! Pods: the pods of this node, an input to discovery, capture and coverage. A node-scoped watch of
//! the API server ([`watch`]) keeps a store of them stripped to what vigil needs ([`store`]), with
//! owners resolved through the API ([`owners`]); [`rules`] holds the opt-out rules every stage applies
//! alike (excluded namespaces, the `vigil.io/instrument` annotation).
//!
//! This stage reads nothing of the others; they read its store.

mod owners;
pub mod rules;
pub mod store;
pub mod watch;

pub use store::{ContainerMeta, Freshness, PodMeta, PodStore};
pub use watch::{KubeMetrics, KubernetesError, PodWatch, connect, node_name, watch_pods};
