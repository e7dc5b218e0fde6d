//! The rotation hook: besides its current static key the device can hold a second one and
//! answer handshakes addressed to it. A handshake message's MAC1 is keyed by the responder's
//! public key, so it tells which of the two keys the sender used.
//!
//! The two keys live in two *slots*, A and B; which one is current is a field of the core.
//! The other slot holds nothing, a *staged* key (the next one, before the switch) or the
//! *previous* key (after the switch, until it is dropped). Each peer has two tunnel
//! *positions* (`table.rs`), each holding at most one `Tunn`; a tunnel records the key slot
//! and the peer key it was built with. During our rotation a peer has the current key's
//! tunnel and the other key's (created when the peer first initiates to it, or when we
//! [`Core::initiate`] under a new current key); a new tunnel takes the position of its key
//! slot when free, so outside a peer's own rotation ([`super::peer_rotation`], which uses the
//! second position for the peer's next key and never runs at the same time) the position is
//! the key slot. Each `Tunn` keeps its own sessions and the newest initiation timestamp it
//! accepted, so an initiation is checked for replay by the tunnel it names and cannot touch
//! the other tunnel. Receiver indexes say which tunnel owns a session: `Tunn` puts its 24-bit
//! index (shifted left by 8) into every message, the low 23 bits are the peer's slot in the
//! table and the top one is set for position B.
//!
//! Outgoing traffic uses the peer's *active* tunnel: the one whose session the peer confirmed
//! last (our initiation answered, or the peer's first data on a session we answered). An
//! initiation alone never changes it.
//!
//! Rotation is three steps, none of which rebuilds a tunnel:
//! - [`Core::stage_key`] puts the next key in the other slot; peers that already know it may
//!   handshake to it, and a confirmed session there makes that tunnel their active one;
//! - [`Core::promote_staged`] makes the staged key current by flipping which slot is current:
//!   every tunnel stays where it is with its sessions, so established sessions on either key
//!   keep carrying data both ways; new peers and rebuilt tunnels use the new key, and the old
//!   one (now *previous*) still answers initiations addressed to it;
//! - [`Core::drop_previous`] forgets the old key: its tunnels go, and peers whose active
//!   tunnel was on it move to the current key's tunnel (a new handshake follows).
//!
//! Replays: a tunnel lives as long as its key is held, so within a rotation no tunnel on a
//! key starts over and loses its record. Across tunnels, every peer also keeps the newest
//! initiation timestamp accepted from it on any key ([`super::noise`]), and an initiation not
//! newer than it is refused before it reaches a `Tunn`: a key that comes back (restaged after
//! being dropped) gets fresh tunnels, and an initiation captured while it was held the first
//! time still cannot open a session there.

use std::net::SocketAddr;
use std::time::Duration;

use boringtun::noise::{Packet, Tunn, TunnResult};

use super::cookie::Verdict;
use super::noise::{self, Timestamp};
use super::table::Tunnel;
use super::{Core, Message, Sink, StaticKey};

/// One of the two key slots, or one of a peer's two tunnel positions in `Peer::tunnels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    A = 0,
    B = 1,
}

impl Slot {
    /// Returns the other slot.
    pub(super) fn other(self) -> Self {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// What the key in the slot that is not current is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The next key, before [`Core::promote_staged`].
    Staged,
    /// The key that was current before [`Core::promote_staged`], until [`Core::drop_previous`].
    Previous,
}

/// Why a rotation step was refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The device has no private key yet.
    #[error("the device has no private key")]
    NoKey,
    /// The key to stage is the current one.
    #[error("the key to stage is the current key")]
    SameAsCurrent,
    /// The previous key is still held: it must be dropped before another key is staged.
    #[error("the previous key is still held; drop it before staging another")]
    PreviousHeld,
    /// No key is staged.
    #[error("no key is staged")]
    NothingStaged,
    /// No previous key is held.
    #[error("no previous key is held")]
    NoPrevious,
    /// A peer has a next key (it is rotating): the device cannot stage its own until that
    /// rotation is completed or forgotten.
    #[error("a peer is rotating its key; complete or forget its next key first")]
    PeerRotating,
    /// The device holds a second key of its own (staged or previous): a peer's next key
    /// waits until the device's own rotation is over.
    #[error("the device holds a second key of its own; a peer cannot rotate meanwhile")]
    SecondKeyHeld,
    /// The peer is not known (by that key).
    #[error("no peer has that key")]
    UnknownPeer,
    /// The next key is the peer's current key or another peer's key.
    #[error("the next key is already a peer's key")]
    KeyInUse,
    /// The peer already has another next key.
    #[error("the peer already has another next key")]
    OtherNextKey,
}

/// The bit of a `Tunn` index that marks the tunnel at position B (bit 31 of the receiver
/// index on the wire).
const SLOT_B_BIT: u32 = 1 << 23;

/// Returns the `Tunn` index for the tunnel at position `key` of the peer in table slot `slot`.
pub(super) fn tunn_index(slot: usize, key: Slot) -> u32 {
    let slot = u32::try_from(slot).unwrap_or(0) & (SLOT_B_BIT - 1);
    match key {
        Slot::A => slot,
        Slot::B => slot | SLOT_B_BIT,
    }
}

/// Splits a receiver index into the peer's table slot and the position of the tunnel that
/// owns the session.
pub(super) fn split_index(receiver: u32) -> (usize, Slot) {
    let index = receiver >> 8;
    let key = if index & SLOT_B_BIT == 0 {
        Slot::A
    } else {
        Slot::B
    };
    ((index & (SLOT_B_BIT - 1)) as usize, key)
}

impl Core {
    /// Returns the key in `slot`.
    pub(super) fn key(&self, slot: Slot) -> Option<&StaticKey> {
        self.keys[slot as usize].as_ref()
    }

    /// Returns the current key.
    pub(super) fn current_key(&self) -> Option<&StaticKey> {
        self.key(self.current)
    }

    /// Returns the staged key's public key, if a key is staged.
    pub fn staged_public(&self) -> Option<[u8; 32]> {
        self.other_public(Role::Staged)
    }

    /// Returns the previous key's public key, if it is still held.
    pub fn previous_public(&self) -> Option<[u8; 32]> {
        self.other_public(Role::Previous)
    }

    /// Returns the current key's public key.
    pub fn current_public(&self) -> Option<[u8; 32]> {
        self.current_key().map(|k| k.public.to_bytes())
    }

    fn other_public(&self, role: Role) -> Option<[u8; 32]> {
        (self.role == role)
            .then(|| self.key(self.current.other()))
            .flatten()
            .map(|k| k.public.to_bytes())
    }

    /// Sets (or with `None` drops) the second key, as a staged key (a previous key it
    /// replaces is forgotten). Setting the key it already has changes nothing; otherwise
    /// every peer's tunnel on the old second key is dropped, and peers that were using it go
    /// back to the current key with their sessions there cleared (those sessions are older
    /// than the switch, so the peer has likely dropped them; the next packet starts a
    /// handshake).
    pub fn set_second_key(&mut self, key: Option<[u8; 32]>) {
        let other = self.current.other();
        match (self.key(other), &key) {
            (None, None) => return,
            (Some(own), Some(bytes)) if own.is(bytes) => {
                self.role = Role::Staged;
                return;
            }
            _ => {}
        }
        self.forget(other, true);
        self.keys[other as usize] = key.map(StaticKey::new);
        self.role = Role::Staged;
    }

    /// Stages `key` as the next static key: the device answers handshakes addressed to it
    /// besides those to the current key. A key already staged is replaced (its tunnels go).
    ///
    /// # Errors
    /// [`RotationError::NoKey`], [`RotationError::SameAsCurrent`],
    /// [`RotationError::PreviousHeld`], [`RotationError::PeerRotating`].
    pub fn stage_key(&mut self, key: [u8; 32]) -> Result<(), RotationError> {
        let current = self.current_key().ok_or(RotationError::NoKey)?;
        if current.is(&key) {
            return Err(RotationError::SameAsCurrent);
        }
        if self.role == Role::Previous && self.key(self.current.other()).is_some() {
            return Err(RotationError::PreviousHeld);
        }
        if !self.by_next.is_empty() {
            return Err(RotationError::PeerRotating);
        }
        self.set_second_key(Some(key));
        Ok(())
    }

    /// Forgets the staged key: a rotation given up before its switch, or after it once
    /// [`Core::demote_current`] made the old key current again. Peers whose traffic had moved
    /// to the staged key go back to their sessions under the current key, kept for them.
    ///
    /// # Errors
    /// [`RotationError::NothingStaged`].
    pub fn unstage_key(&mut self) -> Result<(), RotationError> {
        if self.staged_public().is_none() {
            return Err(RotationError::NothingStaged);
        }
        // The rotation is given up on both sides: a peer that moved to the staged key goes
        // back to its sessions under the current key, which it still holds, so ours stay.
        let other = self.current.other();
        self.forget(other, false);
        self.keys[other as usize] = None;
        self.role = Role::Staged;
        Ok(())
    }

    /// Makes the staged key current. No tunnel is rebuilt and no session dropped: the slots
    /// swap roles, so every peer keeps its active tunnel and its sessions on either key, and
    /// the old key, now previous, still answers initiations addressed to it. Peers added or
    /// rebuilt from now on use the new key.
    ///
    /// # Errors
    /// [`RotationError::NothingStaged`].
    pub fn promote_staged(&mut self) -> Result<(), RotationError> {
        if self.staged_public().is_none() {
            return Err(RotationError::NothingStaged);
        }
        self.current = self.current.other();
        self.role = Role::Previous;
        Ok(())
    }

    /// Undoes [`Core::promote_staged`], for a rotation rolled back after its switch: the
    /// previous key is current again and the new one is staged, still answering handshakes
    /// addressed to it, until [`Core::unstage_key`] forgets it. As with the promotion, no
    /// tunnel is rebuilt and no session dropped.
    ///
    /// # Errors
    /// [`RotationError::NoPrevious`].
    pub fn demote_current(&mut self) -> Result<(), RotationError> {
        if self.previous_public().is_none() {
            return Err(RotationError::NoPrevious);
        }
        self.current = self.current.other();
        self.role = Role::Staged;
        Ok(())
    }

    /// Forgets the previous key: its tunnels go, and peers whose outgoing traffic used it
    /// move to the current key (a new handshake follows).
    ///
    /// # Errors
    /// [`RotationError::NoPrevious`].
    pub fn drop_previous(&mut self) -> Result<(), RotationError> {
        if self.previous_public().is_none() {
            return Err(RotationError::NoPrevious);
        }
        let other = self.current.other();
        self.forget(other, true);
        self.keys[other as usize] = None;
        self.role = Role::Staged;
        Ok(())
    }

    /// Drops every peer's tunnels on key slot `slot` (not the current one); a peer whose
    /// active tunnel was among them goes to its tunnel on the current key, or a new tunnel if
    /// it had none. With `clear_sessions` that tunnel's sessions are cleared: after a switch
    /// completed they are older than it, and the peer has likely dropped them. Without it
    /// they stay: after a rotation given up, the peer went back to them.
    fn forget(&mut self, slot: Slot, clear_sessions: bool) {
        let current = self.current;
        for index in 0..self.slots.len() {
            let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            if !peer.drop_tunnels(|t| t.own == slot) {
                continue;
            }
            peer.active = current;
            let Some(own) = self.keys[current as usize].as_ref() else {
                continue;
            };
            match peer.position(current, &peer.public) {
                Some(at) => {
                    peer.active = at;
                    if let Some(tunnel) = peer.tunnels[at as usize]
                        .as_mut()
                        .filter(|_| clear_sessions)
                    {
                        // Clears the sessions and keeps the record of accepted initiations.
                        tunnel.tunn.set_static_private(
                            own.private.clone(),
                            own.public,
                            Some(own.tunn_limiter.clone()),
                        );
                        tunnel.unconfirmed = None;
                    }
                }
                None => {
                    let at = peer.free_position(current).unwrap_or(current);
                    let psk = peer.psk.as_ref().map(|k| **k);
                    let tunnel = Tunnel::new(own, current, at, index, peer.public, psk);
                    peer.replace_tunnel(at, Some(tunnel));
                    peer.active = at;
                }
            }
        }
    }

    /// Returns whether the peer's outgoing traffic uses the key that is not current (staged
    /// or previous).
    pub fn uses_second_key(&self, public: &[u8; 32]) -> bool {
        let current = self.current;
        self.by_key
            .get(public)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .and_then(|p| p.tunnels[p.active as usize].as_ref())
            .is_some_and(|t| t.own != current)
    }

    /// Returns whether the peer's traffic runs on a tunnel under our current key that has a
    /// session: the peer answered a handshake under that key (sessions on the current key's
    /// tunnels of a device that just promoted a key can only come from such a handshake).
    pub fn session_on_current(&self, public: &[u8; 32]) -> bool {
        let current = self.current;
        self.by_key
            .get(public)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .and_then(|p| p.tunnels[p.active as usize].as_ref())
            .is_some_and(|t| t.own == current && t.tunn.time_since_last_handshake().is_some())
    }

    /// Asks for [`Core::initiate`] with the peer at the next tick (from a caller that holds no
    /// socket: the gateway's rotation). Asking twice before the tick sends one initiation.
    pub fn queue_initiation(&mut self, public: [u8; 32]) {
        if !self.initiations.contains(&public) {
            self.initiations.push(public);
        }
    }

    /// Starts a handshake with the peer under the current key, on its tunnel there (created
    /// if it has none): how a device that promoted a key moves a peer to it while its
    /// sessions on the previous key keep carrying data. The peer's answer makes that tunnel
    /// the active one. Each call sends a fresh initiation, even while one is unanswered:
    /// the caller paces its retries, and the timers of a tunnel that is not the active one
    /// send nothing (the first initiation may reach a peer not yet told the key). Returns
    /// whether an initiation went out.
    pub fn initiate(
        &mut self,
        public: &[u8; 32],
        buf: &mut [u8],
        now: Duration,
        sink: &mut dyn Sink,
    ) -> bool {
        let Some(index) = self.by_key.get(public).copied() else {
            return false;
        };
        let Some((at, _)) = self.add_tunnel(index, self.current, *public) else {
            return false;
        };
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            return false;
        };
        let (Some(to), Some(tunnel)) = (peer.endpoint, peer.tunnels[at as usize].as_mut()) else {
            return false;
        };
        let TunnResult::WriteToNetwork(init) = tunnel.tunn.format_handshake_initiation(buf, true)
        else {
            return false;
        };
        sink.send(to, init);
        peer.last_tx = now;
        peer.traffic.0 = peer.traffic.0.saturating_add(init.len() as u64);
        true
    }

    /// Returns the position of the tunnel of the peer in table slot `index` on our key slot
    /// `key` and its key `remote`, creating it in a free position if the device holds a key
    /// there and the peer has none (then with `true`). `None` when it cannot.
    pub(super) fn add_tunnel(
        &mut self,
        index: usize,
        key: Slot,
        remote: [u8; 32],
    ) -> Option<(Slot, bool)> {
        let own = self.keys[key as usize].as_ref()?;
        let peer = self.slots.get_mut(index).and_then(Option::as_mut)?;
        if let Some(at) = peer.position(key, &remote) {
            return Some((at, false));
        }
        let at = peer.free_position(key)?;
        let psk = peer.psk.as_ref().map(|k| **k);
        let tunnel = Tunnel::new(own, key, at, index, remote, psk);
        peer.replace_tunnel(at, Some(tunnel));
        Some((at, true))
    }
}

impl Tunnel {
    /// Returns whether `message`, which this tunnel just accepted, is the peer's first on
    /// the session this tunnel answered an initiation with.
    pub(super) fn confirms(&mut self, message: Message) -> bool {
        match message {
            Message::Data(index) if self.unconfirmed == Some(index) => {
                self.unconfirmed = None;
                true
            }
            _ => false,
        }
    }
}

impl Core {
    /// Checks a handshake message's MAC1 against the current key, then the other one, and
    /// then the handshake load ([`cookie`](super::cookie)): under load the message must carry
    /// its source's cookie in MAC2, or it gets a cookie reply under the key its MAC1 names
    /// and goes no further. Returns the message and the slot of the key its MAC1 names (the
    /// current key for messages without MAC1).
    pub(super) fn verify_mac<'d>(
        &mut self,
        src: SocketAddr,
        datagram: &'d [u8],
        buf: &mut [u8],
        now: Duration,
        sink: &mut dyn Sink,
    ) -> Option<(Packet<'d>, Slot)> {
        let current_slot = self.current;
        let Some(current) = self.keys[current_slot as usize].as_ref() else {
            self.counters.invalid += 1;
            return None;
        };
        let Ok(packet) = Tunn::parse_incoming_packet(datagram) else {
            self.counters.invalid += 1;
            return None;
        };
        if !matches!(
            packet,
            Packet::HandshakeInit(_) | Packet::HandshakeResponse(_)
        ) {
            return Some((packet, current_slot));
        }
        let (key, own) = if current.macs.mac1_valid(datagram) {
            (current_slot, current)
        } else if let Some(other) = self.keys[current_slot.other() as usize]
            .as_ref()
            .filter(|other| other.macs.mac1_valid(datagram))
        {
            (current_slot.other(), other)
        } else {
            self.counters.invalid += 1;
            return None;
        };
        match self.load.check(&own.macs, src, datagram, now, buf) {
            Verdict::Accept => Some((packet, key)),
            Verdict::CookieReply(reply) => {
                sink.send(src, reply);
                None
            }
            Verdict::Drop => None,
        }
    }

    /// Returns the table slot of the peer that sent `init`, an initiation (of valid length) to
    /// our key in slot `key`, with the public key it sent under (its current or its next
    /// one) and the initiation's timestamp. An initiation that is not newer than the newest
    /// one accepted from that peer on any key, ours or its, is a replay: refused and counted.
    pub(super) fn initiator(
        &mut self,
        key: Slot,
        init: &[u8],
    ) -> Option<(usize, [u8; 32], Timestamp)> {
        let own = self.key(key)?;
        let Some(opened) = noise::open_initiation(&own.private, &own.public, init, |peer| {
            self.by_key.contains_key(peer) || self.by_next.contains_key(peer)
        }) else {
            self.counters.invalid += 1;
            return None;
        };
        let Some((peer_public, timestamp)) = opened else {
            self.counters.unknown_peer += 1;
            return None;
        };
        let index = *self
            .by_key
            .get(&peer_public)
            .or_else(|| self.by_next.get(&peer_public))?;
        let peer = self.slots.get(index).and_then(Option::as_ref)?;
        if peer.newest_init.is_some_and(|newest| timestamp <= newest) {
            self.counters.invalid += 1;
            return None;
        }
        Some((index, peer_public, timestamp))
    }
}
