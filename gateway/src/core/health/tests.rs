use super::*;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    T0 + Duration::from_secs(secs)
}

#[test]
fn never_handshaked_is_down() {
    assert!(!is_peer_up(None, 25, at(1000)));
}

#[test]
fn idle_boringtun_tunnel_at_205_seconds_is_still_up() {
    // Session expired at 180 s, next keepalive at most 25 s later.
    assert!(is_peer_up(Some(at(1000)), 25, at(1000 + 205)));
    assert!(is_peer_up(Some(at(1000)), 25, at(1000 + 210)));
}

#[test]
fn stale_handshake_is_down() {
    assert!(!is_peer_up(Some(at(1000)), 25, at(1000 + 211)));
    assert!(!is_peer_up(Some(at(1000)), 0, at(1000 + 186)));
}

#[test]
fn handshake_in_the_future_counts_as_recent() {
    assert!(is_peer_up(Some(at(2000)), 0, at(1000)));
}

#[test]
fn readiness_names_failing_checks_in_order() {
    let r = Readiness {
        key_loaded: true,
        ..Readiness::default()
    };
    assert_eq!(r.failing(), ["device_up", "peers_reconciled"]);
    assert!(!r.is_ready());
    let ready = Readiness {
        key_loaded: true,
        lease_wait: None,
        device_up: true,
        peers_reconciled: true,
        audit_unwritable: false,
    };
    assert!(ready.is_ready());
    let unwritable = Readiness {
        audit_unwritable: true,
        ..ready
    };
    assert_eq!(unwritable.failing(), ["audit_writable"]);
}

#[test]
fn idle_tunnel_sawtooth_never_reports_down() {
    // An idle boringtun tunnel with keepalive 25 s: the session expires 180 s after each
    // handshake, the next keepalive (up to 25 s later) starts a new one, plus a round trip.
    let mut handshake = at(1000);
    for second in 1000..1000 + 3600 {
        let now = at(second);
        if now.duration_since(handshake).expect("after") >= Duration::from_secs(206) {
            handshake = now;
        }
        assert!(is_peer_up(Some(handshake), 25, now), "down at {second}");
    }
}

#[test]
fn production_liveness_is_the_handshake_rule() {
    let activity = PeerActivity {
        last_handshake: Some(at(1000)),
        last_receive: None,
        keepalive: 25,
    };
    let liveness = Liveness::default();
    assert!(liveness.is_up(&activity, at(1000 + 210)));
    assert!(!liveness.is_up(&activity, at(1000 + 211)));
}

#[test]
fn receive_window_adds_a_condition_and_never_relaxes_the_handshake_rule() {
    let liveness = Liveness {
        receive_window: Some(Duration::from_secs(3)),
    };
    let fresh = PeerActivity {
        last_handshake: Some(at(1000)),
        last_receive: Some(at(1010)),
        keepalive: 1,
    };
    assert!(liveness.is_up(&fresh, at(1013)));
    assert!(!liveness.is_up(&fresh, at(1014)), "no traffic for 4 s");
    let never_handshaked = PeerActivity {
        last_handshake: None,
        ..fresh
    };
    assert!(!liveness.is_up(&never_handshaked, at(1011)));
    let no_traffic = PeerActivity {
        last_receive: None,
        ..fresh
    };
    assert!(!liveness.is_up(&no_traffic, at(1001)));
}

#[test]
fn receive_mark_moves_only_when_the_counter_changes() {
    let first = observe_receive(None, 0, at(1));
    assert_eq!(first.at, None);
    let second = observe_receive(Some(first), 32, at(2));
    assert_eq!(second.at, Some(at(2)));
    let unchanged = observe_receive(Some(second), 32, at(5));
    assert_eq!(unchanged.at, Some(at(2)));
    let reset = observe_receive(Some(unchanged), 0, at(6));
    assert_eq!(reset.at, None);
    let recreated = observe_receive(Some(second), 16, at(7));
    assert_eq!(recreated.at, Some(at(7)));
}

#[test]
fn peer_counts_always_name_every_state() {
    let counts = PeerCounts {
        connected: 2,
        disconnected: 1,
        rejected: 0,
    };
    assert_eq!(
        counts.by_state(),
        [("connected", 2), ("disconnected", 1), ("rejected", 0)]
    );
}

#[test]
fn waiting_for_the_lease_says_who_holds_it() {
    let r = Readiness {
        key_loaded: true,
        lease_wait: Some("lease held by gw-a_1".to_owned()),
        ..Readiness::default()
    };
    assert_eq!(
        r.failing(),
        ["lease held by gw-a_1", "device_up", "peers_reconciled"]
    );
}
