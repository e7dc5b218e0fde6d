use super::*;

mod simulation;

/// Midnight UTC, 2023-11-15.
const MIDNIGHT: u64 = 1_700_006_400;
const HOUR: Duration = Duration::from_secs(3600);

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(MIDNIGHT)
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

/// A key whose first byte is `first` and the rest spells `name`, so tests choose the order.
fn key(first: u8, name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    bytes[0] = first;
    for (slot, b) in bytes[1..].iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}

fn ready(name: &str, first: u8) -> PeerReadiness {
    PeerReadiness {
        name: name.to_owned(),
        public_key: key(first, name),
        channel: Channel::Up { can_rotate: true },
        tunnel_up: true,
        rotating: false,
        peer_due: false,
        manual: false,
    }
}

/// Our key sorts in the middle (first byte 0x80); created at `t0`; no jitter, no window.
fn input(peers: Vec<PeerReadiness>) -> ScheduleInput {
    ScheduleInput {
        own_public_key: key(0x80, "self"),
        key_created: Some(t0()),
        schedule: Schedule {
            jitter: Duration::ZERO,
            ..Schedule::default()
        },
        rotation_in_flight: false,
        peers,
    }
}

fn due_time() -> SystemTime {
    t0() + days(85)
}

#[test]
fn defaults_are_ninety_days_five_days_lead_thirty_minutes_jitter_no_window() {
    let s = Schedule::default();
    assert_eq!(s.max_age, days(90));
    assert_eq!(s.lead, days(5));
    assert_eq!(s.jitter, Duration::from_secs(1800));
    assert_eq!(s.window, None);
}

#[test]
fn a_young_key_is_not_due_and_says_when() {
    let input = input(vec![ready("b", 0x10)]);
    let now = due_time() - Duration::from_secs(1);
    assert_eq!(decide(&input, now), Decision::NotDue { due_at: due_time() });
}

#[test]
fn a_due_key_with_ready_peers_starts() {
    let input = input(vec![ready("b", 0x10), ready("c", 0xf0)]);
    assert_eq!(decide(&input, due_time()), Decision::Start);
}

#[test]
fn due_at_adds_max_age_minus_lead_plus_jitter() {
    let own = key(1, "self");
    let s = Schedule::default();
    let expected = t0() + days(85) + jitter(&own, s.jitter);
    assert_eq!(due_at(t0(), &s, &own), expected);
}

#[test]
fn a_lead_longer_than_max_age_makes_the_key_due_at_creation() {
    let s = Schedule {
        max_age: days(1),
        lead: days(2),
        jitter: Duration::ZERO,
        window: None,
    };
    assert_eq!(due_at(t0(), &s, &key(1, "self")), t0());
}

#[test]
fn an_absurd_max_age_saturates_instead_of_overflowing() {
    let s = Schedule {
        max_age: Duration::MAX,
        ..Schedule::default()
    };
    let due = due_at(t0(), &s, &key(1, "self"));
    assert!(due > t0() + days(365 * 1000));
}

#[test]
fn an_unknown_key_age_never_rotates() {
    let mut input = input(vec![]);
    input.key_created = None;
    assert_eq!(
        decide(&input, due_time() + days(400)),
        Decision::KeyAgeUnknown
    );
}

#[test]
fn jitter_stays_below_its_spread() {
    let spread = Duration::from_secs(1800);
    for i in 0..=255u8 {
        let j = jitter(&key(i, "gateway"), spread);
        assert!(j < spread, "{j:?}");
        assert_eq!(j.subsec_nanos(), 0);
    }
}

#[test]
fn jitter_is_stable_for_one_key() {
    let k = key(7, "lux-k8s");
    let spread = Duration::from_secs(1800);
    assert_eq!(jitter(&k, spread), jitter(&k, spread));
    // FNV-1a 64 of the bytes, pinned so that a change of the hash shows up here.
    assert_eq!(
        jitter(&k, spread),
        Duration::from_secs(fnv1a64(k.as_bytes()) % 1800)
    );
}

#[test]
fn jitter_differs_between_keys() {
    let spread = Duration::from_secs(1800);
    let distinct: std::collections::BTreeSet<Duration> =
        (0..32u8).map(|i| jitter(&key(i, "gw"), spread)).collect();
    assert!(distinct.len() > 16, "{distinct:?}");
}

#[test]
fn jitter_is_zero_without_a_spread() {
    assert_eq!(
        jitter(&key(9, "x"), Duration::from_millis(999)),
        Duration::ZERO
    );
}

#[test]
fn fnv1a64_matches_the_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn a_due_key_waits_for_the_window() {
    let mut input = input(vec![ready("b", 0x10)]);
    input.schedule.window = Some("02:00-04:00".parse().expect("window"));
    let noon = due_time() + 12 * HOUR;
    assert_eq!(
        decide(&input, noon),
        Decision::WaitingForWindow {
            opens_at: due_time() + days(1) + 2 * HOUR
        }
    );
    assert_eq!(
        decide(&input, due_time() + days(1) + 3 * HOUR),
        Decision::Start
    );
}

#[test]
fn the_window_is_checked_before_the_blockers() {
    let mut input = input(vec![PeerReadiness {
        tunnel_up: false,
        ..ready("b", 0x10)
    }]);
    input.schedule.window = Some("02:00-04:00".parse().expect("window"));
    assert!(matches!(
        decide(&input, due_time() + 12 * HOUR),
        Decision::WaitingForWindow { .. }
    ));
}

#[test]
fn our_own_rotation_in_flight_blocks() {
    let mut input = input(vec![ready("b", 0x10)]);
    input.rotation_in_flight = true;
    assert_eq!(
        decide(&input, due_time()),
        Decision::Blocked(vec![Blocker::OwnRotationInFlight])
    );
}

#[test]
fn a_peer_with_its_tunnel_or_channel_down_blocks() {
    let tunnel_down = PeerReadiness {
        tunnel_up: false,
        ..ready("b", 0x10)
    };
    let channel_down = PeerReadiness {
        channel: Channel::Down,
        ..ready("c", 0x10)
    };
    let input = input(vec![channel_down, tunnel_down]);
    assert_eq!(
        decide(&input, due_time()),
        Decision::Blocked(vec![
            Blocker::PeerDown("b".to_owned()),
            Blocker::PeerDown("c".to_owned())
        ])
    );
}

#[test]
fn a_peer_without_a_rotation_channel_blocks_unless_manual() {
    for channel in [
        Channel::Plain,
        Channel::None,
        Channel::Up { can_rotate: false },
    ] {
        let peer = PeerReadiness {
            channel,
            ..ready("b", 0x10)
        };
        let blocked = input(vec![peer.clone()]);
        assert_eq!(
            decide(&blocked, due_time()),
            Decision::Blocked(vec![Blocker::NoChannel("b".to_owned())]),
            "{channel:?}"
        );
        let manual = input(vec![PeerReadiness {
            manual: true,
            ..peer
        }]);
        assert_eq!(decide(&manual, due_time()), Decision::Start, "{channel:?}");
    }
}

#[test]
fn a_manual_peer_still_needs_its_tunnel() {
    let peer = PeerReadiness {
        channel: Channel::Down,
        manual: true,
        ..ready("b", 0x10)
    };
    assert_eq!(
        decide(&input(vec![peer.clone()]), due_time()),
        Decision::Start
    );
    let down = PeerReadiness {
        tunnel_up: false,
        ..peer
    };
    assert_eq!(
        decide(&input(vec![down]), due_time()),
        Decision::Blocked(vec![Blocker::PeerDown("b".to_owned())])
    );
}

#[test]
fn a_rotating_peer_blocks() {
    let peer = PeerReadiness {
        rotating: true,
        ..ready("b", 0xf0)
    };
    assert_eq!(
        decide(&input(vec![peer]), due_time()),
        Decision::Blocked(vec![Blocker::PeerRotating("b".to_owned())])
    );
}

#[test]
fn a_due_peer_with_a_lower_key_goes_first() {
    let lower = PeerReadiness {
        peer_due: true,
        ..ready("b", 0x10)
    };
    let higher = PeerReadiness {
        peer_due: true,
        ..ready("c", 0xf0)
    };
    assert_eq!(
        decide(&input(vec![higher, lower]), due_time()),
        Decision::Blocked(vec![Blocker::PeerGoesFirst("b".to_owned())])
    );
}

#[test]
fn a_lower_peer_that_is_not_due_does_not_block() {
    let lower = ready("b", 0x10);
    assert_eq!(decide(&input(vec![lower]), due_time()), Decision::Start);
}

#[test]
fn exactly_one_of_two_due_peers_may_start() {
    let (ka, kb) = (key(0x33, "a"), key(0x34, "b"));
    let view = |own: PublicKey, peer_name: &str, peer_key: PublicKey| ScheduleInput {
        own_public_key: own,
        peers: vec![PeerReadiness {
            public_key: peer_key,
            peer_due: true,
            ..ready(peer_name, 0)
        }],
        ..input(vec![])
    };
    let a = decide(&view(ka, "b", kb), due_time());
    let b = decide(&view(kb, "a", ka), due_time());
    assert_eq!(a, Decision::Start);
    assert_eq!(
        b,
        Decision::Blocked(vec![Blocker::PeerGoesFirst("a".to_owned())])
    );
}

#[test]
fn each_peer_appears_once_with_its_first_reason() {
    let everything = PeerReadiness {
        tunnel_up: false,
        channel: Channel::Plain,
        rotating: true,
        peer_due: true,
        ..ready("b", 0x10)
    };
    let mut input = input(vec![everything]);
    input.rotation_in_flight = true;
    assert_eq!(
        decide(&input, due_time()),
        Decision::Blocked(vec![
            Blocker::OwnRotationInFlight,
            Blocker::PeerDown("b".to_owned())
        ])
    );
}

#[test]
fn now_skips_age_and_window_but_keeps_blockers() {
    let mut input = input(vec![ready("b", 0x10)]);
    input.schedule.window = Some("02:00-04:00".parse().expect("window"));
    input.key_created = None;
    assert_eq!(decide_now(&input), Decision::Start);
    input.peers[0].rotating = true;
    assert_eq!(
        decide_now(&input),
        Decision::Blocked(vec![Blocker::PeerRotating("b".to_owned())])
    );
}

#[test]
fn blockers_name_their_peer_and_kind() {
    let b = Blocker::NoChannel("lux".to_owned());
    assert_eq!(b.peer(), Some("lux"));
    assert_eq!(b.as_str(), "no_channel");
    assert!(b.to_string().contains("--manual-peer lux"));
    assert_eq!(Blocker::OwnRotationInFlight.peer(), None);
}
