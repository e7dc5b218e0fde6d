//! The native data plane's packet logic, without IO: the peer table, allowed-IPs routing,
//! handshake dispatch and timers around `boringtun::noise::Tunn`. The IO threads hand it
//! packets and a [`Sink`] for what it emits; time comes in as arguments (`Tunn` reads its own
//! clock internally).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

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

/// The device: its key, its peers and their routes.
pub struct Core {
    private: Option<StaticSecret>,
    public: Option<PublicKey>,
    limiter: Option<Arc<RateLimiter>>,
    last_limiter_reset: Duration,
    slots: Vec<Option<Peer>>,
    by_key: BTreeMap<[u8; 32], usize>,
    routes: AllowedIps<usize>,
    /// The rotation hook: a second key handshakes may be addressed to.
    second: Option<SecondKey>,
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
            second: None,
            counters: Counters::default(),
        }
    }

    /// Returns the private key, if set.
    pub fn private_key(&self) -> Option<&StaticSecret> {
        self.private.as_ref()
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
        // MAC1 names the responder key the sender used: the current one, or else the second.
        let (packet, second) = match limiter.verify_packet(Some(src.ip()), datagram, buf) {
            Ok(packet) => (packet, None),
            Err(TunnResult::WriteToNetwork(cookie)) => {
                sink.send(src, cookie);
                return;
            }
            Err(TunnResult::Err(WireGuardError::InvalidMac)) if self.second.is_some() => {
                let Some(second) = self.second.as_ref() else {
                    return;
                };
                match second.limiter.verify_packet(Some(src.ip()), datagram, buf) {
                    Ok(packet) => (packet, Some(second)),
                    Err(TunnResult::WriteToNetwork(cookie)) => {
                        sink.send(src, cookie);
                        return;
                    }
                    Err(_) => {
                        self.counters.invalid += 1;
                        return;
                    }
                }
            }
            Err(_) => {
                self.counters.invalid += 1;
                return;
            }
        };
        let (private, public) = match second {
            Some(second) => (&second.private, &second.public),
            None => (private, public),
        };
        let on_second = second.is_some();
        let is_init = matches!(packet, Packet::HandshakeInit(_));
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
        if is_init {
            // Only an initiation chooses the key; later messages follow the session.
            self.answer_with(index, on_second);
        }
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
            if let Some(second) = &self.second {
                second.limiter.reset_count();
            }
            self.last_limiter_reset = now;
        }
        for peer in self.slots.iter_mut().flatten() {
            let Some(tunn) = peer.tunn.as_mut() else {
                continue;
            };
            // Expiry and failed retries need nothing from us: `Tunn` starts over.
            if let TunnResult::WriteToNetwork(datagram) = tunn.update_timers(buf)
                && let Some(to) = peer.endpoint
            {
                sink.send(to, datagram);
                peer.last_tx = now;
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

mod rotation;
mod table;

use rotation::SecondKey;
pub use table::Peer;

#[cfg(test)]
mod tests;
