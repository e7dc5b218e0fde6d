//! A sender without keys tries to move a peer's endpoint on a running gateway. A handshake
//! message's MAC1 needs only the gateway's public key (not secret) and the receiver index of
//! a peer's first sessions is predictable, so anyone on the underlay can get a forged
//! handshake response past the MAC check. In bursts around the handshake rate limit, from a
//! stranger's address, from peer b's own address with another port, and from b's address
//! spoofed with a raw socket, forged responses must never move b's endpoint on gateway a
//! while a ping runs through the tunnel, and no ping may be lost.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use netns_tests::forge::handshake_response;
use netns_tests::{Gateway, Netns, SteadyPing, Topology, require_root, wait_reachable};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const REACH: Duration = Duration::from_secs(10);
/// Bursts sent; each is followed by a check of the endpoint.
const ROUNDS: usize = 16;
/// Pause between bursts: the gateway resets its handshake count once a second, checked every
/// 250 ms, so a burst after this pause starts on a fresh count.
const PAUSE: Duration = Duration::from_millis(1300);
/// The gateway answers this many handshake messages a second before it asks for cookies.
const HANDSHAKE_LIMIT: usize = 100;
/// A receiver index whose slot no peer holds: such a response passes the MAC check, is
/// counted once against the limit and goes no further; a few of them set the count to any
/// value before the forgeries aimed at slot 0.
const EMPTY_SLOT: u32 = 5000 << 8;
/// The sender index of the forged responses.
const FORGED_SENDER: u32 = 0x0bad_cafe;
/// A stranger's address on the underlay.
const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

#[test]
fn forged_handshake_responses_never_move_an_endpoint() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    topo.underlay
        .ip(&["addr", "add", &format!("{STRANGER}/24"), "dev", "br0"])
        .expect("stranger address");
    let target = SocketAddrV4::new(a.underlay_ip(), netns_tests::LISTEN_PORT);
    let key = a.key.public_key();
    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");

    for round in 0..ROUNDS {
        let burst = burst(&key, round);
        let (ns, from) = match round % 3 {
            0 => (
                &topo.underlay,
                Sender::Bound(SocketAddrV4::new(STRANGER, 4500)),
            ),
            1 => (
                &b.gw,
                Sender::Bound(SocketAddrV4::new(b.underlay_ip(), 40000)),
            ),
            _ => (
                &topo.underlay,
                Sender::Spoofed(SocketAddrV4::new(b.underlay_ip(), 51821)),
            ),
        };
        send(ns, from, target, &burst)
            .unwrap_or_else(|e| panic!("round {round}: send the burst: {e:#}"));
        let dump = gw_a.dump().expect("wg dump of gateway a");
        let endpoint = dump
            .peer(&b.public_key())
            .and_then(|peer| peer.endpoint.clone());
        assert_eq!(
            endpoint.as_deref(),
            Some(b.endpoint().as_str()),
            "round {round}: b's endpoint moved on a"
        );
        pause();
    }

    let stats = steady.stop().expect("stop steady ping");
    assert!(stats.transmitted >= 500, "ping ran too briefly: {stats:?}");
    assert_eq!(
        stats.received, stats.transmitted,
        "pings lost while forged responses arrived: {stats:?}"
    );
}

/// Waits out the gateway's handshake-count window between bursts.
#[allow(
    clippy::disallowed_methods,
    reason = "paces the sender by the gateway's one-second window; no event marks its reset"
)]
fn pause() {
    std::thread::sleep(PAUSE);
}

/// Returns one burst: `pad` responses to an empty slot, then responses to each of slot 0's
/// first 64 receiver indexes on the current key and as many on the second key's tunnel.
/// `pad` runs through the counts just below and above the limit, odd and even, so the
/// forgeries meet the limit at every count around it.
fn burst(key: &[u8; 32], round: usize) -> Vec<Vec<u8>> {
    let pad = HANDSHAKE_LIMIT - 5 + round % 8;
    let mut burst: Vec<_> = (0..pad)
        .map(|_| handshake_response(key, FORGED_SENDER, EMPTY_SLOT))
        .collect();
    for low in 0..64u32 {
        burst.push(handshake_response(key, FORGED_SENDER, low));
        burst.push(handshake_response(key, FORGED_SENDER, (1 << 31) | low));
    }
    burst
}

/// How a burst leaves its namespace.
#[derive(Clone, Copy)]
enum Sender {
    /// From a UDP socket bound to this address, which the namespace owns.
    Bound(SocketAddrV4),
    /// From a raw socket, as IPv4/UDP datagrams with this source, which it does not own.
    Spoofed(SocketAddrV4),
}

/// Sends the burst from inside `ns`.
fn send(ns: &Netns, from: Sender, to: SocketAddrV4, burst: &[Vec<u8>]) -> anyhow::Result<()> {
    ns.run_in(|| {
        match from {
            Sender::Bound(at) => {
                let socket = UdpSocket::bind(at)?;
                for message in burst {
                    socket.send_to(message, to)?;
                }
            }
            Sender::Spoofed(source) => {
                let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))?;
                let dst = SockAddr::from(SocketAddr::V4(to));
                for message in burst {
                    socket.send_to(&udp_packet(source, to, message), &dst)?;
                }
            }
        }
        Ok(())
    })
}

/// Returns an IPv4 packet carrying `payload` in UDP from `from` to `to` (UDP checksum 0:
/// none; the kernel fills the IP checksum).
fn udp_packet(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("a small datagram");
    let total = 20 + udp_len;
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    packet
}
