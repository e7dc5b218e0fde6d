//! A fake Kubernetes API server for tests: plain HTTP, in memory, serving what ZT Gateway
//! uses, with the API's semantics: `WireGuardPeer` list (paged, with `resourceVersion`), watch
//! (`ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`, 410 Gone from a bounded history), get, and
//! server-side apply on the status subresource; Secret get; Lease get, create and replace with
//! resource-version conflicts. Errors are `Status` objects with the API server's codes and
//! reasons. Test controls (objects, cutting watches, compaction, counters) are methods here
//! and `/_fake/` routes for tests that run it as a process (`fake-apiserver`).
//!
//! No Kubernetes API server can run on the machines the tests run on; this stands in for it
//! and lives in test code only. It is not a general API server: no discovery, no schema
//! validation, no label selectors, and a paged list is not a consistent snapshot.

mod api;
mod control;
mod state;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

pub use state::{Kind, LEASES, PEERS, SECRETS, Stats};
pub use watch::TooOld;

/// The label that marks a Secret as one the gateway may read preshared keys from.
pub const PSK_LABEL: &str = "zt.hanzo.ai/preshared-key";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// A bearer token every API request must carry; `None` accepts any request.
    pub token: Option<String>,
    /// How many changes the history keeps; watches from older versions get 410.
    pub history: usize,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// How a watch from a too-old version is answered.
    pub too_old: TooOld,
    /// Whether Lease writes (create and replace) fail as they do when the API server cannot
    /// reach its storage: 500 `InternalError`, `etcdserver: request timed out`. Reads still
    /// answer.
    pub refuse_lease_writes: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            token: None,
            history: 1000,
            bookmark_interval: Duration::from_secs(5),
            too_old: TooOld::Event,
            refuse_lease_writes: false,
        }
    }
}

/// A running fake.
pub struct FakeApiServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: api::Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeApiServer {
    /// Binds `listen` and serves on the current runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(listen: SocketAddr, config: FakeConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state::State::new(config)));
        let app = api::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Returns the base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates or replaces a `WireGuardPeer` with this `spec`; returns the stored object.
    pub async fn put_peer(&self, namespace: &str, name: &str, spec: Value) -> Value {
        self.put(PEERS, namespace, name, json!({ "spec": spec }))
            .await
    }

    /// Creates or replaces an object of `kind` (its body without server-set fields).
    pub async fn put(&self, kind: Kind, namespace: &str, name: &str, object: Value) -> Value {
        self.state.lock().await.put(kind, namespace, name, object)
    }

    /// Deletes an object; returns whether it existed.
    pub async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.state
            .lock()
            .await
            .delete(kind, namespace, name)
            .is_some()
    }

    /// Creates or replaces a Secret holding `value` under `key`, labelled as a preshared-key
    /// Secret (`zt.hanzo.ai/preshared-key: "true"`), the only kind the gateway reads.
    pub async fn put_secret(&self, namespace: &str, name: &str, key: &str, value: &[u8]) {
        let object = json!({
            "metadata": { "labels": { PSK_LABEL: "true" } },
            "type": "Opaque",
            "data": { key: STANDARD.encode(value) },
        });
        self.put(SECRETS, namespace, name, object).await;
    }

    /// Returns an object as stored.
    pub async fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let key = (kind.plural, namespace.to_owned(), name.to_owned());
        self.state.lock().await.objects.get(&key).cloned()
    }

    /// Returns the objects of `kind` in `namespace`, by name.
    pub async fn list(&self, kind: Kind, namespace: &str) -> Vec<Value> {
        self.state
            .lock()
            .await
            .objects
            .iter()
            .filter(|((plural, ns, _), _)| *plural == kind.plural && ns == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Breaks every open watch connection.
    pub async fn drop_watches(&self) {
        self.state.lock().await.cut_watches(state::Cut::Drop);
    }

    /// Ends every open watch with a 410 `ERROR` event.
    pub async fn expire_watches(&self) {
        self.state.lock().await.cut_watches(state::Cut::Expire);
    }

    /// Forgets the history: a watch from any version seen so far gets 410.
    pub async fn compact(&self) {
        self.state.lock().await.compact();
    }

    /// Chooses how a watch from a too-old version is answered.
    pub async fn set_too_old(&self, answer: TooOld) {
        self.state.lock().await.config.too_old = answer;
    }

    /// Makes Lease writes fail (see [`FakeConfig::refuse_lease_writes`]) or succeed again.
    pub async fn refuse_lease_writes(&self, refuse: bool) {
        self.state.lock().await.config.refuse_lease_writes = refuse;
    }

    /// Returns the request counters.
    pub async fn stats(&self) -> Stats {
        self.state.lock().await.stats.clone()
    }
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
