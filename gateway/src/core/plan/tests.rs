use std::collections::BTreeSet;
use std::net::SocketAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn key(name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (slot, b) in bytes.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}

fn id(name: &str) -> PeerId {
    PeerId::file(format!("{name}.yaml"), name)
}

/// The peer declared as `name`, with the key named `name` too.
fn peer(name: &str, cidr: &str) -> PeerConfig {
    PeerConfig {
        public_key: key(name),
        endpoint: Some("192.0.2.9:51820".parse().expect("addr")),
        allowed_ips: BTreeSet::from([cidr.parse::<IpNet>().expect("cidr")]),
        persistent_keepalive: 25,
        preshared_key: None,
    }
}

/// Peers declared under the name of their key.
fn map(peers: impl IntoIterator<Item = (&'static str, PeerConfig)>) -> PeerMap {
    peers.into_iter().map(|(n, p)| (id(n), p)).collect()
}

fn declared(peers: impl IntoIterator<Item = (&'static str, PeerConfig)>) -> Observed {
    Observed {
        declared: map(peers),
        undeclared: BTreeMap::new(),
    }
}

fn change(name: &str, op: Op) -> Change {
    Change {
        peer: Some(id(name)),
        op,
    }
}

#[test]
fn new_peer_is_upserted() {
    let desired = map([("a", peer("a", "10.1.0.0/16"))]);
    assert_eq!(
        plan(&desired, &Observed::default()),
        [change("a", Op::UpsertPeer(peer("a", "10.1.0.0/16")))]
    );
}

#[test]
fn undeclared_peer_is_removed_before_upserts() {
    let desired = map([("b", peer("b", "10.1.0.0/16"))]);
    let observed = Observed {
        declared: PeerMap::new(),
        undeclared: [(key("a"), peer("a", "10.1.0.0/16"))].into(),
    };
    assert_eq!(
        plan(&desired, &observed),
        [
            Change {
                peer: None,
                op: Op::RemovePeer(key("a"))
            },
            change("b", Op::UpsertPeer(peer("b", "10.1.0.0/16")))
        ]
    );
}

#[test]
fn a_declaration_that_is_gone_removes_its_peer() {
    let observed = declared([("a", peer("a", "10.1.0.0/16"))]);
    assert_eq!(
        plan(&PeerMap::new(), &observed),
        [change("a", Op::RemovePeer(key("a")))]
    );
}

#[test]
fn changed_allowed_ips_are_upserted() {
    let desired = map([("a", peer("a", "10.2.0.0/16"))]);
    let observed = declared([("a", peer("a", "10.1.0.0/16"))]);
    assert_eq!(
        plan(&desired, &observed),
        [change("a", Op::UpsertPeer(peer("a", "10.2.0.0/16")))]
    );
}

#[test]
fn a_declared_peer_whose_key_changed_gets_its_key_replaced() {
    let mut rotated = peer("a", "10.1.0.0/16");
    rotated.public_key = key("a2");
    let desired = map([("a", rotated.clone())]);
    let observed = declared([("a", peer("a", "10.1.0.0/16"))]);
    let ops = plan(&desired, &observed);
    assert_eq!(
        ops,
        [change(
            "a",
            Op::ReplaceKey {
                old: key("a"),
                config: rotated
            }
        )]
    );
    assert!(plan(&desired, &apply(&observed, &ops)).is_empty());
}

#[test]
fn a_key_given_up_by_a_removed_peer_can_be_taken_by_replacement() {
    // b's declaration is gone; a takes b's old key in the same pass.
    let mut rotated = peer("a", "10.1.0.0/16");
    rotated.public_key = key("b");
    let desired = map([("a", rotated.clone())]);
    let observed = declared([
        ("a", peer("a", "10.1.0.0/16")),
        ("b", peer("b", "10.2.0.0/16")),
    ]);
    assert_eq!(
        plan(&desired, &observed),
        [
            change("b", Op::RemovePeer(key("b"))),
            change(
                "a",
                Op::ReplaceKey {
                    old: key("a"),
                    config: rotated
                }
            )
        ]
    );
}

#[test]
fn a_key_given_up_by_a_replacement_is_taken_after_it() {
    // a rotates away from its key; a new declaration c takes the old one.
    let mut rotated = peer("a", "10.1.0.0/16");
    rotated.public_key = key("a2");
    let mut newcomer = peer("c", "10.3.0.0/16");
    newcomer.public_key = key("a");
    let desired = map([("a", rotated.clone()), ("c", newcomer.clone())]);
    let observed = declared([("a", peer("a", "10.1.0.0/16"))]);
    assert_eq!(
        plan(&desired, &observed),
        [
            change(
                "a",
                Op::ReplaceKey {
                    old: key("a"),
                    config: rotated
                }
            ),
            change("c", Op::UpsertPeer(newcomer))
        ]
    );
}

#[test]
fn two_peers_swapping_keys_are_removed_and_added() {
    let mut a = peer("a", "10.1.0.0/16");
    a.public_key = key("b");
    let mut b = peer("b", "10.2.0.0/16");
    b.public_key = key("a");
    let desired = map([("a", a.clone()), ("b", b.clone())]);
    let observed = declared([
        ("a", peer("a", "10.1.0.0/16")),
        ("b", peer("b", "10.2.0.0/16")),
    ]);
    let ops = plan(&desired, &observed);
    assert_eq!(
        ops,
        [
            change("a", Op::RemovePeer(key("a"))),
            change("b", Op::RemovePeer(key("b"))),
            change("a", Op::UpsertPeer(a)),
            change("b", Op::UpsertPeer(b)),
        ]
    );
    assert!(plan(&desired, &apply(&observed, &ops)).is_empty());
}

#[test]
fn changed_preshared_key_is_upserted() {
    let mut want = peer("a", "10.1.0.0/16");
    want.preshared_key = Some(crate::core::psk::PresharedKey::from_bytes([1; 32]));
    let have = peer("a", "10.1.0.0/16");
    assert_eq!(
        plan(&map([("a", want.clone())]), &declared([("a", have)])),
        [change("a", Op::UpsertPeer(want.clone()))]
    );
    assert!(plan(&map([("a", want.clone())]), &declared([("a", want)])).is_empty());
}

#[test]
fn passive_peer_ignores_learned_endpoint() {
    let mut want = peer("a", "10.1.0.0/16");
    want.endpoint = None;
    let mut have = want.clone();
    have.endpoint = Some("198.51.100.7:4000".parse::<SocketAddr>().expect("addr"));
    assert!(plan(&map([("a", want)]), &declared([("a", have)])).is_empty());
}

#[test]
fn matching_state_needs_nothing() {
    let state = [
        ("a", peer("a", "10.1.0.0/16")),
        ("b", peer("b", "10.2.0.0/16")),
    ];
    assert!(plan(&map(state.clone()), &declared(state)).is_empty());
}

#[test]
fn observed_sorts_device_peers_by_what_was_applied() {
    let applied = map([
        ("a", peer("a", "10.1.0.0/16")),
        ("gone", peer("gone", "10.9.0.0/16")),
    ]);
    let mut learned = peer("a", "10.1.0.0/16");
    learned.endpoint = Some("198.51.100.7:4000".parse().expect("addr"));
    let device = BTreeMap::from([
        (key("a"), learned),
        (key("hand"), peer("hand", "10.5.0.0/16")),
    ]);
    let observed = Observed::new(&applied, &device);
    assert_eq!(observed.declared, map([("a", peer("a", "10.1.0.0/16"))]));
    assert_eq!(
        observed.undeclared.keys().collect::<Vec<_>>(),
        [&key("hand")]
    );
    assert_eq!(observed.by_key().len(), 2);
}

#[test]
fn a_peer_added_by_hand_is_adopted_by_the_declaration_of_its_key() {
    let mut observed = Observed {
        declared: PeerMap::new(),
        undeclared: [(key("a"), peer("a", "10.1.0.0/16"))].into(),
    };
    let desired = map([("a", peer("a", "10.2.0.0/16"))]);
    let adopted = observed.adopt(&desired);
    assert_eq!(adopted, map([("a", peer("a", "10.1.0.0/16"))]));
    assert!(observed.undeclared.is_empty());
    assert_eq!(
        plan(&desired, &observed),
        [change("a", Op::UpsertPeer(peer("a", "10.2.0.0/16")))]
    );
}

fn arb_peer() -> impl Strategy<Value = (PeerId, PeerConfig)> {
    (0u8..6, 0u8..6, 0u8..4, any::<bool>(), 0u16..3, 0u8..3).prop_map(
        |(name, key_seed, net, has_endpoint, keepalive, psk)| {
            let mut p = peer(&format!("k{key_seed}"), &format!("10.{net}.0.0/16"));
            if !has_endpoint {
                p.endpoint = None;
            }
            p.persistent_keepalive = keepalive;
            p.preshared_key =
                (psk > 0).then(|| crate::core::psk::PresharedKey::from_bytes([psk; 32]));
            (id(&format!("p{name}")), p)
        },
    )
}

/// Keeps the first peer of each key, as validation keeps one declaration per key.
fn unique_keys(peers: Vec<(PeerId, PeerConfig)>) -> PeerMap {
    let mut keys = BTreeSet::new();
    let mut out = PeerMap::new();
    for (id, config) in peers {
        if !out.contains_key(&id) && keys.insert(config.public_key) {
            out.insert(id, config);
        }
    }
    out
}

proptest! {
    #[test]
    fn replanning_after_apply_is_empty(
        desired in proptest::collection::vec(arb_peer(), 0..6),
        observed in proptest::collection::vec(arb_peer(), 0..6),
        undeclared in proptest::collection::vec(arb_peer(), 0..3),
    ) {
        let desired = unique_keys(desired);
        let declared = unique_keys(observed);
        let held: BTreeSet<PublicKey> = declared.values().map(|c| c.public_key).collect();
        let observed = Observed {
            declared,
            undeclared: undeclared
                .into_iter()
                .map(|(_, c)| (c.public_key, c))
                .filter(|(k, _)| !held.contains(k))
                .collect(),
        };
        let ops = plan(&desired, &observed);
        // Every key is given up before it is taken, so a device applying the operations in
        // order never holds two peers under one key.
        let mut device = observed.by_key();
        for change in &ops {
            match &change.op {
                Op::RemovePeer(key) => {
                    prop_assert!(device.remove(key).is_some(), "{ops:?}");
                }
                Op::UpsertPeer(config) => {
                    let before = device.insert(config.public_key, config.clone());
                    let own = change
                        .peer
                        .as_ref()
                        .and_then(|id| observed.declared.get(id))
                        .is_some_and(|c| c.public_key == config.public_key);
                    prop_assert!(before.is_none() || own, "{ops:?}");
                }
                Op::ReplaceKey { old, config } => {
                    prop_assert!(device.remove(old).is_some(), "{ops:?}");
                    prop_assert!(device.insert(config.public_key, config.clone()).is_none(), "{ops:?}");
                }
            }
        }
        let after = apply(&observed, &ops);
        prop_assert!(plan(&desired, &after).is_empty());
        prop_assert_eq!(after.declared.keys().collect::<Vec<_>>(), desired.keys().collect::<Vec<_>>());
        prop_assert!(after.undeclared.is_empty());
    }
}

#[test]
fn apply_of_a_key_replacement_moves_the_config_to_the_new_key() {
    let old = PublicKey::from_bytes([1; 32]);
    let new = PublicKey::from_bytes([2; 32]);
    let mut config = PeerConfig {
        public_key: old,
        endpoint: None,
        allowed_ips: ["10.2.0.0/16".parse().expect("cidr")].into(),
        persistent_keepalive: 25,
        preshared_key: None,
    };
    let observed = Observed {
        declared: [(id("a"), config.clone())].into(),
        undeclared: BTreeMap::new(),
    };
    config.public_key = new;
    let op = Op::ReplaceKey {
        old,
        config: config.clone(),
    };
    assert_eq!(op.device_key(), old);
    let next = apply(&observed, &[change("a", op)]);
    assert_eq!(next.declared.len(), 1);
    assert_eq!(next.declared.get(&id("a")), Some(&config));
    assert_eq!(next.by_key().get(&new), Some(&config));
}
