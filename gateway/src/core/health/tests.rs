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
    };
    assert!(ready.is_ready());
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
