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
    assert!(reason.contains("unknown field `colour`"), "{reason}");
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
        reason.contains("expected zt.hanzo.ai/v1alpha1/WireGuardPeer"),
        "{reason}"
    );
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
