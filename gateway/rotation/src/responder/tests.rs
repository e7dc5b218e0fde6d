use super::*;

use crate::test_support::key;

fn rid(n: u8) -> RotationId {
    RotationId::from_bytes([0, 0, 0, 0, 0, 0, 0, n])
}

/// Peer `p` (key `p-old`) announcing `p-next` to us (`us`) in rotation `n`, sequence `n`.
fn body(n: u8) -> AnnounceBody {
    AnnounceBody {
        rotation_id: rid(n),
        sequence: u64::from(n),
        next_public_key: key("p-next"),
        sender_key: key("p-old"),
        receiver_key: key("us"),
    }
}

fn fresh() -> PeerRotationState {
    PeerRotationState::new(key("p-old"))
}

fn announced(n: u8) -> PeerRotationState {
    on_announce(&fresh(), &body(n), &key("us"))
        .expect("accepted")
        .0
}

#[test]
fn an_announcement_bound_to_both_keys_is_recorded_and_acked() {
    let (state, ack) = on_announce(&fresh(), &body(1), &key("us")).expect("accepted");
    assert_eq!(state.active_public_key(), &key("p-old"));
    assert_eq!(state.next_public_key(), Some(&key("p-next")));
    assert_eq!(state.rotation_id(), Some(&rid(1)));
    assert_eq!(state.last_sequence(), 1);
    assert_eq!(
        ack,
        Ack {
            rotation_id: rid(1),
            sequence: 1,
            next_public_key: key("p-next")
        }
    );
    assert!(ack.confirms(&body(1)));
    assert!(!ack.confirms(&body(2)));
}

#[test]
fn the_same_announcement_repeated_is_taken_again() {
    let state = announced(1);
    let (again, ack) = on_announce(&state, &body(1), &key("us")).expect("accepted");
    assert_eq!(again, state);
    assert!(ack.confirms(&body(1)));
}

#[test]
fn an_announcement_from_another_sender_key_is_refused() {
    let forged = AnnounceBody {
        sender_key: key("intruder"),
        ..body(1)
    };
    assert_eq!(
        on_announce(&fresh(), &forged, &key("us")),
        Err(AnnounceRefusal::SenderKey)
    );
}

#[test]
fn an_announcement_for_another_receiver_key_is_refused() {
    assert_eq!(
        on_announce(&fresh(), &body(1), &key("us-rotated")),
        Err(AnnounceRefusal::ReceiverKey)
    );
}

#[test]
fn a_sequence_that_does_not_advance_is_refused() {
    let state = on_complete(&announced(5), &rid(5)).expect("completed");
    let replay = AnnounceBody {
        sender_key: key("p-next"),
        next_public_key: key("p-third"),
        ..body(5)
    };
    assert_eq!(
        on_announce(&state, &replay, &key("us")),
        Err(AnnounceRefusal::StaleSequence)
    );
    let older = AnnounceBody {
        rotation_id: rid(9),
        sequence: 4,
        ..replay
    };
    assert_eq!(
        on_announce(&state, &older, &key("us")),
        Err(AnnounceRefusal::StaleSequence)
    );
}

#[test]
fn an_aborted_announcement_cannot_be_replayed() {
    let state = on_abort(&announced(3), &rid(3)).expect("aborted");
    assert_eq!(state.next_public_key(), None);
    assert_eq!(
        on_announce(&state, &body(3), &key("us")),
        Err(AnnounceRefusal::StaleSequence)
    );
    let next_attempt = AnnounceBody {
        rotation_id: rid(4),
        sequence: 4,
        ..body(3)
    };
    assert!(on_announce(&state, &next_attempt, &key("us")).is_ok());
}

#[test]
fn announcing_the_active_key_is_refused() {
    let same = AnnounceBody {
        next_public_key: key("p-old"),
        ..body(1)
    };
    assert_eq!(
        on_announce(&fresh(), &same, &key("us")),
        Err(AnnounceRefusal::NextIsActive)
    );
}

#[test]
fn another_rotation_is_refused_while_one_is_pending() {
    let state = announced(1);
    let other = AnnounceBody {
        rotation_id: rid(2),
        sequence: 2,
        ..body(1)
    };
    assert_eq!(
        on_announce(&state, &other, &key("us")),
        Err(AnnounceRefusal::OtherPending)
    );
}

#[test]
fn the_pending_id_with_another_key_or_sequence_is_a_conflict() {
    let state = announced(1);
    let other_key = AnnounceBody {
        next_public_key: key("p-other"),
        ..body(1)
    };
    assert_eq!(
        on_announce(&state, &other_key, &key("us")),
        Err(AnnounceRefusal::Conflict)
    );
    let other_sequence = AnnounceBody {
        sequence: 2,
        ..body(1)
    };
    assert_eq!(
        on_announce(&state, &other_sequence, &key("us")),
        Err(AnnounceRefusal::Conflict)
    );
}

#[test]
fn complete_makes_the_next_key_active() {
    let state = on_complete(&announced(1), &rid(1)).expect("completed");
    assert_eq!(state.active_public_key(), &key("p-next"));
    assert_eq!(state.next_public_key(), None);
    assert_eq!(state.rotation_id(), None);
    assert_eq!(state.last_sequence(), 1);
    assert_eq!(
        state.ended(),
        Some(&Ended {
            rotation_id: rid(1),
            end: End::Completed
        })
    );
    assert_eq!(accepted_keys(&state), (key("p-next"), None));
}

#[test]
fn abort_discards_the_next_key() {
    let state = on_abort(&announced(1), &rid(1)).expect("aborted");
    assert_eq!(accepted_keys(&state), (key("p-old"), None));
    assert_eq!(state.last_sequence(), 1);
}

#[test]
fn both_keys_are_accepted_while_a_rotation_is_pending() {
    assert_eq!(accepted_keys(&fresh()), (key("p-old"), None));
    assert_eq!(
        accepted_keys(&announced(1)),
        (key("p-old"), Some(key("p-next")))
    );
}

#[test]
fn an_end_for_an_unknown_rotation_is_refused() {
    assert_eq!(
        on_complete(&fresh(), &rid(1)),
        Err(EndRefusal::UnknownRotation)
    );
    assert_eq!(
        on_abort(&announced(1), &rid(2)),
        Err(EndRefusal::UnknownRotation)
    );
}

#[test]
fn the_same_end_repeated_is_taken_again_and_the_other_end_is_refused() {
    let completed = on_complete(&announced(1), &rid(1)).expect("completed");
    assert_eq!(on_complete(&completed, &rid(1)), Ok(completed.clone()));
    assert_eq!(
        on_abort(&completed, &rid(1)),
        Err(EndRefusal::EndedOtherwise)
    );
    let aborted = on_abort(&announced(1), &rid(1)).expect("aborted");
    assert_eq!(on_abort(&aborted, &rid(1)), Ok(aborted.clone()));
    assert_eq!(
        on_complete(&aborted, &rid(1)),
        Err(EndRefusal::EndedOtherwise)
    );
}

#[test]
fn refusals_are_fixed_words_that_never_echo_the_input() {
    let refusals = [
        AnnounceRefusal::SenderKey,
        AnnounceRefusal::ReceiverKey,
        AnnounceRefusal::StaleSequence,
        AnnounceRefusal::Conflict,
        AnnounceRefusal::OtherPending,
        AnnounceRefusal::NextIsActive,
    ];
    let words: std::collections::BTreeSet<&str> = refusals.iter().map(|r| r.as_str()).collect();
    assert_eq!(words.len(), refusals.len());
    for refusal in refusals {
        let text = refusal.to_string();
        assert!(!text.contains(&key("p-old").to_base64()), "{text}");
        assert!(
            refusal
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
    }
    assert_eq!(EndRefusal::UnknownRotation.as_str(), "unknown_rotation");
}

#[test]
fn the_state_round_trips_through_json_with_keys_in_base64() {
    for state in [
        fresh(),
        announced(1),
        on_complete(&announced(1), &rid(1)).expect("completed"),
    ] {
        let json = serde_json::to_string(&state).expect("serializes");
        assert_eq!(
            serde_json::from_str::<PeerRotationState>(&json).expect("parses"),
            state
        );
    }
    let json = serde_json::to_string(&announced(1)).expect("serializes");
    assert!(json.contains(&key("p-next").to_base64()), "{json}");
}

#[test]
fn a_minimal_stored_state_reads_with_nothing_pending() {
    let json = format!("{{\"active_public_key\":\"{}\"}}", key("p-old").to_base64());
    let state: PeerRotationState = serde_json::from_str(&json).expect("parses");
    assert_eq!(state, fresh());
}

#[test]
fn the_announcement_and_ack_bodies_round_trip_through_json() {
    let json = serde_json::to_string(&body(1)).expect("serializes");
    assert_eq!(
        serde_json::from_str::<AnnounceBody>(&json).expect("parses"),
        body(1)
    );
    let (_, ack) = on_announce(&fresh(), &body(1), &key("us")).expect("accepted");
    let json = serde_json::to_string(&ack).expect("serializes");
    assert_eq!(serde_json::from_str::<Ack>(&json).expect("parses"), ack);
    // Unknown fields (later additions) are ignored, as the control channel requires.
    let mut value: serde_json::Value = serde_json::to_value(body(1)).expect("value");
    value["later"] = serde_json::Value::Bool(true);
    assert_eq!(
        serde_json::from_value::<AnnounceBody>(value).expect("parses"),
        body(1)
    );
}

/// Completes rotation `n` of a peer whose active key is `from`, to the key named `to`.
fn rotated(state: &PeerRotationState, n: u8, to: &str) -> PeerRotationState {
    let body = AnnounceBody {
        rotation_id: rid(n),
        sequence: u64::from(n),
        next_public_key: key(to),
        sender_key: *state.active_public_key(),
        receiver_key: key("us"),
    };
    let (announced, _) = on_announce(state, &body, &key("us")).expect("accepted");
    on_complete(&announced, &rid(n)).expect("completed")
}

#[test]
fn a_declaration_left_on_a_retired_key_means_the_peer_as_it_runs_now() {
    let state = rotated(&fresh(), 1, "p-next");
    assert_eq!(state.retired_keys(), [key("p-old")]);
    assert_eq!(
        declared(&state, &key("p-old")),
        Declared::Outdated {
            active: key("p-next")
        }
    );
    assert_eq!(
        declared(&state, &key("p-old")).running_key(key("p-old")),
        key("p-next"),
        "reconciling keeps the rotated key, never the declared old one"
    );
    assert_eq!(declared(&state, &key("p-next")), Declared::Current);
    // Two rotations later a declaration never updated still means the same peer.
    let state = rotated(&rotated(&state, 2, "p-3"), 3, "p-4");
    assert_eq!(
        state.retired_keys(),
        [key("p-old"), key("p-next"), key("p-3")]
    );
    assert_eq!(
        declared(&state, &key("p-old")).running_key(key("p-old")),
        key("p-4")
    );
}

#[test]
fn a_declaration_naming_a_key_the_peer_never_held_wins() {
    let state = rotated(&fresh(), 1, "p-next");
    assert_eq!(declared(&state, &key("operator")), Declared::New);
    assert_eq!(
        declared(&state, &key("operator")).running_key(key("operator")),
        key("operator")
    );
    // A pending rotation's next key is not retired, nor active: declaring it is new.
    let pending = on_announce(
        &state,
        &AnnounceBody {
            rotation_id: rid(2),
            sequence: 2,
            next_public_key: key("p-3"),
            sender_key: key("p-next"),
            receiver_key: key("us"),
        },
        &key("us"),
    )
    .expect("accepted")
    .0;
    assert_eq!(declared(&pending, &key("p-3")), Declared::New);
    assert_eq!(
        declared(&pending, &key("p-old")),
        Declared::Outdated {
            active: key("p-next")
        }
    );
}

#[test]
fn an_aborted_rotation_retires_nothing_and_the_history_is_bounded() {
    let aborted = on_abort(&announced(1), &rid(1)).expect("aborted");
    assert!(aborted.retired_keys().is_empty());
    let mut state = fresh();
    for n in 1..=20u8 {
        state = rotated(&state, n, &format!("p-{n}"));
    }
    assert_eq!(state.retired_keys().len(), MAX_RETIRED_KEYS);
    assert_eq!(state.retired_keys().last(), Some(&key("p-19")));
    assert_eq!(declared(&state, &key("p-old")), Declared::New, "forgotten");
}

#[test]
fn a_stored_state_with_too_many_retired_keys_is_refused() {
    let mut state = fresh();
    for n in 1..=3u8 {
        state = rotated(&state, n, &format!("p-{n}"));
    }
    let json = serde_json::to_string(&state).expect("json");
    assert_eq!(
        serde_json::from_str::<PeerRotationState>(&json).expect("round trip"),
        state
    );
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("value");
    value["retired"] = serde_json::Value::Array(
        (0..=MAX_RETIRED_KEYS)
            .map(|_| serde_json::Value::String(key("x").to_base64()))
            .collect(),
    );
    assert!(serde_json::from_value::<PeerRotationState>(value).is_err());
}
