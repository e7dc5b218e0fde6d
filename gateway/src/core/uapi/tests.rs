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
    let txs = transactions(&Op::UpsertPeer(config()), false, UpsertStyle::RemoveThenAdd);
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
fn boringtun_update_removes_then_adds_in_two_transactions() {
    let txs = transactions(&Op::UpsertPeer(config()), true, UpsertStyle::RemoveThenAdd);
    assert_eq!(txs.len(), 2);
    assert!(txs[0].ends_with("remove=true\n"));
    assert!(!txs[1].contains("remove"));
}

#[test]
fn standard_update_replaces_allowed_ips_in_place() {
    let txs = transactions(&Op::UpsertPeer(config()), true, UpsertStyle::InPlace);
    assert_eq!(txs.len(), 1);
    assert!(txs[0].contains("replace_allowed_ips=true\n"));
    assert!(!txs[0].contains("remove"));
}

#[test]
fn preshared_key_is_written_and_cleared_in_place() {
    let mut with_psk = config();
    with_psk.preshared_key = Some(crate::core::psk::PresharedKey::from_bytes([0xab; 32]));
    let txs = transactions(&Op::UpsertPeer(with_psk), false, UpsertStyle::RemoveThenAdd);
    assert!(
        txs[0].contains(&format!("preshared_key={}\n", "ab".repeat(32))),
        "{}",
        *txs[0]
    );
    let new_without = transactions(&Op::UpsertPeer(config()), false, UpsertStyle::InPlace);
    assert!(!new_without[0].contains("preshared_key"));
    let cleared = transactions(&Op::UpsertPeer(config()), true, UpsertStyle::InPlace);
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
        let body = transactions(&Op::UpsertPeer(config.clone()), false, UpsertStyle::InPlace).iter().map(|t| t.as_str()).collect::<String>();
        let report = parse_get(&format!("{body}errno=0\n\n")).expect("parses");
        proptest::prop_assert_eq!(report.peers.len(), 1);
        proptest::prop_assert_eq!(report.peers[0].config(), config);
    }
}

#[test]
fn set_naming_an_existing_peer_without_remove_is_detected() {
    let existing = BTreeSet::from([key(1)]);
    let body = format!("public_key={}\nallowed_ip=10.9.0.0/16\n", key(1).to_hex());
    assert_eq!(modifies_existing_peer(&body, &existing), Some(key(1)));
}

#[test]
fn removing_an_existing_peer_or_adding_a_new_one_is_allowed() {
    let existing = BTreeSet::from([key(1)]);
    let remove = format!("public_key={}\nremove=true\n", key(1).to_hex());
    let add = format!("public_key={}\nallowed_ip=10.9.0.0/16\n", key(2).to_hex());
    assert_eq!(modifies_existing_peer(&remove, &existing), None);
    assert_eq!(modifies_existing_peer(&add, &existing), None);
    assert_eq!(modifies_existing_peer("listen_port=1\n", &existing), None);
}
