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
        let mut body = format!(
            "public_key={}\nendpoint=192.0.2.7:4242\npersistent_keepalive_interval={keepalive}\n",
            config.public_key.to_hex()
        );
        for net in &config.allowed_ips {
            body.push_str(&format!("allowed_ip={net}\n"));
        }
        let report = parse_get(&format!("{body}errno=0\n\n")).expect("parses");
        proptest::prop_assert_eq!(report.peers.len(), 1);
        proptest::prop_assert_eq!(report.peers[0].config(), config);
    }
}
