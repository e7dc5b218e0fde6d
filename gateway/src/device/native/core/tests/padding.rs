//! Padding of data messages (whitepaper section 5.4.6): every plaintext is padded with zeros
//! to a multiple of 16 bytes, never past the MTU, and the receiver delivers the packet as it
//! was sent.

use std::time::{Duration, SystemTime};

use super::{Pair, ipv4};

const MTU: usize = 1420;
/// A data message's header (16) and tag (16).
const OVERHEAD: usize = 32;

#[test]
fn every_data_message_is_padded_to_16_bytes_up_to_the_mtu_and_arrives_exact() {
    let mut pair = Pair::new();
    pair.a.set_mtu(MTU);
    pair.initiate_from_b(b"1");
    for payload in 0..=MTU - 20 {
        let packet = ipv4([10, 1, 0, 5], [10, 2, 0, 7], &vec![0xa5; payload]);
        pair.a
            .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.a_out);
        let (_, datagram) = pair.a_out.sent.front().expect("a data message");
        assert_eq!(datagram[0], 4, "a data message");
        let plaintext = datagram.len() - OVERHEAD;
        let expected = packet.len().next_multiple_of(16).min(MTU);
        assert_eq!(
            plaintext,
            expected,
            "a packet of {} bytes is carried in {plaintext}",
            packet.len()
        );
        pair.pump();
        assert_eq!(pair.b_out.tun.last(), Some(&packet), "b gets it as sent");
    }
}

#[test]
fn keepalives_stay_empty() {
    let mut pair = Pair::new();
    pair.a.set_mtu(MTU);
    pair.initiate_from_b(b"1");
    pair.a.peer_mut(pair.b_pub).expect("b").keepalive = 1;
    pair.a_out.sent.clear();
    pair.a.tick(
        Duration::from_secs(30),
        SystemTime::UNIX_EPOCH,
        &mut pair.buf,
        &mut pair.a_out,
    );
    let (_, keepalive) = pair.a_out.sent.back().expect("a keepalive");
    assert_eq!((keepalive[0], keepalive.len()), (4, OVERHEAD));
}
