use super::*;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn at(secs: u64) -> SystemTime {
    T0 + Duration::from_secs(1_000_000 + secs)
}

fn lease(holder: Option<&str>, renewed: u64, version: &str) -> LeaseRecord {
    LeaseRecord {
        holder: holder.map(str::to_owned),
        duration: Some(LEASE_DURATION),
        acquired: Some(at(0)),
        renewed: Some(at(renewed)),
        transitions: 2,
        version: version.to_owned(),
    }
}

fn me() -> Elector {
    Elector::new("gw-b_1", LEASE_DURATION)
}

#[test]
fn missing_lease_is_created_for_us() {
    let decision = me().decide(None, at(5));
    let Decision::Create(spec) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(spec.holder.as_deref(), Some("gw-b_1"));
    assert_eq!((spec.acquired, spec.renewed), (at(5), at(5)));
    assert_eq!(spec.duration, LEASE_DURATION);
}

#[test]
fn our_own_lease_is_renewed_keeping_its_acquire_time() {
    let mut elector = me();
    let decision = elector.decide(Some(&lease(Some("gw-b_1"), 3, "7")), at(8));
    assert_eq!(
        decision,
        Decision::Update {
            spec: LeaseSpec {
                holder: Some("gw-b_1".to_owned()),
                duration: LEASE_DURATION,
                acquired: at(0),
                renewed: at(8),
                transitions: 2,
            },
            version: "7".to_owned(),
        }
    );
}

#[test]
fn a_live_lease_of_another_gateway_makes_us_wait() {
    let mut elector = me();
    let held = lease(Some("gw-a_1"), 0, "7");
    assert_eq!(
        elector.decide(Some(&held), at(1)),
        Decision::Wait {
            holder: "gw-a_1".to_owned()
        }
    );
    assert!(matches!(
        elector.decide(Some(&held), at(15)),
        Decision::Wait { .. }
    ));
}

#[test]
fn a_lease_unchanged_for_its_duration_is_taken_over() {
    let mut elector = me();
    let held = lease(Some("gw-a_1"), 0, "7");
    elector.decide(Some(&held), at(1));
    let decision = elector.decide(Some(&held), at(16));
    let Decision::Update { spec, version } = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(version, "7");
    assert_eq!(spec.holder.as_deref(), Some("gw-b_1"));
    assert_eq!(spec.transitions, 3);
    assert_eq!(spec.acquired, at(16));
}

#[test]
fn expiry_counts_from_the_last_change_seen_not_the_written_time() {
    // The holder's clock is far behind ours: its renew time is ancient, yet it renews.
    let mut elector = me();
    elector.decide(Some(&lease(Some("gw-a_1"), 0, "7")), at(1000));
    elector.decide(Some(&lease(Some("gw-a_1"), 5, "8")), at(1010));
    assert!(matches!(
        elector.decide(Some(&lease(Some("gw-a_1"), 5, "8")), at(1024)),
        Decision::Wait { .. }
    ));
    assert!(matches!(
        elector.decide(Some(&lease(Some("gw-a_1"), 5, "8")), at(1025)),
        Decision::Update { .. }
    ));
}

#[test]
fn a_released_lease_is_taken_at_once() {
    let mut elector = me();
    let released = lease(None, 0, "9");
    assert!(matches!(
        elector.decide(Some(&released), at(1)),
        Decision::Update { .. }
    ));
    let mut empty = lease(Some(""), 0, "9");
    empty.holder = Some(String::new());
    assert!(matches!(
        me().decide(Some(&empty), at(1)),
        Decision::Update { .. }
    ));
}

#[test]
fn a_holder_that_sees_another_holder_has_lost_it() {
    let mut elector = me();
    elector.decide(None, at(0));
    elector.wrote(at(0));
    assert!(elector.is_held());
    assert_eq!(
        elector.decide(Some(&lease(Some("gw-a_2"), 30, "12")), at(30)),
        Decision::Lost {
            holder: "gw-a_2".to_owned()
        }
    );
    assert!(!elector.is_held());
}

#[test]
fn release_clears_the_holder() {
    let mut elector = me();
    elector.wrote(at(0));
    let spec = elector.release(&lease(Some("gw-b_1"), 3, "7"), at(4));
    assert_eq!(spec.holder, None);
    assert_eq!(spec.renewed, at(4));
    assert!(!elector.is_held());
}

#[test]
fn a_holder_steps_down_before_any_standby_can_take_over() {
    // The holder's last write started at 0. A standby that saw that write no earlier than 0
    // takes over at LEASE_DURATION at the soonest; the holder stops serving at RENEW_DEADLINE.
    assert!(RENEW_DEADLINE + RENEW_INTERVAL <= LEASE_DURATION);
    let mut holder = me();
    assert_eq!(holder.step_down_at(RENEW_DEADLINE), None);
    holder.wrote(at(0));
    assert_eq!(holder.step_down_at(RENEW_DEADLINE), Some(at(10)));
    assert!(!holder.must_step_down(at(9), RENEW_DEADLINE));
    assert!(holder.is_held());

    let mut standby = Elector::new("gw-a_1", LEASE_DURATION);
    let written = lease(Some("gw-b_1"), 0, "7");
    for t in 0..15 {
        assert!(matches!(
            standby.decide(Some(&written), at(t)),
            Decision::Wait { .. }
        ));
    }
    assert!(holder.must_step_down(at(10), RENEW_DEADLINE));
    assert!(!holder.is_held());
    assert!(matches!(
        standby.decide(Some(&written), at(15)),
        Decision::Update { .. }
    ));
}

#[test]
fn each_successful_renewal_moves_the_step_down_deadline() {
    let mut holder = me();
    holder.wrote(at(0));
    holder.wrote(at(5));
    assert!(!holder.must_step_down(at(14), RENEW_DEADLINE));
    assert!(holder.must_step_down(at(15), RENEW_DEADLINE));
    // A holder that stepped down has no deadline until it writes again.
    assert_eq!(holder.step_down_at(RENEW_DEADLINE), None);
}
