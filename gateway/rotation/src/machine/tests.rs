use super::*;

mod property;
mod rollback;

use crate::test_support::{key, t};

fn id() -> RotationId {
    RotationId::new("00000000000000aa").expect("valid id")
}

fn timing() -> Timing {
    Timing::default()
}

/// A rotation of `old` → `next` started at `t(0)` with channel peers `a`, `b` and manual
/// peer `m`.
fn rotation() -> Rotation {
    rotation_with(&[("a", false), ("b", false), ("m", true)])
}

fn rotation_with(peers: &[(&str, bool)]) -> Rotation {
    let participants = peers.iter().map(|(name, manual)| Participant {
        name: (*name).to_owned(),
        public_key: key(name),
        manual: *manual,
    });
    Rotation::new(id(), 7, key("old"), key("next"), participants, t(0)).expect("valid rotation")
}

/// The actions at `at`, without the trailing `Wait`.
fn actions(r: &Rotation, at: SystemTime) -> Vec<Action> {
    let mut list = r.next_actions(at, &timing());
    if let Some(Action::Wait { .. }) = list.last() {
        list.pop();
    }
    list
}

fn feed(r: &mut Rotation, events: impl IntoIterator<Item = Event>, at: SystemTime) {
    for event in events {
        let name = event.name();
        r.on(event, at)
            .unwrap_or_else(|refusal| panic!("{name} refused: {refusal}"));
    }
}

fn acked(peer: &str) -> Event {
    Event::Acked {
        peer: peer.to_owned(),
    }
}

fn confirmed(peer: &str) -> Event {
    Event::ManualConfirmed {
        peer: peer.to_owned(),
    }
}

fn handshake(peer: &str) -> Event {
    Event::HandshakeUnderNew {
        peer: peer.to_owned(),
    }
}

fn told(peer: &str) -> Event {
    Event::EndTold {
        peer: peer.to_owned(),
    }
}

fn announce(r: &Rotation, peer: &str) -> Action {
    Action::Announce {
        peer: peer.to_owned(),
        body: r.announce_body(peer).expect("known peer"),
    }
}

fn peer_action(kind: fn(String) -> Action, peers: &[&str]) -> Vec<Action> {
    peers.iter().map(|p| kind((*p).to_owned())).collect()
}

fn initiate(peer: String) -> Action {
    Action::Initiate { peer }
}

fn tell_complete(peer: String) -> Action {
    Action::TellComplete { peer }
}

fn tell_abort(peer: String) -> Action {
    Action::TellAbort { peer }
}

/// Drives `rotation()` to `Committing` at `t(10)`.
fn committing() -> Rotation {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(
        &mut r,
        [Event::Staged, acked("a"), acked("b"), confirmed("m")],
        t(10),
    );
    assert_eq!(r.phase(), &Phase::Committing);
    r
}

/// Drives `rotation()` to `Verifying` at `t(20)`.
fn verifying() -> Rotation {
    let mut r = committing();
    feed(&mut r, [Event::CurrentStored, Event::Promoted], t(20));
    assert_eq!(r.phase(), &Phase::Verifying);
    r
}

#[test]
fn a_rotation_needs_two_keys_a_sequence_and_unique_peers() {
    let p = |name: &str| Participant {
        name: name.to_owned(),
        public_key: key(name),
        manual: false,
    };
    let start = |seq, next, peers: Vec<Participant>| {
        Rotation::new(id(), seq, key("old"), next, peers, t(0))
    };
    assert_eq!(start(1, key("old"), vec![]), Err(StartError::SameKey));
    assert_eq!(start(0, key("next"), vec![]), Err(StartError::ZeroSequence));
    assert_eq!(
        start(1, key("next"), vec![p("a"), p("a")]),
        Err(StartError::DuplicatePeer("a".to_owned()))
    );
}

#[test]
fn a_new_rotation_only_stores_the_next_key() {
    let r = rotation();
    assert_eq!(r.phase(), &Phase::Staging);
    assert_eq!(
        r.next_actions(t(0), &timing()),
        [Action::StoreNext, Action::Wait { until: t(5) }]
    );
    assert_eq!(r.deadline(&timing()), None);
}

#[test]
fn once_stored_the_key_is_staged_announced_and_printed_for_manual_peers() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    assert_eq!(r.phase(), &Phase::Announcing);
    assert_eq!(r.store(), StoreState::NextStored);
    assert_eq!(
        actions(&r, t(1)),
        [
            Action::StageInPlane,
            announce(&r, "a"),
            announce(&r, "b"),
            Action::PrintManual {
                peer: "m".to_owned()
            },
        ]
    );
}

#[test]
fn the_announcement_binds_both_current_keys_the_sequence_and_the_id() {
    let body = rotation().announce_body("a").expect("known peer");
    assert_eq!(
        body,
        AnnounceBody {
            rotation_id: id(),
            sequence: 7,
            next_public_key: key("next"),
            sender_key: key("old"),
            receiver_key: key("a"),
        }
    );
    assert_eq!(rotation().announce_body("nobody"), None);
}

#[test]
fn acknowledged_peers_are_not_announced_again() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(&mut r, [Event::Staged, acked("a"), confirmed("m")], t(2));
    assert_eq!(actions(&r, t(3)), [announce(&r, "b")]);
}

#[test]
fn the_commit_waits_for_every_peer_and_the_staged_key() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(&mut r, [acked("a"), acked("b"), confirmed("m")], t(2));
    assert_eq!(r.phase(), &Phase::Announcing, "not staged yet");
    assert_eq!(actions(&r, t(2)), [Action::StageInPlane]);

    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    feed(&mut r, [Event::Staged, acked("a"), acked("b")], t(2));
    assert_eq!(r.phase(), &Phase::Announcing, "manual peer not confirmed");
    feed(&mut r, [confirmed("m")], t(3));
    assert_eq!(r.phase(), &Phase::Committing);
    assert_eq!(r.phase_since(), t(3));
}

#[test]
fn the_commit_stores_the_new_key_before_the_plane_switches() {
    let mut r = committing();
    assert_eq!(actions(&r, t(10)), [Action::StoreCurrent]);
    assert_eq!(
        r.on(Event::Promoted, t(11)),
        Err(Refusal::OutOfPhase {
            event: "promoted",
            phase: "committing"
        })
    );
    feed(&mut r, [Event::CurrentStored], t(11));
    assert_eq!(r.store(), StoreState::Committed);
    assert_eq!(actions(&r, t(11)), [Action::PromoteInPlane]);
    feed(&mut r, [Event::Promoted], t(12));
    assert_eq!(r.phase(), &Phase::Verifying);
    assert_eq!(r.plane(), PlaneState::Promoted);
}

#[test]
fn verifying_initiates_to_every_peer_and_drops_the_old_key_only_after_all_handshakes() {
    let mut r = verifying();
    assert_eq!(actions(&r, t(20)), peer_action(initiate, &["a", "b", "m"]));
    feed(&mut r, [handshake("a"), handshake("m")], t(21));
    assert_eq!(actions(&r, t(21)), peer_action(initiate, &["b"]));
    assert_eq!(
        r.on(Event::PreviousDropped, t(21)),
        Err(Refusal::OutOfPhase {
            event: "previous_dropped",
            phase: "verifying"
        })
    );
    feed(&mut r, [handshake("b")], t(22));
    let mut expected = vec![Action::DropPreviousInPlane];
    expected.extend(peer_action(tell_complete, &["a", "b"]));
    assert_eq!(actions(&r, t(22)), expected);
}

#[test]
fn a_verified_rotation_completes_once_dropped_and_every_announced_peer_is_told() {
    let mut r = verifying();
    feed(
        &mut r,
        [handshake("a"), handshake("b"), handshake("m")],
        t(21),
    );
    feed(&mut r, [Event::PreviousDropped, told("a")], t(22));
    assert_eq!(actions(&r, t(22)), peer_action(tell_complete, &["b"]));
    assert_eq!(r.on(told("m"), t(22)), Err(Refusal::ManualPeer));
    feed(&mut r, [told("b")], t(23));
    assert_eq!(r.phase(), &Phase::Complete);
    assert_eq!(r.outcome(), Some(&Outcome::Completed));
    assert!(r.is_finished());
    assert_eq!(r.next_actions(t(23), &timing()), [Action::Finished]);
    assert_eq!(r.on(told("a"), t(24)), Err(Refusal::Finished));
}

#[test]
fn a_rotation_without_peers_goes_straight_through() {
    let mut r = rotation_with(&[]);
    feed(&mut r, [Event::NextStored, Event::Staged], t(1));
    assert_eq!(r.phase(), &Phase::Committing);
    feed(&mut r, [Event::CurrentStored, Event::Promoted], t(2));
    assert_eq!(actions(&r, t(2)), [Action::DropPreviousInPlane]);
    feed(&mut r, [Event::PreviousDropped], t(3));
    assert_eq!(r.outcome(), Some(&Outcome::Completed));
}

#[test]
fn next_actions_is_idempotent_and_leaves_the_record_alone() {
    for r in [rotation(), committing(), verifying()] {
        let before = r.clone();
        let first = r.next_actions(t(30), &timing());
        assert_eq!(r.next_actions(t(30), &timing()), first);
        assert_eq!(r, before);
    }
}

#[test]
fn wait_is_the_next_retry_or_the_deadline_whichever_comes_first() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    let wait = |r: &Rotation, at| r.next_actions(at, &timing()).pop();
    assert_eq!(wait(&r, t(10)), Some(Action::Wait { until: t(15) }));
    assert_eq!(r.deadline(&timing()), Some(t(61)));
    assert_eq!(wait(&r, t(58)), Some(Action::Wait { until: t(61) }));
}

#[test]
fn events_that_do_not_fit_are_refused_and_change_nothing() {
    let cases: Vec<(Rotation, Event, Refusal)> = vec![
        (
            rotation(),
            acked("a"),
            Refusal::OutOfPhase {
                event: "acked",
                phase: "staging",
            },
        ),
        (
            rotation(),
            Event::CurrentStored,
            Refusal::OutOfPhase {
                event: "current_stored",
                phase: "staging",
            },
        ),
        (
            committing(),
            acked("a"),
            Refusal::OutOfPhase {
                event: "acked",
                phase: "committing",
            },
        ),
        (
            committing(),
            Event::NextStored,
            Refusal::OutOfPhase {
                event: "next_stored",
                phase: "committing",
            },
        ),
        (
            verifying(),
            told("a"),
            Refusal::OutOfPhase {
                event: "end_told",
                phase: "verifying",
            },
        ),
        (
            verifying(),
            Event::RolledBackStored,
            Refusal::OutOfPhase {
                event: "rolled_back_stored",
                phase: "verifying",
            },
        ),
        (verifying(), handshake("zz"), Refusal::UnknownPeer),
    ];
    for (mut r, event, refusal) in cases {
        let before = r.clone();
        assert_eq!(r.on(event, t(40)), Err(refusal));
        assert_eq!(r, before);
    }
}

#[test]
fn peers_answer_on_their_own_path() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored], t(1));
    let before = r.clone();
    assert_eq!(r.on(acked("m"), t(2)), Err(Refusal::ManualPeer));
    assert_eq!(r.on(confirmed("a"), t(2)), Err(Refusal::NotManual));
    assert_eq!(r.on(acked("zz"), t(2)), Err(Refusal::UnknownPeer));
    assert_eq!(
        r.on(
            Event::AnnounceRefused {
                peer: "m".to_owned()
            },
            t(2)
        ),
        Err(Refusal::ManualPeer)
    );
    assert_eq!(r, before);
}

#[test]
fn repeated_events_are_accepted_once() {
    let mut r = rotation();
    feed(&mut r, [Event::NextStored, acked("a")], t(1));
    let after_first = r.clone();
    feed(&mut r, [acked("a")], t(2));
    assert_eq!(r, after_first);
}

#[test]
fn the_record_round_trips_through_json_with_keys_in_base64() {
    let mut r = verifying();
    feed(&mut r, [handshake("a")], t(21));
    let json = serde_json::to_string(&r).expect("serializes");
    assert!(json.contains(&key("next").to_base64()), "{json}");
    assert_eq!(serde_json::from_str::<Rotation>(&json).expect("parses"), r);

    let mut rolled = rotation();
    feed(
        &mut rolled,
        [Event::Abort {
            reason: "maintenance".to_owned(),
        }],
        t(1),
    );
    let json = serde_json::to_string(&rolled).expect("serializes");
    assert!(json.contains("\"kind\":\"aborted\""), "{json}");
    assert_eq!(
        serde_json::from_str::<Rotation>(&json).expect("parses"),
        rolled
    );
}

#[test]
fn a_participant_is_taken_from_its_readiness() {
    let readiness = PeerReadiness {
        name: "lux".to_owned(),
        public_key: key("lux"),
        channel: crate::schedule::Channel::Plain,
        tunnel_up: true,
        rotating: false,
        peer_due: false,
        manual: true,
    };
    assert_eq!(
        Participant::from(&readiness),
        Participant {
            name: "lux".to_owned(),
            public_key: key("lux"),
            manual: true
        }
    );
}
