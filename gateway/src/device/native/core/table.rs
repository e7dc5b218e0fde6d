//! The peer table: keys, peers by public key and by slot (the receiver index `Tunn` puts
//! in every message, shifted right by 8), and their allowed IPs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::Tunn;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use zeroize::Zeroizing;

use super::{Core, HANDSHAKE_RATE_LIMIT, MAX_PEERS};

/// One peer's state.
pub struct Peer {
    /// Its static public key.
    pub public: [u8; 32],
    /// Its preshared key, if any.
    pub psk: Option<Zeroizing<[u8; 32]>>,
    /// Where its datagrams go: configured, then the source of its last authenticated one.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds (0 = off). Kept here, not in `Tunn`, so it can
    /// change without a new session.
    pub keepalive: u16,
    /// The protocol state; `None` until the device has a private key.
    pub(super) tunn: Option<Tunn>,
    /// Monotonic time of the last datagram sent to it.
    pub(super) last_tx: Duration,
    /// Wall-clock time of its last handshake, as reported.
    pub(super) last_handshake: Option<SystemTime>,
    /// Whether its `Tunn` runs on the second key (see `rotation.rs`).
    pub(super) on_second: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("endpoint", &self.endpoint)
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Returns the wall-clock time of its last handshake.
    pub fn last_handshake(&self) -> Option<SystemTime> {
        self.last_handshake
    }

    /// Returns (tx bytes, rx bytes) of its current tunnel.
    pub fn bytes(&self) -> (u64, u64) {
        self.tunn.as_ref().map_or((0, 0), |t| {
            let (_, tx, rx, _, _) = t.stats();
            (tx as u64, rx as u64)
        })
    }
}

impl Core {
    /// Sets (or with `None` removes) the private key. Every session restarts, as the key
    /// is part of every handshake. Setting the key it already has changes nothing.
    pub fn set_private_key(&mut self, key: Option<[u8; 32]>) {
        let Some(bytes) = key else {
            self.private = None;
            self.public = None;
            self.limiter = None;
            for peer in self.slots.iter_mut().flatten() {
                peer.tunn = None;
            }
            return;
        };
        if self.private.as_ref().map(|k| k.to_bytes()) == Some(bytes) {
            return;
        }
        let private = StaticSecret::from(bytes);
        let public = PublicKey::from(&private);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        self.private = Some(private);
        self.public = Some(public);
        self.limiter = Some(limiter);
        for index in 0..self.slots.len() {
            self.rebuild_tunn(index);
        }
    }

    /// Returns the peers with their slot index, by public key.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.by_key
            .values()
            .filter_map(|i| self.slots.get(*i).and_then(Option::as_ref))
    }

    /// Returns a peer's allowed IPs.
    pub fn allowed_ips(&self, public: &[u8; 32]) -> BTreeSet<IpNet> {
        self.by_key
            .get(public)
            .map(|i| self.routes.nets_of(i))
            .unwrap_or_default()
    }

    /// Returns whether the peer exists.
    pub fn has_peer(&self, public: &[u8; 32]) -> bool {
        self.by_key.contains_key(public)
    }

    /// Returns the peer, adding it (without endpoint, keepalive or allowed IPs) if new.
    /// `None` when the table is full.
    pub fn peer_mut(&mut self, public: [u8; 32]) -> Option<&mut Peer> {
        let index = match self.by_key.get(&public) {
            Some(i) => *i,
            None => {
                let index = match self.slots.iter().position(Option::is_none) {
                    Some(free) => free,
                    None if self.slots.len() < MAX_PEERS => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                    None => return None,
                };
                self.slots[index] = Some(Peer {
                    public,
                    psk: None,
                    endpoint: None,
                    keepalive: 0,
                    tunn: None,
                    last_tx: Duration::ZERO,
                    last_handshake: None,
                    on_second: false,
                });
                self.by_key.insert(public, index);
                self.rebuild_tunn(index);
                index
            }
        };
        self.slots.get_mut(index).and_then(Option::as_mut)
    }

    /// Changes a peer's preshared key; a different key starts a new session.
    pub fn set_psk(&mut self, public: &[u8; 32], psk: Option<[u8; 32]>) {
        let Some(index) = self.by_key.get(public).copied() else {
            return;
        };
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        if peer.psk.as_ref().map(|k| **k) == psk {
            return;
        }
        peer.psk = psk.map(Zeroizing::new);
        self.rebuild_tunn(index);
    }

    pub(super) fn rebuild_tunn(&mut self, index: usize) {
        let (Some(private), Some(peer)) = (
            self.private.as_ref(),
            self.slots.get_mut(index).and_then(Option::as_mut),
        ) else {
            return;
        };
        let index = u32::try_from(index).unwrap_or(u32::MAX) & 0x00ff_ffff;
        peer.tunn = Some(Tunn::new(
            private.clone(),
            PublicKey::from(peer.public),
            peer.psk.as_ref().map(|k| **k),
            None,
            index,
            self.limiter.clone(),
        ));
        peer.last_handshake = None;
        peer.on_second = false;
    }

    /// Removes a peer and its routes.
    pub fn remove_peer(&mut self, public: &[u8; 32]) {
        if let Some(index) = self.by_key.remove(public) {
            self.routes.remove_value(&index);
            if let Some(slot) = self.slots.get_mut(index) {
                *slot = None;
            }
        }
    }

    /// Removes every peer.
    pub fn clear_peers(&mut self) {
        let keys: Vec<[u8; 32]> = self.by_key.keys().copied().collect();
        for key in keys {
            self.remove_peer(&key);
        }
    }

    /// Routes `net` to the peer (taking it from any other peer).
    pub fn add_allowed_ip(&mut self, public: &[u8; 32], net: IpNet) {
        if let Some(index) = self.by_key.get(public) {
            self.routes.insert(net, *index);
        }
    }

    /// Removes all of the peer's allowed IPs.
    pub fn clear_allowed_ips(&mut self, public: &[u8; 32]) {
        if let Some(index) = self.by_key.get(public) {
            self.routes.remove_value(index);
        }
    }
}
