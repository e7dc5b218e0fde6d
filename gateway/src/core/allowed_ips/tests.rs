use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;

use super::AllowedIps;

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

#[test]
fn longest_prefix_wins_and_removal_falls_back() {
    let mut table = AllowedIps::new();
    table.insert(net("10.0.0.0/8"), 1);
    table.insert(net("10.1.0.0/16"), 2);
    table.insert(net("10.1.2.3/32"), 3);
    table.insert(net("::/0"), 4);
    let v4 = |s: &str| IpAddr::V4(s.parse().expect("test address"));
    assert_eq!(table.lookup(v4("10.1.2.3")), Some(&3));
    assert_eq!(table.lookup(v4("10.1.2.4")), Some(&2));
    assert_eq!(table.lookup(v4("10.2.0.1")), Some(&1));
    assert_eq!(table.lookup(v4("11.0.0.1")), None);
    assert_eq!(table.lookup(IpAddr::V6(Ipv6Addr::LOCALHOST)), Some(&4));
    assert_eq!(table.remove(net("10.1.0.0/16")), Some(2));
    assert_eq!(table.lookup(v4("10.1.2.4")), Some(&1));
    table.remove_value(&1);
    assert_eq!(table.lookup(v4("10.1.2.4")), None);
    assert_eq!(table.len(), 2);
}

#[test]
fn insert_truncates_and_moves_a_prefix_between_values() {
    let mut table = AllowedIps::new();
    table.insert(net("10.1.2.3/16"), 1);
    assert_eq!(table.insert(net("10.1.0.0/16"), 2), Some(1));
    assert_eq!(
        table.nets_of(&2).into_iter().collect::<Vec<_>>(),
        vec![net("10.1.0.0/16")]
    );
    assert!(table.nets_of(&1).is_empty());
}

fn arb_v4_net() -> impl Strategy<Value = IpNet> {
    // A small address space so that prefixes overlap and lookups hit.
    (0u32..16, 0u8..=32).prop_map(|(high, len)| {
        let addr = Ipv4Addr::from(high << 28 | high << 4);
        IpNet::new(IpAddr::V4(addr), len)
            .expect("valid length")
            .trunc()
    })
}

/// The reference model: scan every prefix, keep the longest one that contains the address.
fn naive(entries: &[(IpNet, u8)], addr: IpAddr) -> Option<u8> {
    let mut model: std::collections::BTreeMap<IpNet, u8> = std::collections::BTreeMap::new();
    for (n, v) in entries {
        model.insert(n.trunc(), *v);
    }
    model
        .iter()
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, v)| *v)
}

proptest! {
    #[test]
    fn lookup_matches_a_linear_scan(
        entries in proptest::collection::vec((arb_v4_net(), 0u8..4), 0..24),
        removed in proptest::collection::vec(arb_v4_net(), 0..6),
        probes in proptest::collection::vec(any::<u32>(), 1..32),
    ) {
        let mut table = AllowedIps::new();
        for (n, v) in &entries {
            table.insert(*n, *v);
        }
        let mut kept: Vec<(IpNet, u8)> = entries.clone();
        for r in &removed {
            table.remove(*r);
            kept.retain(|(n, _)| n.trunc() != r.trunc());
        }
        for p in probes {
            for addr in [Ipv4Addr::from(p), Ipv4Addr::from(p & 0xf000_00ff)] {
                let addr = IpAddr::V4(addr);
                prop_assert_eq!(table.lookup(addr).copied(), naive(&kept, addr));
            }
        }
    }
}

proptest! {
    #[test]
    fn each_values_prefixes_match_a_scan_of_the_table(
        entries in proptest::collection::vec((arb_v4_net(), 0u8..4), 0..24),
        removed in proptest::collection::vec(arb_v4_net(), 0..6),
        dropped in 0u8..5,
    ) {
        let mut table = AllowedIps::new();
        let mut model: std::collections::BTreeMap<IpNet, u8> = std::collections::BTreeMap::new();
        for (n, v) in &entries {
            prop_assert_eq!(table.insert(*n, *v), model.insert(n.trunc(), *v));
        }
        for r in &removed {
            prop_assert_eq!(table.remove(*r), model.remove(&r.trunc()));
        }
        table.remove_value(&dropped);
        model.retain(|_, v| *v != dropped);
        for value in 0u8..5 {
            let expected: std::collections::BTreeSet<IpNet> = model
                .iter()
                .filter(|(_, v)| **v == value)
                .map(|(n, _)| *n)
                .collect();
            prop_assert_eq!(table.nets_of(&value), expected);
        }
        prop_assert_eq!(table.len(), model.len());
    }
}
