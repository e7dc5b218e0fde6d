//! Handles on three cores that talk over in-memory packets: real handshakes through the
//! typed operations, key rotation on one side, and peers whose key is replaced.

use crate::device::native::core::tests::ipv4;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use kms_client::PrivateKey;

use super::{DeviceHandle, Error, Keys, lock};
use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::device::native::core::{Core, RotationError, Sink};

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

struct Side {
    handle: DeviceHandle,
    core: Arc<Mutex<Core>>,
    out: Capture,
    addr: SocketAddr,
    /// Its pods' network and one pod in it.
    net: IpNet,
    pod: [u8; 4],
}

/// Gateway a (slot 0) with peers b (1) and c (2); b and c each have a as their one peer.
struct Net {
    sides: Vec<Side>,
    buf: Vec<u8>,
}

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn generate() -> PrivateKey {
    PrivateKey::generate().expect("random key")
}

fn public(key: &PrivateKey) -> PublicKey {
    PublicKey::from_bytes(key.public_key())
}

fn config(key: PublicKey, side: &Side) -> PeerConfig {
    PeerConfig {
        public_key: key,
        endpoint: Some(side.addr),
        allowed_ips: [side.net].into_iter().collect(),
        persistent_keepalive: 0,
        preshared_key: None,
    }
}

impl Net {
    /// Returns the net and the private keys of a, b and c.
    fn new() -> (Self, [PrivateKey; 3]) {
        let keys = [generate(), generate(), generate()];
        let sides: Vec<Side> = (0..3u8)
            .map(|i| {
                let core = Arc::new(Mutex::new(Core::new()));
                Side {
                    handle: DeviceHandle::new(core.clone(), 51820),
                    core,
                    out: Capture::default(),
                    addr: format!("192.0.2.{}:51820", i + 1).parse().expect("addr"),
                    net: format!("10.{}.0.0/16", i + 1).parse().expect("net"),
                    pod: [10, i + 1, 0, 7],
                }
            })
            .collect();
        for (side, key) in sides.iter().zip(&keys) {
            side.handle.set_private_key(key);
        }
        let net = Self {
            sides,
            buf: vec![0u8; 4096],
        };
        for peer in [B, C] {
            net.apply(
                A,
                &Op::UpsertPeer(config(public(&keys[peer]), &net.sides[peer])),
            )
            .expect("a knows its peer");
            net.apply(
                peer,
                &Op::UpsertPeer(config(public(&keys[A]), &net.sides[A])),
            )
            .expect("the peer knows a");
        }
        (net, keys)
    }

    fn apply(&self, side: usize, op: &Op) -> Result<(), Error> {
        self.sides[side].handle.apply(op)
    }

    /// Hands `from` a packet from its pod to `to`'s pod, as if read from its TUN device.
    fn send(&mut self, from: usize, to: usize, payload: &[u8]) -> Vec<u8> {
        let packet = ipv4(self.sides[from].pod, self.sides[to].pod, payload);
        let side = &mut self.sides[from];
        lock(&side.core).from_tun(&packet, &mut self.buf, Duration::ZERO, &mut side.out);
        packet
    }

    /// Delivers everything in flight until all sides are quiet; returns the datagrams
    /// moved, by first byte (message type).
    fn pump(&mut self) -> Vec<u8> {
        let mut types = Vec::new();
        loop {
            let Some((from, to, datagram)) = self.sides.iter_mut().find_map(|side| {
                let (to, datagram) = side.out.sent.pop_front()?;
                Some((side.addr, to, datagram))
            }) else {
                return types;
            };
            types.push(datagram[0]);
            if let Some(side) = self.sides.iter_mut().find(|s| s.addr == to) {
                lock(&side.core).from_udp(
                    from,
                    &datagram,
                    &mut self.buf,
                    Duration::ZERO,
                    &mut side.out,
                );
            }
        }
    }

    /// Sends a packet each way between a and `peer` and checks that both arrive; returns
    /// the types of the datagrams it took.
    fn both_ways(&mut self, peer: usize) -> Vec<u8> {
        self.sides[A].out.tun.clear();
        self.sides[peer].out.tun.clear();
        let there = self.send(A, peer, b"there");
        let mut types = self.pump();
        let back = self.send(peer, A, b"back");
        types.extend(self.pump());
        assert_eq!(self.sides[peer].out.tun, vec![there]);
        assert_eq!(self.sides[A].out.tun, vec![back]);
        types
    }

    /// Like [`Net::both_ways`], the peer first.
    fn both_ways_from(&mut self, peer: usize) -> Vec<u8> {
        self.sides[A].out.tun.clear();
        self.sides[peer].out.tun.clear();
        let back = self.send(peer, A, b"back");
        let mut types = self.pump();
        let there = self.send(A, peer, b"there");
        types.extend(self.pump());
        assert_eq!(self.sides[A].out.tun, vec![back]);
        assert_eq!(self.sides[peer].out.tun, vec![there]);
        types
    }

    fn keys(&self) -> Keys {
        self.sides[A].handle.keys()
    }

    fn invalid_at_a(&self) -> u64 {
        self.sides[A].handle.counters().invalid
    }
}

const INIT: u8 = 1;
const RESPONSE: u8 = 2;
const DATA: u8 = 4;

#[test]
fn stage_promote_and_drop_keep_established_sessions_and_move_peers_to_the_new_key() {
    let (mut net, [k1, kb, kc]) = Net::new();
    let k2 = generate();
    net.both_ways(B);
    net.both_ways(C);

    // Staged: nothing changes for peers that do not know the new key.
    net.sides[A].handle.stage_key(&k2).expect("stages");
    assert_eq!(
        net.keys(),
        Keys {
            current: Some(public(&k1)),
            staged: Some(public(&k2)),
            previous: None
        }
    );
    assert_eq!(net.both_ways(B), vec![DATA, DATA]);

    // Promoted: b's established session carries data both ways, with no new handshake.
    net.sides[A].handle.promote_staged().expect("promotes");
    assert_eq!(
        net.keys(),
        Keys {
            current: Some(public(&k2)),
            staged: None,
            previous: Some(public(&k1)),
        }
    );
    assert_eq!(net.both_ways(B), vec![DATA, DATA]);
    assert_eq!(net.both_ways(C), vec![DATA, DATA]);

    // b learns a's new key (its side of the rotation): it handshakes to the new key, which
    // a answers, and the traffic moves there.
    let a_under_k2 = config(public(&k2), &net.sides[A]);
    net.apply(
        B,
        &Op::ReplaceKey {
            old: public(&k1),
            config: a_under_k2.clone(),
        },
    )
    .expect("b replaces a's key");
    let types = net.both_ways_from(B);
    assert_one_handshake(&types);
    assert_eq!(net.both_ways(B), vec![DATA, DATA]);
    let b_pub = *public(&kb).as_bytes();
    assert!(!lock(&net.sides[A].core).uses_second_key(&b_pub));

    // c (restarted with a new key of its own) still knows a by the previous key, which
    // still answers: c handshakes to it and the traffic flows both ways.
    let kc2 = generate();
    rebuild(&mut net, C, &kc2, public(&k1));
    net.apply(
        A,
        &Op::ReplaceKey {
            old: public(&kc),
            config: config(public(&kc2), &net.sides[C]),
        },
    )
    .expect("a replaces c's key");
    let types = net.both_ways_from(C);
    assert_one_handshake(&types);
    assert!(lock(&net.sides[A].core).uses_second_key(public(&kc2).as_bytes()));

    // Dropped: b's session on the new key is untouched; the old key is refused.
    net.sides[A].handle.drop_previous().expect("drops");
    assert_eq!(net.keys().previous, None);
    assert_eq!(net.both_ways(B), vec![DATA, DATA]);
    let kc3 = generate();
    rebuild(&mut net, C, &kc3, public(&k1));
    net.apply(
        A,
        &Op::ReplaceKey {
            old: public(&kc2),
            config: config(public(&kc3), &net.sides[C]),
        },
    )
    .expect("a replaces c's key");
    let invalid = net.invalid_at_a();
    net.send(C, A, b"to the old key");
    let types = net.pump();
    assert_eq!(types, vec![INIT], "no answer to the old key");
    assert_eq!(net.invalid_at_a(), invalid + 1);
    assert!(
        net.sides[A]
            .out
            .tun
            .iter()
            .all(|p| !p.ends_with(b"to the old key"))
    );

    // a's own traffic to c goes out under the current key, which c does not know yet.
    rebuild(&mut net, C, &kc3, public(&k2));
    net.both_ways(C);
}

/// Gives `side` a fresh core with private key `key` that knows a as `a_pub`.
fn rebuild(net: &mut Net, side: usize, key: &PrivateKey, a_pub: PublicKey) {
    let core = Arc::new(Mutex::new(Core::new()));
    net.sides[side].handle = DeviceHandle::new(core.clone(), 51820);
    net.sides[side].core = core;
    net.sides[side].handle.set_private_key(key);
    let a = config(a_pub, &net.sides[A]);
    net.apply(side, &Op::UpsertPeer(a)).expect("knows a");
}

/// Checks that `types` is one handshake and then data only (keepalive included).
fn assert_one_handshake(types: &[u8]) {
    assert_eq!(types[..2], [INIT, RESPONSE], "{types:?}");
    assert!(types[2..].iter().all(|t| *t == DATA), "{types:?}");
}

#[test]
fn a_replaced_peer_key_keeps_allowed_ips_endpoint_and_route() {
    let (mut net, [_, kb, kc]) = Net::new();
    net.both_ways(B);
    let mut before = net.sides[A].handle.report().device;
    let kb2 = generate();
    // b restarts with a new key; a's declaration names it without an endpoint (passive),
    // so the endpoint a learned stays.
    let a_pub = net.sides[A].handle.keys().current.expect("a has a key");
    rebuild(&mut net, B, &kb2, a_pub);
    let mut passive = config(public(&kb2), &net.sides[B]);
    passive.endpoint = None;
    passive.persistent_keepalive = 0;
    net.apply(
        A,
        &Op::ReplaceKey {
            old: public(&kb),
            config: passive,
        },
    )
    .expect("replaces");

    let after = net.sides[A].handle.report().device;
    let old = before
        .peers
        .iter_mut()
        .find(|p| p.public_key == public(&kb))
        .expect("b before");
    let new = after
        .peers
        .iter()
        .find(|p| p.public_key == public(&kb2))
        .expect("b after");
    assert!(after.peers.iter().all(|p| p.public_key != public(&kb)));
    assert_eq!(new.allowed_ips, old.allowed_ips);
    assert_eq!(new.endpoint, Some(net.sides[B].addr));
    assert_eq!(new.last_handshake, None, "a new handshake follows");

    // A packet to b's pod is routed to b's new key at once: a handshakes with it and the
    // packet arrives.
    let no_route = net.sides[A].handle.counters().no_route;
    net.sides[B].out.tun.clear();
    let there = net.send(A, B, b"to the new key");
    let types = net.pump();
    assert_one_handshake(&types);
    assert_eq!(net.sides[B].out.tun, vec![there]);
    assert_eq!(net.sides[A].handle.counters().no_route, no_route);
    net.both_ways(B);

    // Refusals change nothing.
    let snapshot = net.sides[A].handle.report().device;
    let unknown = generate();
    assert_eq!(
        net.apply(
            A,
            &Op::ReplaceKey {
                old: public(&unknown),
                config: config(public(&generate()), &net.sides[B]),
            },
        ),
        Err(Error::UnknownPeer(public(&unknown)))
    );
    assert_eq!(
        net.apply(
            A,
            &Op::ReplaceKey {
                old: public(&kb2),
                config: config(public(&kc), &net.sides[B]),
            },
        ),
        Err(Error::KeyInUse(public(&kc)))
    );
    let unchanged = net.sides[A].handle.report().device;
    assert_eq!(
        unchanged
            .peers
            .iter()
            .map(|p| (p.public_key, p.allowed_ips.clone(), p.endpoint))
            .collect::<Vec<_>>(),
        snapshot
            .peers
            .iter()
            .map(|p| (p.public_key, p.allowed_ips.clone(), p.endpoint))
            .collect::<Vec<_>>()
    );
    net.both_ways(B);
    net.both_ways(C);
}

#[test]
fn rotation_steps_out_of_order_are_refused_with_a_reason() {
    let (mut net, [k1, _, _]) = Net::new();
    let handle = net.sides[A].handle.clone();
    let refused = |e: RotationError| Err(Error::Rotation(e));
    assert_eq!(
        handle.promote_staged(),
        refused(RotationError::NothingStaged)
    );
    assert_eq!(handle.drop_previous(), refused(RotationError::NoPrevious));
    assert_eq!(handle.unstage_key(), refused(RotationError::NothingStaged));
    assert_eq!(handle.stage_key(&k1), refused(RotationError::SameAsCurrent));
    let fresh = DeviceHandle::new(Arc::new(Mutex::new(Core::new())), 1);
    assert_eq!(fresh.stage_key(&k1), refused(RotationError::NoKey));

    let (k2, k3) = (generate(), generate());
    handle.stage_key(&k2).expect("stages");
    handle.stage_key(&k3).expect("a staged key is replaced");
    assert_eq!(handle.keys().staged, Some(public(&k3)));
    handle.unstage_key().expect("unstages");
    assert_eq!(handle.keys().staged, None);
    handle.stage_key(&k2).expect("stages");
    handle.promote_staged().expect("promotes");
    assert_eq!(handle.stage_key(&k3), refused(RotationError::PreviousHeld));
    assert_eq!(
        handle.promote_staged(),
        refused(RotationError::NothingStaged)
    );
    handle.drop_previous().expect("drops");
    assert_eq!(
        handle.keys(),
        Keys {
            current: Some(public(&k2)),
            staged: None,
            previous: None
        }
    );
    // The next rotation can start; a peer that knows the current key handshakes with it.
    handle.stage_key(&k3).expect("stages the next key");
    let a_under_k2 = config(public(&k2), &net.sides[A]);
    net.apply(
        B,
        &Op::ReplaceKey {
            old: public(&k1),
            config: a_under_k2,
        },
    )
    .expect("b learns a's key");
    assert_one_handshake(&net.both_ways(B));

    assert_eq!(handle.set_listen_port(51820), Ok(()));
    assert_eq!(
        handle.set_listen_port(1),
        Err(Error::ListenPort {
            bound: 51820,
            asked: 1
        })
    );
}

#[test]
fn the_report_has_peers_handshakes_traffic_and_drops() {
    let (mut net, [_, kb, kc]) = Net::new();
    net.both_ways(B);
    let wall = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    {
        let side = &mut net.sides[A];
        lock(&side.core).tick(Duration::from_secs(1), wall, &mut net.buf, &mut side.out);
    }
    net.send(A, A, b"to nobody");
    let report = net.sides[A].handle.report();
    assert_eq!(report.device.listen_port, Some(51820));
    let mut keys: Vec<PublicKey> = vec![public(&kb), public(&kc)];
    keys.sort();
    assert_eq!(
        report
            .device
            .peers
            .iter()
            .map(|p| p.public_key)
            .collect::<Vec<_>>(),
        keys
    );
    let b = report
        .device
        .peers
        .iter()
        .find(|p| p.public_key == public(&kb))
        .expect("b");
    assert!(b.last_handshake.is_some());
    assert!(b.tx_bytes > 0 && b.rx_bytes > 0);
    let c = report
        .device
        .peers
        .iter()
        .find(|p| p.public_key == public(&kc))
        .expect("c");
    assert_eq!((c.last_handshake, c.tx_bytes), (None, 0));
    assert_eq!(report.dropped.no_route, 1);
}

mod peer_rotation;
