//! Unit tests for frame parsing, super-packet splitting and the padding check.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Census, DATA, Datagram, Message, is_padded, padded_len, parse_frame, split_datagram};

const MTU: usize = 1420;
const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

#[test]
fn padded_lengths_pass_and_unpadded_ones_fail() {
    for len in [32, 48, 64, 96, 1440, 1452] {
        assert!(is_padded(len, MTU), "{len} is padded");
    }
    // 60..63 are what an unpadded sender makes of 28..31-byte packets; 1472 pads past the MTU.
    for len in [0, 31, 33, 47, 60, 61, 62, 63, 65, 1451, 1453, 1472] {
        assert!(!is_padded(len, MTU), "{len} is not padded");
    }
}

#[test]
fn a_padding_sender_pads_to_16_and_stops_at_the_mtu() {
    assert_eq!(padded_len(0, MTU), 32);
    assert_eq!(padded_len(28, MTU), 64);
    assert_eq!(padded_len(32, MTU), 64);
    assert_eq!(padded_len(1400, MTU), 1440);
    assert_eq!(padded_len(1410, MTU), 1452);
    assert_eq!(padded_len(1420, MTU), 1452);
}

#[test]
fn a_single_message_is_one_message() {
    assert_eq!(
        split_datagram(&data(7, 100, 61)).expect("split"),
        [Message {
            kind: DATA,
            len: 61
        }]
    );
    let initiation = message(1, 148);
    assert_eq!(
        split_datagram(&initiation).expect("split"),
        [Message { kind: 1, len: 148 }]
    );
}

#[test]
fn a_super_packet_splits_at_its_segment_size_with_a_shorter_last() {
    let payload = run(7, 100, &[96, 96, 96, 48]);
    let lengths = lengths(&payload);
    assert_eq!(lengths, [96, 96, 96, 48]);
}

#[test]
fn an_unpadded_super_packet_splits_exactly_and_fails_the_check() {
    let payload = run(7, 100, &[61, 61, 61, 45]);
    assert_eq!(lengths(&payload), [61, 61, 61, 45]);
    let census = Census::of(&[datagram(A, B, payload)]);
    assert_eq!(census.violations(MTU), [((A, B), 45, 1), ((A, B), 61, 3)]);
    let error = census.check_padding(MTU).expect_err("unpadded");
    assert!(format!("{error:#}").contains("!61x3"), "{error:#}");
}

#[test]
fn a_super_packet_of_keepalives_and_full_mtu_messages_splits() {
    assert_eq!(lengths(&run(9, 0, &[32, 32, 32])), [32, 32, 32]);
    assert_eq!(lengths(&run(9, 0, &[1452, 1452, 80])), [1452, 1452, 80]);
}

#[test]
fn counters_may_skip_between_segments() {
    let mut payload = data(3, 10, 64);
    payload.extend(data(3, 12, 64));
    payload.extend(data(3, 40, 64));
    assert_eq!(lengths(&payload), [64, 64, 64]);
}

#[test]
fn the_last_segment_may_be_another_message() {
    let mut payload = run(3, 10, &[160, 160]);
    payload.extend(message(1, 148));
    let messages = split_datagram(&payload).expect("split");
    assert_eq!(
        messages,
        [
            Message {
                kind: DATA,
                len: 160
            },
            Message {
                kind: DATA,
                len: 160
            },
            Message { kind: 1, len: 148 }
        ]
    );
}

#[test]
fn a_super_packet_that_breaks_off_is_refused() {
    let mut payload = run(3, 10, &[64, 64]);
    payload.extend(message(1, 148));
    assert!(split_datagram(&payload).is_err());
    let census = Census::of(&[datagram(A, B, payload)]);
    assert_eq!(census.errors.len(), 1);
    assert!(census.check_padding(MTU).is_err());
}

#[test]
fn another_session_or_an_older_counter_does_not_continue_a_run() {
    let mut payload = data(3, 10, 64);
    payload.extend(data(4, 11, 64));
    assert_eq!(lengths(&payload), [128]);
    let mut payload = data(3, 10, 64);
    payload.extend(data(3, 10, 64));
    assert_eq!(lengths(&payload), [128]);
}

#[test]
fn the_census_counts_per_direction_and_checks_coverage() {
    let census = Census::of(&[
        datagram(A, B, run(1, 0, &[64, 64])),
        datagram(B, A, data(2, 0, 1452)),
        datagram(B, A, message(2, 92)),
    ]);
    assert_eq!(census.messages((A, B)), 2);
    assert_eq!(census.messages((B, A)), 1);
    assert_eq!(census.plaintext_bytes((A, B)), 64);
    assert!(census.saw((B, A), 1452));
    assert!(!census.saw((A, B), 1452));
    assert_eq!(census.super_packets, 1);
    assert_eq!(census.other.get(&2), Some(&1));
    census.check_padding(MTU).expect("all padded");
}

#[test]
fn a_frame_parses_to_its_udp_datagram_on_the_port() {
    let payload = data(5, 1, 64);
    let frame = frame(A, 51820, B, 40000, &payload, 0);
    let parsed = parse_frame(&frame, 51820)
        .expect("on the port")
        .expect("whole");
    assert_eq!(parsed, datagram_ports(A, 51820, B, 40000, payload));
    assert!(parse_frame(&frame, 53).is_none(), "another port");
}

#[test]
fn a_frame_shorter_than_its_ip_length_is_an_error() {
    let mut frame = frame(A, 51820, B, 51820, &data(5, 1, 64), 0);
    frame.truncate(frame.len() - 1);
    assert!(parse_frame(&frame, 51820).expect("on the port").is_err());
}

#[test]
fn ethernet_padding_after_the_ip_packet_is_ignored() {
    let payload = message(4, 32);
    let frame = frame(A, 51820, B, 51820, &payload, 6);
    let parsed = parse_frame(&frame, 51820)
        .expect("on the port")
        .expect("whole");
    assert_eq!(parsed.payload, payload);
}

/// Returns the message lengths of a payload that must split.
fn lengths(payload: &[u8]) -> Vec<usize> {
    split_datagram(payload)
        .expect("split")
        .iter()
        .map(|m| m.len)
        .collect()
}

/// Returns a GSO run: data messages of `lengths` on one session, counters from `counter`.
fn run(receiver: u32, counter: u64, lengths: &[usize]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (counter, len) in (counter..).zip(lengths) {
        payload.extend(data(receiver, counter, *len));
    }
    payload
}

/// Returns a data message of `len` bytes whose ciphertext never looks like a header.
fn data(receiver: u32, counter: u64, len: usize) -> Vec<u8> {
    let mut message = vec![DATA, 0, 0, 0];
    message.extend_from_slice(&receiver.to_le_bytes());
    message.extend_from_slice(&counter.to_le_bytes());
    message.resize(len, 0xa5);
    message
}

/// Returns a message of type `kind` and `len` bytes.
fn message(kind: u8, len: usize) -> Vec<u8> {
    let mut message = vec![kind, 0, 0, 0];
    message.resize(len, 0x5a);
    message
}

fn datagram(from: Ipv4Addr, to: Ipv4Addr, payload: Vec<u8>) -> Datagram {
    datagram_ports(from, 51820, to, 51820, payload)
}

fn datagram_ports(
    from: Ipv4Addr,
    sport: u16,
    to: Ipv4Addr,
    dport: u16,
    payload: Vec<u8>,
) -> Datagram {
    Datagram {
        from: SocketAddrV4::new(from, sport),
        to: SocketAddrV4::new(to, dport),
        payload,
    }
}

/// Returns an Ethernet frame carrying `payload` in IPv4/UDP, with `trailer` bytes after it.
fn frame(
    from: Ipv4Addr,
    sport: u16,
    to: Ipv4Addr,
    dport: u16,
    payload: &[u8],
    trailer: usize,
) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).expect("small");
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    frame.extend_from_slice(&(20 + udp_len).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&from.octets());
    frame.extend_from_slice(&to.octets());
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    frame.extend_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    frame.resize(frame.len() + trailer, 0);
    frame
}
