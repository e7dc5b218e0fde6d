//! Message-count limits (whitepaper section 6.1): a session that reaches Rekey-After-Messages
//! starts a new handshake, and no data message at or past Reject-After-Messages is sent or
//! accepted. The real limits cannot be reached in a test, so the cores here are built with
//! small ones; the last test checks the real values.

use super::super::{MessageLimits, Outgoing, data_counter};
use super::{Core, Pair, ipv4};

use std::time::Duration;

const LIMITS: MessageLimits = MessageLimits {
    rekey_after: 4,
    reject_after: 8,
};

/// The message types and, for data messages, the counters of what `a` has queued to send.
fn sent_by_a(pair: &Pair) -> Vec<(u8, Option<u64>)> {
    pair.a_out
        .sent
        .iter()
        .map(|(_, d)| (d[0], data_counter(d)))
        .collect()
}

#[test]
fn a_session_rekeys_at_rekey_after_messages_and_sends_nothing_at_reject_after_messages() {
    let mut pair = Pair::with_a(Core::with_message_limits(LIMITS));
    pair.initiate_from_b(b"1");
    pair.a_out.sent.clear();
    for _ in 0..4 {
        pair.send_from_a(b"x");
    }
    assert_eq!(
        sent_by_a(&pair),
        [(4, Some(0)), (4, Some(1)), (4, Some(2)), (4, Some(3))],
        "below the rekey limit: data only"
    );
    pair.send_from_a(b"x");
    assert_eq!(
        sent_by_a(&pair)[4..],
        [(4, Some(4)), (1, None)],
        "at the rekey limit: the data, then an initiation"
    );
    for _ in 0..3 {
        pair.send_from_a(b"x");
    }
    assert_eq!(
        sent_by_a(&pair)[6..],
        [(4, Some(5)), (4, Some(6)), (4, Some(7))],
        "the handshake under way is not started again"
    );
    pair.send_from_a(b"x");
    pair.send_from_a(b"x");
    assert_eq!(sent_by_a(&pair).len(), 9, "nothing at the reject limit");
    assert_eq!(pair.a.counters.key_exhausted, 2);

    // The peer answers the initiation: the new session carries traffic from counter 0.
    pair.pump();
    let delivered = pair.b_out.tun.len();
    assert_eq!(delivered, 8, "b got the 8 messages sent on the old session");
    pair.a_out.sent.clear();
    pair.send_from_a(b"after");
    let sent = sent_by_a(&pair);
    assert_eq!(sent.len(), 1);
    assert!(
        matches!(sent[0], (4, Some(c)) if c < LIMITS.rekey_after),
        "the new session's counter starts again: {sent:?}"
    );
    pair.pump();
    assert_eq!(
        pair.b_out.tun.last(),
        Some(&ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"after"))
    );
    assert_eq!(pair.a.counters.key_exhausted, 2);
}

#[test]
fn data_at_or_past_reject_after_messages_is_not_accepted() {
    let mut pair = Pair::with_a(Core::with_message_limits(LIMITS));
    pair.initiate_from_b(b"1");
    let before = pair.a_out.tun.len();
    let invalid = pair.a.counters.invalid;
    let mut expected = 0;
    for _ in 0..10 {
        let packet = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"y");
        pair.b
            .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
        let (_, datagram) = pair.b_out.sent.back().expect("b sends");
        let counter = data_counter(datagram).expect("a data message");
        if counter < LIMITS.reject_after {
            expected += 1;
        }
    }
    let rejected = 10 - expected;
    assert!(rejected > 0, "b's counter passes the limit");
    pair.pump();
    assert_eq!(pair.a_out.tun.len() - before, expected);
    assert_eq!(pair.a.counters.invalid - invalid, rejected as u64);
}

#[test]
fn the_default_limits_are_the_whitepapers() {
    let limits = MessageLimits::default();
    assert_eq!(u128::from(limits.rekey_after), 1u128 << 60);
    assert_eq!(
        u128::from(limits.reject_after),
        (1u128 << 64) - (1 << 13) - 1
    );
    assert_eq!(limits.outgoing((1 << 60) - 1), Outgoing::Send);
    assert_eq!(limits.outgoing(1 << 60), Outgoing::SendAndRekey);
    assert_eq!(
        limits.outgoing(limits.reject_after - 1),
        Outgoing::SendAndRekey
    );
    assert_eq!(limits.outgoing(limits.reject_after), Outgoing::Reject);
    assert_eq!(limits.outgoing(u64::MAX), Outgoing::Reject);
    assert_eq!(Core::new().limits, limits);
}
