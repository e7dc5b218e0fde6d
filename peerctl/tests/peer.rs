//! `peerctl peer add` prints a resource the gateway and the CRD schema accept.

use std::process::Command;

fn peerctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peerctl"))
        .args(args)
        .output()
        .expect("run peerctl")
}

const KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

#[test]
fn add_prints_the_wireguardpeer_yaml() {
    let out = peerctl(&[
        "peer",
        "add",
        "--cluster",
        "lux-k8s",
        "--public-key",
        KEY,
        "--endpoint",
        "24.144.69.101:51820",
        "--allowed-ips",
        "10.10.0.2/32,10.244.0.0/16",
        "--psk-secret",
        "zt-psk-lux:psk",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf8");
    let peer: gateway::crd::WireGuardPeer = serde_saphyr::from_str(&yaml).expect("parses back");
    assert!(yaml.contains("apiVersion: zt.hanzo.ai/v1alpha1"), "{yaml}");
    assert!(yaml.contains("kind: WireGuardPeer"), "{yaml}");
    assert_eq!(peer.metadata.name.as_deref(), Some("lux-k8s"));
    assert_eq!(peer.metadata.namespace.as_deref(), Some("zt-system"));
    assert_eq!(peer.spec.allowed_ips, ["10.10.0.2/32", "10.244.0.0/16"]);
    assert_eq!(peer.spec.persistent_keepalive, Some(25));
    assert_eq!(
        peer.spec.preshared_key_secret_ref.map(|r| r.name),
        Some("zt-psk-lux".to_owned())
    );
}

#[test]
fn add_rejects_what_the_gateway_would_reject_in_one_line() {
    for (flag, value, expected) in [
        ("--public-key", "short", "publicKey"),
        ("--allowed-ips", "10.2.0.1/16", "host bits"),
        ("--endpoint", "no-port", "endpoint"),
        ("--cluster", "Lux_K8s", "DNS"),
    ] {
        let mut args = vec![
            "peer",
            "add",
            "--cluster",
            "lux-k8s",
            "--public-key",
            KEY,
            "--allowed-ips",
            "10.2.0.0/16",
        ];
        if let Some(i) = args.iter().position(|a| *a == flag) {
            args[i + 1] = value;
        } else {
            args.extend([flag, value]);
        }
        let out = peerctl(&args);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}");
        let err = String::from_utf8(out.stderr).expect("utf8");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{flag}: {err}");
    }
}

#[test]
fn list_without_a_cluster_says_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_peerctl"))
        .args(["peer", "list"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert!(err.contains("KUBECONFIG"), "{err}");
}
