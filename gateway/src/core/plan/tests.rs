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

fn peer(name: &str, cidr: &str) -> PeerConfig {
    PeerConfig {
        public_key: key(name),
        endpoint: Some("192.0.2.9:51820".parse().expect("addr")),
        allowed_ips: BTreeSet::from([cidr.parse::<IpNet>().expect("cidr")]),
        persistent_keepalive: 25,
        preshared_key: None,
    }
}

fn map(peers: impl IntoIterator<Item = PeerConfig>) -> PeerMap {
    peers.into_iter().map(|p| (p.public_key, p)).collect()
}

#[test]
fn new_peer_is_upserted() {
    let desired = map([peer("a", "10.1.0.0/16")]);
    assert_eq!(
        plan(&desired, &PeerMap::new()),
        [Op::UpsertPeer(peer("a", "10.1.0.0/16"))]
    );
}

#[test]
fn undeclared_peer_is_removed_before_upserts() {
    let desired = map([peer("b", "10.1.0.0/16")]);
    let observed = map([peer("a", "10.1.0.0/16")]);
    assert_eq!(
        plan(&desired, &observed),
        [
            Op::RemovePeer(key("a")),
            Op::UpsertPeer(peer("b", "10.1.0.0/16"))
        ]
    );
}

#[test]
fn changed_allowed_ips_are_upserted() {
    let desired = map([peer("a", "10.2.0.0/16")]);
    let observed = map([peer("a", "10.1.0.0/16")]);
    assert_eq!(
        plan(&desired, &observed),
        [Op::UpsertPeer(peer("a", "10.2.0.0/16"))]
    );
}

#[test]
fn changed_preshared_key_is_upserted() {
    let mut want = peer("a", "10.1.0.0/16");
    want.preshared_key = Some(crate::core::psk::PresharedKey::from_bytes([1; 32]));
    let have = peer("a", "10.1.0.0/16");
    assert_eq!(
        plan(&map([want.clone()]), &map([have])),
        [Op::UpsertPeer(want.clone())]
    );
    assert!(plan(&map([want.clone()]), &map([want])).is_empty());
}

#[test]
fn passive_peer_ignores_learned_endpoint() {
    let mut want = peer("a", "10.1.0.0/16");
    want.endpoint = None;
    let mut have = want.clone();
    have.endpoint = Some("198.51.100.7:4000".parse::<SocketAddr>().expect("addr"));
    assert!(plan(&map([want]), &map([have])).is_empty());
}

#[test]
fn matching_state_needs_nothing() {
    let state = map([peer("a", "10.1.0.0/16"), peer("b", "10.2.0.0/16")]);
    assert!(plan(&state, &state).is_empty());
}

fn arb_peer() -> impl Strategy<Value = PeerConfig> {
    (0u8..6, 0u8..4, any::<bool>(), 0u16..3, 0u8..3).prop_map(
        |(id, net, has_endpoint, keepalive, psk)| {
            let mut p = peer(&format!("p{id}"), &format!("10.{net}.0.0/16"));
            if !has_endpoint {
                p.endpoint = None;
            }
            p.persistent_keepalive = keepalive;
            p.preshared_key =
                (psk > 0).then(|| crate::core::psk::PresharedKey::from_bytes([psk; 32]));
            p
        },
    )
}

proptest! {
    #[test]
    fn replanning_after_apply_is_empty(
        desired in proptest::collection::vec(arb_peer(), 0..6),
        observed in proptest::collection::vec(arb_peer(), 0..6),
    ) {
        let desired = map(desired);
        let observed = map(observed);
        let ops = plan(&desired, &observed);
        let after = apply(&observed, &ops);
        prop_assert!(plan(&desired, &after).is_empty());
        prop_assert_eq!(after.keys().collect::<Vec<_>>(), desired.keys().collect::<Vec<_>>());
    }
}

#[test]
fn apply_of_a_key_replacement_moves_the_config_to_the_new_key() {
    let old = PublicKey::from_bytes([1; 32]);
    let new = PublicKey::from_bytes([2; 32]);
    let mut observed = PeerMap::new();
    let mut config = PeerConfig {
        public_key: old,
        endpoint: None,
        allowed_ips: ["10.2.0.0/16".parse().expect("cidr")].into(),
        persistent_keepalive: 25,
        preshared_key: None,
    };
    observed.insert(old, config.clone());
    config.public_key = new;
    let op = Op::ReplaceKey {
        old,
        config: config.clone(),
    };
    assert_eq!(op.device_key(), old);
    let next = apply(&observed, &[op]);
    assert_eq!(next.len(), 1);
    assert_eq!(next.get(&new), Some(&config));
}
