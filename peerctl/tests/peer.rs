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
    let peer: ztgw_model::crd::WireGuardPeer = serde_saphyr::from_str(&yaml).expect("parses back");
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

/// `peer add --apply`, `peer list` and `peer remove` against the test API server
/// (`kube-fake`: no Kubernetes API server can run where the tests run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_list_and_remove_through_the_kubernetes_api() {
    let fake = kube_fake::FakeApiServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        kube_fake::FakeConfig::default(),
    )
    .await
    .expect("fake API server");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: operator\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: operator\n    namespace: zt-system\ncurrent-context: fake\n",
            fake.url()
        ),
    )
    .expect("write kubeconfig");
    let run = |args: Vec<&'static str>| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_peerctl"))
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
                .expect("run peerctl")
        })
    };

    let added = run(vec![
        "peer",
        "add",
        "--cluster",
        "lux-k8s",
        "--public-key",
        KEY,
        "--endpoint",
        "192.0.2.7:51820",
        "--allowed-ips",
        "10.10.0.2/32,10.245.0.0/16",
        "--apply",
    ])
    .await
    .expect("join");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let stored = fake
        .get(kube_fake::PEERS, "zt-system", "lux-k8s")
        .await
        .expect("stored");
    assert_eq!(stored["spec"]["cluster"], "lux-k8s");
    assert_eq!(stored["spec"]["allowedIPs"][1], "10.245.0.0/16");

    let listed = run(vec!["peer", "list", "--output", "json"])
        .await
        .expect("join");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(rows[0]["name"], "lux-k8s");
    assert_eq!(rows[0]["endpoint"], "192.0.2.7:51820");
    let table = run(vec!["peer", "list"]).await.expect("join");
    let table = String::from_utf8(table.stdout).expect("utf8");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("lux-k8s"), "{table}");

    let removed = run(vec!["peer", "remove", "lux-k8s"]).await.expect("join");
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert!(
        fake.get(kube_fake::PEERS, "zt-system", "lux-k8s")
            .await
            .is_none()
    );
}
