use super::*;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    T0 + Duration::from_secs(1_000_000 + secs)
}

fn link(handshake: Option<u64>, rx: u64) -> Link {
    Link {
        last_handshake: handshake.map(at),
        rx_bytes: rx,
        tx_bytes: rx / 2,
        persistent_keepalive: 25,
    }
}

fn applied(generation: i64, link: &Link, previous: &[Condition], now: SystemTime) -> PeerStatus {
    build(
        Some(generation),
        &Verdict::Applied,
        Some(link),
        previous,
        now,
    )
}

fn condition<'a>(status: &'a PeerStatus, kind: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.kind == kind)
        .expect("condition present")
}

fn written(status: &PeerStatus, when: SystemTime) -> Memo {
    let mut memo = Memo::default();
    memo.wrote(status.clone(), when);
    memo
}

#[test]
fn applied_peer_with_recent_handshake_is_ready_and_connected() {
    let status = applied(3, &link(Some(10), 100), &[], at(20));
    assert_eq!(status.observed_generation, Some(3));
    let ready = condition(&status, READY);
    assert!(ready.status);
    assert_eq!(ready.reason, "Applied");
    let connected = condition(&status, CONNECTED);
    assert!(connected.status);
    assert_eq!(connected.reason, "HandshakeRecent");
    assert_eq!(status.last_handshake, Some(at(10)));
    assert_eq!((status.rx_bytes, status.tx_bytes), (Some(100), Some(50)));
}

#[test]
fn rejected_peer_says_why_and_reports_no_counters() {
    let verdict = Verdict::Rejected {
        kind: RejectionKind::Conflict,
        message: "allowedIPs 10.2.0.0/16 overlaps".to_owned(),
    };
    let status = build(Some(1), &verdict, Some(&link(Some(10), 5)), &[], at(20));
    let ready = condition(&status, READY);
    assert!(!ready.status);
    assert_eq!(ready.reason, "Conflict");
    assert!(ready.message.contains("overlaps"));
    assert_eq!(condition(&status, CONNECTED).reason, "NotApplied");
    assert_eq!(status.rx_bytes, None);
    assert_eq!(status.last_handshake, None);
}

#[test]
fn failed_apply_is_not_ready() {
    let verdict = Verdict::NotApplied {
        message: "UAPI request failed".to_owned(),
    };
    let status = build(Some(1), &verdict, None, &[], at(0));
    assert_eq!(condition(&status, READY).reason, "ApplyFailed");
}

#[test]
fn peer_applied_in_this_pass_has_no_handshake_yet() {
    let status = build(Some(1), &Verdict::Applied, None, &[], at(0));
    assert_eq!(condition(&status, CONNECTED).reason, "NoHandshake");
    assert_eq!(status.rx_bytes, None);
}

#[test]
fn connected_follows_the_handshake_age() {
    let never = applied(1, &link(None, 0), &[], at(0));
    assert_eq!(condition(&never, CONNECTED).reason, "NoHandshake");
    let stale = applied(1, &link(Some(0), 0), &[], at(211));
    assert!(!condition(&stale, CONNECTED).status);
    assert_eq!(condition(&stale, CONNECTED).reason, "HandshakeStale");
}

#[test]
fn transition_time_changes_only_when_the_status_changes() {
    let first = applied(1, &link(None, 0), &[], at(0));
    let again = applied(1, &link(None, 0), &first.conditions, at(40));
    assert_eq!(condition(&again, CONNECTED).last_transition, at(0));
    let up = applied(1, &link(Some(41), 10), &again.conditions, at(42));
    assert_eq!(condition(&up, CONNECTED).last_transition, at(42));
    assert_eq!(condition(&up, READY).last_transition, at(0));
}

#[test]
fn first_status_is_written_at_once() {
    let status = applied(1, &link(None, 0), &[], at(0));
    assert!(should_write(&Memo::default(), &status, at(0)));
}

#[test]
fn counter_changes_wait_for_the_interval() {
    let first = applied(1, &link(Some(0), 10), &[], at(1));
    let memo = written(&first, at(1));
    let busier = applied(1, &link(Some(0), 99), &first.conditions, at(2));
    assert!(!should_write(&memo, &busier, at(2)));
    assert!(!should_write(&memo, &busier, at(30)));
    assert!(should_write(&memo, &busier, at(31)));
}

#[test]
fn unchanged_status_is_never_rewritten() {
    let first = applied(1, &link(Some(0), 10), &[], at(1));
    let memo = written(&first, at(1));
    let same = applied(1, &link(Some(0), 10), &first.conditions, at(100));
    assert!(!should_write(&memo, &same, at(100)));
}

#[test]
fn condition_or_generation_changes_are_written_at_once() {
    let first = applied(1, &link(None, 0), &[], at(1));
    let memo = written(&first, at(1));
    let connected = applied(1, &link(Some(2), 0), &first.conditions, at(2));
    assert!(should_write(&memo, &connected, at(2)));
    let next_generation = applied(2, &link(None, 0), &first.conditions, at(2));
    assert!(should_write(&memo, &next_generation, at(2)));
}

#[test]
fn failed_write_waits_before_retrying() {
    let status = applied(1, &link(None, 0), &[], at(0));
    let mut memo = Memo::default();
    memo.failed(at(0));
    assert!(!should_write(&memo, &status, at(9)));
    assert!(should_write(&memo, &status, at(10)));
}

#[test]
fn clock_going_backwards_allows_a_write() {
    let first = applied(1, &link(Some(0), 10), &[], at(100));
    let memo = written(&first, at(100));
    let busier = applied(1, &link(Some(0), 99), &first.conditions, at(50));
    assert!(should_write(&memo, &busier, at(50)));
}
