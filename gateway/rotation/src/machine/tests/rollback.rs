use super::*;

fn rolling_back(r: &Rotation) -> Option<(Step, RollbackReason)> {
    match r.phase() {
        Phase::RollingBack { from, reason } => Some((*from, reason.clone())),
        _ => None,
    }
}

#[test]
fn a_missed_announce_deadline_rolls_back_in_next_actions_and_in_tick() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(&mut r, [Event::Staged, acked("a")], t(2));
    assert_eq!(
        actions(&r, t(60)),
        [
            announce(&r, "b"),
            Action::PrintManual {
                peer: "m".to_owned()
            }
        ]
    );
    // Past the deadline the actions already start the rollback, before any tick.
    assert_eq!(actions(&r, t(61)), [Action::RestoreStore]);
    assert!(!r.tick(t(60), &timing()));
    assert!(r.tick(t(61), &timing()));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Announcing, RollbackReason::AnnounceTimeout))
    );
    assert_eq!(r.phase_since(), t(61));
    assert!(!r.tick(t(62), &timing()));
}

#[test]
fn a_refused_announcement_rolls_back_and_every_announced_peer_is_told() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(&mut r, [Event::Staged, acked("a")], t(2));
    feed(
        &mut r,
        [Event::AnnounceRefused {
            peer: "b".to_owned(),
        }],
        t(3),
    );
    let reason = RollbackReason::AnnounceRefused {
        peer: "b".to_owned(),
    };
    assert_eq!(rolling_back(&r), Some((Step::Announcing, reason.clone())));

    assert_eq!(actions(&r, t(3)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(4));
    assert_eq!(actions(&r, t(4)), [Action::UnstageInPlane]);
    feed(&mut r, [Event::Unstaged], t(5));
    // The peer that acked and the one that refused; the manual peer is the operator's.
    assert_eq!(actions(&r, t(5)), peer_action(tell_abort, &["a", "b"]));
    feed(&mut r, [told("a"), told("b")], t(6));
    assert_eq!(r.phase(), &Phase::RolledBack);
    assert_eq!(
        r.outcome(),
        Some(&Outcome::RolledBack {
            from: Step::Announcing,
            reason
        })
    );
    assert_eq!(r.next_actions(t(6), &timing()), [Action::Finished]);
}

#[test]
fn a_failed_next_store_rolls_back_without_telling_anyone() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStoreFailed], t(1));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Staging, RollbackReason::NextStoreFailed))
    );
    assert_eq!(actions(&r, t(1)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(2));
    assert_eq!(r.phase(), &Phase::RolledBack);
}

#[test]
fn a_failed_stage_rolls_back() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored, Event::StageFailed], t(1));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Announcing, RollbackReason::StageFailed))
    );
}

#[test]
fn a_failed_current_store_rolls_back_with_the_store_first() {
    let mut r = committing();
    feed(&mut r, [Event::CurrentStoreFailed], t(11));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Committing, RollbackReason::CurrentStoreFailed))
    );
    assert_eq!(actions(&r, t(11)), [Action::RestoreStore]);
    assert!(
        r.on(Event::Unstaged, t(11)).is_err(),
        "the plane waits for the store"
    );
    feed(&mut r, [Event::RolledBackStored], t(12));
    assert_eq!(actions(&r, t(12)), [Action::UnstageInPlane]);
}

#[test]
fn a_failed_promotion_restores_the_committed_store_then_unstages() {
    let mut r = committing();
    feed(&mut r, [Event::CurrentStored, Event::PromoteFailed], t(11));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Committing, RollbackReason::PromoteFailed))
    );
    assert_eq!(actions(&r, t(11)), [Action::RestoreStore]);
    feed(&mut r, [Event::RolledBackStored], t(12));
    assert_eq!(actions(&r, t(12)), [Action::UnstageInPlane]);
}

#[test]
fn a_missed_verify_deadline_restores_the_store_before_demoting_the_plane() {
    let mut r = verifying();
    feed(&mut r, [handshake("a"), handshake("m")], t(30));
    assert_eq!(r.deadline(&timing()), Some(t(80)));
    assert!(r.tick(t(80), &timing()));
    assert_eq!(
        rolling_back(&r),
        Some((Step::Verifying, RollbackReason::VerifyTimeout))
    );
    assert_eq!(actions(&r, t(80)), [Action::RestoreStore]);
    assert!(
        r.on(Event::Demoted, t(80)).is_err(),
        "the plane waits for the store"
    );
    feed(&mut r, [Event::RolledBackStored], t(81));
    assert_eq!(actions(&r, t(81)), [Action::DemoteInPlane]);
    feed(&mut r, [Event::Demoted], t(82));
    assert_eq!(r.plane(), PlaneState::OldOnly);
    assert_eq!(actions(&r, t(82)), peer_action(tell_abort, &["a", "b"]));
    feed(&mut r, [told("a"), told("b")], t(83));
    assert_eq!(r.phase(), &Phase::RolledBack);
}

#[test]
fn the_verify_deadline_no_longer_applies_once_every_handshake_is_in() {
    let mut r = verifying();
    feed(
        &mut r,
        [handshake("a"), handshake("b"), handshake("m")],
        t(30),
    );
    assert_eq!(r.deadline(&timing()), None);
    assert!(!r.tick(t(1000), &timing()));
    assert_eq!(r.phase(), &Phase::Verifying);
}

#[test]
fn the_operator_may_abort_until_the_commit_is_stored() {
    let abort = || Event::Abort {
        reason: "change freeze".to_owned(),
    };
    let aborted = RollbackReason::Aborted {
        reason: "change freeze".to_owned(),
    };

    let mut staging = rotation();
    feed(&mut staging, [abort()], t(1));
    assert_eq!(
        rolling_back(&staging),
        Some((Step::Staging, aborted.clone()))
    );

    let mut announcing = rotation();
    feed(&mut announcing, [Event::NextStored, abort()], t(1));
    assert_eq!(
        rolling_back(&announcing),
        Some((Step::Announcing, aborted.clone()))
    );

    let mut before_store = committing();
    feed(&mut before_store, [abort()], t(11));
    assert_eq!(
        rolling_back(&before_store),
        Some((Step::Committing, aborted))
    );
}

#[test]
fn an_abort_after_the_commit_is_stored_is_refused_as_committed() {
    let mut stored = committing();
    feed(&mut stored, [Event::CurrentStored], t(11));
    let mut verifying = verifying();
    for r in [&mut stored, &mut verifying] {
        let before = r.clone();
        let refusal = r.on(
            Event::Abort {
                reason: "x".to_owned(),
            },
            t(30),
        );
        assert_eq!(refusal, Err(Refusal::Committed));
        assert!(
            refusal
                .expect_err("refused")
                .to_string()
                .contains("committed")
        );
        assert_eq!(*r, before);
    }
}

#[test]
fn an_abort_while_rolling_back_or_finished_is_refused() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStoreFailed], t(1));
    let abort = || Event::Abort {
        reason: "x".to_owned(),
    };
    assert_eq!(r.on(abort(), t(2)), Err(Refusal::RollingBack));
    feed(&mut r, [Event::RolledBackStored], t(2));
    assert_eq!(r.on(abort(), t(3)), Err(Refusal::Finished));
}

#[test]
fn refusals_have_fixed_words() {
    assert_eq!(Refusal::Committed.as_str(), "committed");
    assert_eq!(
        Refusal::OutOfPhase {
            event: "acked",
            phase: "staging"
        }
        .as_str(),
        "out_of_phase"
    );
    assert_eq!(
        RollbackReason::Aborted {
            reason: "x".to_owned()
        }
        .as_str(),
        "aborted"
    );
}
