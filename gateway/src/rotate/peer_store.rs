//! What this gateway holds, durably, of its peers' own key rotations: one
//! [`PeerRotationState`] per peer name, in a JSON file written atomically (mode 0600, synced
//! with its directory) before any acknowledgement leaves.
//!
//! The file is outside input too (anyone with write access to the directory): it is read
//! with a size bound, and a damaged file stops the gateway at start with a clear error
//! instead of being guessed at, because it holds the replay guard (each peer's last
//! sequence).

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

/// Why the store cannot be read or written. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be read or written.
    #[error("peer rotation state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
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
    path: PathBuf,
    states: Arc<RwLock<BTreeMap<String, PeerRotationState>>>,
    /// The key each accepted declaration names, as the driver last saw them.
    declared: Arc<RwLock<BTreeMap<String, PublicKey>>>,
}

impl PeerStore {
    /// Opens the store at `path`: reads it when it exists, creates its directory (0700)
    /// when missing. Nothing is written until a state changes.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be read or is damaged.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
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
        Ok(Self {
            path: path.to_owned(),
            states: Arc::new(RwLock::new(states)),
            declared: Arc::new(RwLock::new(BTreeMap::new())),
        })
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the state held for `peer`.
    pub fn get(&self, peer: &str) -> Option<PeerRotationState> {
        self.read().get(peer).cloned()
    }

    /// Returns every state, by peer name.
    pub fn all(&self) -> BTreeMap<String, PeerRotationState> {
        self.read().clone()
    }

    /// Stores `state` for `peer`: the file first, then the shared view.
    ///
    /// # Errors
    /// [`StoreError::Io`]; nothing changed then.
    pub fn put(&self, peer: &str, state: PeerRotationState) -> Result<(), StoreError> {
        let mut next = self.all();
        next.insert(peer.to_owned(), state);
        self.write_file(&next)?;
        if let Ok(mut states) = self.states.write() {
            *states = next;
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

    /// Records the key each accepted declaration names (the driver, every pass).
    pub fn set_declared(&self, declared: BTreeMap<String, PublicKey>) {
        if let Ok(mut held) = self.declared.write() {
            *held = declared;
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

    fn write_file(&self, states: &BTreeMap<String, PeerRotationState>) -> Result<(), StoreError> {
        let document = Document {
            schema: SCHEMA,
            peers: states.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&document).map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        kms_client::write_private(&self.path, &bytes).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })
    }
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
