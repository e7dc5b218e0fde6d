use super::*;

const GOOD: &str = r#"
apiVersion: zt.hanzo.ai/v1alpha1
kind: WireGuardPeer
metadata: { name: lux-k8s, namespace: zt-system }
spec:
  cluster: lux-k8s
  publicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
  endpoint: "24.144.69.101:51820"
  allowedIPs: ["10.10.0.2/32", "10.244.0.0/16"]
  persistentKeepalive: 25
"#;

fn only(decls: Vec<Declaration>) -> Declaration {
    assert_eq!(decls.len(), 1, "{decls:?}");
    decls.into_iter().next().expect("one")
}

#[test]
fn spec_example_parses() {
    let Declaration::Peer(raw) = only(parse_file("lux.yaml", GOOD)) else {
        panic!("not parsed");
    };
    assert_eq!(raw.name, "lux-k8s");
    assert_eq!(raw.cluster, "lux-k8s");
    assert_eq!(raw.allowed_ips, ["10.10.0.2/32", "10.244.0.0/16"]);
    assert_eq!(raw.persistent_keepalive, Some(25));
    assert_eq!(raw.origin, "lux.yaml");
    assert_eq!(raw.id, PeerId::file("lux.yaml", "lux-k8s"));
}

#[test]
fn files_and_resources_convert_through_the_same_spec() {
    let Declaration::Peer(from_file) = only(parse_file("lux.yaml", GOOD)) else {
        panic!("not parsed");
    };
    let resource: crate::crd::WireGuardPeer = serde_saphyr::from_str(GOOD).expect("resource");
    let from_resource = resource.to_raw();
    assert_eq!(from_resource.id, PeerId::resource("zt-system", "lux-k8s"));
    assert_eq!(
        crate::core::validate::RawPeer {
            id: from_file.id.clone(),
            origin: from_file.origin.clone(),
            ..from_resource
        },
        from_file
    );
}

#[test]
fn several_documents_are_numbered() {
    let text = format!("{GOOD}\n---\n{}", GOOD.replace("lux-k8s", "other"));
    let decls = parse_file("two.yaml", &text);
    assert_eq!(decls.len(), 2);
    let Declaration::Peer(second) = &decls[1] else {
        panic!("not parsed");
    };
    assert_eq!(second.origin, "two.yaml (document 2)");
    assert_eq!(second.id, PeerId::file("two.yaml", "other"));
}

#[test]
fn unknown_spec_field_is_named() {
    let text = GOOD.replace(
        "persistentKeepalive: 25",
        "persistentKeepalive: 25\n  colour: blue",
    );
    let Declaration::Unreadable { reason, .. } = only(parse_file("x.yaml", &text)) else {
        panic!("accepted");
    };
    assert!(reason.contains("spec: unknown field"), "{reason}");
    assert!(!reason.contains("colour"), "{reason}");
}

const MARKER: &str = "c2VjcmV0LW1hcmtlci0xMjM0NTY3ODkwYWJjZGVmZ2g=";

fn reason_of(text: &str) -> String {
    match only(parse_file("x.yaml", text)) {
        Declaration::Unreadable { reason, .. } => reason,
        Declaration::Peer(raw) => panic!("accepted: {raw:?}"),
    }
}

#[test]
fn a_file_of_one_secret_line_is_not_quoted() {
    // What a link to a private key file reads as: one plain scalar.
    let reason = reason_of(&format!("{MARKER}\n"));
    assert!(!reason.contains(MARKER), "{reason}");
    assert!(reason.contains("wrong type"), "{reason}");
}

#[test]
fn values_of_the_wrong_type_or_shape_are_not_quoted() {
    for (from, to) in [
        (
            "allowedIPs: [\"10.10.0.2/32\", \"10.244.0.0/16\"]",
            format!("allowedIPs: {MARKER}"),
        ),
        (
            "persistentKeepalive: 25",
            format!("persistentKeepalive: {MARKER}"),
        ),
        (
            "persistentKeepalive: 25",
            format!("persistentKeepalive: 25\n  {MARKER}: 1"),
        ),
        ("kind: WireGuardPeer", format!("kind: {MARKER}")),
        (
            "apiVersion: zt.hanzo.ai/v1alpha1",
            format!("apiVersion: [{MARKER}]"),
        ),
        (
            "metadata: { name: lux-k8s, namespace: zt-system }",
            format!("metadata: {MARKER}"),
        ),
    ] {
        let text = GOOD.replace(from, &to);
        assert_ne!(text, GOOD, "{from}");
        let reason = reason_of(&text);
        assert!(!reason.contains(MARKER), "{to}: {reason}");
        assert!(!reason.contains("c2VjcmV0"), "{to}: {reason}");
    }
}

#[test]
fn the_reason_names_the_field_and_the_kind_of_problem() {
    let text = GOOD.replace(
        "allowedIPs: [\"10.10.0.2/32\", \"10.244.0.0/16\"]",
        "allowedIPs: [\"10.10.0.2/32\", [1]]",
    );
    let reason = reason_of(&text);
    assert_eq!(
        reason,
        "not a WireGuardPeer: spec.allowedIPs[1]: wrong type, expected a string"
    );
    let text = GOOD.replace("  cluster: lux-k8s\n", "");
    assert_eq!(
        reason_of(&text),
        "not a WireGuardPeer: spec: missing field `cluster`"
    );
}

#[test]
fn yaml_syntax_errors_give_the_position_not_the_text() {
    for text in [
        format!("spec: [{MARKER}\n  x: {{"),
        format!("a: b\n{MARKER}: [\n"),
        format!("\"{MARKER}\\q\""),
        format!("a: *{MARKER}\n"),
        format!("{MARKER}: 1\n{MARKER}: 2\n"),
    ] {
        let reason = reason_of(&text);
        assert!(!reason.contains("c2VjcmV0"), "{text}: {reason}");
    }
    let reason = reason_of(&format!("spec: [{MARKER}\n  x: {{"));
    assert!(reason.starts_with("unparseable YAML at line "), "{reason}");
}

#[test]
fn broken_yaml_is_unreadable_in_one_line() {
    let Declaration::Unreadable { reason, origin } =
        only(parse_file("bad.yaml", "spec: [unclosed\n  x: {"))
    else {
        panic!("accepted");
    };
    assert_eq!(origin, "bad.yaml");
    assert!(reason.starts_with("unparseable YAML"), "{reason}");
    assert!(!reason.contains('\n'));
}

#[test]
fn wrong_kind_is_rejected() {
    let text = GOOD.replace("kind: WireGuardPeer", "kind: ConfigMap");
    let Declaration::Unreadable { reason, .. } = only(parse_file("x.yaml", &text)) else {
        panic!("accepted");
    };
    assert!(
        reason.contains("must be zt.hanzo.ai/v1alpha1/WireGuardPeer"),
        "{reason}"
    );
    assert!(!reason.contains("ConfigMap"), "{reason}");
}

#[test]
fn kubectl_metadata_is_tolerated() {
    let text = GOOD.replace(
        "metadata: { name: lux-k8s, namespace: zt-system }",
        "metadata: { name: lux-k8s, uid: abc, resourceVersion: \"7\", generation: 3 }",
    );
    assert!(matches!(
        only(parse_file("x.yaml", &text)),
        Declaration::Peer(_)
    ));
}

#[test]
fn empty_file_declares_nothing() {
    assert!(parse_file("empty.yaml", "").is_empty());
    assert!(parse_file("empty.yaml", "---\n").is_empty());
}
