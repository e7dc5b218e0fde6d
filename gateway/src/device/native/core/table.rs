//! The peer table: keys, peers by public key and by slot (the receiver index `Tunn` puts
//! in every message, shifted right by 8, holds the slot; see `rotation.rs`), and their
//! allowed IPs.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use boringtun::noise::Tunn;
use boringtun::x25519::PublicKey;
use ipnet::IpNet;
use zeroize::Zeroizing;

use super::noise::Timestamp;
use super::rotation::{Role, Slot, tunn_index};
use super::{Core, MAX_PEERS, StaticKey};

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
    /// One tunnel per key slot of the device, indexed by [`Slot`]: the current key's (`None`
    /// until the device has a private key) and the other key's (created when the peer first
    /// initiates to it).
    pub(super) tunnels: [Option<Tunnel>; 2],
    /// The tunnel outgoing traffic uses: the one whose session the peer confirmed last.
    pub(super) active: Slot,
    /// The timestamp of the newest initiation accepted from it, on any key.
    pub(super) newest_init: Option<Timestamp>,
    /// Bytes (tx, rx) of the datagrams sent to it and accepted from it, headers and
    /// keepalives included, as the kernel module counts them.
    pub(super) traffic: (u64, u64),
    /// Monotonic time of the last datagram sent to it.
    pub(super) last_tx: Duration,
    /// Wall-clock time of its last handshake, as reported.
    pub(super) last_handshake: Option<SystemTime>,
}

/// One `Tunn` (sessions with the peer under one of the device's static keys) and what the
/// core tracks about it.
pub(super) struct Tunnel {
    pub(super) tunn: Tunn,
    /// Our index of the session this tunnel answered an initiation with, until the peer's
    /// first packet on it confirms it.
    pub(super) unconfirmed: Option<u32>,
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

    /// Returns (tx bytes, rx bytes): every datagram sent to it and every one accepted from
    /// it, across all its sessions and tunnels.
    pub fn bytes(&self) -> (u64, u64) {
        self.traffic
    }

    /// Replaces its tunnel on `key`.
    pub(super) fn replace_tunnel(&mut self, key: Slot, tunnel: Option<Tunnel>) {
        self.tunnels[key as usize] = tunnel;
    }
}

impl Tunnel {
    /// Returns a tunnel to the peer in slot `slot` under the device's static key `own`.
    pub(super) fn new(own: &StaticKey, key: Slot, slot: usize, peer: &Peer) -> Self {
        Self {
            tunn: Tunn::new(
                own.private.clone(),
                PublicKey::from(peer.public),
                peer.psk.as_ref().map(|k| **k),
                None,
                tunn_index(slot, key),
                Some(own.tunn_limiter.clone()),
            ),
            unconfirmed: None,
        }
    }
}

impl Core {
    /// Sets (or with `None` removes) the private key. Every session on it restarts, as the
    /// key is part of every handshake. Setting the key it already has changes nothing.
    pub fn set_private_key(&mut self, key: Option<[u8; 32]>) {
        let Some(bytes) = key else {
            self.keys = [None, None];
            self.role = Role::Staged;
            for peer in self.slots.iter_mut().flatten() {
                peer.replace_tunnel(Slot::A, None);
                peer.replace_tunnel(Slot::B, None);
                peer.active = self.current;
            }
            return;
        };
        if self.current_key().is_some_and(|k| k.is(&bytes)) {
            return;
        }
        self.keys[self.current as usize] = Some(StaticKey::new(bytes));
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
                    tunnels: [None, None],
                    active: self.current,
                    newest_init: None,
                    traffic: (0, 0),
                    last_tx: Duration::ZERO,
                    last_handshake: None,
                });
                self.by_key.insert(public, index);
                self.rebuild_tunn(index);
                index
            }
        };
        self.slots.get_mut(index).and_then(Option::as_mut)
    }

    /// Changes a peer's preshared key; a different key starts a new session (on the current
    /// key: the second key's tunnel is dropped).
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
        peer.replace_tunnel(self.current.other(), None);
        peer.active = self.current;
        self.rebuild_tunn(index);
    }

    /// Gives the peer in slot `index` a new tunnel on the current key.
    pub(super) fn rebuild_tunn(&mut self, index: usize) {
        let current = self.current;
        let (Some(own), Some(peer)) = (
            self.keys[current as usize].as_ref(),
            self.slots.get_mut(index).and_then(Option::as_mut),
        ) else {
            return;
        };
        let tunnel = Tunnel::new(own, current, index, peer);
        peer.replace_tunnel(current, Some(tunnel));
        peer.last_handshake = None;
    }

    /// Gives the peer under `old` the public key `new` in place: it keeps its table slot, and
    /// with it its routes, endpoint, keepalive, preshared key and counters, under one lock, so
    /// no packet finds its allowed IPs unrouted. Its tunnels start over on the current key
    /// (sessions are bound to the old key; a new handshake follows). Returns `false`, changing
    /// nothing, when `old` is not a peer or `new` is another peer's key.
    pub fn rekey_peer(&mut self, old: &[u8; 32], new: [u8; 32]) -> bool {
        let Some(index) = self.by_key.get(old).copied() else {
            return false;
        };
        if *old == new {
            return true;
        }
        if self.by_key.contains_key(&new) {
            return false;
        }
        let current = self.current;
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        self.by_key.remove(old);
        self.by_key.insert(new, index);
        peer.public = new;
        peer.replace_tunnel(Slot::A, None);
        peer.replace_tunnel(Slot::B, None);
        peer.active = current;
        peer.newest_init = None;
        self.rebuild_tunn(index);
        true
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
