//! The cookie under load (whitepaper section 5.4.7), against a real boringtun `Tunn` as the
//! initiating peer: a handshake message without a valid MAC2 gets a cookie reply and moves
//! nothing; the cookie is bound to the source address and port it was earned from, and made
//! with a secret that changes every two minutes; both static keys behave the same.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::super::rotation::Slot;
use super::super::{Core, Counters, HANDSHAKE_RATE_LIMIT};
use super::forgery::forged_response;
use super::{Capture, addr, key, net};

/// Where the peer sends from.
const PEER: &str = "198.51.100.7:40000";
/// The peer's address with another port.
const OTHER_PORT: &str = "198.51.100.7:40001";
/// Another address with the peer's port.
const OTHER_IP: &str = "198.51.100.8:40000";
/// The peer's address as an IPv4-mapped IPv6 address.
const PEER_MAPPED: &str = "[::ffff:198.51.100.7]:40000";
/// Where the load comes from.
const LOADER: &str = "203.0.113.66:51820";
/// A slot no peer holds: responses to it pass the MAC check, count towards the load and go
/// no further.
const EMPTY_SLOT: u32 = 7 << 8;
/// When the tests start (not zero, so a clock that starts at zero shows).
const T0: Duration = Duration::from_secs(10);
/// How long the cookie secret lives.
const SECRET_LIFETIME: Duration = Duration::from_secs(120);
const COOKIE_REPLY_LEN: usize = 64;
const HANDSHAKE_RESPONSE_LEN: usize = 92;

/// A core with peer b, and b as a bare boringtun `Tunn` that initiates to one of the core's
/// static keys.
struct Setup {
    core: Core,
    out: Capture,
    b: Tunn,
    b_pub: [u8; 32],
    /// The core's public key b addresses.
    target: [u8; 32],
    buf: Vec<u8>,
}

impl Setup {
    fn new(key_of_b: Slot) -> Self {
        let (a_priv, a_pub) = key(1);
        let (b_priv, b_pub) = key(2);
        let mut core = Core::new();
        core.set_private_key(Some(a_priv));
        let target = match key_of_b {
            Slot::A => a_pub,
            Slot::B => {
                let (second_priv, second_pub) = key(9);
                core.set_second_key(Some(second_priv));
                second_pub
            }
        };
        core.peer_mut(b_pub).expect("slot");
        core.add_allowed_ip(&b_pub, net("10.2.0.0/16"));
        let b = Tunn::new(
            StaticSecret::from(b_priv),
            PublicKey::from(target),
            None,
            None,
            0,
            None,
        );
        Self {
            core,
            out: Capture::default(),
            b,
            b_pub,
            target,
            buf: vec![0u8; 4096],
        }
    }

    /// Puts the core at its handshake limit for the window: as many handshake messages with
    /// a valid MAC1 as it answers without a cookie, so the next one is under load.
    fn load(&mut self, now: Duration) {
        let forged = forged_response(&self.target, EMPTY_SLOT, None);
        for _ in 0..HANDSHAKE_RATE_LIMIT {
            self.core
                .from_udp(addr(LOADER), &forged, &mut self.buf, now, &mut self.out);
        }
        assert!(self.out.sent.is_empty(), "no cookie reply below the limit");
    }

    /// Runs the core's timers at `now`.
    fn tick(&mut self, now: Duration) {
        let wall = SystemTime::UNIX_EPOCH + now;
        self.core.tick(now, wall, &mut self.buf, &mut self.out);
        self.out.sent.clear();
    }

    /// Returns a new initiation from b, with MAC2 if b holds a cookie.
    fn initiation(&mut self) -> Vec<u8> {
        match self.b.format_handshake_initiation(&mut self.buf, true) {
            TunnResult::WriteToNetwork(init) => init.to_vec(),
            _ => panic!("b initiates"),
        }
    }

    /// Hands the core `datagram` from `src` at `now`; returns what it sent.
    fn send(&mut self, src: &str, datagram: &[u8], now: Duration) -> Vec<(SocketAddr, Vec<u8>)> {
        self.core
            .from_udp(addr(src), datagram, &mut self.buf, now, &mut self.out);
        self.out.sent.drain(..).collect()
    }

    /// Sends b's initiation `init` from `src` and checks that the core answers with only a
    /// cookie reply to `src` and moves nothing; returns the reply.
    fn expect_cookie_reply(&mut self, src: &str, init: &[u8], now: Duration) -> Vec<u8> {
        let was = State::of(&self.core);
        let sent = self.send(src, init, now);
        assert_eq!(
            sent.len(),
            1,
            "one answer to an initiation from {src} under load"
        );
        let (to, reply) = sent.into_iter().next().expect("one answer");
        assert_eq!(to, addr(src), "the cookie reply goes to the sender");
        assert_eq!(
            (reply[0], reply.len()),
            (3, COOKIE_REPLY_LEN),
            "an initiation from {src} without a valid MAC2 gets a cookie reply"
        );
        assert_eq!(
            &reply[4..8],
            &init[4..8],
            "to the initiation's sender index"
        );
        assert_eq!(State::of(&self.core), was, "a cookie reply moves nothing");
        reply
    }

    /// Has b take a cookie reply to its last initiation.
    fn take_cookie(&mut self, reply: &[u8]) {
        match self.b.decapsulate(None, reply, &mut self.buf) {
            TunnResult::Done => {}
            TunnResult::Err(e) => panic!("b refused the cookie reply: {e:?}"),
            _ => panic!("b answered a cookie reply"),
        }
    }

    /// Under load at `now`, sends an initiation without a cookie from `src`, gives b the
    /// cookie reply and returns b's retry, which carries MAC2.
    fn earn_cookie(&mut self, src: &str, now: Duration) -> Vec<u8> {
        self.load(now);
        let init = self.initiation();
        assert_eq!(&init[132..148], &[0u8; 16], "no MAC2 without a cookie");
        let reply = self.expect_cookie_reply(src, &init, now);
        self.take_cookie(&reply);
        let retry = self.initiation();
        assert_ne!(&retry[132..148], &[0u8; 16], "b's retry carries MAC2");
        retry
    }

    /// Sends `init` from `src` and checks that the core answers it with a handshake response
    /// to `src`, which b accepts.
    fn expect_response(&mut self, src: &str, init: &[u8], now: Duration) {
        let sent = self.send(src, init, now);
        assert_eq!(sent.len(), 1, "one answer to an initiation from {src}");
        let (to, response) = sent.into_iter().next().expect("one answer");
        assert_eq!(
            (to, response[0], response.len()),
            (addr(src), 2, HANDSHAKE_RESPONSE_LEN),
            "the initiation from {src} is answered with a handshake response"
        );
        assert!(
            !matches!(
                self.b.decapsulate(None, &response, &mut self.buf),
                TunnResult::Err(_)
            ),
            "b accepts the response"
        );
        assert!(
            self.b.time_since_last_handshake().is_some(),
            "b has a session"
        );
    }
}

/// What an initiation refused under load must not change.
#[derive(Debug, PartialEq, Eq)]
struct State {
    counters: Counters,
    endpoint: Option<SocketAddr>,
    active: Slot,
    last_tx: Duration,
    traffic: (u64, u64),
    tunnels: [Option<Option<u32>>; 2],
    handshake: Option<SystemTime>,
}

impl State {
    fn of(core: &Core) -> Self {
        let peer = core.peers().next().expect("peer b");
        Self {
            counters: core.counters,
            endpoint: peer.endpoint,
            active: peer.active,
            last_tx: peer.last_tx,
            traffic: peer.traffic,
            tunnels: [0, 1].map(|k| peer.tunnels[k].as_ref().map(|t| t.unconfirmed)),
            handshake: peer.last_handshake,
        }
    }
}

const KEYS: [Slot; 2] = [Slot::A, Slot::B];

#[test]
fn under_load_an_initiation_without_a_cookie_gets_a_cookie_reply_and_moves_nothing() {
    for key in KEYS {
        let mut setup = Setup::new(key);
        setup.load(T0);
        let init = setup.initiation();
        let reply = setup.expect_cookie_reply(PEER, &init, T0);
        // The reply is made for b: under the key b addressed, over the initiation's MAC1.
        setup.take_cookie(&reply);
        assert_eq!(setup.core.peers().next().expect("b").endpoint, None);
        assert_eq!(setup.core.peers().next().expect("b").public, setup.b_pub);
    }
}

#[test]
fn the_retry_with_the_cookie_from_the_same_address_and_port_is_answered() {
    for key in KEYS {
        let mut setup = Setup::new(key);
        let retry = setup.earn_cookie(PEER, T0);
        setup.expect_response(PEER, &retry, T0);
        assert!(
            !setup.core.uses_second_key(&setup.b_pub),
            "an initiation alone switches no key"
        );
    }
}

#[test]
fn a_cookie_earned_on_one_port_is_refused_from_another_port_and_another_address() {
    for key in KEYS {
        let mut setup = Setup::new(key);
        let retry = setup.earn_cookie(PEER, T0);
        // The same message, MAC2 valid for PEER, from elsewhere: a new cookie reply for the
        // new source, nothing else.
        setup.expect_cookie_reply(OTHER_PORT, &retry, T0);
        setup.expect_cookie_reply(OTHER_IP, &retry, T0);
        // From where the cookie was earned it still passes.
        setup.expect_response(PEER, &retry, T0);
    }
}

#[test]
fn an_ipv4_mapped_source_is_the_same_source_for_the_cookie() {
    for key in KEYS {
        for (earned, used) in [(PEER, PEER_MAPPED), (PEER_MAPPED, PEER)] {
            let mut setup = Setup::new(key);
            let retry = setup.earn_cookie(earned, T0);
            setup.expect_response(used, &retry, T0);
        }
    }
}

#[test]
fn a_cookie_is_refused_once_the_secret_that_made_it_is_replaced() {
    for key in KEYS {
        // Still under the same secret.
        let mut setup = Setup::new(key);
        let retry = setup.earn_cookie(PEER, T0);
        // (No timer tick runs in between: the core is still under load.)
        let later = T0 + SECRET_LIFETIME - Duration::from_secs(1);
        setup.expect_response(PEER, &retry, later);

        // The secret was replaced once, then twice.
        for age in [
            SECRET_LIFETIME,
            2 * SECRET_LIFETIME + Duration::from_secs(1),
        ] {
            let mut setup = Setup::new(key);
            let retry = setup.earn_cookie(PEER, T0);
            let reply = setup.expect_cookie_reply(PEER, &retry, T0 + age);
            // The new cookie works.
            setup.take_cookie(&reply);
            let fresh = setup.initiation();
            setup.expect_response(PEER, &fresh, T0 + age);
        }
    }
}

#[test]
fn the_load_count_resets_each_window_on_the_tick() {
    for key in KEYS {
        let mut setup = Setup::new(key);
        setup.tick(T0);
        setup.load(T0);
        // Half a window later the count stands.
        setup.tick(T0 + Duration::from_millis(500));
        let init = setup.initiation();
        setup.expect_cookie_reply(PEER, &init, T0 + Duration::from_millis(500));
        // A window after the last reset it starts over: no cookie needed.
        let next = T0 + Duration::from_secs(1);
        setup.tick(next);
        let init = setup.initiation();
        setup.expect_response(PEER, &init, next);
    }
}
