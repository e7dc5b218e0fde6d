//! The fake's storage: objects by resource, namespace and name; one resource version counter
//! for all of them (as etcd has); a bounded history of changes that watches replay; the
//! status fields each field manager owns; request counters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use crate::FakeConfig;

/// A resource the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The plural in URLs, e.g. `wireguardpeers`.
    pub plural: &'static str,
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// Whether `metadata.generation` tracks `spec` changes.
    pub has_generation: bool,
}

/// `zt.hanzo.ai/v1alpha1` `WireGuardPeer`.
pub const PEERS: Kind = Kind {
    plural: "wireguardpeers",
    api_version: "zt.hanzo.ai/v1alpha1",
    kind: "WireGuardPeer",
    has_generation: true,
};
/// `v1` `Secret`.
pub const SECRETS: Kind = Kind {
    plural: "secrets",
    api_version: "v1",
    kind: "Secret",
    has_generation: false,
};
/// `coordination.k8s.io/v1` `Lease`.
pub const LEASES: Kind = Kind {
    plural: "leases",
    api_version: "coordination.k8s.io/v1",
    kind: "Lease",
    has_generation: false,
};

/// Returns the resource served under `plural`.
pub fn kind(plural: &str) -> Option<Kind> {
    [PEERS, SECRETS, LEASES]
        .into_iter()
        .find(|k| k.plural == plural)
}

/// (plural, namespace, name).
pub(crate) type Key = (&'static str, String, String);

/// One change, as a watch delivers it.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub event: &'static str,
    pub key: Key,
    pub object: Value,
}

/// How open watches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Nothing yet.
    None,
    /// The connection breaks (no final chunk).
    Drop,
    /// An `ERROR` event with a 410 Status, then the end of the stream.
    Expire,
}

/// Request counters, as `GET /_fake/stats` returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// List requests.
    pub lists: u64,
    /// Watch requests.
    pub watches: u64,
    /// 410 answers (HTTP status or `ERROR` event).
    pub expired: u64,
    /// Status subresource patches, by resource name.
    pub status_patches: BTreeMap<String, u64>,
    /// Secret reads.
    pub secret_reads: u64,
    /// Lease reads.
    pub lease_reads: u64,
    /// Lease creates and replaces that succeeded.
    pub lease_writes: u64,
    /// Lease writes refused with 409.
    pub lease_conflicts: u64,
}

impl Stats {
    /// Returns the number of status patches over all resources.
    pub fn total_status_patches(&self) -> u64 {
        self.status_patches.values().sum()
    }
}

pub(crate) struct State {
    pub config: FakeConfig,
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Arc<Change>>,
    /// Watches may start from this version or later; older ones get 410.
    pub floor: u64,
    pub changes: broadcast::Sender<Arc<Change>>,
    pub cut: watch::Sender<(u64, Cut)>,
    /// Which field manager owns each top-level status field of each object.
    pub status_owners: BTreeMap<Key, BTreeMap<String, String>>,
    pub stats: Stats,
    uids: u64,
}

impl State {
    pub fn new(config: FakeConfig) -> Self {
        let (changes, _) = broadcast::channel(1024);
        let (cut, _) = watch::channel((0, Cut::None));
        Self {
            config,
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: 1,
            changes,
            cut,
            status_owners: BTreeMap::new(),
            stats: Stats::default(),
            uids: 0,
        }
    }

    /// Creates or replaces an object as a client would (`PUT` semantics for the body's
    /// `metadata.labels`/`annotations`, `spec` and `data`): server fields are kept or set,
    /// `status` is kept, `generation` grows when `spec` changes.
    pub fn put(&mut self, kind: Kind, namespace: &str, name: &str, mut object: Value) -> Value {
        let key: Key = (kind.plural, namespace.to_owned(), name.to_owned());
        let old = self.objects.get(&key).cloned();
        let rv = self.next_rv();
        let (uid, created, generation) = match &old {
            Some(old) => {
                let changed = old.get("spec") != object.get("spec");
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                (
                    old["metadata"]["uid"].clone(),
                    old["metadata"]["creationTimestamp"].clone(),
                    if changed { generation + 1 } else { generation },
                )
            }
            None => {
                self.uids += 1;
                (
                    json!(format!("00000000-0000-4000-8000-{:012}", self.uids)),
                    json!(timestamp(now())),
                    1,
                )
            }
        };
        object["apiVersion"] = json!(kind.api_version);
        object["kind"] = json!(kind.kind);
        let metadata = object
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
        if let Some(metadata) = metadata {
            metadata["name"] = json!(name);
            metadata["namespace"] = json!(namespace);
            metadata["uid"] = uid;
            metadata["creationTimestamp"] = created;
            metadata["resourceVersion"] = json!(rv.to_string());
            if kind.has_generation {
                metadata["generation"] = json!(generation);
            }
        }
        match old.as_ref().and_then(|o| o.get("status")) {
            Some(status) => object["status"] = status.clone(),
            None => {
                if let Some(o) = object.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        let event = if old.is_some() { "MODIFIED" } else { "ADDED" };
        self.objects.insert(key.clone(), object.clone());
        self.record(rv, event, key, object.clone());
        object
    }

    /// Replaces a stored object with `object` as given (server fields already set), bumping
    /// its resource version.
    pub fn store(&mut self, key: Key, mut object: Value) -> Value {
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key.clone(), object.clone());
        self.record(rv, "MODIFIED", key, object.clone());
        object
    }

    /// Deletes an object; returns it as it was deleted.
    pub fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let key: Key = (kind.plural, namespace.to_owned(), name.to_owned());
        let mut object = self.objects.remove(&key)?;
        self.status_owners.remove(&key);
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(rv, "DELETED", key, object.clone());
        Some(object)
    }

    /// Forgets the whole history and moves the resource version on, as if the store had
    /// been compacted after writes this client never saw: every watch from an earlier version
    /// gets 410 Gone.
    pub fn compact(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
    }

    /// Cuts every open watch.
    pub fn cut_watches(&mut self, how: Cut) {
        self.cut.send_modify(|(epoch, cut)| {
            *epoch += 1;
            *cut = how;
        });
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, rv: u64, event: &'static str, key: Key, object: Value) {
        let change = Arc::new(Change {
            rv,
            event,
            key,
            object,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.config.history {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.rv;
            }
        }
        // No receiver is fine: nobody watches.
        let _ = self.changes.send(change);
    }
}

/// Formats a time as Kubernetes does (RFC 3339, seconds).
pub(crate) fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[allow(
    clippy::disallowed_methods,
    reason = "the fake server stamps objects with real creation times"
)]
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}
