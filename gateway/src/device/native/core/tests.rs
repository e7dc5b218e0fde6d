//! Two cores talking to each other in memory: handshakes, data both ways, routing, roaming,
//! in-place updates and garbage.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;

use super::{Core, Sink};

#[derive(Default)]
struct Capture {
    sent: VecDeque<(SocketAddr, Vec<u8>)>,
    tun: Vec<Vec<u8>>,
}

impl Sink for Capture {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.sent.push_back((to, datagram.to_vec()));
    }
    fn write_tun(&mut self, packet: &[u8]) {
        self.tun.push(packet.to_vec());
    }
}

const A_ADDR: &str = "192.0.2.1:51820";
const B_ADDR: &str = "192.0.2.2:51820";

struct Pair {
    a: Core,
    b: Core,
    a_pub: [u8; 32],
    b_pub: [u8; 32],
    a_out: Capture,
    b_out: Capture,
    buf: Vec<u8>,
    /// Packets each way so far by `flow` (`tests/peer_rotation.rs`).
    sent: u32,
}

fn key(seed: u8) -> ([u8; 32], [u8; 32]) {
    let private = [seed; 32];
    let public = PublicKey::from(&StaticSecret::from(private)).to_bytes();
    (private, public)
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

impl Pair {
    fn new() -> Self {
        Self::with_a(Core::new())
    }

    /// A pair whose side a is the core `a` (without key or peers).
    fn with_a(mut a: Core) -> Self {
        let (a_priv, a_pub) = key(1);
        let (b_priv, b_pub) = key(2);
        a.set_private_key(Some(a_priv));
        let mut b = Core::new();
        b.set_private_key(Some(b_priv));
        a.peer_mut(b_pub).expect("slot").endpoint = Some(addr(B_ADDR));
        a.add_allowed_ip(&b_pub, net("10.2.0.0/16"));
        b.peer_mut(a_pub).expect("slot").endpoint = Some(addr(A_ADDR));
        b.add_allowed_ip(&a_pub, net("10.1.0.0/16"));
        Self {
            a,
            b,
            a_pub,
            b_pub,
            a_out: Capture::default(),
            b_out: Capture::default(),
            buf: vec![0u8; 4096],
            sent: 0,
        }
    }

    /// Hands `a` a packet from pod 10.1.0.5 to pod 10.2.0.7 as if read from its TUN device.
    fn send_from_a(&mut self, payload: &[u8]) {
        let packet = ipv4([10, 1, 0, 5], [10, 2, 0, 7], payload);
        self.a
            .from_tun(&packet, &mut self.buf, Duration::ZERO, &mut self.a_out);
    }

    /// Delivers everything in flight until both sides are quiet; returns datagrams moved.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            if let Some((_, d)) = self.a_out.sent.pop_front() {
                self.b.from_udp(
                    addr(A_ADDR),
                    &d,
                    &mut self.buf,
                    Duration::ZERO,
                    &mut self.b_out,
                );
            } else if let Some((_, d)) = self.b_out.sent.pop_front() {
                self.a.from_udp(
                    addr(B_ADDR),
                    &d,
                    &mut self.buf,
                    Duration::ZERO,
                    &mut self.a_out,
                );
            } else {
                return moved;
            }
            moved += 1;
        }
    }
}

/// A minimal IPv4 packet (header only, checksum not needed by the core).
pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

#[test]
fn handshake_then_data_both_ways() {
    let mut pair = Pair::new();
    let packet = ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"hello");
    pair.a
        .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.a_out);
    // No session yet: a handshake initiation goes out and the packet waits in the queue.
    assert_eq!(pair.a_out.sent.len(), 1);
    assert!(pair.pump() >= 2);
    assert_eq!(pair.b_out.tun, vec![packet.clone()]);
    let back = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"world");
    pair.b
        .from_tun(&back, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    pair.pump();
    assert_eq!(pair.a_out.tun, vec![back]);
    assert_eq!(pair.a.counters, super::Counters::default());
    assert!(pair.a.peers().next().expect("peer").bytes().0 > 0);
}

#[test]
fn unrouted_destinations_and_foreign_sources_are_dropped() {
    let mut pair = Pair::new();
    pair.a.from_tun(
        &ipv4([10, 1, 0, 5], [10, 9, 0, 1], b"x"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.a_out,
    );
    assert!(pair.a_out.sent.is_empty());
    assert_eq!(pair.a.counters.no_route, 1);
    pair.a.from_tun(
        &ipv4([10, 1, 0, 5], [10, 2, 0, 1], b"x"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.a_out,
    );
    pair.pump();
    // b sends a packet whose inner source a does not route to b.
    pair.a.clear_allowed_ips(&pair.b_pub);
    pair.a.add_allowed_ip(&pair.b_pub, net("10.2.0.0/24"));
    pair.b.from_tun(
        &ipv4([10, 2, 1, 1], [10, 1, 0, 5], b"spoof"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    pair.pump();
    assert!(pair.a_out.tun.is_empty());
    assert_eq!(pair.a.counters.bad_source, 1);
}

#[test]
fn a_decrypted_packet_shorter_than_its_header_is_dropped_and_counted() {
    let mut pair = Pair::new();
    pair.send_from_a(b"1");
    pair.pump();
    pair.a_out.tun.clear();
    // An IPv4 header claiming a total length of 12: `Tunn` cuts the packet there.
    let mut runt = ipv4([10, 2, 0, 1], [10, 1, 0, 5], b"payload");
    runt[2] = 0;
    runt[3] = 12;
    let invalid = pair.a.counters.invalid;
    pair.b
        .from_tun(&runt, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    pair.pump();
    assert!(pair.a_out.tun.is_empty(), "{:?}", pair.a_out.tun);
    assert_eq!(pair.a.counters.invalid, invalid + 1);
    // The session still carries whole packets.
    pair.b.from_tun(
        &ipv4([10, 2, 0, 1], [10, 1, 0, 5], b"whole"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    pair.pump();
    assert_eq!(pair.a_out.tun.len(), 1);
}

#[test]
fn garbage_replays_and_unknown_indices_are_counted_not_fatal() {
    let mut pair = Pair::new();
    pair.send_from_a(b"1");
    pair.pump();
    pair.send_from_a(b"2");
    let (_, data) = pair.a_out.sent.pop_front().expect("data packet");
    let src = addr(A_ADDR);
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![1, 0, 0],
        vec![0xff; 200],
        vec![1, 0, 0, 0, 1, 2, 3],
        data[..data.len() / 2].to_vec(),
    ];
    let mut wrong_index = data.clone();
    wrong_index[4..8].copy_from_slice(&0x0012_3400u32.to_le_bytes());
    bad.push(wrong_index);
    let mut init = vec![0u8; 148];
    init[0] = 1;
    bad.push(init);
    for d in &bad {
        pair.b
            .from_udp(src, d, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    }
    assert_eq!(pair.b.counters.invalid, bad.len() as u64);
    pair.b
        .from_udp(src, &data, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    pair.b
        .from_udp(src, &data, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    assert_eq!(
        pair.b.counters.invalid,
        bad.len() as u64 + 1,
        "the replay is dropped"
    );
    assert_eq!(pair.b_out.tun.len(), 2);
}

#[test]
fn endpoint_roams_to_the_authenticated_source() {
    let mut pair = Pair::new();
    pair.send_from_a(b"1");
    pair.pump();
    pair.send_from_a(b"2");
    let (_, data) = pair.a_out.sent.pop_front().expect("data");
    let roamed = addr("198.51.100.9:4000");
    pair.b.from_udp(
        roamed,
        &data,
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    let peer = pair.b.peers().next().expect("peer");
    assert_eq!(peer.endpoint, Some(roamed));
    // Garbage from elsewhere does not move it.
    pair.b.from_udp(
        addr("203.0.113.1:1"),
        &data,
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    assert_eq!(pair.b.peers().next().expect("peer").endpoint, Some(roamed));
}

#[test]
fn in_place_updates_keep_the_session_and_keepalive_fires() {
    let mut pair = Pair::new();
    pair.send_from_a(b"1");
    pair.pump();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    pair.b
        .tick(Duration::from_secs(1), wall, &mut pair.buf, &mut pair.b_out);
    let before = pair.b.peers().next().expect("peer").last_handshake();
    assert!(before.is_some());
    // Change allowed IPs, endpoint and keepalive in place.
    pair.b.clear_allowed_ips(&pair.a_pub);
    pair.b.add_allowed_ip(&pair.a_pub, net("10.1.0.0/24"));
    pair.b.add_allowed_ip(&pair.a_pub, net("10.3.0.0/16"));
    pair.b.peer_mut(pair.a_pub).expect("peer").keepalive = 5;
    pair.b_out.sent.clear();
    pair.b.tick(
        Duration::from_secs(10),
        wall,
        &mut pair.buf,
        &mut pair.b_out,
    );
    assert_eq!(
        pair.b_out.sent.len(),
        1,
        "a keepalive on the existing session"
    );
    assert_eq!(
        pair.b_out.sent[0].1.len(),
        32,
        "a keepalive is an empty data packet"
    );
    pair.a_out.sent.clear();
    pair.b.from_tun(
        &ipv4([10, 3, 0, 1], [10, 1, 0, 5], b"new"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    pair.b_out.sent.clear();
    pair.b.tick(
        Duration::from_secs(11),
        wall,
        &mut pair.buf,
        &mut pair.b_out,
    );
    assert_eq!(
        pair.b.peers().next().expect("peer").last_handshake(),
        before
    );
    assert_eq!(
        pair.b
            .allowed_ips(&pair.a_pub)
            .into_iter()
            .collect::<Vec<_>>(),
        vec![net("10.1.0.0/24"), net("10.3.0.0/16")]
    );
    assert_eq!(
        Tunn::dst(&ipv4([1, 1, 1, 1], [10, 3, 0, 1], b"")),
        Some(IpAddr::V4(Ipv4Addr::new(10, 3, 0, 1)))
    );
}

struct Tunn;
impl Tunn {
    fn dst(p: &[u8]) -> Option<IpAddr> {
        boringtun::noise::Tunn::dst_address(p)
    }
}

#[test]
fn unknown_initiators_are_counted() {
    let mut pair = Pair::new();
    pair.b.remove_peer(&pair.a_pub);
    pair.send_from_a(b"1");
    pair.pump();
    assert_eq!(pair.b.counters.unknown_peer, 1);
    assert!(pair.b_out.tun.is_empty());
}

#[test]
fn a_second_key_answers_handshakes_addressed_to_it() {
    // a holds its current key (1) and a second one (9); b already knows a by the second key.
    // (Peers that name the current key are what every other test here does.)
    let mut pair = Pair::new();
    let (second_priv, second_pub) = key(9);
    pair.a.set_second_key(Some(second_priv));
    let (_, a_pub) = key(1);
    pair.b.remove_peer(&a_pub);
    pair.b.peer_mut(second_pub).expect("slot").endpoint = Some(addr(A_ADDR));
    pair.b.add_allowed_ip(&second_pub, net("10.1.0.0/16"));

    let packet = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"to the new key");
    pair.b
        .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
    pair.pump();
    assert_eq!(pair.a_out.tun, vec![packet]);
    assert!(pair.a.uses_second_key(&pair.b_pub));
    let back = ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"answer");
    pair.a
        .from_tun(&back, &mut pair.buf, Duration::ZERO, &mut pair.a_out);
    pair.pump();
    assert_eq!(pair.b_out.tun, vec![back]);
    assert_eq!(pair.a.counters.invalid, 0);

    // Without the second key, a handshake to it fails MAC1 and is counted.
    let mut other = Pair::new();
    other.b.remove_peer(&a_pub);
    other.b.peer_mut(second_pub).expect("slot").endpoint = Some(addr(A_ADDR));
    other.b.add_allowed_ip(&second_pub, net("10.1.0.0/16"));
    other.b.from_tun(
        &ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"x"),
        &mut other.buf,
        Duration::ZERO,
        &mut other.b_out,
    );
    other.pump();
    assert!(other.a_out.tun.is_empty());
    assert_eq!(other.a.counters.invalid, 1);

    // Dropping the second key moves b's tunnel back to the current key.
    pair.a.set_second_key(None);
    assert!(!pair.a.uses_second_key(&pair.b_pub));
}

#[test]
fn preshared_keys_must_match() {
    let mut pair = Pair::new();
    pair.a.set_psk(&pair.b_pub, Some([5; 32]));
    pair.b.set_psk(&pair.a_pub, Some([5; 32]));
    let packet = ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"psk");
    pair.a
        .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.a_out);
    pair.pump();
    assert_eq!(pair.b_out.tun, vec![packet]);

    let mut other = Pair::new();
    other.a.set_psk(&other.b_pub, Some([5; 32]));
    other.b.set_psk(&other.a_pub, Some([6; 32]));
    other.a.from_tun(
        &ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"x"),
        &mut other.buf,
        Duration::ZERO,
        &mut other.a_out,
    );
    other.pump();
    assert!(other.b_out.tun.is_empty());
    assert!(other.a.counters.invalid + other.b.counters.invalid > 0);
}

/// A minimal IPv6 packet (header only).
fn ipv6(src: [u8; 16], dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u16;
    let mut p = vec![0x60, 0, 0, 0, (len >> 8) as u8, len as u8, 17, 64];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

#[test]
fn ipv6_inner_packets_route_by_longest_prefix() {
    let mut pair = Pair::new();
    pair.a.add_allowed_ip(&pair.b_pub, net("fd00:2::/64"));
    pair.b.add_allowed_ip(&pair.a_pub, net("fd00:1::/64"));
    let a_ip = "fd00:1::5"
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets();
    let b_ip = "fd00:2::7"
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets();
    let packet = ipv6(a_ip, b_ip, b"over v6");
    pair.a
        .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.a_out);
    pair.pump();
    assert_eq!(pair.b_out.tun, vec![packet]);
    let elsewhere = "fd00:3::1"
        .parse::<std::net::Ipv6Addr>()
        .expect("v6")
        .octets();
    pair.a.from_tun(
        &ipv6(a_ip, elsewhere, b"x"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.a_out,
    );
    assert_eq!(pair.a.counters.no_route, 1);
}

mod cookie;
mod forgery;
mod limits;
mod padding;
mod peer_rotation;
mod replay;
mod rotation;
