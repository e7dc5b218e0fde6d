//! The whitepaper's timers (section 6.1 to 6.5) as a peer sees them from the native core:
//! two cores in memory, `Tunn`'s clock moved by `MockClock` together with the time the core
//! is given. Each test names the rule it checks.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use boringtun::x25519::{PublicKey, StaticSecret};
use gateway::device::native::core::{Core, Sink};
use mock_instant::MockClock;

const A: &str = "192.0.2.1:51820";
const B: &str = "192.0.2.2:51820";
/// How often the data plane runs the core's timers.
const TICK: Duration = Duration::from_millis(250);

const INIT: u8 = 1;
const DATA: u8 = 4;
/// A data message with an empty plaintext: header and tag.
const KEEPALIVE_LEN: usize = 32;

#[derive(Default)]
struct Out {
    /// Datagrams not delivered yet.
    sent: VecDeque<Vec<u8>>,
    /// The type and length of every datagram sent since the last [`drain`].
    log: Vec<(u8, usize)>,
    tun: usize,
}

impl Sink for Out {
    fn send(&mut self, _to: SocketAddr, datagram: &[u8]) {
        self.sent.push_back(datagram.to_vec());
        self.log.push((datagram[0], datagram.len()));
    }
    fn write_tun(&mut self, _packet: &[u8]) {
        self.tun += 1;
    }
}

/// Gateway a (10.1.0.0/16) and gateway b (10.2.0.0/16), peers of each other, and the time.
struct World {
    a: Core,
    b: Core,
    a_out: Out,
    b_out: Out,
    buf: Vec<u8>,
    now: Duration,
}

fn public(private: [u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(private)).to_bytes()
}

fn core(own: [u8; 32], peer: [u8; 32], endpoint: &str, allowed: &str) -> Core {
    let mut core = Core::new();
    core.set_private_key(Some(own));
    let peer_public = public(peer);
    core.peer_mut(peer_public).expect("a slot").endpoint = Some(endpoint.parse().expect("address"));
    core.add_allowed_ip(&peer_public, allowed.parse().expect("prefix"));
    core
}

/// An IPv4 packet from `src` to `dst` with a few bytes of payload.
fn packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&Ipv4Addr::from(src).octets());
    p.extend_from_slice(&Ipv4Addr::from(dst).octets());
    p.extend_from_slice(b"ping");
    p
}

/// The type and length of what `out` sent since the last call.
fn drain(out: &mut Out) -> Vec<(u8, usize)> {
    std::mem::take(&mut out.log)
}

impl World {
    fn new() -> Self {
        MockClock::set_time(Duration::ZERO);
        let (a_key, b_key) = ([1u8; 32], [2u8; 32]);
        Self {
            a: core(a_key, b_key, B, "10.2.0.0/16"),
            b: core(b_key, a_key, A, "10.1.0.0/16"),
            a_out: Out::default(),
            b_out: Out::default(),
            buf: vec![0; 4096],
            now: Duration::ZERO,
        }
    }

    /// Moves both clocks by `by`, running both cores' timers every tick on the way.
    fn wait(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            let step = TICK.min(end - self.now);
            MockClock::advance(step);
            self.now += step;
            let wall = SystemTime::UNIX_EPOCH + self.now;
            self.a.tick(self.now, wall, &mut self.buf, &mut self.a_out);
            self.b.tick(self.now, wall, &mut self.buf, &mut self.b_out);
        }
    }

    /// Moves both clocks by `by` while both sides send each other a packet every second.
    fn talk(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.a_sends();
            self.b_sends();
            self.pump();
            self.wait(Duration::from_secs(1).min(end - self.now));
        }
    }

    fn a_sends(&mut self) {
        let p = packet([10, 1, 0, 5], [10, 2, 0, 7]);
        self.a
            .from_tun(&p, &mut self.buf, self.now, &mut self.a_out);
    }

    fn b_sends(&mut self) {
        let p = packet([10, 2, 0, 7], [10, 1, 0, 5]);
        self.b
            .from_tun(&p, &mut self.buf, self.now, &mut self.b_out);
    }

    /// Delivers everything in flight both ways until both sides are quiet.
    fn pump(&mut self) {
        loop {
            if let Some(d) = self.a_out.sent.pop_front() {
                let src = A.parse().expect("address");
                self.b
                    .from_udp(src, &d, &mut self.buf, self.now, &mut self.b_out);
            } else if let Some(d) = self.b_out.sent.pop_front() {
                let src = B.parse().expect("address");
                self.a
                    .from_udp(src, &d, &mut self.buf, self.now, &mut self.a_out);
            } else {
                return;
            }
        }
    }

    /// a initiates, b answers, and data has crossed both ways.
    fn connected_by_a() -> Self {
        let mut world = Self::new();
        world.a_sends();
        world.pump();
        world.b_sends();
        world.pump();
        assert_eq!((world.a_out.tun, world.b_out.tun), (1, 1), "connected");
        world
    }
}

fn initiations(sent: &[(u8, usize)]) -> usize {
    sent.iter().filter(|(kind, _)| *kind == INIT).count()
}

/// Rekey-After-Time (120 s): the initiator of a session starts a new handshake when it sends
/// on a session that old; the responder does not.
#[test]
fn rekey_after_time_the_initiator_rehandshakes_when_it_sends_on_a_120_s_old_session() {
    let mut w = World::connected_by_a();
    drain(&mut w.a_out);
    drain(&mut w.b_out);
    w.talk(Duration::from_secs(119));
    assert_eq!(initiations(&drain(&mut w.a_out)), 0, "a until 119 s");
    w.talk(Duration::from_secs(2));
    assert_eq!(
        initiations(&drain(&mut w.a_out)),
        1,
        "a, the initiator, at 120 s"
    );
    assert_eq!(initiations(&drain(&mut w.b_out)), 0, "b, the responder");
    let delivered = (w.a_out.tun, w.b_out.tun);
    w.talk(Duration::from_secs(2));
    assert_eq!(
        (w.a_out.tun, w.b_out.tun),
        (delivered.0 + 2, delivered.1 + 2),
        "the new session carries the data"
    );
}

/// Reject-After-Time (180 s): no data is sent or accepted on a session that old; a packet
/// to send starts a handshake instead.
#[test]
fn reject_after_time_a_180_s_old_session_neither_sends_nor_receives() {
    let mut w = World::connected_by_a();
    w.wait(Duration::from_secs(170));
    // Made at 170 s, delivered after 180 s.
    w.b_sends();
    let late = w.b_out.sent.pop_back().expect("b's data");
    assert_eq!(late[0], DATA);
    w.wait(Duration::from_secs(11));
    drain(&mut w.a_out);
    w.a_sends();
    let sent = drain(&mut w.a_out);
    assert_eq!(
        sent.iter().map(|(kind, _)| *kind).collect::<Vec<_>>(),
        [INIT],
        "no data on the expired session, a handshake instead"
    );
    let before = w.a.counters.invalid;
    let tun = w.a_out.tun;
    let src = B.parse().expect("address");
    w.a.from_udp(src, &late, &mut w.buf, w.now, &mut w.a_out);
    assert_eq!(
        w.a_out.tun, tun,
        "nothing delivered from the expired session"
    );
    assert_eq!(w.a.counters.invalid, before + 1);
}

/// Rekey-Timeout (5 s): an unanswered initiation is sent again after 5 s, at the first
/// timer tick past it (the core's ticks are 250 ms apart; `Tunn` adds no random jitter).
#[test]
fn rekey_timeout_an_unanswered_initiation_is_retried_after_5_s() {
    let mut w = World::new();
    w.a_sends();
    assert_eq!(initiations(&drain(&mut w.a_out)), 1);
    w.wait(Duration::from_millis(4750));
    assert_eq!(initiations(&drain(&mut w.a_out)), 0, "before 5 s");
    w.wait(Duration::from_millis(500));
    assert_eq!(initiations(&drain(&mut w.a_out)), 1, "by 5.25 s");
}

/// Rekey-Attempt-Time (90 s): retries stop 90 s after the first initiation; a new packet to
/// send starts over.
#[test]
fn rekey_attempt_time_retries_stop_after_90_s_until_there_is_something_to_send() {
    let mut w = World::new();
    w.a_sends();
    w.wait(Duration::from_secs(89));
    let tries = initiations(&drain(&mut w.a_out));
    assert!((17..=18).contains(&tries), "{tries} initiations in 89 s");
    w.wait(Duration::from_secs(30));
    assert_eq!(initiations(&drain(&mut w.a_out)), 0, "given up after 90 s");
    w.a_sends();
    assert_eq!(
        initiations(&drain(&mut w.a_out)),
        1,
        "a new packet starts over"
    );
}

/// Keepalive-Timeout (10 s): a peer that received data and sent nothing back for 10 s sends
/// an empty data message (the passive keepalive), once.
#[test]
fn keepalive_timeout_a_receiver_that_sent_nothing_for_10_s_sends_one_keepalive() {
    let mut w = World::connected_by_a();
    w.wait(Duration::from_secs(1));
    // a's last message goes out at 1 s; b's data arrives after it, at 1.25 s.
    w.a_sends();
    w.pump();
    w.wait(TICK);
    w.b_sends();
    w.pump();
    drain(&mut w.a_out);
    w.wait(Duration::from_millis(9500));
    assert_eq!(drain(&mut w.a_out), [], "before 10 s");
    w.wait(Duration::from_millis(500));
    assert_eq!(
        drain(&mut w.a_out),
        [(DATA, KEEPALIVE_LEN)],
        "one keepalive"
    );
    w.wait(Duration::from_secs(20));
    assert_eq!(drain(&mut w.a_out), [], "and no more without new data");
}

/// Keepalive-Timeout + Rekey-Timeout (15 s): a sender that has heard nothing back for 15 s
/// after sending data starts a new handshake.
#[test]
fn a_sender_that_hears_nothing_for_15_s_starts_a_handshake() {
    let mut w = World::connected_by_a();
    w.wait(Duration::from_secs(1));
    // a hears from b last at 1 s, and sends at 2 s.
    w.b_sends();
    w.pump();
    w.wait(Duration::from_secs(1));
    w.a_sends();
    w.a_out.sent.clear();
    drain(&mut w.a_out);
    w.wait(Duration::from_millis(13750));
    assert_eq!(initiations(&drain(&mut w.a_out)), 0, "before 15 s");
    w.wait(Duration::from_millis(500));
    assert_eq!(initiations(&drain(&mut w.a_out)), 1, "by 15.25 s");
}
