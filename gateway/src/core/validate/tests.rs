use super::*;

fn key(name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (slot, b) in bytes.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}

fn ctx() -> Context {
    Context {
        own_public_key: key("self"),
        own_address: "10.10.0.1".parse().expect("ip"),
        incumbents: BTreeSet::new(),
        supports_secret_refs: false,
    }
}

fn raw(name: &str, cidrs: &[&str]) -> RawPeer {
    RawPeer {
        origin: format!("{name}.yaml"),
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: key(name).to_base64(),
        endpoint: Some("192.0.2.2:51820".to_owned()),
        allowed_ips: cidrs.iter().map(|s| (*s).to_owned()).collect(),
        persistent_keepalive: None,
        has_preshared_key_ref: false,
        preshared_key: None,
    }
}

fn reasons(outcome: &Outcome) -> Vec<String> {
    outcome.rejected.iter().map(|r| r.reason.clone()).collect()
}

fn one_rejection(peer: RawPeer) -> String {
    let outcome = validate(vec![Declaration::Peer(peer)], &ctx());
    assert!(outcome.accepted.is_empty(), "{outcome:?}");
    assert_eq!(outcome.rejected.len(), 1);
    outcome.rejected[0].reason.clone()
}

#[test]
fn valid_peer_is_accepted_with_default_keepalive() {
    let outcome = validate(
        vec![Declaration::Peer(raw(
            "b",
            &["10.10.0.2/32", "10.2.0.0/16"],
        ))],
        &ctx(),
    );
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
    let spec = &outcome.accepted[0];
    assert_eq!(spec.persistent_keepalive, DEFAULT_PERSISTENT_KEEPALIVE);
    assert_eq!(spec.allowed_ips.len(), 2);
    assert_eq!(
        spec.endpoint,
        Some(Endpoint::Addr("192.0.2.2:51820".parse().expect("addr")))
    );
}

#[test]
fn bad_base64_key_is_rejected() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.public_key = "not-a-key!".to_owned();
    assert!(one_rejection(peer).contains("base64"));
}

#[test]
fn wrong_key_length_is_rejected() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.public_key = "AAAAAAAAAAAAAAAAAAAAAA==".to_owned();
    let reason = one_rejection(peer);
    assert!(
        reason.contains("16 bytes") && reason.contains("32"),
        "{reason}"
    );
}

#[test]
fn bad_cidr_is_rejected() {
    let reason = one_rejection(raw("b", &["10.2.0.0/33"]));
    assert!(reason.contains("invalid CIDR"), "{reason}");
    let reason = one_rejection(raw("b", &["10.2.0.1/16"]));
    assert!(reason.contains("host bits"), "{reason}");
}

#[test]
fn empty_allowed_ips_are_rejected() {
    assert!(one_rejection(raw("b", &[])).contains("at least one"));
}

#[test]
fn allowed_ip_containing_the_local_tunnel_address_is_rejected() {
    let reason = one_rejection(raw("b", &["10.10.0.0/24"]));
    assert!(
        reason.contains("overlaps the local tunnel address"),
        "{reason}"
    );
}

#[test]
fn own_public_key_is_rejected() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.public_key = key("self").to_base64();
    assert!(one_rejection(peer).contains("own public key"));
}

#[test]
fn overlapping_peers_keep_the_first_and_reject_the_second() {
    let outcome = validate(
        vec![
            Declaration::Peer(raw("b", &["10.2.0.0/16"])),
            Declaration::Peer(raw("c", &["10.2.1.0/24"])),
        ],
        &ctx(),
    );
    assert_eq!(outcome.accepted.len(), 1);
    assert_eq!(outcome.accepted[0].name, "b");
    assert!(reasons(&outcome)[0].contains("overlaps 10.2.0.0/16 of peer b"));
}

#[test]
fn incumbent_wins_a_conflict_against_an_earlier_newcomer() {
    let mut context = ctx();
    context.incumbents.insert(key("z"));
    let outcome = validate(
        vec![
            Declaration::Peer(raw("a", &["10.2.0.0/16"])),
            Declaration::Peer(raw("z", &["10.2.0.0/16"])),
        ],
        &context,
    );
    assert_eq!(outcome.accepted.len(), 1);
    assert_eq!(outcome.accepted[0].name, "z");
    assert_eq!(outcome.rejected[0].name.as_deref(), Some("a"));
}

#[test]
fn duplicate_public_key_is_rejected() {
    let mut second = raw("c", &["10.3.0.0/16"]);
    second.public_key = key("b").to_base64();
    let outcome = validate(
        vec![
            Declaration::Peer(raw("b", &["10.2.0.0/16"])),
            Declaration::Peer(second),
        ],
        &ctx(),
    );
    assert_eq!(outcome.accepted.len(), 1);
    assert!(reasons(&outcome)[0].contains("duplicate publicKey"));
}

#[test]
fn unreadable_document_is_rejected_and_others_survive() {
    let outcome = validate(
        vec![
            Declaration::Unreadable {
                origin: "bad.yaml".to_owned(),
                reason: "unparseable YAML".to_owned(),
            },
            Declaration::Peer(raw("b", &["10.2.0.0/16"])),
        ],
        &ctx(),
    );
    assert_eq!(outcome.accepted.len(), 1);
    assert_eq!(outcome.rejected[0].origin, "bad.yaml");
}

#[test]
fn keepalive_out_of_range_is_rejected() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.persistent_keepalive = Some(70_000);
    assert!(one_rejection(peer).contains("out of range"));
}

#[test]
fn cluster_must_be_a_dns_label() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.cluster = "Lux_K8s".to_owned();
    assert!(one_rejection(peer).contains("DNS label"));
}

#[test]
fn secret_ref_needs_the_kubernetes_source() {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.has_preshared_key_ref = true;
    assert!(one_rejection(peer).contains("presharedKeySecretRef"));
}

fn with_secret(value: Option<SecretValue>) -> Outcome {
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.has_preshared_key_ref = true;
    peer.preshared_key = value;
    let ctx = Context {
        supports_secret_refs: true,
        ..ctx()
    };
    validate(vec![Declaration::Peer(peer)], &ctx)
}

#[test]
fn preshared_key_from_the_secret_is_accepted() {
    let value = zeroize::Zeroizing::new(b"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n".to_vec());
    let outcome = with_secret(Some(SecretValue::Found {
        secret: "Secret \"x\" key \"psk\"".to_owned(),
        value,
    }));
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
    assert_eq!(
        outcome.accepted[0].preshared_key,
        Some(PresharedKey::from_bytes([1; 32]))
    );
}

#[test]
fn unreadable_secret_rejects_the_peer_as_unavailable() {
    let outcome = with_secret(Some(SecretValue::Unavailable(
        "Secret \"x\" not found".to_owned(),
    )));
    assert!(outcome.accepted.is_empty());
    assert_eq!(outcome.rejected[0].kind, RejectionKind::SecretUnavailable);
    assert!(outcome.rejected[0].reason.contains("not found"));
    let outcome = with_secret(None);
    assert_eq!(outcome.rejected[0].kind, RejectionKind::SecretUnavailable);
}

#[test]
fn bad_secret_value_is_invalid_and_not_echoed() {
    let outcome = with_secret(Some(SecretValue::Found {
        secret: "Secret \"x\" key \"psk\"".to_owned(),
        value: zeroize::Zeroizing::new(b"hunter2".to_vec()),
    }));
    assert_eq!(outcome.rejected[0].kind, RejectionKind::Invalid);
    let reason = &outcome.rejected[0].reason;
    assert!(reason.contains("Secret \"x\" key \"psk\""), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");
}

#[test]
fn conflicts_are_marked_as_such() {
    let outcome = validate(
        vec![
            Declaration::Peer(raw("b", &["10.2.0.0/16"])),
            Declaration::Peer(raw("c", &["10.2.1.0/24"])),
        ],
        &ctx(),
    );
    assert_eq!(outcome.rejected[0].kind, RejectionKind::Conflict);
}

#[test]
fn endpoints_parse_in_every_accepted_form() {
    assert!(matches!(
        parse_endpoint("192.0.2.1:51820"),
        Ok(Endpoint::Addr(_))
    ));
    assert!(matches!(
        parse_endpoint("[2001:db8::1]:51820"),
        Ok(Endpoint::Addr(_))
    ));
    assert_eq!(
        parse_endpoint("gw.lux.example:51820"),
        Ok(Endpoint::Host {
            host: "gw.lux.example".to_owned(),
            port: 51820
        })
    );
    for bad in [
        "gw.example",
        "gw.example:0",
        "gw.example:99999",
        "bad host:1",
        ":1",
        "1.2.3.4:0",
    ] {
        assert!(parse_endpoint(bad).is_err(), "{bad}");
    }
}

#[test]
fn bare_address_is_a_host_route() {
    assert_eq!(
        parse_cidr("10.10.0.2").map(|n| n.to_string()),
        Ok("10.10.0.2/32".to_owned())
    );
}
