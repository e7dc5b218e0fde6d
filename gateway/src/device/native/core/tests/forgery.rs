//! Handshake messages forged by a sender without keys. MAC1 needs only the gateway's public
//! key and the receiver index of a peer's first session is predictable, so such a sender can
//! get a forged response past the MAC check; whatever the handshake load, the message must
//! move nothing: not the endpoint, the active tunnel, the last transmission time, the
//! traffic counters, nor send anything but a cookie reply.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::super::HANDSHAKE_RATE_LIMIT;
use super::super::rotation::Slot;
use super::{B_ADDR, Pair, addr};

/// Where forgeries come from: a stranger, and b's own address with another port.
const FORGERS: [&str; 3] = [
    "203.0.113.66:51820",
    "192.0.2.2:40000",
    "[::ffff:192.0.2.2]:1",
];
/// When the forgeries arrive (later than anything else in the test, so a moved `last_tx`
/// shows).
const LATER: Duration = Duration::from_secs(5);
/// A slot no peer holds: a response to it passes the MAC check, is counted once by the rate
/// limiter and goes no further.
const EMPTY_SLOT: u32 = 7 << 8;
/// Length of a cookie reply.
const COOKIE_REPLY_LEN: usize = 64;

#[test]
fn forged_responses_move_nothing_at_any_count_around_the_limit() {
    for forger in FORGERS.map(addr) {
        for before in 0..=HANDSHAKE_RATE_LIMIT + 2 {
            let mut pair = Pair::new();
            pair.initiate_from_b(b"1");
            let was = State::of(&pair);
            assert_eq!(was.endpoint, Some(addr(B_ADDR)));
            for _ in 0..before {
                pair.a.from_udp(
                    forger,
                    &forged_response(&pair.a_pub, EMPTY_SLOT, None),
                    &mut pair.buf,
                    LATER,
                    &mut pair.a_out,
                );
            }
            // Receiver indexes of slot 0's first sessions, on both keys' tunnels.
            for receiver in [0, 1, 2, 3, 1 << 31] {
                pair.a.from_udp(
                    forger,
                    &forged_response(&pair.a_pub, receiver, None),
                    &mut pair.buf,
                    LATER,
                    &mut pair.a_out,
                );
            }

            assert_eq!(
                State::of(&pair),
                was,
                "forged responses from {forger} after {before} others moved state"
            );
            for (to, datagram) in pair.a_out.sent.drain(..) {
                assert_eq!(to, forger, "an answer to a forgery goes to its sender");
                assert_eq!(
                    (datagram[0], datagram.len()),
                    (3, COOKIE_REPLY_LEN),
                    "a forgery gets at most a cookie reply (after {before} others)"
                );
            }
            pair.assert_both_ways();
        }
    }
}

#[test]
fn a_forged_response_with_a_valid_cookie_moves_nothing() {
    // Under load a forger earns a cookie for its own address and sends MAC2 with it: the
    // message passes the load check and still fails the handshake.
    let mut pair = Pair::new();
    pair.initiate_from_b(b"1");
    let was = State::of(&pair);
    let forger = addr(FORGERS[0]);
    let mut cookie = None;
    for _ in 0..2 * HANDSHAKE_RATE_LIMIT {
        let message = forged_response(&pair.a_pub, 1, cookie.as_ref());
        pair.a
            .from_udp(forger, &message, &mut pair.buf, LATER, &mut pair.a_out);
        if let Some((_, reply)) = pair.a_out.sent.pop_front() {
            assert_eq!(reply.len(), COOKIE_REPLY_LEN, "only cookie replies");
            cookie = Some(open_cookie(&pair.a_pub, &message, &reply));
        }
    }
    assert!(cookie.is_some(), "the load check asked for a cookie");
    assert_eq!(State::of(&pair), was);
    pair.assert_both_ways();
}

/// What a forgery must not change about a's peer b.
#[derive(Debug, PartialEq, Eq)]
struct State {
    endpoint: Option<SocketAddr>,
    active: Slot,
    last_tx: Duration,
    traffic: (u64, u64),
    unconfirmed: [Option<Option<u32>>; 2],
    handshake: Option<SystemTime>,
}

impl State {
    fn of(pair: &Pair) -> Self {
        let peer = pair.a.peers().next().expect("peer b");
        Self {
            endpoint: peer.endpoint,
            active: peer.active,
            last_tx: peer.last_tx,
            traffic: peer.traffic,
            unconfirmed: [0, 1].map(|k| peer.tunnels[k].as_ref().map(|t| t.unconfirmed)),
            handshake: peer.last_handshake,
        }
    }
}

/// Returns a handshake response to `receiver` with a valid MAC1 for the responder key
/// `public`, garbage where the handshake would be, and MAC2 made with `cookie` (or zero).
pub(super) fn forged_response(
    public: &[u8; 32],
    receiver: u32,
    cookie: Option<&[u8; 16]>,
) -> Vec<u8> {
    let mut message = vec![0u8; 92];
    message[0] = 2;
    message[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    message[8..12].copy_from_slice(&receiver.to_le_bytes());
    for (i, byte) in message[12..60].iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let mac1 = mac16(&hash(b"mac1----", public), &message[..60]);
    message[60..76].copy_from_slice(&mac1);
    if let Some(cookie) = cookie {
        let mac2 = mac16(cookie, &message[..76]);
        message[76..92].copy_from_slice(&mac2);
    }
    message
}

/// Decrypts the cookie in a cookie reply to `message`, as its sender can.
fn open_cookie(public: &[u8; 32], message: &[u8], reply: &[u8]) -> [u8; 16] {
    let cipher = XChaCha20Poly1305::new(&hash(b"cookie--", public).into());
    let cookie = cipher
        .decrypt(
            XNonce::from_slice(&reply[8..32]),
            Payload {
                msg: &reply[32..64],
                aad: &message[60..76],
            },
        )
        .expect("a cookie reply to this message");
    cookie.try_into().expect("16 bytes")
}

fn hash(label: &[u8], public: &[u8; 32]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(public)
        .finalize()
        .into()
}

fn mac16(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut mac = Blake2sMac::<U16>::new_from_slice(key).expect("a key of 16 or 32 bytes");
    Update::update(&mut mac, data);
    mac.finalize_fixed().into()
}
