//! Random drives: adapters performing the actions asked for, arbitrary (often unfitting)
//! events and time passing, with the machine's rules checked after every step.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    /// Perform the n-th action asked for, successfully.
    Perform(usize),
    /// Feed an arbitrary event.
    Feed(Event),
    /// Let time pass.
    Wait(u64),
}

fn peer_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("m"), Just("zz")].prop_map(str::to_owned)
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::NextStored),
        Just(Event::NextStoreFailed),
        Just(Event::Staged),
        Just(Event::StageFailed),
        peer_name().prop_map(|peer| Event::Acked { peer }),
        peer_name().prop_map(|peer| Event::ManualConfirmed { peer }),
        peer_name().prop_map(|peer| Event::AnnounceRefused { peer }),
        Just(Event::CurrentStored),
        Just(Event::CurrentStoreFailed),
        Just(Event::Promoted),
        Just(Event::PromoteFailed),
        peer_name().prop_map(|peer| Event::HandshakeUnderNew { peer }),
        Just(Event::PreviousDropped),
        peer_name().prop_map(|peer| Event::EndTold { peer }),
        Just(Event::RolledBackStored),
        Just(Event::Demoted),
        Just(Event::Unstaged),
        Just(Event::Abort {
            reason: "x".to_owned()
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..4).prop_map(Step::Perform),
        3 => event().prop_map(Step::Feed),
        1 => (0u64..40).prop_map(Step::Wait),
    ]
}

/// The event reporting that `action` succeeded, if it has one.
fn success(action: &Action) -> Option<Event> {
    let peer = |p: &String| p.clone();
    Some(match action {
        Action::StoreNext => Event::NextStored,
        Action::StageInPlane => Event::Staged,
        Action::Announce { peer: p, .. } => Event::Acked { peer: peer(p) },
        Action::PrintManual { peer: p } => Event::ManualConfirmed { peer: peer(p) },
        Action::StoreCurrent => Event::CurrentStored,
        Action::PromoteInPlane => Event::Promoted,
        Action::Initiate { peer: p } => Event::HandshakeUnderNew { peer: peer(p) },
        Action::DropPreviousInPlane => Event::PreviousDropped,
        Action::TellComplete { peer: p } | Action::TellAbort { peer: p } => {
            Event::EndTold { peer: peer(p) }
        }
        Action::RestoreStore => Event::RolledBackStored,
        Action::DemoteInPlane => Event::Demoted,
        Action::UnstageInPlane => Event::Unstaged,
        Action::Wait { .. } | Action::Finished => return None,
    })
}

/// Checks the rules that hold whatever happened.
fn check(r: &Rotation, list: &[Action]) {
    let all_acked = r.peers().values().all(|p| p.acked);
    let all_handshook = r.peers().values().all(|p| p.handshake_under_new);
    for action in list {
        match action {
            Action::StageInPlane | Action::Announce { .. } | Action::PrintManual { .. } => {
                assert_eq!(
                    r.store(),
                    StoreState::NextStored,
                    "{action:?} before the next key is stored"
                );
            }
            Action::StoreCurrent | Action::PromoteInPlane => {
                assert!(all_acked, "commit before every peer acked");
            }
            Action::DropPreviousInPlane | Action::TellComplete { .. } => {
                assert!(all_handshook, "{action:?} before every handshake");
            }
            Action::DemoteInPlane | Action::UnstageInPlane | Action::TellAbort { .. } => {
                assert_eq!(
                    r.store(),
                    StoreState::Restored,
                    "{action:?} before the store is restored"
                );
            }
            _ => {}
        }
        if let Action::TellAbort { peer } | Action::TellComplete { peer } = action {
            assert!(
                !r.peers()[peer].manual,
                "a manual peer is told over the channel"
            );
        }
    }
    if matches!(
        r.phase(),
        Phase::Committing | Phase::Verifying | Phase::Complete
    ) {
        assert!(all_acked, "{:?} without every ack", r.phase());
    }
    if r.plane() == PlaneState::NewOnly && !matches!(r.phase(), Phase::RollingBack { .. }) {
        assert!(all_handshook, "old key dropped before every handshake");
    }
    match r.outcome() {
        Some(Outcome::Completed) => {
            assert_eq!(
                (r.store(), r.plane()),
                (StoreState::Committed, PlaneState::NewOnly)
            );
        }
        Some(Outcome::RolledBack { .. }) => {
            assert_eq!(
                (r.store(), r.plane()),
                (StoreState::Restored, PlaneState::OldOnly)
            );
        }
        None => assert!(!r.is_finished()),
    }
}

proptest! {
    #[test]
    fn the_rules_hold_whatever_the_adapters_report(steps in prop::collection::vec(step(), 0..80)) {
        let timing = timing();
        let mut r = rotation();
        let mut now = t(0);
        for step in steps {
            r.tick(now, &timing);
            let list = r.next_actions(now, &timing);
            prop_assert_eq!(&r.next_actions(now, &timing), &list);
            check(&r, &list);
            let event = match step {
                Step::Perform(n) => list.get(n).and_then(success),
                Step::Feed(event) => Some(event),
                Step::Wait(secs) => {
                    now += Duration::from_secs(secs);
                    None
                }
            };
            if let Some(event) = event {
                let before = r.clone();
                let committed = r.store() == StoreState::Committed;
                let is_abort = matches!(event, Event::Abort { .. });
                if r.on(event, now).is_err() {
                    prop_assert_eq!(&r, &before, "a refused event changed the record");
                } else {
                    prop_assert!(!(committed && is_abort), "an abort after the commit was taken");
                }
            }
        }
    }

    #[test]
    fn performing_every_action_in_time_completes(order in prop::collection::vec(0usize..4, 0..60)) {
        let timing = timing();
        let mut r = rotation();
        let mut picks = order.into_iter();
        for _ in 0..100 {
            let list = r.next_actions(t(0), &timing);
            if list == [Action::Finished] {
                break;
            }
            let performable: Vec<Event> = list.iter().filter_map(success).collect();
            let n = picks.next().unwrap_or(0) % performable.len().max(1);
            let event = performable.get(n).cloned().expect("something to do");
            r.on(event, t(0)).expect("a successful action fits");
        }
        prop_assert_eq!(r.outcome(), Some(&Outcome::Completed));
    }
}
