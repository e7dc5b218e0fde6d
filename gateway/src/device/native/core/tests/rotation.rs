//! The second static key: initiations to either key, replays of them, and dropping the key.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::{A_ADDR, B_ADDR, Pair, addr, ipv4, key, net};

const WALL: SystemTime = SystemTime::UNIX_EPOCH;

#[test]
fn a_replayed_initiation_to_the_current_key_leaves_the_session_alone() {
    let mut pair = Pair::new();
    let init = pair.initiate_from_b(b"1");
    let session = pair.session_of_a();
    let handshake = pair.handshake_at_a();

    pair.replay_to_a(addr(B_ADDR), &init);

    assert_eq!(pair.a.counters.invalid, 1);
    assert!(pair.a_out.sent.is_empty(), "a replay gets no answer");
    assert_eq!(pair.session_of_a(), session);
    assert_eq!(pair.handshake_at_a(), handshake);
    pair.assert_both_ways();
}

#[test]
fn a_fresh_initiation_to_the_second_key_switches_the_peer_to_it() {
    let mut pair = Pair::new();
    pair.initiate_from_b(b"1");
    let (second_priv, second_pub) = key(9);
    pair.a.set_second_key(Some(second_priv));
    pair.b_knows_a_as(second_pub);

    pair.initiate_from_b(b"2");

    assert!(pair.a.uses_second_key(&pair.b_pub));
    assert_eq!(pair.a.counters.invalid, 0);
    pair.b.from_tun(
        &ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"3"),
        &mut pair.buf,
        Duration::ZERO,
        &mut pair.b_out,
    );
    let (_, data) = pair.b_out.sent.front().expect("data to a");
    assert_ne!(
        receiver(data) & 0x8000_0000,
        0,
        "the session belongs to a's second-key tunnel"
    );
    pair.assert_both_ways();
}

#[test]
fn replayed_initiations_to_either_key_leave_a_second_key_session_alone() {
    let mut pair = Pair::new();
    let init_current = pair.initiate_from_b(b"1");
    let (second_priv, second_pub) = key(9);
    pair.a.set_second_key(Some(second_priv));
    pair.b_knows_a_as(second_pub);
    let init_second = pair.initiate_from_b(b"2");
    assert!(pair.a.uses_second_key(&pair.b_pub));
    let session = pair.session_of_a();
    let handshake = pair.handshake_at_a();

    pair.replay_to_a(addr(B_ADDR), &init_current);
    pair.replay_to_a(addr(B_ADDR), &init_second);

    assert_eq!(pair.a.counters.invalid, 2);
    assert!(pair.a_out.sent.is_empty(), "replays get no answer");
    assert!(pair.a.uses_second_key(&pair.b_pub));
    assert_eq!(pair.session_of_a(), session);
    assert_eq!(pair.handshake_at_a(), handshake);
    pair.assert_both_ways();
}

#[test]
fn an_initiation_replayed_to_a_new_second_key_tunnel_cannot_take_over() {
    // b once used a's second key; a dropped it and b went back to the current key.
    let mut pair = Pair::new();
    let (second_priv, second_pub) = key(9);
    let (_, current_pub) = key(1);
    pair.a.set_second_key(Some(second_priv));
    pair.b_knows_a_as(second_pub);
    let old = pair.initiate_from_b(b"1");
    pair.a.set_second_key(None);
    pair.b_knows_a_as(current_pub);
    pair.initiate_from_b(b"2");
    // The key comes back: its tunnels start without any record of `old`, but the peer's
    // record of its newest initiation (on any key) refuses it.
    pair.a.set_second_key(Some(second_priv));
    let session = pair.session_of_a();
    let elsewhere = addr("203.0.113.9:9999");
    let invalid = pair.a.counters.invalid;

    pair.replay_to_a(elsewhere, &old);

    assert!(pair.a_out.sent.is_empty(), "the replay gets no answer");
    assert_eq!(pair.a.counters.invalid, invalid + 1);
    assert!(!pair.a.uses_second_key(&pair.b_pub));
    let peer = pair.a.peers().next().expect("peer");
    assert_eq!(
        peer.endpoint,
        Some(addr(B_ADDR)),
        "an initiation moves nothing"
    );
    pair.a_out.sent.clear();
    assert_eq!(pair.session_of_a(), session);
    pair.assert_both_ways();
}

#[test]
fn dropping_the_second_key_leaves_the_peer_working_on_the_current_key() {
    let mut pair = Pair::new();
    let (second_priv, second_pub) = key(9);
    let (_, current_pub) = key(1);
    pair.initiate_from_b(b"1");
    pair.a.set_second_key(Some(second_priv));
    pair.b_knows_a_as(second_pub);
    pair.initiate_from_b(b"2");
    assert!(pair.a.uses_second_key(&pair.b_pub));

    pair.a.set_second_key(None);
    pair.b_knows_a_as(current_pub);

    assert!(!pair.a.uses_second_key(&pair.b_pub));
    pair.send_from_a(b"3");
    let (_, first) = pair.a_out.sent.front().expect("a datagram");
    assert_eq!(first[0], 1, "a starts a handshake on its current key");
    pair.pump();
    assert_eq!(
        pair.b_out.tun.last(),
        Some(&ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"3"))
    );
    pair.assert_both_ways();
    assert_eq!(pair.a.counters.invalid, 0);
}

impl Pair {
    /// Sends a packet from b to a when b has no session with a: returns b's handshake
    /// initiation, then lets the handshake and the packet through.
    pub(super) fn initiate_from_b(&mut self, payload: &[u8]) -> Vec<u8> {
        let packet = ipv4([10, 2, 0, 7], [10, 1, 0, 5], payload);
        self.b
            .from_tun(&packet, &mut self.buf, Duration::ZERO, &mut self.b_out);
        let (_, init) = self.b_out.sent.front().expect("an initiation");
        assert_eq!((init[0], init.len()), (1, 148), "b initiates");
        let init = init.clone();
        self.pump();
        assert_eq!(self.a_out.tun.last(), Some(&packet));
        init
    }

    /// Replaces b's peer entry for a by one under `a_pub`, a's other static key.
    fn b_knows_a_as(&mut self, a_pub: [u8; 32]) {
        self.b.clear_peers();
        self.b.peer_mut(a_pub).expect("slot").endpoint = Some(addr(A_ADDR));
        self.b.add_allowed_ip(&a_pub, net("10.1.0.0/16"));
        self.a_pub = a_pub;
    }

    /// Hands a `datagram` as if from `src`; a's answers stay queued.
    fn replay_to_a(&mut self, src: SocketAddr, datagram: &[u8]) {
        self.a.from_udp(
            src,
            datagram,
            &mut self.buf,
            Duration::ZERO,
            &mut self.a_out,
        );
    }

    /// Returns the receiver index (b's session) of a data message a sends now; the message
    /// is delivered.
    fn session_of_a(&mut self) -> u32 {
        self.send_from_a(b"probe");
        let sent: VecDeque<_> = std::mem::take(&mut self.a_out.sent);
        assert_eq!(sent.len(), 1);
        let (to, data) = &sent[0];
        assert_eq!(
            (data[0], *to),
            (4, addr(B_ADDR)),
            "a sends data on a session"
        );
        let index = receiver(data);
        self.a_out.sent = sent;
        self.pump();
        index
    }

    /// Returns the handshake time a reports for b.
    fn handshake_at_a(&mut self) -> Option<SystemTime> {
        self.a
            .tick(Duration::ZERO, WALL, &mut self.buf, &mut self.a_out);
        self.a.peers().next().expect("peer").last_handshake()
    }

    /// Sends a packet each way and checks that both arrive.
    pub(super) fn assert_both_ways(&mut self) {
        let there = ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"there");
        let back = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"back");
        self.a
            .from_tun(&there, &mut self.buf, Duration::ZERO, &mut self.a_out);
        self.b
            .from_tun(&back, &mut self.buf, Duration::ZERO, &mut self.b_out);
        self.pump();
        assert_eq!(self.b_out.tun.last(), Some(&there));
        assert_eq!(self.a_out.tun.last(), Some(&back));
    }
}

/// Returns a data message's receiver index.
fn receiver(data: &[u8]) -> u32 {
    u32::from_le_bytes([data[4], data[5], data[6], data[7]])
}
