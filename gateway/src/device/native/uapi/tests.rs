use std::net::SocketAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::{EINVAL, EOPNOTSUPP, SecretText, answer, apply, get, parse_set};
use crate::core::uapi::parse_get;
use crate::device::native::core::Core;

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lines(text: &str) -> String {
    text.to_owned()
}

#[test]
fn set_then_get_round_trips_through_the_standard_parser() {
    let mut core = Core::new();
    let peer = hex([7; 32]);
    let request = format!(
        "set=1\nprivate_key={}\nlisten_port=51820\npublic_key={peer}\npreshared_key={}\nendpoint=[2001:db8::1]:51820\npersistent_keepalive_interval=25\nallowed_ip=10.2.0.0/16\nallowed_ip=fd00::/64\nprotocol_version=1",
        hex([1; 32]),
        hex([9; 32])
    );
    assert_eq!(&*answer(&mut core, &lines(&request), 51820), "errno=0\n\n");
    let got = answer(&mut core, &lines("get=1"), 51820);
    let report = parse_get(&got).expect("parses");
    assert_eq!(report.listen_port, Some(51820));
    let p = &report.peers[0];
    assert_eq!(p.public_key.to_hex(), peer);
    assert_eq!(
        p.endpoint,
        Some("[2001:db8::1]:51820".parse().expect("addr"))
    );
    assert_eq!(p.persistent_keepalive, 25);
    assert_eq!(p.allowed_ips.len(), 2);
    assert!(got.contains(&format!("private_key={}", hex([1; 32]))));

    // An in-place update: replace the allowed IPs, keep the peer.
    let update = format!(
        "set=1\npublic_key={peer}\nreplace_allowed_ips=true\nallowed_ip=10.3.0.0/16\npersistent_keepalive_interval=0"
    );
    assert_eq!(&*answer(&mut core, &lines(&update), 51820), "errno=0\n\n");
    let report = parse_get(&answer(&mut core, &lines("get=1"), 51820)).expect("parses");
    let nets: Vec<IpNet> = report.peers[0].allowed_ips.iter().copied().collect();
    assert_eq!(nets, vec!["10.3.0.0/16".parse::<IpNet>().expect("net")]);
    assert_eq!(report.peers[0].persistent_keepalive, 0);

    let remove = format!("set=1\npublic_key={peer}\nremove=true");
    assert_eq!(&*answer(&mut core, &lines(&remove), 51820), "errno=0\n\n");
    assert!(
        parse_get(&answer(&mut core, &lines("get=1"), 51820))
            .expect("parses")
            .peers
            .is_empty()
    );
}

#[test]
fn bad_requests_are_refused() {
    let peer = hex([7; 32]);
    for body in [
        "listen_port=x".to_owned(),
        "bogus=1".to_owned(),
        "allowed_ip=10.0.0.0/8".to_owned(),
        "public_key=abc".to_owned(),
        format!("public_key={peer}\nendpoint=nowhere"),
        format!("public_key={peer}\nprotocol_version=2"),
        format!("public_key={peer}\nremove=yes"),
        "no equals sign".to_owned(),
    ] {
        assert_eq!(parse_set(body.lines()), Err(EINVAL), "{body}");
    }
    let mut core = Core::new();
    let request = parse_set(["listen_port=1"]).expect("parses");
    assert_eq!(apply(&mut core, request, 2), Err(EOPNOTSUPP));
    assert_eq!(&*answer(&mut core, &lines("what=1"), 2), "errno=-22\n\n");
    let update_only = format!("public_key={peer}\nupdate_only=true\nallowed_ip=10.0.0.0/8");
    apply(
        &mut core,
        parse_set(update_only.lines()).expect("parses"),
        2,
    )
    .expect("applies");
    assert!(!core.has_peer(&[7; 32]));
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::new(a.into(), l).expect("len").trunc()),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::new(a.into(), l).expect("len").trunc()),
    ]
}

proptest! {
    #[test]
    fn parser_never_panics(text in "[ -~\n]{0,400}") {
        let _ = parse_set(text.lines());
    }

    #[test]
    fn peers_round_trip(
        peers in proptest::collection::btree_map(
            any::<[u8; 32]>(),
            (any::<SocketAddr>(), any::<u16>(), proptest::collection::btree_set(arb_net(), 0..4)),
            0..4,
        )
    ) {
        let mut core = Core::new();
        let mut request = vec!["set=1".to_owned(), format!("private_key={}", hex([3; 32]))];
        for (key, (endpoint, keepalive, nets)) in &peers {
            request.push(format!("public_key={}", hex(*key)));
            request.push(format!("endpoint={endpoint}"));
            request.push(format!("persistent_keepalive_interval={keepalive}"));
            for net in nets {
                request.push(format!("allowed_ip={net}"));
            }
        }
        prop_assert_eq!(&*answer(&mut core, &request.join("\n"), 1), "errno=0\n\n");
        let report = parse_get(&answer(&mut core, &lines("get=1"), 1)).expect("parses");
        prop_assert_eq!(report.peers.len(), peers.len());
        for p in report.peers {
            let (endpoint, keepalive, _) = &peers[p.public_key.as_bytes()];
            let expected = SocketAddr::new(endpoint.ip().to_canonical(), endpoint.port());
            prop_assert_eq!(p.endpoint, Some(expected));
            prop_assert_eq!(p.persistent_keepalive, *keepalive);
        }
    }
}

#[test]
fn a_thousand_peers_with_sixty_four_allowed_ips_each_report_their_own() {
    let mut core = Core::new();
    let key = |i: u32| {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        bytes[31] = 1;
        bytes
    };
    let net = |n: u32| -> IpNet {
        format!("10.{}.{}.{}/32", 100 + n / 65536, (n / 256) % 256, n % 256)
            .parse()
            .expect("net")
    };
    let mut request = String::from("set=1\n");
    for i in 0..1000u32 {
        request.push_str(&format!("public_key={}\n", hex(key(i))));
        for j in 0..64 {
            request.push_str(&format!("allowed_ip={}\n", net(i * 64 + j)));
        }
    }
    assert_eq!(&*answer(&mut core, &lines(&request), 51820), "errno=0\n\n");
    let got = answer(&mut core, &lines("get=1"), 51820);
    let report = parse_get(&got).expect("parses");
    assert_eq!(report.peers.len(), 1000);
    for peer in &report.peers {
        let i = (0..1000u32)
            .find(|i| hex(key(*i)) == peer.public_key.to_hex())
            .expect("a known key");
        let expected: std::collections::BTreeSet<IpNet> =
            (0..64).map(|j| net(i * 64 + j)).collect();
        assert_eq!(peer.allowed_ips, expected, "peer {i}");
    }
    // Removing a peer drops exactly its prefixes.
    let remove = format!("set=1\npublic_key={}\nremove=true", hex(key(7)));
    assert_eq!(&*answer(&mut core, &lines(&remove), 51820), "errno=0\n\n");
    let report = parse_get(&answer(&mut core, &lines("get=1"), 51820)).expect("parses");
    let total: usize = report.peers.iter().map(|p| p.allowed_ips.len()).sum();
    assert_eq!((report.peers.len(), total), (999, 999 * 64));
}

#[test]
fn a_secret_answer_grows_only_by_copy_and_wipe() {
    // A `String` that outgrows its buffer reallocates and leaves the old bytes (the private
    // key first of all) in freed memory; `SecretText` moves to a larger buffer itself and
    // wipes the old one. Every change of buffer is one of its own moves.
    let mut text = SecretText::with_capacity(8);
    let mut buffers = 0;
    let mut last = text.as_str().as_ptr();
    for i in 0..2000 {
        text.push_str(&format!("line {i}\n"));
        if text.as_str().as_ptr() != last {
            buffers += 1;
            last = text.as_str().as_ptr();
        }
    }
    assert_eq!(buffers, text.grown());
    assert!(text.grown() > 5);
    assert!(text.as_str().ends_with("line 1999\n"));
    assert!(!format!("{text:?}").contains("line"));

    // The `get` answer of a device with many peers outgrows its first buffer the same way
    // and keeps the private key and the preshared keys.
    let mut core = Core::new();
    let mut request = format!("set=1\nprivate_key={}", hex([1; 32]));
    for i in 0..200u8 {
        request.push_str(&format!(
            "\npublic_key={}\npreshared_key={}\nallowed_ip=10.{i}.0.0/16",
            hex([i; 32]),
            hex([9; 32])
        ));
    }
    assert_eq!(&*answer(&mut core, &request, 1), "errno=0\n\n");
    let answer = get(&core, 1);
    assert!(answer.grown() > 0);
    assert!(
        answer
            .as_str()
            .starts_with(&format!("private_key={}\n", hex([1; 32])))
    );
    assert_eq!(answer.as_str().matches("preshared_key=").count(), 200);
}
