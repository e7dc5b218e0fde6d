//! The Kubernetes source: `WireGuardPeer` resources of one namespace, kept in a reflector
//! store by a watch, with their preshared keys read from Secrets and their status written back
//! with server-side apply.
//!
//! Nothing is declared until the store has completed its first list; after that a relist
//! (watch expired, 410 Gone, restarted watch) builds the new view on the side and swaps it in
//! whole, so a resource that still exists is never seen missing. Each resource is read on its
//! own: one that does not parse is rejected with the reason, the others go on.

mod secret;
mod status;
mod watch;

use std::collections::BTreeMap;
use std::time::SystemTime;

use futures::FutureExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as ApiCondition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::store::{Store, Writer};
use kube::{Client, Resource as _};

use super::{Error, PeerSource};
use crate::core::peer::PeerId;
use crate::core::status::{Condition, PeerOutcome};
use crate::core::validate::Declaration;
use crate::crd::{WireGuardPeer, WireGuardPeerSpec, WireGuardPeerStatus};

/// Field manager of the gateway's status writes.
pub const FIELD_MANAGER: &str = "zt-gateway";

/// Reads `WireGuardPeer`s of one namespace and writes their status.
pub struct KubeSource {
    namespace: String,
    store: Store<DynamicObject>,
    secrets: secret::SecretCache,
    status: status::StatusWriter,
    /// What the last read returned, by origin (`namespace/name`).
    listed: BTreeMap<String, Listed>,
    watch: tokio::task::JoinHandle<()>,
}

/// What publishing a resource's status needs to know about it.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    uid: String,
    generation: Option<i64>,
    conditions: Vec<Condition>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl KubeSource {
    /// Starts watching `WireGuardPeer`s in `namespace` on the current runtime.
    pub fn start(client: Client, namespace: &str) -> Self {
        let resource = ApiResource::erase::<WireGuardPeer>(&());
        let peers: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let writer = Writer::new(resource);
        let store = writer.as_reader();
        let watch = tokio::spawn(watch::run(peers.clone(), writer));
        Self {
            namespace: namespace.to_owned(),
            store,
            secrets: secret::SecretCache::new(Api::namespaced(client, namespace), namespace),
            status: status::StatusWriter::new(peers),
            listed: BTreeMap::new(),
            watch,
        }
    }

    /// Returns the namespace it watches.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Returns whether the first complete list has arrived. A watch task that ended before
    /// it (its writer dropped) never makes the store count as listed.
    pub fn is_listed(&self) -> bool {
        matches!(self.store.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    fn declaration(&self, object: &DynamicObject) -> (Declaration, Option<(String, String)>) {
        let name = object.metadata.name.clone().unwrap_or_default();
        let origin = format!("{}/{name}", self.namespace);
        let spec = object.data.get("spec").cloned().unwrap_or_default();
        match super::document::from_value::<WireGuardPeerSpec>(spec, "spec") {
            Ok(spec) => {
                let secret_ref = spec
                    .preshared_key_secret_ref
                    .as_ref()
                    .map(|r| (r.name.clone(), r.key.clone()));
                let id = PeerId::resource(&self.namespace, name);
                (Declaration::Peer(spec.to_raw(id, origin)), secret_ref)
            }
            Err(why) => (
                Declaration::Unreadable {
                    origin,
                    reason: format!("spec does not match the WireGuardPeer schema: {why}"),
                },
                None,
            ),
        }
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl PeerSource for KubeSource {
    fn supports_secret_refs(&self) -> bool {
        true
    }

    async fn declarations(&mut self, now: SystemTime) -> Result<Option<Vec<Declaration>>, Error> {
        if !self.is_listed() {
            return Ok(None);
        }
        // Name order: the first of two conflicting new resources wins, deterministically.
        let objects: BTreeMap<String, std::sync::Arc<DynamicObject>> = self
            .store
            .state()
            .into_iter()
            .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
            .collect();
        let mut declarations = Vec::with_capacity(objects.len());
        let mut listed = BTreeMap::new();
        let mut used_secrets = std::collections::BTreeSet::new();
        for (name, object) in &objects {
            let (mut declaration, secret_ref) = self.declaration(object);
            if let (Declaration::Peer(raw), Some((secret, key))) = (&mut declaration, secret_ref) {
                raw.preshared_key = Some(self.secrets.lookup(&secret, &key, now).await);
                used_secrets.insert((secret, key));
            }
            declarations.push(declaration);
            listed.insert(
                format!("{}/{name}", self.namespace),
                Listed {
                    name: name.clone(),
                    uid: object.meta().uid.clone().unwrap_or_else(|| name.clone()),
                    generation: object.meta().generation,
                    conditions: current_conditions(object),
                },
            );
        }
        self.secrets.retain(&used_secrets);
        self.listed = listed;
        Ok(Some(declarations))
    }

    async fn publish(&mut self, outcomes: &[PeerOutcome], now: SystemTime) {
        self.status.publish(&self.listed, outcomes, now).await;
    }
}

/// Reads the conditions the resource's status holds now, so that a condition whose status
/// did not change keeps its `lastTransitionTime` across gateway restarts.
fn current_conditions(object: &DynamicObject) -> Vec<Condition> {
    let Some(status) = object.data.get("status").cloned() else {
        return Vec::new();
    };
    let Ok(status) = serde_json::from_value::<WireGuardPeerStatus>(status) else {
        return Vec::new();
    };
    status.conditions.iter().map(from_api_condition).collect()
}

fn from_api_condition(c: &ApiCondition) -> Condition {
    Condition {
        kind: c.type_.clone(),
        status: c.status == "True",
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition: SystemTime::from(c.last_transition_time.0),
    }
}

#[cfg(test)]
mod tests;
