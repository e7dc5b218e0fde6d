use std::time::Duration;

use super::*;

const T0: SystemTime = SystemTime::UNIX_EPOCH;
const KEEPALIVE: u16 = 25;
/// The production rule's limit with keepalive 25: 180 + 25 + 5 s.
const LIMIT: u64 = 210;

fn at(secs: u64) -> SystemTime {
    T0 + Duration::from_secs(secs)
}

fn key(n: u8) -> PeerId {
    PeerId::file(format!("{n}.yaml"), format!("peer-{n}"))
}

fn peer(n: u8, name: &str, last_handshake: Option<u64>) -> Observation {
    Observation {
        id: key(n),
        name: name.to_owned(),
        activity: PeerActivity {
            last_handshake: last_handshake.map(at),
            last_receive: None,
            keepalive: KEEPALIVE,
        },
    }
}

fn up(name: &str) -> Transition {
    Transition {
        name: name.to_owned(),
        up: true,
    }
}

fn down(name: &str) -> Transition {
    Transition {
        name: name.to_owned(),
        up: false,
    }
}

/// Runs `observe` over a sequence of (time, peers) and returns the transitions of each step.
fn walk(steps: &[(u64, Vec<Observation>)]) -> Vec<Vec<Transition>> {
    let mut states = PeerStates::default();
    steps
        .iter()
        .map(|(now, peers)| {
            let (next, transitions) = observe(&states, peers, &Liveness::default(), at(*now));
            states = next;
            transitions
        })
        .collect()
}

#[test]
fn a_peer_that_was_never_up_is_not_reported_down_at_start_up() {
    let steps = walk(&[
        (1000, vec![peer(1, "b", None)]),
        (1001, vec![peer(1, "b", None)]),
    ]);
    assert_eq!(steps, [vec![], vec![]]);
}

#[test]
fn a_peer_up_at_its_first_observation_is_reported_up() {
    let steps = walk(&[(1000, vec![peer(1, "b", Some(990))])]);
    assert_eq!(steps, [vec![up("b")]]);
}

#[test]
fn coming_up_and_going_down_are_reported_once_each_at_the_change() {
    let mut steps = Vec::new();
    // Never handshaked, then a handshake at 1005 and no other until the rule's limit passes.
    for now in 1000..1005 {
        steps.push((now, vec![peer(1, "b", None)]));
    }
    for now in 1005..=(1005 + LIMIT + 5) {
        steps.push((now, vec![peer(1, "b", Some(1005))]));
    }
    let transitions = walk(&steps);
    let lines: Vec<(u64, &Transition)> = steps
        .iter()
        .zip(&transitions)
        .flat_map(|((now, _), t)| t.iter().map(move |t| (*now, t)))
        .collect();
    assert_eq!(
        lines,
        [(1005, &up("b")), (1005 + LIMIT + 1, &down("b"))],
        "one line at each change, at the second the rule changes its verdict"
    );
}

#[test]
fn a_steady_state_logs_nothing() {
    // A healthy idle tunnel re-handshaking every 200 s stays up for an hour: one line.
    let steps: Vec<(u64, Vec<Observation>)> = (0..3600)
        .map(|now| (now, vec![peer(1, "b", Some(now - now % 200))]))
        .collect();
    let transitions: Vec<Transition> = walk(&steps).into_iter().flatten().collect();
    assert_eq!(transitions, [up("b")]);
}

#[test]
fn a_peer_that_comes_back_is_reported_up_again() {
    let steps = walk(&[
        (1000, vec![peer(1, "b", Some(1000))]),
        (1000 + LIMIT + 1, vec![peer(1, "b", Some(1000))]),
        (1300, vec![peer(1, "b", Some(1299))]),
    ]);
    assert_eq!(steps, [vec![up("b")], vec![down("b")], vec![up("b")]]);
}

#[test]
fn peers_are_told_apart_by_key_and_named_as_declared_now() {
    let steps = walk(&[
        (1000, vec![peer(1, "b", Some(1000)), peer(2, "c", None)]),
        // c comes up; b is renamed (same key) and then goes down under its new name.
        (
            1001,
            vec![peer(1, "b-east", Some(1000)), peer(2, "c", Some(1001))],
        ),
        (
            1000 + LIMIT + 1,
            vec![peer(1, "b-east", Some(1000)), peer(2, "c", Some(1100))],
        ),
    ]);
    assert_eq!(steps, [vec![up("b")], vec![up("c")], vec![down("b-east")]]);
}

#[test]
fn a_removed_peer_leaves_the_state_and_a_new_one_with_its_name_starts_fresh() {
    let liveness = Liveness::default();
    let (states, _) = observe(
        &PeerStates::default(),
        &[peer(1, "b", Some(1000)), peer(2, "c", Some(1000))],
        &liveness,
        at(1000),
    );
    assert_eq!(states.len(), 2);
    // b removed: no line (the driver logs the removal itself), and it is forgotten.
    let (states, transitions) = observe(&states, &[peer(2, "c", Some(1000))], &liveness, at(1001));
    assert_eq!(transitions, []);
    assert_eq!(states.is_up(&key(1)), None);
    assert_eq!(states.is_up(&key(2)), Some(true));
    // A new key under the old name, not up yet: nothing, as for any peer never up.
    let (states, transitions) = observe(
        &states,
        &[peer(3, "b", None), peer(2, "c", Some(1000))],
        &liveness,
        at(1002),
    );
    assert_eq!(transitions, []);
    assert_eq!(states.is_up(&key(3)), Some(false));
    // Everything removed: the state is empty.
    let (states, transitions) = observe(&states, &[], &liveness, at(1003));
    assert_eq!(transitions, []);
    assert!(states.is_empty());
}

#[test]
fn the_test_receive_window_takes_part_in_the_verdict() {
    let liveness = Liveness {
        receive_window: Some(Duration::from_secs(3)),
    };
    let observation = |last_receive: u64| Observation {
        id: key(1),
        name: "b".to_owned(),
        activity: PeerActivity {
            last_handshake: Some(at(1000)),
            last_receive: Some(at(last_receive)),
            keepalive: 1,
        },
    };
    let (states, first) = observe(
        &PeerStates::default(),
        &[observation(1000)],
        &liveness,
        at(1001),
    );
    let (states, quiet) = observe(&states, &[observation(1000)], &liveness, at(1003));
    let (_, cut) = observe(&states, &[observation(1000)], &liveness, at(1004));
    assert_eq!(
        (first, quiet, cut),
        (vec![up("b")], vec![], vec![down("b")])
    );
}
