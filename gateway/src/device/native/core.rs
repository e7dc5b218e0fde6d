//! The native data plane's packet logic, without IO: the peer table, allowed-IPs routing,
//! handshake dispatch and timers around `boringtun::noise::Tunn`. The IO threads hand it
//! packets and a [`Sink`] for what it emits; time comes in as arguments (`Tunn` reads its own
//! clock internally).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use zeroize::Zeroizing;

use crate::core::allowed_ips::AllowedIps;

/// Handshakes per second the device answers before it asks for cookies.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// How often the rate limiter's count is reset.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);
/// Peer slots are indexed by 24 bits (`Tunn` shifts the index left by 8).
const MAX_PEERS: usize = 1 << 24;
/// A reported handshake time moves only when it differs by more than this from the last one
/// (the age `Tunn` reports is only as fresh as its last timer update).
const HANDSHAKE_JITTER: Duration = Duration::from_secs(1);

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
}

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
    tunn: Option<Tunn>,
    /// Monotonic time of the last datagram sent to it.
    last_tx: Duration,
    /// Wall-clock time of its last handshake, as reported.
    last_handshake: Option<SystemTime>,
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

/// The device: its key, its peers and their routes.
pub struct Core {
    private: Option<StaticSecret>,
    public: Option<PublicKey>,
    limiter: Option<Arc<RateLimiter>>,
    last_limiter_reset: Duration,
    slots: Vec<Option<Peer>>,
    by_key: BTreeMap<[u8; 32], usize>,
    routes: AllowedIps<usize>,
    /// Drop counters.
    pub counters: Counters,
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
            private: None,
            public: None,
            limiter: None,
            last_limiter_reset: Duration::ZERO,
            slots: Vec::new(),
            by_key: BTreeMap::new(),
            routes: AllowedIps::new(),
            counters: Counters::default(),
        }
    }

    /// Returns the private key, if set.
    pub fn private_key(&self) -> Option<&StaticSecret> {
        self.private.as_ref()
    }

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
    pub fn allowed_ips(&self, public: &[u8; 32]) -> std::collections::BTreeSet<IpNet> {
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

    fn rebuild_tunn(&mut self, index: usize) {
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

    /// Handles one IP packet read from the TUN device: encrypts it for the peer that holds
    /// its destination. `buf` must hold the packet plus 32 bytes and at least 148.
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
        let Some(tunn) = peer.tunn.as_mut() else {
            self.counters.no_route += 1;
            return;
        };
        if let TunnResult::WriteToNetwork(datagram) = tunn.encapsulate(packet, buf) {
            match peer.endpoint {
                Some(to) => {
                    sink.send(to, datagram);
                    peer.last_tx = now;
                }
                None => self.counters.no_endpoint += 1,
            }
        }
    }

    /// Handles one datagram from the network.
    pub fn from_udp(
        &mut self,
        src: SocketAddr,
        datagram: &[u8],
        buf: &mut [u8],
        now: Duration,
        sink: &mut dyn Sink,
    ) {
        let (Some(private), Some(public), Some(limiter)) = (
            self.private.as_ref(),
            self.public.as_ref(),
            self.limiter.as_ref(),
        ) else {
            self.counters.invalid += 1;
            return;
        };
        let packet = match limiter.verify_packet(Some(src.ip()), datagram, buf) {
            Ok(packet) => packet,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                sink.send(src, cookie);
                return;
            }
            Err(_) => {
                self.counters.invalid += 1;
                return;
            }
        };
        let index = match packet {
            Packet::HandshakeInit(init) => match parse_handshake_anon(private, public, &init) {
                Ok(half) => match self.by_key.get(&half.peer_static_public) {
                    Some(index) => *index,
                    None => {
                        self.counters.unknown_peer += 1;
                        return;
                    }
                },
                Err(_) => {
                    self.counters.invalid += 1;
                    return;
                }
            },
            Packet::HandshakeResponse(p) => (p.receiver_idx >> 8) as usize,
            Packet::PacketCookieReply(p) => (p.receiver_idx >> 8) as usize,
            Packet::PacketData(p) => (p.receiver_idx >> 8) as usize,
        };
        let Some(peer) = self.slots.get_mut(index).and_then(Option::as_mut) else {
            self.counters.invalid += 1;
            return;
        };
        let Some(tunn) = peer.tunn.as_mut() else {
            self.counters.invalid += 1;
            return;
        };
        match tunn.decapsulate(Some(src.ip()), datagram, buf) {
            TunnResult::Err(_) => {
                self.counters.invalid += 1;
                return;
            }
            TunnResult::Done => {}
            TunnResult::WriteToNetwork(reply) => {
                sink.send(src, reply);
                peer.last_tx = now;
                // Packets queued while there was no session go out now.
                while let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], buf) {
                    sink.send(src, queued);
                }
            }
            TunnResult::WriteToTunnelV4(inner, source) => {
                if self.routes.lookup(IpAddr::V4(source)) == Some(&index) {
                    sink.write_tun(inner);
                } else {
                    self.counters.bad_source += 1;
                }
            }
            TunnResult::WriteToTunnelV6(inner, source) => {
                if self.routes.lookup(IpAddr::V6(source)) == Some(&index) {
                    sink.write_tun(inner);
                } else {
                    self.counters.bad_source += 1;
                }
            }
        }
        // Authenticated: the peer roams to where it sent from.
        peer.endpoint = Some(canonical(src));
    }

    /// Runs every peer's timers (call about every 250 ms): handshake retries, rekeys, the
    /// passive and persistent keepalives, and session expiry. `wall` is the current
    /// wall-clock time, for the reported handshake times.
    pub fn tick(&mut self, now: Duration, wall: SystemTime, buf: &mut [u8], sink: &mut dyn Sink) {
        if now.saturating_sub(self.last_limiter_reset) >= RATE_LIMIT_WINDOW {
            if let Some(limiter) = &self.limiter {
                limiter.reset_count();
            }
            self.last_limiter_reset = now;
        }
        for peer in self.slots.iter_mut().flatten() {
            let Some(tunn) = peer.tunn.as_mut() else {
                continue;
            };
            match tunn.update_timers(buf) {
                TunnResult::WriteToNetwork(datagram) => {
                    if let Some(to) = peer.endpoint {
                        sink.send(to, datagram);
                        peer.last_tx = now;
                    }
                }
                // Expiry and failed retries need nothing from us: `Tunn` starts over.
                _ => {}
            }
            let keepalive = Duration::from_secs(u64::from(peer.keepalive));
            if peer.keepalive > 0
                && now.saturating_sub(peer.last_tx) >= keepalive
                && let Some(to) = peer.endpoint
                && let TunnResult::WriteToNetwork(datagram) = tunn.encapsulate(&[], buf)
            {
                sink.send(to, datagram);
                peer.last_tx = now;
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

/// Returns `addr` with an IPv4-mapped IPv6 address turned into IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests;
