//! Pod owners through the API: a ReplicaSet's Deployment and a Job's CronJob, each answer remembered.
//! Where the API refuses or does not know the owner, the controllers' naming rule of [`super::store`]
//! stands.

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, batch::v1::Job, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Client};

use super::store::PodMeta;

/// Resolves pod owners through the API (a ReplicaSet's Deployment, a Job's CronJob), remembering each
/// answer; where the API refuses or does not know the owner, the controllers' naming rule stands.
pub(super) struct OwnerResolver {
    client: Client,
    /// (namespace, kind, name) → the owner's own controller, if it has one.
    known: std::collections::HashMap<(String, String, String), Option<(String, String)>>,
}

impl OwnerResolver {
    pub(super) fn new(client: Client) -> Self {
        OwnerResolver {
            client,
            known: std::collections::HashMap::new(),
        }
    }

    /// The pod stripped to a [`PodMeta`], with its owner resolved.
    pub(super) async fn resolve(&mut self, pod: &Pod) -> Option<PodMeta> {
        let mut meta = PodMeta::from_pod(pod)?;
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true));
        let Some(controller) =
            controller.filter(|owner| matches!(owner.kind.as_str(), "ReplicaSet" | "Job"))
        else {
            // A bare pod, or one whose owner needs no lookup.
            return Some(meta);
        };
        let key = (
            meta.namespace.clone(),
            controller.kind.clone(),
            controller.name.clone(),
        );
        let resolved = match self.known.get(&key) {
            Some(resolved) => resolved.clone(),
            None => match self
                .fetch(&meta.namespace, &controller.kind, &controller.name)
                .await
            {
                Ok(owners) => {
                    let resolved = owners
                        .iter()
                        .find(|owner| owner.controller == Some(true))
                        .map(|owner| (owner.kind.clone(), owner.name.clone()));
                    self.known.insert(key, resolved.clone());
                    resolved
                }
                Err(error) => {
                    tracing::debug!(%error, kind = %controller.kind, name = %controller.name, "owner not resolved through the API; using the naming rule");
                    return Some(meta);
                }
            },
        };
        match resolved {
            Some(owner) => {
                if controller.kind == "ReplicaSet" {
                    meta.replica_set = Some(controller.name.clone());
                }
                meta.owner = Some(owner);
            }
            None => {
                meta.owner = Some((controller.kind.clone(), controller.name.clone()));
                meta.replica_set = None;
            }
        }
        Some(meta)
    }

    async fn fetch(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Vec<OwnerReference>, kube::Error> {
        let metadata = match kind {
            "ReplicaSet" => {
                Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                    .get_metadata(name)
                    .await?
                    .metadata
            }
            _ => {
                Api::<Job>::namespaced(self.client.clone(), namespace)
                    .get_metadata(name)
                    .await?
                    .metadata
            }
        };
        Ok(metadata.owner_references.unwrap_or_default())
    }
}
