//! The rotation hook: besides its current static key the device can hold a second one and
//! answer handshakes addressed to it. A handshake message's MAC1 is keyed by the responder's
//! public key, so it tells which of the two keys the sender used.
//!
//! Each peer has one `Tunn` per static key: the current key's, and the second key's, created
//! when the peer first initiates to it. Each `Tunn` keeps its own sessions and the newest
//! initiation timestamp it accepted, so an initiation is checked for replay by the tunnel of
//! the key it names and cannot touch the other tunnel. Receiver indexes say which tunnel owns
//! a session: `Tunn` puts its 24-bit index (shifted left by 8) into every message, the low 23
//! bits are the peer's slot and the top one is set for the second key.
//!
//! Outgoing traffic uses the peer's *active* tunnel: the one whose session the peer confirmed
//! last (our initiation answered, or the peer's first data on a session we answered). An
//! initiation alone never changes it, so an initiation replayed to a tunnel with no record of
//! it (a second-key tunnel created after the original) at most leaves an unconfirmed session
//! there. What promotes the second key to the current one is the rotation logic's business
//! (not built yet).

use std::net::SocketAddr;
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{HandshakeInit, Packet, Tunn};

use super::cookie::Verdict;
use super::table::Tunnel;
use super::{Core, Message, Sink, StaticKey};

/// One of the device's two static keys; the index of its tunnel in `Peer::tunnels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    Current = 0,
    Second = 1,
}

/// The bit of a `Tunn` index that marks the second key's tunnel (bit 31 of the receiver
/// index on the wire).
const SECOND_KEY_BIT: u32 = 1 << 23;

/// Returns the `Tunn` index for the peer in slot `slot` on `key`.
pub(super) fn tunn_index(slot: usize, key: Key) -> u32 {
    let slot = u32::try_from(slot).unwrap_or(0) & (SECOND_KEY_BIT - 1);
    match key {
        Key::Current => slot,
        Key::Second => slot | SECOND_KEY_BIT,
    }
}

/// Splits a receiver index into the peer's slot and the key whose tunnel owns the session.
pub(super) fn split_index(receiver: u32) -> (usize, Key) {
    let index = receiver >> 8;
    let key = if index & SECOND_KEY_BIT == 0 {
        Key::Current
    } else {
        Key::Second
    };
    ((index & (SECOND_KEY_BIT - 1)) as usize, key)
}

impl Core {
    /// Sets (or with `None` drops) the second key. Setting the key it already has changes
    /// nothing; otherwise every peer's tunnel on the old second key is dropped, and peers that
    /// were using it go back to the current key with their sessions there cleared (those
    /// sessions are older than the switch, so the peer has likely dropped them; the next
    /// packet starts a handshake).
    pub fn set_second_key(&mut self, key: Option<[u8; 32]>) {
        match (&self.second, &key) {
            (None, None) => return,
            (Some(own), Some(bytes)) if own.is(bytes) => return,
            _ => {}
        }
        self.second = key.map(StaticKey::new);
        let current = self.current.as_ref();
        for peer in self.slots.iter_mut().flatten() {
            peer.replace_tunnel(Key::Second, None);
            if peer.active == Key::Second {
                peer.active = Key::Current;
                if let (Some(own), Some(tunnel)) =
                    (current, peer.tunnels[Key::Current as usize].as_mut())
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
        }
    }

    /// Returns whether the peer's outgoing traffic uses the second key.
    pub fn uses_second_key(&self, public: &[u8; 32]) -> bool {
        self.by_key
            .get(public)
            .and_then(|i| self.slots.get(*i)?.as_ref())
            .is_some_and(|p| p.active == Key::Second)
    }

    /// Gives the peer in slot `index` a tunnel on the second key if `key` is it and the
    /// peer has none. Returns whether it did.
    pub(super) fn add_second_tunnel(&mut self, index: usize, key: Key) -> bool {
        let (Key::Second, Some(own), Some(peer)) = (
            key,
            self.second.as_ref(),
            self.slots.get_mut(index).and_then(Option::as_mut),
        ) else {
            return false;
        };
        if peer.tunnels[Key::Second as usize].is_some() {
            return false;
        }
        let tunnel = Tunnel::new(own, Key::Second, index, peer);
        peer.tunnels[Key::Second as usize] = Some(tunnel);
        true
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
    /// Checks a handshake message's MAC1 against the current key, then the second one, and
    /// then the handshake load ([`cookie`](super::cookie)): under load the message must carry
    /// its source's cookie in MAC2, or it gets a cookie reply under the key its MAC1 names
    /// and goes no further. Returns the message and the key its MAC1 names (the current key
    /// for messages without MAC1).
    pub(super) fn verify_mac<'d>(
        &mut self,
        src: SocketAddr,
        datagram: &'d [u8],
        buf: &mut [u8],
        now: Duration,
        sink: &mut dyn Sink,
    ) -> Option<(Packet<'d>, Key)> {
        let Some(current) = self.current.as_ref() else {
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
            return Some((packet, Key::Current));
        }
        let (key, own) = if current.macs.mac1_valid(datagram) {
            (Key::Current, current)
        } else if let Some(second) = self
            .second
            .as_ref()
            .filter(|second| second.macs.mac1_valid(datagram))
        {
            (Key::Second, second)
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

    /// Returns the slot of the peer that sent an initiation to our key `key`.
    pub(super) fn initiator(&mut self, key: Key, init: &HandshakeInit) -> Option<usize> {
        let own = match key {
            Key::Current => self.current.as_ref(),
            Key::Second => self.second.as_ref(),
        }?;
        let Ok(half) = parse_handshake_anon(&own.private, &own.public, init) else {
            self.counters.invalid += 1;
            return None;
        };
        match self.by_key.get(&half.peer_static_public) {
            Some(index) => Some(*index),
            None => {
                self.counters.unknown_peer += 1;
                None
            }
        }
    }
}
