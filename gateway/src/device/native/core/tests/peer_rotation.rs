//! The receiving side of a peer's rotation: b knows a under a's current key and its next
//! one, while a rotates; traffic never stops, and refused steps change nothing.

use std::time::Duration;

use super::{A_ADDR, B_ADDR, Pair, addr, ipv4, key, net};
use crate::device::native::core::{Core, RotationError};

#[test]
fn a_whole_peer_rotation_loses_no_packet_and_moves_traffic_after_confirmation() {
    let mut pair = Pair::connected();
    let (a_old_priv, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    pair.flow();

    pair.a.stage_key(a_next_priv).expect("a stages");
    pair.flow();
    pair.b
        .accept_peer_next_key(&a_old, a_next)
        .expect("b accepts");
    assert_eq!(pair.b.peer_next_key(&a_old), Some(a_next));
    pair.flow();
    pair.a.promote_staged().expect("a promotes");
    pair.flow();

    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out)
    );
    let init = pair.take_from_a();
    assert_eq!(
        (init[0], init.len()),
        (1, 148),
        "a initiates under its new key"
    );
    pair.flow();
    pair.deliver_to_b(&init);
    let response = pair.take_from_b();
    assert_eq!(response[0], 2, "b answers under a's next key");
    assert!(
        !pair.b.uses_peer_next_key(&a_old),
        "an initiation moves nothing"
    );
    pair.flow();
    pair.deliver_to_a(&response);
    assert!(!pair.a.uses_second_key(&pair.b_pub), "a is on its new key");
    assert!(!pair.b.uses_peer_next_key(&a_old), "b waits for a's data");
    let keepalive = pair.take_from_a();
    pair.deliver_to_b(&keepalive);
    assert!(pair.b.uses_peer_next_key(&a_old), "a's first data confirms");
    pair.flow();

    pair.a.drop_previous().expect("a drops its old key");
    pair.flow();
    pair.b.complete_peer_key(&a_next).expect("b completes");
    assert!(pair.b.has_peer(&a_next) && !pair.b.has_peer(&a_old));
    assert_eq!(pair.b.peer_next_key(&a_next), None);
    assert_eq!(pair.b.peers().count(), 1);
    pair.b
        .complete_peer_key(&a_next)
        .expect("completing again is fine");
    pair.flow();
    pair.flow();

    let unknown = pair.b.counters.unknown_peer;
    let old_init = initiation_from(a_old_priv, pair.b_pub);
    pair.deliver_to_b(&old_init);
    assert_eq!(pair.b.counters.unknown_peer, unknown + 1);
    assert!(pair.b_out.sent.is_empty(), "the old key gets no answer");
    pair.flow();
    assert_eq!(pair.a.counters.invalid + pair.b.counters.invalid, 0);
}

#[test]
fn an_initiation_lost_before_the_peer_knew_the_key_is_sent_again_when_asked() {
    // A manual peer: a promotes before b is told its next key, so the first initiation
    // under the new key reaches a b that cannot answer it.
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    pair.a.stage_key(a_next_priv).expect("a stages");
    pair.a.promote_staged().expect("a promotes");
    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out)
    );
    let lost = pair.take_from_a();
    pair.deliver_to_b(&lost);
    assert!(pair.b_out.sent.is_empty(), "b does not know a's next key");

    pair.b
        .accept_peer_next_key(&a_old, a_next)
        .expect("b accepts");
    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out),
        "a second initiation goes out while the first is unanswered"
    );
    let init = pair.take_from_a();
    assert_eq!((init[0], init.len()), (1, 148));
    pair.deliver_to_b(&init);
    let response = pair.take_from_b();
    assert_eq!(response[0], 2, "b answers under a's next key");
    pair.deliver_to_a(&response);
    assert!(
        pair.a.session_on_current(&pair.b_pub),
        "a is on its new key"
    );
    pair.flow();
}

#[test]
fn a_forgotten_next_key_is_an_unknown_peer_and_the_old_key_keeps_working() {
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    pair.flow();
    pair.b
        .accept_peer_next_key(&a_old, a_next)
        .expect("b accepts");
    pair.flow();
    pair.b.forget_peer_next_key(&a_old).expect("b forgets");
    assert_eq!(pair.b.peer_next_key(&a_old), None);
    pair.b
        .forget_peer_next_key(&a_old)
        .expect("forgetting again is fine");
    pair.flow();

    pair.a.stage_key(a_next_priv).expect("a stages");
    pair.a.promote_staged().expect("a promotes");
    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out)
    );
    let init = pair.take_from_a();
    pair.deliver_to_b(&init);
    assert_eq!(pair.b.counters.unknown_peer, 1);
    assert!(pair.b_out.sent.is_empty(), "the next key gets no answer");
    pair.flow();
    assert!(
        pair.a.uses_second_key(&pair.b_pub),
        "a is still on its old key"
    );
}

#[test]
fn refused_peer_key_steps_change_nothing() {
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (_, a_next) = key(9);
    let (_, other_next) = key(10);
    let (_, c_pub) = key(3);
    let (_, stranger) = key(4);
    let (b_next_priv, _) = key(11);
    pair.b.peer_mut(c_pub).expect("slot");
    pair.flow();

    let b = &mut pair.b;
    assert_eq!(
        b.accept_peer_next_key(&stranger, a_next),
        Err(RotationError::UnknownPeer)
    );
    assert_eq!(
        b.accept_peer_next_key(&a_old, a_old),
        Err(RotationError::KeyInUse)
    );
    assert_eq!(
        b.accept_peer_next_key(&a_old, c_pub),
        Err(RotationError::KeyInUse)
    );
    assert_eq!(b.peer_next_key(&a_old), None);
    assert_eq!(
        b.complete_peer_key(&a_next),
        Err(RotationError::UnknownPeer)
    );
    assert_eq!(
        b.forget_peer_next_key(&stranger),
        Err(RotationError::UnknownPeer)
    );

    b.accept_peer_next_key(&a_old, a_next).expect("accepts");
    b.accept_peer_next_key(&a_old, a_next)
        .expect("the same key again");
    assert_eq!(
        b.accept_peer_next_key(&a_old, other_next),
        Err(RotationError::OtherNextKey)
    );
    assert_eq!(
        b.accept_peer_next_key(&c_pub, a_next),
        Err(RotationError::KeyInUse)
    );
    assert_eq!(b.stage_key(b_next_priv), Err(RotationError::PeerRotating));
    assert_eq!(b.staged_public(), None);
    assert_eq!(b.peer_next_key(&a_old), Some(a_next));
    assert_eq!(b.peer_next_key(&c_pub), None);
    pair.flow();

    let b = &mut pair.b;
    b.forget_peer_next_key(&a_old).expect("forgets");
    b.stage_key(b_next_priv).expect("b stages its own key");
    assert_eq!(
        b.accept_peer_next_key(&a_old, a_next),
        Err(RotationError::SecondKeyHeld)
    );
    assert_eq!(b.peer_next_key(&a_old), None);
    b.promote_staged().expect("promotes");
    assert_eq!(
        b.accept_peer_next_key(&a_old, a_next),
        Err(RotationError::SecondKeyHeld),
        "a previous key counts too"
    );
    pair.flow();
}

#[test]
fn replayed_initiations_from_either_peer_key_are_refused_and_leave_sessions_alone() {
    let mut pair = Pair::new();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    pair.send_from_a(b"1");
    let old_init = pair.a_out.sent.front().expect("an initiation").1.clone();
    assert_eq!(old_init[0], 1);
    pair.pump();
    pair.flow();

    a_switches_to_its_next_key(&mut pair, &a_old, a_next, a_next_priv);
    let first_next_init = pair.a_out.sent.front().expect("an initiation").1.clone();
    pair.pump();
    assert!(pair.b.uses_peer_next_key(&a_old));
    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out)
    );
    pair.pump();
    pair.flow();
    let session = pair.session_of_b();
    let invalid = pair.b.counters.invalid;

    pair.deliver_to_b(&old_init);
    pair.deliver_to_b(&first_next_init);

    assert_eq!(pair.b.counters.invalid, invalid + 2);
    assert!(pair.b_out.sent.is_empty(), "replays get no answer");
    assert!(pair.b.uses_peer_next_key(&a_old));
    assert_eq!(pair.session_of_b(), session);
    pair.flow();
}

#[test]
fn forgetting_a_confirmed_next_key_returns_traffic_to_the_old_key() {
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    a_switches_to_its_next_key(&mut pair, &a_old, a_next, a_next_priv);
    pair.pump();
    assert!(pair.b.uses_peer_next_key(&a_old));

    pair.b.forget_peer_next_key(&a_old).expect("b forgets");

    assert!(!pair.b.uses_peer_next_key(&a_old));
    // b's traffic is back on the old key's session, which a still holds.
    let before = pair.a_out.tun.len();
    pair.session_of_b();
    assert_eq!(pair.a_out.tun.len(), before + 1);
    assert_eq!(pair.a.counters.invalid, 0);
}

#[test]
fn replacing_a_peer_key_by_its_next_key_completes_the_rotation_in_place() {
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    a_switches_to_its_next_key(&mut pair, &a_old, a_next, a_next_priv);
    pair.pump();
    let session = pair.session_of_b();
    assert_eq!(
        pair.b.peers().map(|p| p.public).collect::<Vec<_>>(),
        vec![a_old],
        "listed under its current key while it rotates"
    );

    assert!(pair.b.rekey_peer(&a_old, a_next));

    assert!(pair.b.has_peer(&a_next) && !pair.b.has_peer(&a_old));
    assert_eq!(pair.b.peer_next_key(&a_next), None);
    assert_eq!(pair.session_of_b(), session, "the session stays");
    pair.a.drop_previous().expect("a drops its old key");
    pair.flow();
    assert_eq!(pair.a.counters.invalid + pair.b.counters.invalid, 0);
}

/// Returns an initiation to `peer` from a fresh device with the private key `private`.
fn initiation_from(private: [u8; 32], peer: [u8; 32]) -> Vec<u8> {
    let mut core = Core::new();
    core.set_private_key(Some(private));
    core.peer_mut(peer).expect("slot").endpoint = Some(addr(B_ADDR));
    core.add_allowed_ip(&peer, net("10.2.0.0/16"));
    let mut out = super::Capture::default();
    let mut buf = vec![0u8; 4096];
    core.from_tun(
        &ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"old"),
        &mut buf,
        Duration::ZERO,
        &mut out,
    );
    let (_, init) = out.sent.pop_front().expect("an initiation");
    init
}

#[test]
fn a_rotation_rolled_back_after_the_switch_returns_both_sides_to_the_old_key() {
    let mut pair = Pair::connected();
    let (_, a_old) = key(1);
    let (a_next_priv, a_next) = key(9);
    a_switches_to_its_next_key(&mut pair, &a_old, a_next, a_next_priv);
    pair.pump();
    pair.flow();
    assert!(pair.b.uses_peer_next_key(&a_old), "b moved to a's new key");

    // The rollback: a makes its old key current again (the new one still answers), b forgets
    // a's next key, a forgets the new key.
    pair.a.demote_current().expect("a demotes");
    assert_eq!(pair.a.current_public(), Some(a_old));
    assert_eq!(pair.a.staged_public(), Some(a_next));
    assert_eq!(pair.a.demote_current(), Err(RotationError::NoPrevious));
    pair.flow();
    pair.b.forget_peer_next_key(&a_old).expect("b forgets");
    pair.a.unstage_key().expect("a unstages");
    for _ in 0..3 {
        pair.flow();
    }
    assert!(!pair.b.uses_peer_next_key(&a_old));
    assert_eq!(pair.a.staged_public(), None);
    assert_eq!(pair.a.current_public(), Some(a_old));
}

impl Pair {
    /// A pair with a session, opened by a.
    fn connected() -> Self {
        let mut pair = Pair::new();
        pair.send_from_a(b"0");
        pair.pump();
        assert_eq!(pair.b_out.tun.len(), 1);
        pair
    }

    /// Sends a new packet each way, delivers everything in flight, and checks that each
    /// side got exactly the packet sent to it.
    fn flow(&mut self) {
        self.sent += 1;
        let tag = self.sent.to_le_bytes();
        let there = ipv4([10, 1, 0, 5], [10, 2, 0, 7], &tag);
        let back = ipv4([10, 2, 0, 7], [10, 1, 0, 5], &tag);
        let (at_a, at_b) = (self.a_out.tun.len(), self.b_out.tun.len());
        self.a
            .from_tun(&there, &mut self.buf, Duration::ZERO, &mut self.a_out);
        self.b
            .from_tun(&back, &mut self.buf, Duration::ZERO, &mut self.b_out);
        self.pump();
        assert_eq!(
            self.b_out.tun[at_b..],
            [there],
            "a to b, step {}",
            self.sent
        );
        assert_eq!(self.a_out.tun[at_a..], [back], "b to a, step {}", self.sent);
    }

    /// Takes the oldest datagram a sent and has not been delivered.
    fn take_from_a(&mut self) -> Vec<u8> {
        self.a_out.sent.pop_front().expect("a datagram from a").1
    }

    /// Takes the oldest datagram b sent and has not been delivered.
    fn take_from_b(&mut self) -> Vec<u8> {
        self.b_out.sent.pop_front().expect("a datagram from b").1
    }

    /// Hands b `datagram` from a's address; b's answers stay queued.
    fn deliver_to_b(&mut self, datagram: &[u8]) {
        self.b.from_udp(
            addr(A_ADDR),
            datagram,
            &mut self.buf,
            Duration::ZERO,
            &mut self.b_out,
        );
    }

    /// Hands a `datagram` from b's address; a's answers stay queued.
    fn deliver_to_a(&mut self, datagram: &[u8]) {
        self.a.from_udp(
            addr(B_ADDR),
            datagram,
            &mut self.buf,
            Duration::ZERO,
            &mut self.a_out,
        );
    }

    /// Returns the receiver index (a's session) of a data message b sends now; the message
    /// is delivered.
    fn session_of_b(&mut self) -> u32 {
        self.b.from_tun(
            &ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"probe"),
            &mut self.buf,
            Duration::ZERO,
            &mut self.b_out,
        );
        let (_, data) = self.b_out.sent.front().expect("data from b");
        assert_eq!(data[0], 4, "b sends data on a session");
        let index = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        self.pump();
        index
    }
}

/// b accepts a's next key; a stages it, makes it current and initiates under it (the
/// initiation is queued at a, not yet delivered).
fn a_switches_to_its_next_key(
    pair: &mut Pair,
    a_old: &[u8; 32],
    a_next: [u8; 32],
    a_next_priv: [u8; 32],
) {
    pair.b
        .accept_peer_next_key(a_old, a_next)
        .expect("b accepts");
    pair.a.stage_key(a_next_priv).expect("a stages");
    pair.a.promote_staged().expect("a promotes");
    assert!(
        pair.a
            .initiate(&pair.b_pub, &mut pair.buf, Duration::ZERO, &mut pair.a_out)
    );
}
