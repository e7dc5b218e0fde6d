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
        underlay_addresses: BTreeSet::new(),
        resolved_endpoints: BTreeMap::new(),
        incumbents: BTreeMap::new(),
        supports_secret_refs: false,
    }
}

fn id(name: &str) -> PeerId {
    PeerId::file(format!("{name}.yaml"), name)
}

/// Marks `peer` as running, accepted as it is declared.
fn run(context: &mut Context, peer: &RawPeer) {
    let spec = check_fields(peer).expect("valid");
    context.incumbents.insert(spec.id.clone(), spec);
}

fn raw(name: &str, cidrs: &[&str]) -> RawPeer {
    RawPeer {
        id: id(name),
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
    run(&mut context, &raw("z", &["10.2.0.0/16"]));
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

const MARKER: &str = "SECRET-MARKER";

#[test]
fn rejected_values_are_never_quoted() {
    let mut cases = Vec::new();
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.name = format!("{MARKER}.example");
    cases.push(peer);
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.cluster = MARKER.to_owned();
    cases.push(peer);
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.public_key = format!("{MARKER}=");
    cases.push(peer);
    for endpoint in [
        format!("{MARKER}_x:1"),
        MARKER.to_owned(),
        format!("{MARKER}:0"),
    ] {
        let mut peer = raw("b", &["10.2.0.0/16"]);
        peer.endpoint = Some(endpoint);
        cases.push(peer);
    }
    cases.push(raw("b", &["10.2.0.0/16", MARKER]));
    cases.push(raw("b", &["10.2.0.0/16", "10.3.7.0/16"]));
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.persistent_keepalive = Some(7_777_777);
    cases.push(peer);
    for peer in cases {
        let outcome = validate(vec![Declaration::Peer(peer.clone())], &ctx());
        assert_eq!(outcome.rejected.len(), 1, "{peer:?}");
        let rejection = format!("{:?}", outcome.rejected[0]);
        for value in [MARKER, "10.3.7.0", "10.3.0.0", "7777777"] {
            assert!(!rejection.contains(value), "{rejection}");
        }
    }
}

#[test]
fn the_reason_names_the_field() {
    let reason = one_rejection(raw("b", &["10.2.0.0/16", "nonsense"]));
    assert!(
        reason.starts_with("spec.allowedIPs[1]: invalid CIDR"),
        "{reason}"
    );
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.endpoint = Some("nonsense".to_owned());
    assert_eq!(one_rejection(peer), "spec.endpoint is not host:port");
}

#[test]
fn the_crd_limits_apply_to_every_source() {
    let cidrs: Vec<String> = (0..=MAX_ALLOWED_IPS)
        .map(|i| format!("10.2.{i}.0/24"))
        .collect();
    let refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let reason = one_rejection(raw("b", &refs));
    assert!(reason.contains("at most 64"), "{reason}");
    let outcome = validate(
        vec![Declaration::Peer(raw("b", &refs[..MAX_ALLOWED_IPS]))],
        &ctx(),
    );
    assert!(outcome.rejected.is_empty(), "{outcome:?}");

    let long = format!("10.2.0.0/{}", "0".repeat(40));
    assert!(one_rejection(raw("b", &[&long])).contains("longer than 43"));
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.endpoint = Some(format!("{}.example:1", "a".repeat(300)));
    assert!(one_rejection(peer).contains("longer than 261"));
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.public_key = "A".repeat(10_000);
    assert!(one_rejection(peer).contains("longer than 44"));
    let mut peer = raw("b", &["10.2.0.0/16"]);
    peer.name = format!("{}.b", "a".repeat(252));
    assert!(one_rejection(peer).contains("metadata.name"));
}

fn peer_at(name: &str, endpoint: &str, cidrs: &[&str]) -> RawPeer {
    let mut peer = raw(name, cidrs);
    peer.endpoint = Some(endpoint.to_owned());
    peer
}

#[test]
fn allowed_ips_over_another_peers_endpoint_are_refused_and_the_others_unaffected() {
    let outcome = validate(
        vec![
            Declaration::Peer(peer_at("b", "192.0.2.2:51820", &["10.2.0.0/16"])),
            Declaration::Peer(peer_at("c", "198.51.100.3:51820", &["192.0.2.0/24"])),
            Declaration::Peer(peer_at("d", "192.0.2.4:51820", &["10.4.0.0/16"])),
        ],
        &ctx(),
    );
    let names: Vec<&str> = outcome.accepted.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["b", "d"]);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].name.as_deref(), Some("c"));
    assert_eq!(outcome.rejected[0].kind, RejectionKind::Conflict);
    assert!(
        outcome.rejected[0]
            .reason
            .contains("endpoint address of peer b"),
        "{outcome:?}"
    );
}

#[test]
fn an_endpoint_inside_an_incumbents_allowed_ips_loses_to_the_incumbent() {
    let mut context = ctx();
    run(
        &mut context,
        &peer_at("z", "192.0.2.9:51820", &["10.9.0.0/16"]),
    );
    let outcome = validate(
        vec![
            Declaration::Peer(peer_at("a", "10.9.1.1:51820", &["10.2.0.0/16"])),
            Declaration::Peer(peer_at("z", "192.0.2.9:51820", &["10.9.0.0/16"])),
        ],
        &context,
    );
    assert_eq!(outcome.accepted.len(), 1);
    assert_eq!(outcome.accepted[0].name, "z");
    assert!(
        outcome.rejected[0]
            .reason
            .contains("spec.endpoint lies in allowedIPs 10.9.0.0/16"),
        "{outcome:?}"
    );
}

#[test]
fn a_resolved_dns_endpoint_counts_too() {
    let mut context = ctx();
    context
        .resolved_endpoints
        .insert(id("b"), "10.9.1.1".parse().expect("ip"));
    let outcome = validate(
        vec![
            Declaration::Peer(peer_at("b", "gw.b.example:51820", &["10.2.0.0/16"])),
            Declaration::Peer(peer_at("c", "192.0.2.3:51820", &["10.9.0.0/16"])),
        ],
        &context,
    );
    assert_eq!(outcome.accepted.len(), 1, "{outcome:?}");
    assert!(
        outcome.rejected[0]
            .reason
            .contains("endpoint address of peer b")
    );
}

#[test]
fn allowed_ips_over_the_peers_own_endpoint_are_invalid() {
    let reason = one_rejection(peer_at("b", "10.2.3.4:51820", &["10.2.0.0/16"]));
    assert!(reason.contains("own endpoint"), "{reason}");
}

#[test]
fn allowed_ips_over_an_underlay_address_are_invalid() {
    let mut context = ctx();
    context.underlay_addresses = ["192.0.2.1", "127.0.0.1", "fd00::1"]
        .iter()
        .map(|a| a.parse().expect("ip"))
        .collect();
    for cidr in [
        "192.0.2.0/24",
        "192.0.2.1/32",
        "::/0",
        "127.0.0.0/8",
        "fd00::/64",
    ] {
        let outcome = validate(
            vec![Declaration::Peer(peer_at("b", "198.51.100.1:1", &[cidr]))],
            &context,
        );
        assert_eq!(outcome.rejected.len(), 1, "{cidr}: {outcome:?}");
        assert_eq!(outcome.rejected[0].kind, RejectionKind::Invalid);
        assert!(
            outcome.rejected[0]
                .reason
                .contains("own network interfaces"),
            "{outcome:?}"
        );
    }
    let outcome = validate(
        vec![Declaration::Peer(peer_at(
            "b",
            "198.51.100.1:1",
            &["192.0.3.0/24"],
        ))],
        &context,
    );
    assert!(outcome.rejected.is_empty(), "{outcome:?}");
}

#[test]
fn the_indexed_overlap_check_agrees_with_the_pairwise_one() {
    let nets: Vec<IpNet> = [
        "10.0.0.0/8",
        "10.2.0.0/16",
        "10.2.1.0/24",
        "10.2.1.7/32",
        "10.3.0.0/16",
        "11.0.0.0/8",
        "0.0.0.0/0",
        "fd00::/8",
        "fd00:1::/32",
        "fd01::/16",
        "::/0",
    ]
    .iter()
    .map(|n| n.parse().expect("net"))
    .collect();
    for held in &nets {
        let mut prefixes = Prefixes::default();
        prefixes.insert(*held, 0);
        for probe in &nets {
            assert_eq!(
                prefixes.overlapping(probe).is_some(),
                overlaps(held, probe),
                "{held} vs {probe}"
            );
        }
    }
}

#[test]
fn a_thousand_peers_at_the_cap_validate_with_the_right_verdicts() {
    // 1,000 peers, 64 /32s each, all disjoint; then a newcomer overlapping the last one.
    let mut declarations: Vec<Declaration> = (0..1000u32)
        .map(|i| {
            let cidrs: Vec<String> = (0..MAX_ALLOWED_IPS as u32)
                .map(|j| {
                    let n = i * 64 + j;
                    format!("10.{}.{}.{}/32", 100 + n / 65536, (n / 256) % 256, n % 256)
                })
                .collect();
            let refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
            let name = format!("p{i}");
            let mut peer = peer_at(
                &name,
                &format!("192.0.{}.{}:51820", i / 250, i % 250 + 1),
                &refs,
            );
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            bytes[31] = 1;
            peer.public_key = PublicKey::from_bytes(bytes).to_base64();
            Declaration::Peer(peer)
        })
        .collect();
    let last = 999 * 64 + 63;
    let clash = format!("10.{}.{}.0/24", 100 + last / 65536, (last / 256) % 256);
    declarations.push(Declaration::Peer(peer_at("late", "192.0.9.9:1", &[&clash])));
    let outcome = validate(declarations, &ctx());
    assert_eq!(outcome.accepted.len(), 1000);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(outcome.rejected[0].name.as_deref(), Some("late"));
}

/// The four ways a newcomer can collide with a peer, and what its reason then says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collision {
    Key,
    Name,
    Cluster,
    AllowedIps,
}

const COLLISIONS: [Collision; 4] = [
    Collision::Key,
    Collision::Name,
    Collision::Cluster,
    Collision::AllowedIps,
];

impl Collision {
    /// Makes `newcomer` collide with `holder` this way.
    fn apply(self, newcomer: &mut RawPeer, holder: &RawPeer) {
        match self {
            Collision::Key => newcomer.public_key = holder.public_key.clone(),
            Collision::Name => {
                newcomer.name = holder.name.clone();
                newcomer.id = PeerId::file(origin_path(newcomer), holder.name.clone());
            }
            Collision::Cluster => newcomer.cluster = holder.cluster.clone(),
            Collision::AllowedIps => newcomer.allowed_ips = vec!["10.2.1.0/24".to_owned()],
        }
    }

    /// The reason the newcomer gets, `holder` being how the winner is named.
    fn reason(self, holder: &str) -> String {
        match self {
            Collision::Key => format!("duplicate publicKey: already used by {holder}"),
            Collision::Name => format!("duplicate metadata.name run: already declared by {holder}"),
            Collision::Cluster => {
                format!("duplicate spec.cluster run: already declared by {holder}")
            }
            Collision::AllowedIps => {
                format!("allowedIPs 10.2.1.0/24 overlaps 10.2.0.0/16 of {holder}")
            }
        }
    }
}

fn origin_path(peer: &RawPeer) -> String {
    match &peer.id {
        PeerId::File { path, .. } => path.clone(),
        PeerId::Resource { .. } => peer.origin.clone(),
    }
}

/// A peer named `name` declared in the file `file`.
fn declared_in(file: &str, name: &str, cidr: &str, endpoint: &str) -> RawPeer {
    let mut peer = peer_at(name, endpoint, &[cidr]);
    peer.origin = file.to_owned();
    peer.id = PeerId::file(file, name);
    peer
}

/// The peer `run` (in `running_file`, the device runs it) and a newcomer `new` (in
/// `newcomer_file`) colliding with it by `collision`, declared in file-name order.
fn collide(
    collision: Collision,
    running_file: &str,
    newcomer_file: &str,
    running: bool,
) -> (RawPeer, Outcome) {
    let holder = declared_in(running_file, "run", "10.2.0.0/16", "192.0.2.2:51820");
    let mut newcomer = declared_in(newcomer_file, "new", "10.3.0.0/16", "192.0.2.3:51820");
    collision.apply(&mut newcomer, &holder);
    let mut declarations = vec![holder.clone(), newcomer];
    declarations.sort_by(|a, b| a.origin.cmp(&b.origin));
    let mut context = ctx();
    if running {
        run(&mut context, &holder);
    }
    let outcome = validate(
        declarations.into_iter().map(Declaration::Peer).collect(),
        &context,
    );
    (holder, outcome)
}

#[test]
fn a_newcomer_colliding_with_a_running_peer_loses_whatever_the_file_order() {
    for collision in COLLISIONS {
        for (running_file, newcomer_file) in [("a.yaml", "z.yaml"), ("z.yaml", "a.yaml")] {
            let (holder, outcome) = collide(collision, running_file, newcomer_file, true);
            let case = format!("{collision:?}, running in {running_file}: {outcome:#?}");
            assert_eq!(outcome.accepted.len(), 1, "{case}");
            let kept = &outcome.accepted[0];
            assert_eq!(kept.id, holder.id, "{case}");
            assert_eq!(kept.public_key.to_base64(), holder.public_key, "{case}");
            assert_eq!(
                kept.allowed_ips,
                BTreeSet::from(["10.2.0.0/16".parse::<IpNet>().expect("cidr")]),
                "{case}"
            );
            assert_eq!(outcome.rejected.len(), 1, "{case}");
            let rejection = &outcome.rejected[0];
            assert_eq!(rejection.origin, newcomer_file, "{case}");
            assert_eq!(rejection.kind, RejectionKind::Conflict, "{case}");
            assert_eq!(
                rejection.reason,
                collision.reason(&format!("peer run ({running_file}, running)")),
                "{case}"
            );
        }
    }
}

#[test]
fn between_two_newcomers_the_first_file_wins_every_collision() {
    for collision in COLLISIONS {
        for (first, second) in [("a.yaml", "z.yaml"), ("z.yaml", "a.yaml")] {
            // Neither runs yet: "run" is just a name here.
            let (_, outcome) = collide(collision, first, second, false);
            let case = format!("{collision:?}, run in {first}: {outcome:#?}");
            assert_eq!(outcome.accepted.len(), 1, "{case}");
            assert_eq!(outcome.accepted[0].origin, "a.yaml", "{case}");
            assert_eq!(outcome.rejected[0].origin, "z.yaml", "{case}");
            assert!(!outcome.rejected[0].reason.contains("running"), "{case}");
        }
    }
}

#[test]
fn a_running_peer_keeps_its_identity_when_its_key_changes() {
    // The declaration the device runs now says another key: still the incumbent, so a
    // newcomer that claims its addresses loses, even from an earlier file.
    let mut rotated = declared_in("z.yaml", "run", "10.2.0.0/16", "192.0.2.2:51820");
    rotated.public_key = key("rotated").to_base64();
    let newcomer = declared_in("a.yaml", "new", "10.2.0.0/16", "192.0.2.3:51820");
    let mut context = ctx();
    run(
        &mut context,
        &declared_in("z.yaml", "run", "10.2.0.0/16", "192.0.2.2:51820"),
    );
    let outcome = validate(
        vec![Declaration::Peer(newcomer), Declaration::Peer(rotated)],
        &context,
    );
    assert_eq!(outcome.accepted.len(), 1, "{outcome:#?}");
    assert_eq!(outcome.accepted[0].public_key, key("rotated"));
    assert_eq!(outcome.rejected[0].origin, "a.yaml");
}

#[test]
fn a_running_peer_edited_to_collide_with_another_running_peer_loses_whatever_the_file_order() {
    for collision in COLLISIONS {
        for (holder_file, edited_file) in [("a.yaml", "z.yaml"), ("z.yaml", "a.yaml")] {
            let holder = declared_in(holder_file, "run", "10.2.0.0/16", "192.0.2.2:51820");
            let before = declared_in(edited_file, "new", "10.3.0.0/16", "192.0.2.3:51820");
            let mut edited = before.clone();
            collision.apply(&mut edited, &holder);
            let mut context = ctx();
            run(&mut context, &holder);
            run(&mut context, &before);
            let mut declarations = vec![holder.clone(), edited];
            declarations.sort_by(|a, b| a.origin.cmp(&b.origin));
            let outcome = validate(
                declarations.into_iter().map(Declaration::Peer).collect(),
                &context,
            );
            let case = format!("{collision:?}, unchanged peer in {holder_file}: {outcome:#?}");
            assert_eq!(outcome.accepted.len(), 1, "{case}");
            assert_eq!(outcome.accepted[0].id, holder.id, "{case}");
            assert_eq!(outcome.rejected[0].origin, edited_file, "{case}");
            assert_eq!(
                outcome.rejected[0].reason,
                collision.reason(&format!("peer run ({holder_file}, running)")),
                "{case}"
            );
        }
    }
}
