//! The typed in-process handle on the native plane: what the gateway asks of its own device,
//! as calls on the [`Core`] under its lock, with typed answers. No text, no errno, and no
//! copy of the private key on the way; the public UAPI socket is an adapter over the same
//! handle ([`DeviceHandle::uapi`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::UNIX_EPOCH;

use kms_client::PrivateKey;
use zeroize::Zeroizing;

use super::core::{Core, Counters, RotationError, canonical};
use super::uapi;
use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::{DeviceReport, PeerReport};

/// Why the device refused an operation. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The operation names a peer the device does not have.
    #[error("the device has no peer {0}")]
    UnknownPeer(PublicKey),
    /// The new key of a key replacement is already another peer's.
    #[error("the key {0} is already another peer's")]
    KeyInUse(PublicKey),
    /// The peer table has no free slot.
    #[error("the peer table is full")]
    TableFull,
    /// The device is bound to another UDP port; the port cannot change while it runs.
    #[error("the device listens on port {bound}; it cannot move to {asked} while running")]
    ListenPort {
        /// The port the device is bound to.
        bound: u16,
        /// The port asked for.
        asked: u16,
    },
    /// A rotation step was refused.
    #[error(transparent)]
    Rotation(#[from] RotationError),
}

/// What the device reports: its peers, and the packets it dropped by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Peers, handshakes and traffic, ordered by public key.
    pub device: DeviceReport,
    /// Packets dropped since the device started.
    pub dropped: Counters,
}

/// The device's static public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// The current key's.
    pub current: Option<PublicKey>,
    /// The staged key's, before it is promoted.
    pub staged: Option<PublicKey>,
    /// The previous key's, after a promotion and until it is dropped.
    pub previous: Option<PublicKey>,
}

/// A handle on a running native device's core. Cheap to clone; every call takes the core's
/// lock once, briefly.
#[derive(Clone)]
pub struct DeviceHandle {
    core: Arc<Mutex<Core>>,
    listen_port: u16,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("listen_port", &self.listen_port)
            .finish_non_exhaustive()
    }
}

impl DeviceHandle {
    /// Returns a handle on `core`, a device bound to UDP port `listen_port`.
    pub fn new(core: Arc<Mutex<Core>>, listen_port: u16) -> Self {
        Self { core, listen_port }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Returns the UDP port the device is bound to.
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    /// Asks for the UDP port: the port the device is bound to is accepted, any other
    /// refused (the socket is bound once, at start).
    ///
    /// # Errors
    /// [`Error::ListenPort`].
    pub fn set_listen_port(&self, port: u16) -> Result<(), Error> {
        if port == self.listen_port {
            Ok(())
        } else {
            Err(Error::ListenPort {
                bound: self.listen_port,
                asked: port,
            })
        }
    }

    /// Sets the current private key (at start-up). Every session restarts if it changed.
    pub fn set_private_key(&self, key: &PrivateKey) {
        self.lock().set_private_key(Some(*key.expose_bytes()));
    }

    /// Returns the peers and the drop counters, read from the core in one lock.
    pub fn report(&self) -> Report {
        let core = self.lock();
        let peers = core
            .peers()
            .map(|peer| {
                let (tx, rx) = peer.bytes();
                PeerReport {
                    public_key: PublicKey::from_bytes(peer.public),
                    endpoint: peer.endpoint,
                    allowed_ips: core.allowed_ips(&peer.public),
                    persistent_keepalive: peer.keepalive,
                    last_handshake: peer
                        .last_handshake()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .filter(|d| !d.is_zero()),
                    rx_bytes: rx,
                    tx_bytes: tx,
                }
            })
            .collect();
        Report {
            device: DeviceReport {
                listen_port: Some(self.listen_port),
                peers,
            },
            dropped: core.counters,
        }
    }

    /// Returns the drop counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// Returns the device's static public keys.
    pub fn keys(&self) -> Keys {
        let core = self.lock();
        Keys {
            current: core.current_public().map(PublicKey::from_bytes),
            staged: core.staged_public().map(PublicKey::from_bytes),
            previous: core.previous_public().map(PublicKey::from_bytes),
        }
    }

    /// Applies one operation under one lock:
    /// - [`Op::RemovePeer`] removes the peer and its allowed IPs (a peer already gone is not
    ///   an error);
    /// - [`Op::UpsertPeer`] adds the peer or updates it in place (its session stays unless
    ///   the preshared key changed; its allowed IPs are replaced; an endpoint of `None`
    ///   keeps the one it learned);
    /// - [`Op::ReplaceKey`] gives the peer under `old` the new key in place, keeping its
    ///   allowed IPs, endpoint, keepalive and routing entry throughout, then applies the
    ///   rest of the configuration; a new handshake follows.
    ///
    /// # Errors
    /// [`Error::TableFull`]; for a replacement, [`Error::UnknownPeer`] and
    /// [`Error::KeyInUse`]. Nothing changed then.
    pub fn apply(&self, op: &Op) -> Result<(), Error> {
        let mut core = self.lock();
        match op {
            Op::RemovePeer(key) => {
                core.remove_peer(key.as_bytes());
                Ok(())
            }
            Op::UpsertPeer(config) => upsert(&mut core, config),
            Op::ReplaceKey { old, config } => {
                if !core.has_peer(old.as_bytes()) {
                    return Err(Error::UnknownPeer(*old));
                }
                if !core.rekey_peer(old.as_bytes(), *config.public_key.as_bytes()) {
                    return Err(Error::KeyInUse(config.public_key));
                }
                upsert(&mut core, config)
            }
        }
    }

    /// Stages `key` as the next static key: handshakes addressed to it are answered too. A
    /// staged key is replaced.
    ///
    /// # Errors
    /// [`RotationError`]: no current key, the key is the current one, or the previous key
    /// is still held.
    pub fn stage_key(&self, key: &PrivateKey) -> Result<(), Error> {
        Ok(self.lock().stage_key(*key.expose_bytes())?)
    }

    /// Forgets the staged key.
    ///
    /// # Errors
    /// [`RotationError::NothingStaged`].
    pub fn unstage_key(&self) -> Result<(), Error> {
        Ok(self.lock().unstage_key()?)
    }

    /// Makes the staged key current, keeping every tunnel and session; the old key still
    /// answers until [`DeviceHandle::drop_previous`].
    ///
    /// # Errors
    /// [`RotationError::NothingStaged`].
    pub fn promote_staged(&self) -> Result<(), Error> {
        Ok(self.lock().promote_staged()?)
    }

    /// Makes the previous key current again and the new one staged (a rotation rolled back
    /// after its switch).
    ///
    /// # Errors
    /// [`RotationError::NoPrevious`].
    pub fn demote_current(&self) -> Result<(), Error> {
        Ok(self.lock().demote_current()?)
    }

    /// Forgets the previous key.
    ///
    /// # Errors
    /// [`RotationError::NoPrevious`].
    pub fn drop_previous(&self) -> Result<(), Error> {
        Ok(self.lock().drop_previous()?)
    }

    /// Accepts the peer known as `current` under its announced next key `next` too: its
    /// initiations under either key are answered, and its traffic moves to a session under
    /// `next` once the peer confirms one. Accepting the same key again changes nothing.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`]; [`Error::KeyInUse`] when `next` is the peer's current key or
    /// another peer's; [`RotationError::SecondKeyHeld`] while the device rotates its own key;
    /// [`RotationError::OtherNextKey`] when the peer has another next key.
    pub fn accept_peer_next_key(&self, current: &PublicKey, next: &PublicKey) -> Result<(), Error> {
        self.lock()
            .accept_peer_next_key(current.as_bytes(), *next.as_bytes())
            .map_err(|e| peer_error(e, *current, *next))
    }

    /// Ends the rotation of the peer whose next key is `next`: it is known as `next` only,
    /// and its sessions under its old key go. Completing again changes nothing.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`]; [`Error::KeyInUse`] when another peer holds `next`.
    pub fn complete_peer_key(&self, next: &PublicKey) -> Result<(), Error> {
        self.lock()
            .complete_peer_key(next.as_bytes())
            .map_err(|e| peer_error(e, *next, *next))
    }

    /// Aborts the rotation of the peer known as `current`: its next key is forgotten, and
    /// its traffic stays on (or goes back to) its current key.
    ///
    /// # Errors
    /// [`Error::UnknownPeer`].
    pub fn forget_peer_next_key(&self, current: &PublicKey) -> Result<(), Error> {
        self.lock()
            .forget_peer_next_key(current.as_bytes())
            .map_err(|e| peer_error(e, *current, *current))
    }

    /// Starts a handshake with the peer under the current key at the device's next tick
    /// (within 250 ms), while its sessions under the previous key keep carrying data: how a
    /// rotation moves a peer to the key it promoted. The peer's answer moves its traffic.
    pub fn initiate(&self, peer: &PublicKey) {
        self.lock().queue_initiation(*peer.as_bytes());
    }

    /// Returns whether the peer's traffic runs on a session under our current key: after a
    /// promotion, the sign that it answered a handshake under the new key.
    pub fn peer_on_current_key(&self, peer: &PublicKey) -> bool {
        self.lock().session_on_current(peer.as_bytes())
    }

    /// Returns the next public key of the peer known as `current`, while it rotates.
    pub fn peer_next_key(&self, current: &PublicKey) -> Option<PublicKey> {
        self.lock()
            .peer_next_key(current.as_bytes())
            .map(PublicKey::from_bytes)
    }

    /// Answers one request of the cross-platform UAPI text protocol (`get=1`, or `set=1`
    /// and its lines, without the blank line that ends it), for the public socket. Both the
    /// request and the answer may hold key material: the caller keeps the request in a
    /// zeroizing buffer, and the answer is one.
    pub fn uapi(&self, request: &str) -> Zeroizing<String> {
        uapi::answer(&mut self.lock(), request, self.listen_port)
    }
}

/// Maps a refused step of a peer's rotation: an unknown `peer` and a `key` in use get the
/// handle's own variants, the rest stays a rotation error.
fn peer_error(error: RotationError, peer: PublicKey, key: PublicKey) -> Error {
    match error {
        RotationError::UnknownPeer => Error::UnknownPeer(peer),
        RotationError::KeyInUse => Error::KeyInUse(key),
        other => Error::Rotation(other),
    }
}

/// Adds or updates a peer to `config`.
fn upsert(core: &mut Core, config: &PeerConfig) -> Result<(), Error> {
    let public = *config.public_key.as_bytes();
    let peer = core.peer_mut(public).ok_or(Error::TableFull)?;
    if let Some(endpoint) = config.endpoint {
        peer.endpoint = Some(canonical(endpoint));
    }
    peer.keepalive = config.persistent_keepalive;
    core.set_psk(
        &public,
        config.preshared_key.as_ref().map(|k| *k.as_bytes()),
    );
    core.clear_allowed_ips(&public);
    for net in &config.allowed_ips {
        core.add_allowed_ip(&public, *net);
    }
    Ok(())
}

/// Locks the core (or the TUN reader). A panic while holding the lock leaves the core's
/// tables consistent enough to keep forwarding, and the reader's buffers usable.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
