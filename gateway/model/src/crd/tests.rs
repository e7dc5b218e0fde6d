use kube::CustomResourceExt as _;

use super::*;

#[test]
fn committed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests/crds")
        .join(crate::CRD_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = crate::crd_yaml().expect("yaml");
    assert!(
        committed == generated,
        "{} is out of date: run `cargo run -p gateway --bin crdgen -- --write manifests/crds`",
        path.display()
    );
}

#[test]
fn crd_has_names_columns_status_and_validation() {
    let crd = serde_json::to_value(WireGuardPeer::crd()).expect("json");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "wgp");
    let version = &crd["spec"]["versions"][0];
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Cluster", "Endpoint", "Connected", "Last Handshake", "Age"]
    );
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["publicKey"]["maxLength"], 44);
    assert_eq!(spec["properties"]["allowedIPs"]["minItems"], 1);
    assert_eq!(
        spec["properties"]["persistentKeepalive"]["maximum"],
        65535.0
    );
    let text = spec.to_string();
    assert!(text.contains("isCIDR"), "{text}");
}

#[test]
fn spec_example_round_trips_into_a_raw_peer() {
    let yaml = r#"
apiVersion: zt.hanzo.ai/v1alpha1
kind: WireGuardPeer
metadata: { name: lux-k8s, namespace: zt-system }
spec:
  cluster: lux-k8s
  publicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
  endpoint: "24.144.69.101:51820"
  allowedIPs: ["10.10.0.2/32", "10.244.0.0/16"]
  persistentKeepalive: 25
  presharedKeySecretRef: { name: x, key: psk }
"#;
    let peer: WireGuardPeer = serde_saphyr::from_str(yaml).expect("parses");
    let raw = peer.to_raw();
    assert_eq!(raw.origin, "zt-system/lux-k8s");
    assert_eq!(raw.allowed_ips.len(), 2);
    assert!(raw.has_preshared_key_ref);
}
