//! The native data plane's packet logic, without IO: the peer table, allowed-IPs routing,
//! handshake dispatch and timers around `boringtun::noise::Tunn`. The IO threads hand it
//! packets and a [`Sink`] for what it emits; time comes in as arguments (`Tunn` reads its own
//! clock internally).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::core::allowed_ips::AllowedIps;

/// Handshakes per second the device answers before it asks for cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// How often the rate limiter's count is reset.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// Peer slots take 23 of the 24 bits of the index `Tunn` puts in its receiver indexes (it
/// shifts it left by 8); the 24th says which of the peer's two tunnels owns the session.
const MAX_PEERS: usize = 1 << 23;
/// A reported handshake time moves only when it differs by more than this from the last one
/// (the age `Tunn` reports is only as fresh as its last timer update).
const HANDSHAKE_JITTER: Duration = Duration::from_secs(1);
/// Plaintexts are padded to a multiple of this many bytes.
const PADDING: usize = 16;
/// The largest MTU of a TUN device, and the padding limit until the device sets its own.
const MAX_MTU: usize = 65535;
/// Length of a handshake response message.
const HANDSHAKE_RESPONSE_LEN: usize = 92;
/// Rekey-After-Messages (whitepaper section 6.1): a session that has sent this many
/// messages asks for a new handshake.
const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Reject-After-Messages, 2^64 - 2^13 - 1: no message is sent or accepted with a counter at or
/// past it.
const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// Where the core's output goes.
pub trait Sink {
    /// Sends one datagram to a peer.
    fn send(&mut self, to: SocketAddr, datagram: &[u8]);
    /// Writes one decrypted IP packet to the TUN device.
    fn write_tun(&mut self, packet: &[u8]);
}

/// Packets dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams from the network that did not parse, authenticate or match a session
    /// (garbage, truncated messages, wrong receiver index, replays).
    pub invalid: u64,
    /// Handshake initiations from a static key that is not a peer.
    pub unknown_peer: u64,
    /// Packets from the TUN device for an address no peer holds.
    pub no_route: u64,
    /// Packets from the TUN device to a peer with no known endpoint.
    pub no_endpoint: u64,
    /// Decrypted packets whose inner source is not in the sender's allowed IPs.
    pub bad_source: u64,
    /// Packets from the TUN device for a peer whose session has used up its message
    /// counter (Reject-After-Messages), dropped while a new handshake runs.
    pub key_exhausted: u64,
}

/// The message-count limits of a session (whitepaper section 6.1), by the counter a data
/// message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageLimits {
    /// A session that sends a message with this counter or a later one starts a handshake.
    pub rekey_after: u64,
    /// No message with this counter or a later one is sent or accepted.
    pub reject_after: u64,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            rekey_after: REKEY_AFTER_MESSAGES,
            reject_after: REJECT_AFTER_MESSAGES,
        }
    }
}

/// What to do with a data message about to be sent, by its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    Send,
    /// Send it, and start a new handshake (one already under way goes on).
    SendAndRekey,
    /// Drop it: the session's keys are used up; start a new handshake.
    Reject,
}

impl MessageLimits {
    /// Returns whether `datagram` may be sent or accepted: it is not a data message with a
    /// counter at or past Reject-After-Messages.
    fn permits(self, datagram: &[u8]) -> bool {
        data_counter(datagram).is_none_or(|counter| counter < self.reject_after)
    }

    fn outgoing(self, counter: u64) -> Outgoing {
        if counter >= self.reject_after {
            Outgoing::Reject
        } else if counter >= self.rekey_after {
            Outgoing::SendAndRekey
        } else {
            Outgoing::Send
        }
    }
}

/// The device: its keys, its peers and their routes.
pub struct Core {
    /// The two key slots ([`rotation`]): the current key, and a staged or previous one.
    keys: [Option<StaticKey>; 2],
    /// Which slot holds the current key.
    current: Slot,
    /// What the key in the other slot is for.
    role: Role,
    /// The handshake load and the cookie secret, for the MAC check on both keys.
    load: cookie::Load,
    slots: Vec<Option<Peer>>,
    by_key: BTreeMap<[u8; 32], usize>,
    /// Peers by their next public key, while they rotate ([`peer_rotation`]).
    by_next: BTreeMap<[u8; 32], usize>,
    routes: AllowedIps<usize>,
    /// The TUN device's MTU: padding never makes a plaintext longer than this.
    mtu: usize,
    /// Room for a packet being padded.
    padded: Vec<u8>,
    /// The message-count limits of every session.
    limits: MessageLimits,
    /// Drop counters.
    pub counters: Counters,
    /// Peers to initiate a handshake with under the current key at the next tick
    /// ([`Core::queue_initiation`]).
    initiations: Vec<[u8; 32]>,
}

/// One of the device's static keys, with the keys of the MAC check (MAC1 and cookie
/// replies, [`cookie`]) derived from it.
///
/// `Tunn::decapsulate` runs every message through a rate limiter of its own again. Each
/// `Tunn` gets `tunn_limiter`: the same MAC1 key and no limit, so it never answers with a
/// cookie reply of its own. The core's check is the only one that counts, once per
/// datagram, and what `Tunn` answers comes only from messages it processed.
struct StaticKey {
    private: StaticSecret,
    public: PublicKey,
    macs: cookie::MacKeys,
    tunn_limiter: Arc<RateLimiter>,
}

impl StaticKey {
    fn new(bytes: [u8; 32]) -> Self {
        let private = StaticSecret::from(bytes);
        let public = PublicKey::from(&private);
        let macs = cookie::MacKeys::new(public.as_bytes());
        // A count of u64::MAX is never reached, so this limiter never asks for a cookie.
        let tunn_limiter = Arc::new(RateLimiter::new(&public, u64::MAX));
        Self {
            private,
            public,
            macs,
            tunn_limiter,
        }
    }

    /// Returns whether this is the key `bytes`.
    fn is(&self, bytes: &[u8; 32]) -> bool {
        *Zeroizing::new(self.private.to_bytes()) == *bytes
    }
}

/// What a datagram from the network is, for what the core does after `Tunn` accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    /// An initiation, with its timestamp.
    Init(noise::Timestamp),
    Response,
    CookieReply,
    /// A data message, with its receiver index.
    Data(u32),
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("peers", &self.by_key.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Default for Core {
    fn default() -> Self {
        Self::new()
    }
}

impl Core {
    /// Returns a device without key or peers.
    pub fn new() -> Self {
        Self {
            keys: [None, None],
            current: Slot::A,
            role: Role::Staged,
            load: cookie::Load::default(),
            slots: Vec::new(),
            by_key: BTreeMap::new(),
            by_next: BTreeMap::new(),
            routes: AllowedIps::new(),
            mtu: MAX_MTU,
            padded: Vec::new(),
            limits: MessageLimits::default(),
            counters: Counters::default(),
            initiations: Vec::new(),
        }
    }

    /// Returns a device without key or peers whose sessions have the message-count limits
    /// `limits` instead of the whitepaper's (which no session reaches in practice: at 10
    /// million messages a second, Rekey-After-Messages takes over 3,600 years).
    pub fn with_message_limits(limits: MessageLimits) -> Self {
        Self {
            limits,
            ..Self::new()
        }
    }

    /// Sets the TUN device's MTU, the longest a padded plaintext may become.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    /// Returns the private key, if set.
    pub fn private_key(&self) -> Option<&StaticSecret> {
        self.current_key().map(|k| &k.private)
    }

    /// Handles one IP packet read from the TUN device: encrypts it for the peer that holds
    /// its destination, on the peer's active tunnel, padded with zeros to a multiple of 16
    /// bytes but never past the MTU (whitepaper section 5.4.6; the receiver trims by the IP
    /// header's length), so a transport message does not tell an observer the exact length
    /// of the packet inside. `buf` must hold the padded packet plus 32 bytes and at least 148.
    pub fn from_tun(&mut self, packet: &[u8], buf: &mut [u8], now: Duration, sink: &mut dyn Sink) {
        let Some(dst) = Tunn::dst_address(packet) else {
            self.counters.no_route += 1;
            return;
        };
        let Some(index) = self.routes.lookup(dst).copied() else {
            self.counters.no_route += 1;
            return;
        };
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            self.counters.no_route += 1;
            return;
        };
        let Some(tunnel) = peer.tunnels[peer.active as usize].as_mut() else {
            self.counters.no_route += 1;
            return;
        };
        let plaintext = pad(packet, self.mtu, &mut self.padded);
        let TunnResult::WriteToNetwork(datagram) = tunnel.tunn.encapsulate(plaintext, buf) else {
            return;
        };
        let Some(to) = peer.endpoint else {
            self.counters.no_endpoint += 1;
            return;
        };
        let verdict = match data_counter(datagram) {
            Some(counter) => self.limits.outgoing(counter),
            None => Outgoing::Send,
        };
        if verdict == Outgoing::Reject {
            self.counters.key_exhausted += 1;
        } else {
            sink.send(to, datagram);
            peer.last_tx = now;
            count(&mut peer.traffic.0, datagram);
        }
        if verdict != Outgoing::Send
            && let TunnResult::WriteToNetwork(init) =
                tunnel.tunn.format_handshake_initiation(buf, false)
        {
            sink.send(to, init);
            peer.last_tx = now;
            count(&mut peer.traffic.0, init);
        }
    }

    /// Handles one datagram from the network.
    ///
    /// An initiation goes to the peer's tunnel on the key its MAC1 names and the peer key it
    /// was sent under (its current or next one); everything else goes by its receiver index
    /// to the tunnel that owns the session. An initiation changes
    /// nothing but its own tunnel's handshake state: the peer's active tunnel changes when
    /// the peer confirms a newer session, and its endpoint on responses and data.
    pub fn from_udp(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        buf: &mut [u8],
        now: Duration,
        sink: &mut dyn Sink,
    ) {
        let Some((packet, mac_key)) = self.verify_mac(src, datagram, buf, now, sink) else {
            return;
        };
        if matches!(packet, Packet::PacketData(_)) && !self.limits.permits(datagram) {
            self.counters.invalid += 1;
            return;
        }
        let (index, key, message, created) = match packet {
            Packet::HandshakeInit(_) => {
                let Some((index, remote, timestamp)) = self.initiator(mac_key, datagram) else {
                    return;
                };
                let Some((at, created)) = self.add_tunnel(index, mac_key, remote) else {
                    self.counters.invalid += 1;
                    return;
                };
                (index, at, Message::Init(timestamp), created)
            }
            Packet::HandshakeResponse(p) => with_session(p.receiver_idx, Message::Response),
            Packet::PacketCookieReply(p) => with_session(p.receiver_idx, Message::CookieReply),
            Packet::PacketData(p) => with_session(p.receiver_idx, Message::Data(p.receiver_idx)),
        };
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            self.counters.invalid += 1;
            return;
        };
        let Some(tunnel) = peer.tunnels[key as usize].as_mut() else {
            self.counters.invalid += 1;
            return;
        };
        let confirmed = match tunnel.tunn.decapsulate(Some(src.ip()), datagram, buf) {
            TunnResult::Err(_) => {
                self.counters.invalid += 1;
                if created {
                    // A failed initiation leaves nothing behind.
                    peer.tunnels[key as usize] = None;
                }
                return;
            }
            TunnResult::Done if message == Message::CookieReply => {
                // It proves only that its sender saw our MAC1: it moves nothing but the
                // cookie `Tunn` keeps for its next handshake message.
                return;
            }
            TunnResult::Done => {
                count(&mut peer.traffic.1, datagram);
                tunnel.confirms(message)
            }
            TunnResult::WriteToNetwork(reply) if !answers(message, reply) => {
                // Anything else (a cookie reply of `Tunn`'s own above all) did not come from
                // an authenticated message: it moves nothing and is not sent.
                self.counters.invalid += 1;
                if created {
                    peer.tunnels[key as usize] = None;
                }
                return;
            }
            TunnResult::WriteToNetwork(reply) => {
                count(&mut peer.traffic.1, datagram);
                count(&mut peer.traffic.0, reply);
                if let Message::Init(timestamp) = message {
                    tunnel.unconfirmed = answered_session(reply);
                    peer.newest_init = Some(timestamp);
                }
                sink.send(src, reply);
                peer.last_tx = now;
                // Packets queued while there was no session go out now.
                while let TunnResult::WriteToNetwork(queued) =
                    tunnel.tunn.decapsulate(None, &[], buf)
                {
                    if self.limits.permits(queued) {
                        sink.send(src, queued);
                        count(&mut peer.traffic.0, queued);
                    } else {
                        self.counters.key_exhausted += 1;
                    }
                }
                // Our own initiation is answered: that session is the newest.
                message == Message::Response
            }
            TunnResult::WriteToTunnelV4(inner, source) => {
                count(&mut peer.traffic.1, datagram);
                deliver(
                    inner,
                    IpAddr::V4(source),
                    index,
                    &self.routes,
                    &mut self.counters,
                    sink,
                );
                tunnel.confirms(message)
            }
            TunnResult::WriteToTunnelV6(inner, source) => {
                count(&mut peer.traffic.1, datagram);
                deliver(
                    inner,
                    IpAddr::V6(source),
                    index,
                    &self.routes,
                    &mut self.counters,
                    sink,
                );
                tunnel.confirms(message)
            }
        };
        if confirmed {
            peer.active = key;
        }
        if matches!(message, Message::Response | Message::Data(_)) {
            // Only a message `Tunn` decrypted and authenticated reaches this point (every
            // other outcome returned above): the peer roams to where it sent from.
            peer.endpoint = Some(canonical(src));
        }
    }

    /// Runs every peer's timers (call about every 250 ms): handshake retries, rekeys, the
    /// passive and persistent keepalives, and session expiry. `wall` is the current
    /// wall-clock time, for the reported handshake times.
    pub fn tick(&mut self, now: Duration, wall: SystemTime, buf: &mut [u8], sink: &mut dyn Sink) {
        self.load.tick(now);
        for public in std::mem::take(&mut self.initiations) {
            self.initiate(&public, buf, now, sink);
        }
        let limits = self.limits;
        for peer in self.slots.iter_mut().flatten() {
            for key in [Slot::A, Slot::B] {
                let Some(tunnel) = peer.tunnels[key as usize].as_mut() else {
                    continue;
                };
                // Expiry and failed retries need nothing from us: `Tunn` starts over. Only
                // the active tunnel speaks first; the other one's sessions still expire and
                // it still answers initiations, but what its timers would send is dropped.
                if let TunnResult::WriteToNetwork(datagram) = tunnel.tunn.update_timers(buf)
                    && key == peer.active
                    && let Some(to) = peer.endpoint
                    && limits.permits(datagram)
                {
                    sink.send(to, datagram);
                    peer.last_tx = now;
                    count(&mut peer.traffic.0, datagram);
                }
            }
            let Some(tunnel) = peer.tunnels[peer.active as usize].as_mut() else {
                continue;
            };
            let tunn = &mut tunnel.tunn;
            let keepalive = Duration::from_secs(u64::from(peer.keepalive));
            if peer.keepalive > 0
                && now.saturating_sub(peer.last_tx) >= keepalive
                && let Some(to) = peer.endpoint
                && let TunnResult::WriteToNetwork(datagram) = tunn.encapsulate(&[], buf)
                && limits.permits(datagram)
            {
                sink.send(to, datagram);
                peer.last_tx = now;
                count(&mut peer.traffic.0, datagram);
            }
            if let Some(age) = tunn.time_since_last_handshake() {
                let at = wall.checked_sub(age).unwrap_or(wall);
                let moved = peer.last_handshake.is_none_or(|old| {
                    at.duration_since(old).unwrap_or_else(|e| e.duration()) > HANDSHAKE_JITTER
                });
                if moved {
                    peer.last_handshake = Some(at);
                }
            }
        }
    }
}

/// Returns the peer slot and the position of the tunnel that owns session `receiver`, with
/// the message (and no tunnel created).
fn with_session(receiver: u32, message: Message) -> (usize, Slot, Message, bool) {
    let (index, at) = rotation::split_index(receiver);
    (index, at, message, false)
}

/// Returns `packet` padded with zeros to the next multiple of 16 bytes, or to `mtu` if that
/// comes first (never shorter than the packet); `scratch` holds the padded copy.
fn pad<'a>(packet: &'a [u8], mtu: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    let target = packet
        .len()
        .next_multiple_of(PADDING)
        .min(mtu.max(packet.len()));
    if target == packet.len() {
        return packet;
    }
    scratch.clear();
    scratch.extend_from_slice(packet);
    scratch.resize(target, 0);
    scratch
}

/// Returns whether `reply` is what `Tunn` answers to an accepted `message`: a handshake
/// response to an initiation, a keepalive (a data message) to a response.
fn answers(message: Message, reply: &[u8]) -> bool {
    match message {
        Message::Init(_) => reply.len() == HANDSHAKE_RESPONSE_LEN && reply.first() == Some(&2),
        Message::Response => reply.first() == Some(&4),
        Message::CookieReply | Message::Data(_) => false,
    }
}

/// Returns the counter of a data message.
fn data_counter(datagram: &[u8]) -> Option<u64> {
    match datagram {
        [4, 0, 0, 0, _, _, _, _, counter @ ..] => {
            Some(u64::from_le_bytes(counter.get(..8)?.try_into().ok()?))
        }
        _ => None,
    }
}

/// Returns our index of the session a handshake response opens.
fn answered_session(reply: &[u8]) -> Option<u32> {
    match reply {
        [2, 0, 0, 0, a, b, c, d, ..] if reply.len() == HANDSHAKE_RESPONSE_LEN => {
            Some(u32::from_le_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// Writes a packet decrypted from the peer in slot `from` to the TUN device if it is at least
/// an IP header long (`Tunn` cuts a packet to the length its header claims, which a peer may
/// set short) and its inner `source` routes back to that peer; counts it dropped otherwise.
fn deliver(
    packet: &[u8],
    source: IpAddr,
    from: usize,
    routes: &AllowedIps<usize>,
    counters: &mut Counters,
    sink: &mut dyn Sink,
) {
    let header = if source.is_ipv4() { 20 } else { 40 };
    if packet.len() < header {
        counters.invalid += 1;
    } else if routes.lookup(source) == Some(&from) {
        sink.write_tun(packet);
    } else {
        counters.bad_source += 1;
    }
}

/// Adds a datagram's length to a byte counter.
fn count(counter: &mut u64, datagram: &[u8]) {
    *counter = counter.saturating_add(datagram.len() as u64);
}

/// Returns `addr` with an IPv4-mapped IPv6 address turned into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

mod cookie;
mod noise;
mod peer_rotation;
mod rotation;
mod table;

pub use rotation::RotationError;
use rotation::{Role, Slot};
pub use table::Peer;

#[cfg(test)]
pub(crate) mod tests;
