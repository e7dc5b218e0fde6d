use super::*;
use crate::RotationId;
use crate::machine::{Action, Event, Outcome, Participant, Step, Timing};

use crate::test_support::{key, t};

fn feed(r: &mut Rotation, events: impl IntoIterator<Item = Event>, at: SystemTime) {
    for event in events {
        r.on(event, at).expect("event fits");
    }
}

fn peer(name: &str) -> String {
    name.to_owned()
}

/// Channel peers `a`, `b`; manual peer `m`; `old` → `new`.
fn staging() -> Rotation {
    let participants =
        [("a", false), ("b", false), ("m", true)].map(|(name, manual)| Participant {
            name: peer(name),
            public_key: key(name),
            manual,
        });
    let id = RotationId::new("00000000000000aa").expect("valid id");
    Rotation::new(id, 3, key("old"), key("new"), participants, t(0)).expect("valid rotation")
}

fn announcing() -> Rotation {
    let mut r = staging();
    feed(&mut r, [Event::NextStored, Event::Staged], t(1));
    r
}

fn committing() -> Rotation {
    let mut r = announcing();
    let acks = [
        Event::Acked { peer: peer("a") },
        Event::Acked { peer: peer("b") },
    ];
    feed(&mut r, acks, t(2));
    feed(&mut r, [Event::ManualConfirmed { peer: peer("m") }], t(2));
    r
}

fn verifying() -> Rotation {
    let mut r = committing();
    feed(&mut r, [Event::CurrentStored, Event::Promoted], t(3));
    feed(&mut r, [Event::HandshakeUnderNew { peer: peer("a") }], t(4));
    r
}

/// What the store holds: `current`, and `next` / `previous` by name.
fn store(
    record: Option<Rotation>,
    current: &str,
    next: Option<&str>,
    previous: Option<&str>,
) -> StoredState {
    StoredState {
        current: key(current),
        current_created: Some(t(0)),
        next: next.map(key),
        previous: previous.map(key),
        record,
    }
}

/// The actions of the resumed rotation at `now`, without the trailing `Wait`.
fn actions(r: &Rotation, now: SystemTime) -> Vec<Action> {
    let mut list = r.next_actions(now, &Timing::default());
    if let Some(Action::Wait { .. }) = list.last() {
        list.pop();
    }
    list
}

fn rolled_back(stored: &StoredState) -> Rotation {
    match resume(stored, t(100)) {
        Ok(Resume::RollBack(r)) => r,
        other => panic!("expected a rollback, got {other:?}"),
    }
}

fn verified(stored: &StoredState) -> Rotation {
    match resume(stored, t(100)) {
        Ok(Resume::Verify(r)) => r,
        other => panic!("expected a verification, got {other:?}"),
    }
}

fn tell_abort(peers: &[&str]) -> Vec<Action> {
    peers
        .iter()
        .map(|p| Action::TellAbort { peer: peer(p) })
        .collect()
}

#[test]
fn without_a_record_there_is_nothing_to_resume() {
    assert_eq!(
        resume(&store(None, "old", None, None), t(100)),
        Ok(Resume::Nothing)
    );
    assert_eq!(Resume::Nothing.rotation(), None);
}

#[test]
fn a_finished_record_is_nothing_to_resume() {
    let mut done = verifying();
    let ends = [
        Event::HandshakeUnderNew { peer: peer("b") },
        Event::HandshakeUnderNew { peer: peer("m") },
        Event::PreviousDropped,
        Event::EndTold { peer: peer("a") },
        Event::EndTold { peer: peer("b") },
    ];
    feed(&mut done, ends, t(5));
    assert!(done.is_finished());
    assert_eq!(
        resume(&store(Some(done), "new", None, Some("old")), t(100)),
        Ok(Resume::Nothing)
    );
}

#[test]
fn a_next_key_without_a_rotation_under_way_is_inconsistent() {
    assert_eq!(
        resume(&store(None, "old", Some("new"), None), t(100)),
        Err(Inconsistency::LeftoverNext)
    );
    let mut aborted = staging();
    feed(
        &mut aborted,
        [Event::NextStoreFailed, Event::RolledBackStored],
        t(1),
    );
    assert!(aborted.is_finished());
    assert_eq!(
        resume(&store(Some(aborted), "old", Some("new"), None), t(100)),
        Err(Inconsistency::LeftoverNext)
    );
}

#[test]
fn staging_with_nothing_stored_is_rolled_back_at_once() {
    let r = rolled_back(&store(Some(staging()), "old", None, None));
    assert_eq!(r.phase(), &Phase::RolledBack);
    assert_eq!(
        r.outcome(),
        Some(&Outcome::RolledBack {
            from: Step::Staging,
            reason: RollbackReason::Interrupted
        })
    );
}

#[test]
fn staging_with_the_next_key_stored_discards_it_and_tells_no_one() {
    let mut r = rolled_back(&store(Some(staging()), "old", Some("new"), None));
    assert_eq!(actions(&r, t(100)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(101));
    assert_eq!(r.phase(), &Phase::RolledBack);
}

#[test]
fn announcing_is_rolled_back_and_every_channel_peer_told() {
    let mut r = rolled_back(&store(Some(announcing()), "old", Some("new"), None));
    assert_eq!(
        r.phase(),
        &Phase::RollingBack {
            from: Step::Announcing,
            reason: RollbackReason::Interrupted
        }
    );
    assert_eq!(r.phase_since(), t(100));
    // The restarted plane holds the old key only: nothing to unstage.
    assert_eq!(r.plane(), PlaneState::OldOnly);
    assert_eq!(actions(&r, t(100)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(101));
    assert_eq!(actions(&r, t(101)), tell_abort(&["a", "b"]));
}

#[test]
fn committing_with_the_old_key_current_is_rolled_back() {
    let r = rolled_back(&store(Some(committing()), "old", Some("new"), None));
    assert_eq!(
        r.phase(),
        &Phase::RollingBack {
            from: Step::Committing,
            reason: RollbackReason::Interrupted
        }
    );
}

#[test]
fn committing_with_the_new_key_current_resumes_verification_with_a_fresh_deadline() {
    let r = verified(&store(Some(committing()), "new", None, Some("old")));
    assert_eq!(r.phase(), &Phase::Verifying);
    assert_eq!(r.store(), StoreState::Committed);
    assert_eq!(r.plane(), PlaneState::NewOnly);
    assert_eq!(r.deadline(&Timing::default()), Some(t(160)));
    let initiate: Vec<Action> = ["a", "b", "m"]
        .iter()
        .map(|p| Action::Initiate { peer: peer(p) })
        .collect();
    assert_eq!(actions(&r, t(100)), initiate);
}

#[test]
fn verifying_resumes_with_its_handshakes_and_without_a_previous_key_to_drop() {
    let mut r = verified(&store(Some(verifying()), "new", None, Some("old")));
    assert_eq!(r.phase_since(), t(100));
    assert_eq!(
        actions(&r, t(100)),
        [
            Action::Initiate { peer: peer("b") },
            Action::Initiate { peer: peer("m") }
        ]
    );
    let handshakes = [
        Event::HandshakeUnderNew { peer: peer("b") },
        Event::HandshakeUnderNew { peer: peer("m") },
    ];
    feed(&mut r, handshakes, t(101));
    assert_eq!(
        actions(&r, t(101)),
        [
            Action::TellComplete { peer: peer("a") },
            Action::TellComplete { peer: peer("b") }
        ]
    );
    feed(
        &mut r,
        [
            Event::EndTold { peer: peer("a") },
            Event::EndTold { peer: peer("b") },
        ],
        t(102),
    );
    assert_eq!(r.outcome(), Some(&Outcome::Completed));
}

#[test]
fn verifying_with_the_old_key_current_is_rolled_back_without_restoring_the_store_again() {
    let r = rolled_back(&store(Some(verifying()), "old", None, None));
    assert_eq!(r.store(), StoreState::Restored);
    assert_eq!(actions(&r, t(100)), tell_abort(&["a", "b"]));
}

#[test]
fn a_rollback_before_the_commit_continues_with_its_reason() {
    let mut aborting = announcing();
    feed(
        &mut aborting,
        [Event::Abort {
            reason: "freeze".to_owned(),
        }],
        t(2),
    );
    let r = rolled_back(&store(Some(aborting), "old", Some("new"), None));
    let reason = RollbackReason::Aborted {
        reason: "freeze".to_owned(),
    };
    assert_eq!(
        r.phase(),
        &Phase::RollingBack {
            from: Step::Announcing,
            reason
        }
    );
    assert_eq!(actions(&r, t(100)), [Action::RestoreStore]);
}

#[test]
fn a_rollback_after_the_commit_restores_the_store_then_demotes() {
    let mut timed_out = verifying();
    assert!(timed_out.tick(t(70), &Timing::default()));
    let mut r = rolled_back(&store(Some(timed_out), "new", None, Some("old")));
    assert_eq!(
        r.phase(),
        &Phase::RollingBack {
            from: Step::Verifying,
            reason: RollbackReason::VerifyTimeout
        }
    );
    assert_eq!(actions(&r, t(100)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(101));
    assert_eq!(actions(&r, t(101)), [Action::DemoteInPlane]);
}

#[test]
fn a_current_key_of_neither_side_is_inconsistent() {
    for record in [staging(), committing(), verifying()] {
        assert_eq!(
            resume(&store(Some(record), "stranger", None, Some("old")), t(100)),
            Err(Inconsistency::UnknownCurrent)
        );
    }
}

#[test]
fn a_next_key_the_record_does_not_know_is_inconsistent() {
    assert_eq!(
        resume(
            &store(Some(announcing()), "old", Some("stranger"), None),
            t(100)
        ),
        Err(Inconsistency::UnknownNext)
    );
}

#[test]
fn the_new_key_current_before_the_commit_is_inconsistent() {
    for record in [staging(), announcing()] {
        assert_eq!(
            resume(&store(Some(record), "new", None, Some("old")), t(100)),
            Err(Inconsistency::EarlyCommit)
        );
    }
}

#[test]
fn the_new_key_current_without_the_old_one_kept_is_inconsistent() {
    for previous in [None, Some("stranger")] {
        assert_eq!(
            resume(&store(Some(verifying()), "new", None, previous), t(100)),
            Err(Inconsistency::PreviousMissing)
        );
    }
}

#[test]
fn inconsistencies_have_fixed_words() {
    assert_eq!(Inconsistency::EarlyCommit.as_str(), "early_commit");
    assert!(
        Inconsistency::PreviousMissing
            .to_string()
            .contains("previous")
    );
}
