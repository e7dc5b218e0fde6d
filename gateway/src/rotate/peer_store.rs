//! What this gateway holds, durably, of its peers' own key rotations: one
//! [`PeerRotationState`] per peer name, stored before any acknowledgement leaves.
//!
//! Two backends, by peer source:
//! - directory source: a JSON file written atomically (mode 0600, synced with its
//!   directory). The file is outside input too (anyone with write access to the directory):
//!   it is read with a size bound;
//! - Kubernetes source: each peer's `WireGuardPeer` status ([`status`]), read once at start
//!   and written with server-side apply.
//!
//! A damaged state stops the gateway at start with a clear error instead of being guessed
//! at, because it holds the replay guard (each peer's last sequence).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use ztgw_rotation::responder::{Declared, PeerRotationState, declared};

use crate::core::key::PublicKey;
use crate::status::PeerKeyStatus;

/// The largest state file read back.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The schema of the file.
const SCHEMA: u32 = 1;

pub mod status;

/// Why the store cannot be read or written. Names the file or the resource, never its
/// content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be read or written.
    // The cause is in the message, not a source (as `Api`): the responder logs the display,
    // and a chain printed in full would name it twice.
    #[error("peer rotation state {path} ([peers] state_path): {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`] or is not a state document.
    #[error(
        "peer rotation state {path} is damaged ({what}); it holds the peers' replay guards, so \
         it is not guessed at: restore it from a backup, or remove it to forget every peer's \
         rotation history"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, in our words.
        what: &'static str,
    },
    /// The API server refused a read or a write, or cannot be reached.
    // The cause is in the message, not a source: the responder logs this error's display.
    #[error("cannot {action} {resource}: {reason}")]
    Api {
        /// What was tried.
        action: &'static str,
        /// The resource or the list.
        resource: String,
        /// The client's or the API server's words.
        reason: String,
    },
    /// The API server did not answer in time.
    #[error("cannot {action} {resource}: no answer within {seconds} s")]
    TimedOut {
        /// What was tried.
        action: &'static str,
        /// The resource or the list.
        resource: String,
        /// The time allowed.
        seconds: u64,
    },
    /// A peer's stored state (`status.rotation`) does not parse.
    #[error(
        "the rotation state in {resource} (status.rotation) is damaged ({what}); it holds the \
         peer's replay guard, so it is not guessed at: restore it, or remove status.rotation \
         to forget the peer's rotation history"
    )]
    DamagedStatus {
        /// The peer's resource, `WireGuardPeer namespace/name`.
        resource: String,
        /// What is wrong, in our words.
        what: &'static str,
    },
    /// The API server accepted a write but answered without the state written.
    #[error(
        "the API server did not keep the rotation state in {resource} (status.rotation): \
         install the CustomResourceDefinition of manifests/crds, which has the field"
    )]
    NotKept {
        /// The peer's resource, `WireGuardPeer namespace/name`.
        resource: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    schema: u32,
    peers: BTreeMap<String, PeerRotationState>,
}

/// The peers' rotation states, shared by the responder (which writes them) and the driver
/// (which runs each peer under the key the states say it runs under).
#[derive(Debug, Clone)]
pub struct PeerStore {
    backend: Arc<Backend>,
    states: Arc<RwLock<BTreeMap<String, PeerRotationState>>>,
    /// The key each accepted declaration names, as the driver last saw them.
    declared: Arc<RwLock<BTreeMap<String, PublicKey>>>,
}

/// Where the states are kept.
#[derive(Debug)]
enum Backend {
    /// A JSON file (the directory source).
    File(PathBuf),
    /// The peers' `WireGuardPeer` status (the Kubernetes source).
    Status(Box<status::StatusStore>),
}

impl PeerStore {
    /// Opens the store at `path`: reads it when it exists, creates its directory (0700)
    /// when missing. Nothing is written until a state changes.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be read or is damaged.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |cause| StoreError::Io {
            path: path.to_owned(),
            cause,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let states = match std::fs::File::open(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
            Ok(file) => {
                let mut bytes = Vec::new();
                file.take(MAX_FILE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                parse(path, &bytes)?
            }
        };
        Ok(Self::new(Backend::File(path.to_owned()), states))
    }

    /// Opens the store in the status of `namespace`'s `WireGuardPeer`s: lists them once
    /// (bounded in time) and reads each one's stored state.
    ///
    /// # Errors
    /// [`StoreError`] when the list fails or times out, or a stored state is damaged.
    pub async fn open_kube(client: kube::Client, namespace: &str) -> Result<Self, StoreError> {
        let (store, states) = status::StatusStore::open(client, namespace).await?;
        Ok(Self::new(Backend::Status(Box::new(store)), states))
    }

    fn new(backend: Backend, states: BTreeMap<String, PeerRotationState>) -> Self {
        Self {
            backend: Arc::new(backend),
            states: Arc::new(RwLock::new(states)),
            declared: Arc::new(RwLock::new(BTreeMap::new())),
        }
    }

    /// Returns the file's path, with the file backend.
    pub fn path(&self) -> Option<&Path> {
        match &*self.backend {
            Backend::File(path) => Some(path),
            Backend::Status(_) => None,
        }
    }

    /// Returns the state held for `peer`.
    pub fn get(&self, peer: &str) -> Option<PeerRotationState> {
        self.read().get(peer).cloned()
    }

    /// Returns every state, by peer name.
    pub fn all(&self) -> BTreeMap<String, PeerRotationState> {
        self.read().clone()
    }

    /// Stores `state` for `peer`: durably first (the file, or the resource's status once the
    /// API server accepted it), then the shared view. With the Kubernetes backend the
    /// `KeyCurrent` condition is written with it, for the declaration last recorded by
    /// [`set_declared`](Self::set_declared).
    ///
    /// # Errors
    /// [`StoreError`]; the shared view did not change then.
    pub async fn put(&self, peer: &str, state: PeerRotationState) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::File(path) => {
                let mut next = self.all();
                next.insert(peer.to_owned(), state);
                write_file(path, &next)?;
                if let Ok(mut states) = self.states.write() {
                    *states = next;
                }
            }
            Backend::Status(store) => {
                let _writing = store.lock().await;
                let declared = self.declared_key(peer);
                store
                    .write(peer, &state, declared.as_ref(), crate::clock::now())
                    .await?;
                if let Ok(mut states) = self.states.write() {
                    states.insert(peer.to_owned(), state);
                }
            }
        }
        Ok(())
    }

    /// The key the device is to run `peer` under when its declaration names `declared_key`:
    /// the key it rotated to when the declaration names one it rotated away from.
    pub fn running_key(&self, peer: &str, declared_key: PublicKey) -> PublicKey {
        self.read().get(peer).map_or(declared_key, |state| {
            declared(state, &declared_key).running_key(declared_key)
        })
    }

    /// What `peer`'s declaration naming `declared_key` means.
    pub fn declared(&self, peer: &str, declared_key: &PublicKey) -> Option<Declared> {
        self.read()
            .get(peer)
            .map(|state| declared(state, declared_key))
    }

    /// Records the key each accepted declaration names (the driver, every pass). With the
    /// Kubernetes backend, a peer whose `KeyCurrent` condition no longer says what its
    /// declaration means (the operator updated `spec.publicKey`) gets it rewritten in the
    /// background; a failed rewrite is tried again on a later call.
    pub fn set_declared(&self, declared: BTreeMap<String, PublicKey>) {
        if let Ok(mut held) = self.declared.write() {
            *held = declared;
        }
        if let Backend::Status(store) = &*self.backend
            && self.has_stale_condition(store)
            && store.begin_refresh()
        {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let this = self.clone();
                    runtime.spawn(async move { this.refresh_conditions().await });
                }
                Err(_) => store.end_refresh(),
            }
        }
    }

    /// Returns the key each accepted declaration names, by peer name.
    pub fn declared_keys(&self) -> Vec<(String, PublicKey)> {
        let held = match self.declared.read() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        held.iter().map(|(n, k)| (n.clone(), *k)).collect()
    }

    /// The peers' rotation states for the status document.
    pub fn statuses(&self) -> Vec<PeerKeyStatus> {
        let declared = self.declared_keys();
        self.all()
            .into_iter()
            .map(|(name, state)| {
                let active = *state.active_public_key();
                let declared_public_key = declared
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, key)| *key)
                    .filter(|key| *key != active)
                    .map(|key| key.to_string());
                PeerKeyStatus {
                    name,
                    active_public_key: active.to_string(),
                    next_public_key: state.next_public_key().map(ToString::to_string),
                    declared_public_key,
                }
            })
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, PeerRotationState>> {
        match self.states.read() {
            Ok(states) => states,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn declared_key(&self, peer: &str) -> Option<PublicKey> {
        let held = match self.declared.read() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        held.get(peer).copied()
    }

    /// Whether a peer with a stored state and a known declaration has a condition that no
    /// longer says what the declaration means.
    fn has_stale_condition(&self, store: &status::StatusStore) -> bool {
        self.read().iter().any(|(peer, state)| {
            self.declared_key(peer)
                .is_some_and(|key| store.is_stale(peer, state, &key))
        })
    }

    /// Rewrites every stale `KeyCurrent` condition, one write at a time, each with the
    /// peer's state as stored.
    async fn refresh_conditions(&self) {
        let Backend::Status(store) = &*self.backend else {
            return;
        };
        /// Ends the refresh however the task ends (aborted included).
        struct Ending<'s>(&'s status::StatusStore);
        impl Drop for Ending<'_> {
            fn drop(&mut self) {
                self.0.end_refresh();
            }
        }
        let _ending = Ending(store);
        let _writing = store.lock().await;
        for (peer, state) in self.all() {
            let Some(key) = self.declared_key(&peer) else {
                continue;
            };
            if !store.is_stale(&peer, &state, &key) {
                continue;
            }
            match store
                .write(&peer, &state, Some(&key), crate::clock::now())
                .await
            {
                Ok(()) => {
                    store.record_refresh(true);
                    tracing::info!(peer = %peer, "KeyCurrent condition updated for the peer's declaration");
                }
                Err(e) if store.record_refresh(false) => {
                    tracing::warn!(peer = %peer, error = %e, "cannot update a peer's KeyCurrent condition; retrying");
                }
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "KeyCurrent condition update failed again");
                }
            }
        }
    }
}

fn write_file(path: &Path, states: &BTreeMap<String, PeerRotationState>) -> Result<(), StoreError> {
    let document = Document {
        schema: SCHEMA,
        peers: states.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&document).map_err(|e| StoreError::Io {
        path: path.to_owned(),
        cause: std::io::Error::other(e),
    })?;
    kms_client::write_private(path, &bytes).map_err(|cause| StoreError::Io {
        path: path.to_owned(),
        cause,
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, PeerRotationState>, StoreError> {
    let damaged = |what| StoreError::Damaged {
        path: path.to_owned(),
        what,
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(damaged("larger than 1 MiB"));
    }
    let document: Document =
        serde_json::from_slice(bytes).map_err(|_| damaged("not a peer rotation state document"))?;
    if document.schema != SCHEMA {
        return Err(damaged("an unknown schema"));
    }
    if !document.peers.keys().all(|name| is_resource_name(name)) {
        return Err(damaged("a peer name that is not a resource name"));
    }
    Ok(document.peers)
}

/// A Kubernetes object name (DNS subdomain): what a declaration's name may be.
fn is_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
}

#[cfg(test)]
mod tests;
