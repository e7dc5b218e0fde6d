//! The peer table: keys, peers by public key and by slot (the receiver index `Tunn` puts
//! in every message, shifted right by 8, holds the slot; see `rotation.rs`), and their
//! allowed IPs.
//!
//! Each peer has two tunnel *positions* ([`Slot`] A and B, the top bit of the receiver
//! index). A [`Tunnel`] records which of the device's key slots and which of the peer's
//! public keys it was built with; a new tunnel takes the position of its own key slot when
//! that is free, the other one otherwise. The two positions serve either the device's two
//! keys (its own rotation, `rotation.rs`) or the peer's two keys (the peer's rotation,
//! `peer_rotation.rs`), never both at once: each side refuses to start while the other runs.
//! A peer with a next key is found under it too (`by_next`), but listed under its current
//! key only.

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
    /// Its next public key while it rotates ([`Core::accept_peer_next_key`]).
    pub(super) next: Option<[u8; 32]>,
    /// Its two tunnel positions, indexed by [`Slot`]: the tunnel on our current key and its
    /// current key (`None` until the device has a private key), and one on our other key or
    /// on its next key (created when the peer first initiates to it).
    pub(super) tunnels: [Option<Tunnel>; 2],
    /// The position of the tunnel outgoing traffic uses: the one whose session the peer
    /// confirmed last.
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

/// One `Tunn` (sessions with the peer under one of the device's static keys and one of the
/// peer's) and what the core tracks about it.
pub(super) struct Tunnel {
    pub(super) tunn: Tunn,
    /// The device's key slot it uses.
    pub(super) own: Slot,
    /// The peer's public key it uses.
    pub(super) remote: [u8; 32],
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

    /// Replaces its tunnel at position `at`.
    pub(super) fn replace_tunnel(&mut self, at: Slot, tunnel: Option<Tunnel>) {
        self.tunnels[at as usize] = tunnel;
    }

    /// Returns the position of its tunnel on our key slot `own` and its key `remote`.
    pub(super) fn position(&self, own: Slot, remote: &[u8; 32]) -> Option<Slot> {
        [Slot::A, Slot::B].into_iter().find(|at| {
            self.tunnels[*at as usize]
                .as_ref()
                .is_some_and(|t| t.own == own && t.remote == *remote)
        })
    }

    /// Returns where a new tunnel on our key slot `own` goes: that position if free, else
    /// the other one if free.
    pub(super) fn free_position(&self, own: Slot) -> Option<Slot> {
        [own, own.other()]
            .into_iter()
            .find(|at| self.tunnels[*at as usize].is_none())
    }

    /// Drops every tunnel `drop` selects; returns whether the active one was among them.
    pub(super) fn drop_tunnels(&mut self, drop: impl Fn(&Tunnel) -> bool) -> bool {
        let mut active = false;
        for at in [Slot::A, Slot::B] {
            if self.tunnels[at as usize].as_ref().is_some_and(&drop) {
                self.tunnels[at as usize] = None;
                active |= at == self.active;
            }
        }
        active
    }
}

impl Tunnel {
    /// Returns a tunnel at position `at` to the peer in table slot `slot`, under the
    /// device's static key `own` (in key slot `key`) and the peer's public key `remote`.
    pub(super) fn new(
        own: &StaticKey,
        key: Slot,
        at: Slot,
        slot: usize,
        remote: [u8; 32],
        psk: Option<[u8; 32]>,
    ) -> Self {
        Self {
            tunn: Tunn::new(
                own.private.clone(),
                PublicKey::from(remote),
                psk,
                None,
                tunn_index(slot, at),
                Some(own.tunn_limiter.clone()),
            ),
            own: key,
            remote,
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
        let current = self.current;
        for index in 0..self.slots.len() {
            // Tunnels to a peer's next key used the replaced key too; the next initiation
            // to it builds a new one.
            let moved = self
                .slots
                .get_mut(index)
                .and_then(Option::as_mut)
                .is_some_and(|peer| {
                    let public = peer.public;
                    peer.drop_tunnels(|t| t.own == current && t.remote != public)
                });
            let at = self.rebuild_tunn(index);
            if moved
                && let (Some(at), Some(peer)) =
                    (at, self.slots.get_mut(index).and_then(Option::as_mut))
            {
                peer.active = at;
            }
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
                    next: None,
                    tunnels: [None, None],
                    active: self.current,
                    newest_init: None,
                    traffic: (0, 0),
                    last_tx: Duration::ZERO,
                    last_handshake: None,
                });
                self.by_key.insert(public, index);
                if let Some(at) = self.rebuild_tunn(index)
                    && let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut)
                {
                    peer.active = at;
                }
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
        let (current, public) = (self.current, peer.public);
        peer.drop_tunnels(|t| t.own != current || t.remote != public);
        if let Some(at) = self.rebuild_tunn(index)
            && let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut)
        {
            peer.active = at;
        }
    }

    /// Gives the peer in slot `index` a new tunnel on the current key and its current key,
    /// in place of the one it had; returns its position.
    pub(super) fn rebuild_tunn(&mut self, index: usize) -> Option<Slot> {
        let current = self.current;
        let (Some(own), Some(peer)) = (
            self.keys[current as usize].as_ref(),
            self.slots.get_mut(index).and_then(Option::as_mut),
        ) else {
            return None;
        };
        let at = peer
            .position(current, &peer.public)
            .or_else(|| peer.free_position(current))
            .unwrap_or(current);
        let psk = peer.psk.as_ref().map(|k| **k);
        let tunnel = Tunnel::new(own, current, at, index, peer.public, psk);
        peer.replace_tunnel(at, Some(tunnel));
        peer.last_handshake = None;
        Some(at)
    }

    /// Gives the peer under `old` the public key `new` in place: it keeps its table slot, and
    /// with it its routes, endpoint, keepalive, preshared key and counters, under one lock, so
    /// no packet finds its allowed IPs unrouted. Its tunnels start over on the current key
    /// (sessions are bound to the old key; a new handshake follows). Returns `false`, changing
    /// nothing, when `old` is not a peer or `new` is another peer's key. When `new` is the
    /// peer's next key, this completes its rotation ([`Core::complete_peer_key`]) and its
    /// sessions under `new` stay.
    pub fn rekey_peer(&mut self, old: &[u8; 32], new: [u8; 32]) -> bool {
        let Some(index) = self.by_key.get(old).copied() else {
            return false;
        };
        if *old == new {
            return true;
        }
        if self.by_next.get(&new) == Some(&index) {
            return self.complete_peer_key(&new).is_ok();
        }
        if self.by_key.contains_key(&new) || self.by_next.contains_key(&new) {
            return false;
        }
        let current = self.current;
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        self.by_key.remove(old);
        self.by_key.insert(new, index);
        if let Some(next) = peer.next.take() {
            self.by_next.remove(&next);
        }
        peer.public = new;
        peer.replace_tunnel(Slot::A, None);
        peer.replace_tunnel(Slot::B, None);
        peer.active = current;
        peer.newest_init = None;
        if let Some(at) = self.rebuild_tunn(index)
            && let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut)
        {
            peer.active = at;
        }
        true
    }

    /// Removes a peer and its routes.
    pub fn remove_peer(&mut self, public: &[u8; 32]) {
        if let Some(index) = self.by_key.remove(public) {
            self.routes.remove_value(&index);
            if let Some(slot) = self.slots.get_mut(index) {
                if let Some(next) = slot.as_ref().and_then(|p| p.next) {
                    self.by_next.remove(&next);
                }
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
