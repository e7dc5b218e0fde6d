use super::*;

fn key(b: u8) -> PublicKey {
    PublicKey::from_bytes([b; 32])
}

fn config() -> PeerConfig {
    PeerConfig {
        public_key: key(1),
        endpoint: Some("192.0.2.2:51820".parse().expect("addr")),
        allowed_ips: ["10.2.0.0/16", "10.10.0.2/32"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect(),
        persistent_keepalive: 25,
        preshared_key: None,
    }
}

#[test]
fn new_peer_is_one_section() {
    let txs = transactions(&Op::UpsertPeer(config()), false);
    assert_eq!(txs.len(), 1);
    assert_eq!(
        *txs[0],
        format!(
            "public_key={}\nendpoint=192.0.2.2:51820\npersistent_keepalive_interval=25\nallowed_ip=10.2.0.0/16\nallowed_ip=10.10.0.2/32\n",
            key(1).to_hex()
        )
    );
}

#[test]
fn an_update_replaces_allowed_ips_in_place() {
    let txs = transactions(&Op::UpsertPeer(config()), true);
    assert_eq!(txs.len(), 1);
    assert!(txs[0].contains("replace_allowed_ips=true\n"));
    assert!(!txs[0].contains("remove"));
}

#[test]
fn a_key_replacement_is_one_transaction_removing_the_old_key_then_adding_the_new() {
    let mut next = config();
    next.public_key = key(2);
    let txs = transactions(
        &Op::ReplaceKey {
            old: key(1),
            config: next,
        },
        true,
    );
    assert_eq!(txs.len(), 1);
    let body = txs[0].as_str();
    let removed = body
        .find(&format!("public_key={}\nremove=true\n", key(1).to_hex()))
        .expect("old key removed");
    let added = body
        .find(&format!("public_key={}\n", key(2).to_hex()))
        .expect("new key added");
    assert!(removed < added, "{body}");
    assert!(body.ends_with("allowed_ip=10.2.0.0/16\nallowed_ip=10.10.0.2/32\n"));
}

#[test]
fn preshared_key_is_written_and_cleared_in_place() {
    let mut with_psk = config();
    with_psk.preshared_key = Some(crate::core::psk::PresharedKey::from_bytes([0xab; 32]));
    let txs = transactions(&Op::UpsertPeer(with_psk), false);
    assert!(
        txs[0].contains(&format!("preshared_key={}\n", "ab".repeat(32))),
        "{}",
        *txs[0]
    );
    let new_without = transactions(&Op::UpsertPeer(config()), false);
    assert!(!new_without[0].contains("preshared_key"));
    let cleared = transactions(&Op::UpsertPeer(config()), true);
    assert!(cleared[0].contains(&format!("preshared_key={}\n", "0".repeat(64))));
}

#[test]
fn get_answer_parses_peers_and_epoch_handshake() {
    let answer = format!(
        "private_key={}\nlisten_port=51820\npublic_key={}\nendpoint=192.0.2.2:51820\npersistent_keepalive_interval=25\nallowed_ip=10.2.0.0/16\nallowed_ip=10.10.0.2/32\nlast_handshake_time_sec=1763900000\nlast_handshake_time_nsec=5\nrx_bytes=10\ntx_bytes=20\npublic_key={}\nallowed_ip=10.3.0.0/16\nrx_bytes=0\ntx_bytes=0\nerrno=0\n\n",
        "a".repeat(64),
        key(1).to_hex(),
        key(2).to_hex()
    );
    let report = parse_get(&answer).expect("parses");
    assert_eq!(report.listen_port, Some(51820));
    assert_eq!(report.peers.len(), 2);
    assert_eq!(report.peers[0].config(), config());
    assert_eq!(
        report.peers[0].last_handshake,
        Some(Duration::new(1_763_900_000, 5))
    );
    assert_eq!(report.peers[0].rx_bytes, 10);
    assert_eq!(report.peers[1].last_handshake, None);
    assert_eq!(report.peers[1].endpoint, None);
}

#[test]
fn zero_handshake_time_means_none() {
    let answer = format!(
        "public_key={}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n",
        key(1).to_hex()
    );
    assert_eq!(
        parse_get(&answer).expect("parses").peers[0].last_handshake,
        None
    );
}

#[test]
fn missing_errno_is_an_error_not_success() {
    assert_eq!(parse_errno(""), Err(UapiError::MissingErrno));
    assert_eq!(parse_get("listen_port=1\n"), Err(UapiError::MissingErrno));
}

#[test]
fn nonzero_errno_is_reported() {
    assert_eq!(parse_errno("errno=98\n\n"), Err(UapiError::Errno(98)));
    assert_eq!(parse_errno("errno=0\n\n"), Ok(()));
}

#[test]
fn bad_line_error_never_carries_the_value() {
    let err = parse_get("public_key=deadbeef\nerrno=0\n").expect_err("bad key");
    assert_eq!(err, UapiError::BadLine("public_key=…".to_owned()));
}

proptest::proptest! {
    #[test]
    fn written_peer_reads_back(
        bytes in proptest::array::uniform32(proptest::prelude::any::<u8>()),
        keepalive in proptest::prelude::any::<u16>(),
        nets in proptest::collection::btree_set((0u8..=255, 8u8..=32), 1..5),
    ) {
        let allowed_ips = nets
            .into_iter()
            .map(|(a, len)| IpNet::new(std::net::IpAddr::from([10, a, 0, 0]), len).expect("len").trunc())
            .collect();
        let config = PeerConfig {
            public_key: PublicKey::from_bytes(bytes),
            endpoint: Some("192.0.2.7:4242".parse().expect("addr")),
            allowed_ips,
            persistent_keepalive: keepalive,
            preshared_key: None,
        };
        let body = transactions(&Op::UpsertPeer(config.clone()), false).iter().map(|t| t.as_str()).collect::<String>();
        let report = parse_get(&format!("{body}errno=0\n\n")).expect("parses");
        proptest::prop_assert_eq!(report.peers.len(), 1);
        proptest::prop_assert_eq!(report.peers[0].config(), config);
    }
}
