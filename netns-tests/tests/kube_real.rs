//! Against a real Kubernetes API server (etcd and kube-apiserver built by
//! `scripts/go-tools.sh`, started in the test's namespaces): the generated CRD is accepted and
//! enforced by the API server's own validation, `kubectl` and `peerctl` work with it, and two
//! gateways, each running as the ServiceAccount of `manifests/base` with the shipped Role, read
//! their peers and preshared keys, report status by server-side apply and hold their Lease.
//! The peers' rotation states live in their `WireGuardPeer` status: through the store as the
//! gateway's ServiceAccount, and end to end when a peer rotates its key.
//! A permission the Role lacks fails these tests.
//!
//! The fault cases a real server cannot be made to produce on demand (cut watches, 410 after
//! compaction, refused renewals) stay with `fake-apiserver` (tests/kubernetes.rs and the
//! gateway's unit tests).

use std::time::Duration;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use netns_tests::{
    CRD_NAME, Cluster, Gateway, GatewaySetup, NAMESPACE, READY_TIMEOUT, RealApiServer, Topology,
    condition, eventually, peerctl_bin, require_kube, require_root, wait_reachable, workspace_dir,
};
use serde_json::Value;

const REACH: Duration = Duration::from_secs(10);
const STATUS: Duration = Duration::from_secs(30);

#[test]
fn the_crd_is_accepted_and_enforced_and_kubectl_and_peerctl_work_with_it() {
    require_root!();
    require_kube!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let api = RealApiServer::start(&a.gw, a.underlay_ip()).expect("real API server");
    api.apply_crd().expect("the generated CRD is accepted");

    let crd: Value = serde_json::from_str(
        &api.kubectl(&["get", "crd", CRD_NAME, "-o", "json"])
            .expect("get crd"),
    )
    .expect("crd JSON");
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    for kind in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True"),
            "{kind} is not True: {conditions:?}"
        );
    }
    assert!(
        !conditions
            .iter()
            .any(|c| c["type"] == "NonStructuralSchema"),
        "the schema is not structural: {conditions:?}"
    );
    let version = &crd["spec"]["versions"][0];
    assert!(
        version["subresources"]["status"].is_object(),
        "no status subresource: {version}"
    );

    let examples = workspace_dir().join("manifests/examples");
    api.kubectl(&[
        "apply",
        "-f",
        &workspace_dir()
            .join("manifests/base/namespace.yaml")
            .to_string_lossy(),
    ])
    .expect("namespace");
    api.kubectl(&[
        "apply",
        "-f",
        &examples.join("hanzo-k8s-peer.yaml").to_string_lossy(),
    ])
    .expect("the shipped example is accepted");
    let table = api
        .kubectl(&["get", "wireguardpeers", "-n", NAMESPACE])
        .expect("kubectl get wireguardpeers");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CLUSTER",
            "ENDPOINT",
            "CONNECTED",
            "LAST",
            "HANDSHAKE",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..3),
        Some(&["hanzo-k8s", "hanzo-k8s", "24.144.69.101:51820"][..]),
        "{table}"
    );
    let short = api
        .kubectl(&["get", "wgp", "-n", NAMESPACE, "-o", "name"])
        .expect("kubectl get wgp");
    assert_eq!(short.trim(), "wireguardpeer.zt.hanzo.ai/hanzo-k8s");

    let invalid = std::fs::read_dir(examples.join("invalid")).expect("invalid examples");
    let mut refused = 0;
    for entry in invalid {
        let path = entry.expect("entry").path();
        let output = api
            .kubectl_output(&["apply", "-f", &path.to_string_lossy()])
            .expect("kubectl apply");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains("is invalid"),
            "{} was not refused by the API server: {} {stderr}",
            path.display(),
            output.status
        );
        refused += 1;
    }
    assert_eq!(refused, 3, "the shipped invalid examples");
    let names = api
        .kubectl(&["get", "wireguardpeers", "-n", NAMESPACE, "-o", "name"])
        .expect("list");
    assert_eq!(names.trim(), "wireguardpeer.zt.hanzo.ai/hanzo-k8s");

    // peerctl, as an operator with the administrator's kubeconfig.
    let key = STANDARD.encode(PrivateKey::generate().expect("random").public_key());
    let added = peerctl(
        &api,
        &[
            "peer",
            "add",
            "--cluster",
            "lux-k8s",
            "--public-key",
            &key,
            "--endpoint",
            "192.0.2.9:51820",
            "--allowed-ips",
            "10.10.0.9/32,10.9.0.0/16",
            "--psk-secret",
            "zt-psk-lux:psk",
            "--apply",
        ],
    )
    .expect("peerctl peer add --apply");
    assert!(added.contains("applied"), "{added}");
    let stored = api.peer("lux-k8s").expect("the applied peer");
    assert_eq!(stored["spec"]["publicKey"], key.as_str());
    assert_eq!(stored["spec"]["endpoint"], "192.0.2.9:51820");
    assert_eq!(
        stored["spec"]["allowedIPs"],
        serde_json::json!(["10.10.0.9/32", "10.9.0.0/16"])
    );
    assert_eq!(
        stored["spec"]["presharedKeySecretRef"]["name"],
        "zt-psk-lux"
    );
    // Applying the same again is idempotent (server-side apply).
    peerctl(
        &api,
        &[
            "peer",
            "add",
            "--cluster",
            "lux-k8s",
            "--public-key",
            &key,
            "--allowed-ips",
            "10.10.0.9/32",
            "--apply",
        ],
    )
    .expect("peerctl peer add --apply again");
    let stored = api.peer("lux-k8s").expect("the applied peer");
    assert_eq!(
        stored["spec"]["allowedIPs"],
        serde_json::json!(["10.10.0.9/32"])
    );

    let listed = peerctl(&api, &["peer", "list"]).expect("peerctl peer list");
    assert!(
        listed.contains("lux-k8s") && listed.contains("hanzo-k8s"),
        "{listed}"
    );
    let json: Value = serde_json::from_str(
        &peerctl(&api, &["peer", "list", "-o", "json"]).expect("peerctl peer list -o json"),
    )
    .expect("peer list JSON");
    assert!(json.to_string().contains("lux-k8s"), "{json}");

    let removed = peerctl(&api, &["peer", "remove", "lux-k8s"]).expect("peerctl peer remove");
    assert!(removed.contains("deleted"), "{removed}");
    let names = api
        .kubectl(&["get", "wireguardpeers", "-n", NAMESPACE, "-o", "name"])
        .expect("list");
    assert_eq!(names.trim(), "wireguardpeer.zt.hanzo.ai/hanzo-k8s");
    assert!(
        peerctl(&api, &["peer", "remove", "lux-k8s"]).is_err(),
        "removing a missing peer succeeded"
    );
}

#[test]
fn two_clusters_from_real_api_servers_as_the_gateway_service_account() {
    require_root!();
    require_kube!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let api_a = RealApiServer::start(&a.gw, a.underlay_ip()).expect("API server a");
    let api_b = RealApiServer::start(&b.gw, b.underlay_ip()).expect("API server b");
    api_a.install_gateway_rbac(&a.iface).expect("RBAC a");
    api_b.install_gateway_rbac(&b.iface).expect("RBAC b");
    let psk = PrivateKey::generate()
        .expect("random")
        .to_base64()
        .to_string();
    api_a.put_secret("tunnel-psk", &psk).expect("secret a");
    api_b.put_secret("tunnel-psk", &psk).expect("secret b");
    api_a
        .put_peer(&b.peer(), Some("tunnel-psk"))
        .expect("peer b in a");
    api_b
        .put_peer(&a.peer(), Some("tunnel-psk"))
        .expect("peer a in b");

    let mut gw_a = start(a, &api_a).start().expect("start gateway a");
    let mut gw_b = start(b, &api_b).start().expect("start gateway b");
    gw_a.wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("gateway a ready: {e:#}\n{}", gw_a.log()));
    gw_b.wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("gateway b ready: {e:#}\n{}", gw_b.log()));
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let shown =
        a.gw.run(&["wg", "show", gw_a.iface(), "preshared-keys"])
            .expect("wg show preshared-keys");
    assert!(
        shown.contains(&format!("{}\t{psk}", b.public_key())),
        "gateway a does not use the preshared key for b: {shown}"
    );
    let peer = eventually(STATUS, || {
        let peer = api_a.peer(&b.name)?;
        ensure!(
            condition(&peer, "Connected")
                == Some(("True".to_owned(), "HandshakeRecent".to_owned())),
            "not connected yet: {}",
            peer["status"]
        );
        Ok(peer)
    })
    .unwrap_or_else(|e| panic!("b's status says Connected=True: {e:#}\n{}", gw_a.log()));
    assert_eq!(
        condition(&peer, "Ready"),
        Some(("True".to_owned(), "Applied".to_owned()))
    );
    assert_eq!(peer["status"]["observedGeneration"], 1);
    let managed = peer["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert!(
        managed
            .iter()
            .any(|m| m["operation"] == "Apply" && m["subresource"] == "status"),
        "the status was not written by server-side apply: {managed:?}"
    );
    let table = api_a
        .kubectl(&["get", "wireguardpeers", "-n", NAMESPACE, &b.name])
        .expect("kubectl get");
    assert!(table.contains("True"), "the Connected column: {table}");

    for (api, cluster, gateway) in [(&api_a, a, &gw_a), (&api_b, b, &gw_b)] {
        let lease = api
            .lease(&format!("zt-gateway-{}", cluster.iface))
            .expect("the gateway's lease");
        assert!(
            lease["spec"]["holderIdentity"]
                .as_str()
                .is_some_and(|h| !h.is_empty()),
            "{lease}"
        );
        let log = gateway.log();
        assert!(!log.contains(&psk), "the preshared key was logged");
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the gateway was refused something: {log}"
        );
    }

    api_a.delete_peer(&b.name).expect("delete peer b");
    eventually(REACH, || {
        let dump = gw_a.dump()?;
        ensure!(dump.peers.is_empty(), "b still on gateway a: {dump:?}");
        Ok(())
    })
    .expect("deleting the resource removes the peer");
    gw_a.stop(Duration::from_secs(10)).expect("gateway a stops");
    let lease = api_a
        .lease(&format!("zt-gateway-{}", a.iface))
        .expect("lease");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "a clean shutdown releases the lease: {lease}"
    );
}

fn start<'c>(cluster: &'c Cluster, api: &RealApiServer<'_>) -> GatewaySetup<'c> {
    let mut setup = Gateway::setup(cluster).expect("setup");
    setup.config.peers_toml = Some(api.gateway_peers_toml().expect("gateway token"));
    setup
}

fn peerctl(api: &RealApiServer<'_>, args: &[&str]) -> anyhow::Result<String> {
    let bin = peerctl_bin()?;
    let env = format!("KUBECONFIG={}", api.admin_kubeconfig().display());
    let bin = bin.to_string_lossy();
    let mut argv = vec!["env", env.as_str(), bin.as_ref()];
    argv.extend_from_slice(args);
    let output = api.netns().exec(&argv)?;
    ensure!(
        output.status.success(),
        "peerctl {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).context("peerctl output")
}

/// Lease duration (15 s) after the last renewal (at most 5 s before the kill), plus a
/// standby's retry interval and start-up.
const TAKEOVER: Duration = Duration::from_secs(30);

#[test]
fn a_standby_gateway_takes_the_real_lease_over_when_the_first_is_killed() {
    require_root!();
    require_kube!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // On a's underlay address, so that a gateway in b's namespace reaches it too.
    let api = RealApiServer::start(&a.gw, a.underlay_ip()).expect("real API server");
    api.install_gateway_rbac(&a.iface).expect("RBAC");
    api.put_peer(&b.peer(), None).expect("peer b");
    let lease_name = format!("zt-gateway-{}", a.iface);

    let mut first = start(a, &api).start().expect("start the first gateway");
    first
        .wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("first gateway ready: {e:#}\n{}", first.log()));
    let first_holder = api.lease(&lease_name).expect("lease")["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
        .expect("a holder");

    // The same key, interface and lease, in b's gateway namespace where the UDP port is free.
    let mut second = start(a, &api)
        .run_in(&b.gw)
        .start()
        .expect("start the second gateway");
    let expected = format!("not ready: lease held by {first_holder}");
    eventually(READY_TIMEOUT, || {
        let (code, body) = second.http("/readyz")?;
        ensure!(
            code == 503 && body.contains(&expected),
            "/readyz: {code} {body}"
        );
        Ok(())
    })
    .expect("the second gateway says who holds the lease");

    first
        .signal(nix::sys::signal::Signal::SIGKILL)
        .expect("kill the first gateway");
    first
        .wait_exit(Duration::from_secs(5))
        .expect("first gateway gone");
    drop(first);
    second
        .wait_ready(TAKEOVER)
        .unwrap_or_else(|e| panic!("the second gateway takes over: {e:#}\n{}", second.log()));
    let lease = api.lease(&lease_name).expect("lease");
    assert_ne!(
        lease["spec"]["holderIdentity"].as_str().unwrap_or_default(),
        first_holder
    );
    assert!(
        lease["spec"]["leaseTransitions"].as_i64() >= Some(1),
        "{lease}"
    );
    assert!(
        !second.log().to_lowercase().contains("forbidden"),
        "the gateway was refused something: {}",
        second.log()
    );
}

/// How long a condition rewritten in the background may take to show.
const REWRITE: Duration = Duration::from_secs(30);

#[test]
fn peer_rotation_states_live_in_the_wireguardpeer_status_as_the_gateway_account() {
    require_root!();
    require_kube!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let api = RealApiServer::start(&a.gw, a.underlay_ip()).expect("real API server");
    api.install_gateway_rbac(&a.iface).expect("RBAC");
    let peer = a.peer();
    api.put_peer(&peer, None).expect("peer");
    // The peer source's status writer (field manager zt-gateway) has reported the peer.
    let ready = serde_json::json!({
        "apiVersion": "zt.hanzo.ai/v1alpha1",
        "kind": "WireGuardPeer",
        "metadata": {"name": peer.name, "namespace": NAMESPACE},
        "status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Applied",
            "message": "the peer is configured on the WireGuard interface",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]},
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), ready.to_string()).expect("write");
    api.kubectl(&[
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=zt-gateway",
        "-f",
        &file.path().to_string_lossy(),
    ])
    .expect("the source's status");
    let kubeconfig = api.gateway_kubeconfig().expect("gateway token");

    // The API server listens in the cluster's namespace: the client runs there.
    let outcome = a.gw.run_in(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("runtime")?
            .block_on(rotation_states_round_trip(&api, &kubeconfig, &peer))
    });
    outcome.unwrap_or_else(|e| panic!("{e:#}"));
}

/// Stores a pending and then a completed rotation of `peer` through the store, as the
/// gateway's ServiceAccount, and checks what the API server holds after each; then the
/// operator updates the declaration and the condition follows.
async fn rotation_states_round_trip(
    api: &RealApiServer<'_>,
    kubeconfig: &std::path::Path,
    peer: &netns_tests::PeerSpec,
) -> anyhow::Result<()> {
    use gateway::core::key::PublicKey;
    use gateway::rotate::PeerStore;
    use gateway::rotate::peer_store::status::{FIELD_MANAGER, KEY_CURRENT};
    use ztgw_rotation::RotationId;
    use ztgw_rotation::machine::AnnounceBody;
    use ztgw_rotation::responder::{self, PeerRotationState};

    let old = PublicKey::from_base64(&peer.public_key).context("the peer's key")?;
    let new = PublicKey::from_bytes(PrivateKey::generate().context("random")?.public_key());
    let ours = PublicKey::from_bytes(PrivateKey::generate().context("random")?.public_key());
    let id = RotationId::new("00000000000000aa").context("id")?;
    let announce = AnnounceBody {
        rotation_id: id.clone(),
        sequence: 3,
        next_public_key: new,
        sender_key: old,
        receiver_key: ours,
    };
    let (pending, _ack) = responder::on_announce(&PeerRotationState::new(old), &announce, &ours)
        .map_err(|r| anyhow::anyhow!("announce refused: {r}"))?;
    let completed = responder::on_complete(&pending, &id)
        .map_err(|r| anyhow::anyhow!("complete refused: {r}"))?;
    let client = gateway::cluster::connect(Some(kubeconfig)).await?;
    let name = peer.name.as_str();

    let store = PeerStore::open_kube(client.clone(), NAMESPACE).await?;
    ensure!(store.get(name).is_none(), "a state before any was stored");
    store.set_declared([(name.to_owned(), old)].into());
    store.put(name, pending.clone()).await?;
    let reopened = PeerStore::open_kube(client.clone(), NAMESPACE).await?;
    ensure!(
        reopened.get(name).as_ref() == Some(&pending),
        "the pending state was not loaded again"
    );
    let stored = api.peer(name)?;
    let status = &stored["status"];
    ensure!(status["activePublicKey"] == old.to_base64(), "{status}");
    ensure!(status["nextPublicKey"] == new.to_base64(), "{status}");
    ensure!(
        condition(&stored, KEY_CURRENT)
            == Some(("True".to_owned(), "DeclarationCurrent".to_owned())),
        "{status}"
    );
    ensure!(
        condition(&stored, "Ready") == Some(("True".to_owned(), "Applied".to_owned())),
        "the source's condition went: {status}"
    );
    let managed = stored["metadata"]["managedFields"]
        .as_array()
        .context("managedFields")?;
    let fields_of = |manager: &str| {
        managed
            .iter()
            .find(|m| m["manager"] == manager && m["subresource"] == "status")
            .map(|m| m["fieldsV1"].to_string())
            .unwrap_or_default()
    };
    let ours_fields = fields_of(FIELD_MANAGER);
    for field in [
        "f:rotation",
        "f:activePublicKey",
        "f:nextPublicKey",
        "k:{\\\"type\\\":\\\"KeyCurrent\\\"}",
    ] {
        ensure!(ours_fields.contains(field), "{field} not ours: {managed:?}");
    }
    let source_fields = fields_of("zt-gateway");
    ensure!(
        source_fields.contains("Ready") && !source_fields.contains("KeyCurrent"),
        "the source's manager: {managed:?}"
    );

    store.put(name, completed.clone()).await?;
    let reopened = PeerStore::open_kube(client, NAMESPACE).await?;
    ensure!(
        reopened.get(name).as_ref() == Some(&completed),
        "the completed state was not loaded again"
    );
    let stored = api.peer(name)?;
    let status = &stored["status"];
    ensure!(status["activePublicKey"] == new.to_base64(), "{status}");
    ensure!(
        status.get("nextPublicKey").is_none(),
        "nextPublicKey left: {status}"
    );
    ensure!(
        stored["spec"]["publicKey"] == old.to_base64(),
        "the declaration was rewritten"
    );
    ensure!(
        condition(&stored, KEY_CURRENT)
            == Some(("False".to_owned(), "DeclarationOutdated".to_owned())),
        "{status}"
    );
    let message = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == KEY_CURRENT))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default();
    ensure!(
        message.contains(&format!("set spec.publicKey to {new}")),
        "{message}"
    );
    ensure!(
        condition(&stored, "Ready").is_some(),
        "the source's condition went: {status}"
    );

    // The operator declares the key the peer rotated to; the driver's next pass records it.
    let mut updated = peer.clone();
    updated.public_key = new.to_base64();
    api.put_peer(&updated, None)?;
    store.set_declared([(name.to_owned(), new)].into());
    let mut waited = Duration::ZERO;
    loop {
        let stored = api.peer(name)?;
        if condition(&stored, KEY_CURRENT)
            == Some(("True".to_owned(), "DeclarationCurrent".to_owned()))
        {
            break;
        }
        ensure!(
            waited < REWRITE,
            "the condition did not follow the declaration: {}",
            stored["status"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += Duration::from_millis(200);
    }
    Ok(())
}

/// A rotation takes a few seconds here; this bounds a stuck one.
const ROTATION: Duration = Duration::from_secs(60);

#[test]
fn a_peer_rotation_is_recorded_in_its_wireguardpeer_status_and_survives_a_restart() {
    require_root!();
    require_kube!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let api_a = RealApiServer::start(&a.gw, a.underlay_ip()).expect("API server a");
    let api_b = RealApiServer::start(&b.gw, b.underlay_ip()).expect("API server b");
    api_a.install_gateway_rbac(&a.iface).expect("RBAC a");
    api_b.install_gateway_rbac(&b.iface).expect("RBAC b");
    api_a.put_peer(&b.peer(), None).expect("peer b in a");
    api_b.put_peer(&a.peer(), None).expect("peer a in b");
    let mut gw_a = start_rotating(a, &api_a);
    let gw_b = start_rotating(b, &api_b);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    // b rotates its key; a records it in b's WireGuardPeer before it acknowledges.
    let (old, new) = rotate(&gw_b);
    assert_eq!(old, b.public_key());
    let peer = eventually(STATUS, || {
        let peer = api_a.peer(&b.name)?;
        ensure!(
            condition(&peer, "KeyCurrent")
                == Some(("False".to_owned(), "DeclarationOutdated".to_owned())),
            "not recorded yet: {}",
            peer["status"]
        );
        Ok(peer)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw_a.log()));
    let status = &peer["status"];
    assert_eq!(status["activePublicKey"], new.as_str(), "{status}");
    assert!(status.get("nextPublicKey").is_none(), "{status}");
    assert_eq!(status["rotation"]["active_public_key"], new.as_str());
    assert_eq!(peer["spec"]["publicKey"], old.as_str(), "spec rewritten");
    assert!(
        status
            .to_string()
            .contains(&format!("set spec.publicKey to {new}")),
        "{status}"
    );
    assert_eq!(
        condition(&peer, "Ready"),
        Some(("True".to_owned(), "Applied".to_owned())),
        "{status}"
    );

    // A restarted a (its state file is new and empty) runs b under the new key from the
    // status, although the declaration still names the old one.
    gw_a.stop(Duration::from_secs(10)).expect("gateway a stops");
    drop(gw_a);
    let gw_a = start_rotating(a, &api_a);
    wait_reachable(&a.pod, b.pod_ip(), REACH)
        .unwrap_or_else(|e| panic!("pod a reaches pod b after a restart: {e:#}\n{}", gw_a.log()));
    let dump = gw_a.dump().expect("wg dump");
    let keys: Vec<&str> = dump.peers.iter().map(|p| p.public_key.as_str()).collect();
    assert_eq!(keys, [new.as_str()], "a runs b under its new key");

    // The operator updates the declaration; the condition follows.
    let mut updated = b.peer();
    updated.public_key = new.clone();
    api_a.put_peer(&updated, None).expect("update peer b in a");
    eventually(STATUS, || {
        let peer = api_a.peer(&b.name)?;
        ensure!(
            condition(&peer, "KeyCurrent")
                == Some(("True".to_owned(), "DeclarationCurrent".to_owned())),
            "not current yet: {}",
            peer["status"]
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gw_a.log()));
    for gateway in [&gw_a, &gw_b] {
        assert!(
            !gateway.log().to_lowercase().contains("forbidden"),
            "the gateway was refused something: {}",
            gateway.log()
        );
    }
}

/// Starts `cluster`'s gateway on `api` with a short control-channel hello interval, and
/// waits until it is ready.
fn start_rotating<'c>(cluster: &'c Cluster, api: &RealApiServer<'_>) -> Gateway<'c> {
    let mut setup = start(cluster, api);
    setup.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
    let mut gateway = setup.start().expect("start gateway");
    gateway
        .wait_ready(READY_TIMEOUT)
        .unwrap_or_else(|e| panic!("gateway ready: {e:#}\n{}", gateway.log()));
    gateway
}

/// Rotates `gateway`'s key with `peerctl rotate --now` once its peers' channels carry the
/// rotation messages, and waits for the end; returns the old and the new key.
fn rotate(gateway: &Gateway<'_>) -> (String, String) {
    let socket = gateway.config().admin_socket.to_string_lossy().into_owned();
    let peerctl = |args: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new(peerctl_bin()?)
            .args(args)
            .args(["--socket", &socket])
            .output()
            .context("run peerctl")?;
        ensure!(
            output.status.success(),
            "peerctl {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).context("peerctl output")
    };
    // A rotation started before the channel is up would have no peer to announce to.
    eventually(ROTATION, || {
        let doc: Value = serde_json::from_str(&peerctl(&["status", "--output", "json"])?)?;
        let channels = doc["channels"].as_array().context("channels")?;
        ensure!(
            channels.iter().any(|c| c["state"] == "up"
                && c["capabilities"]
                    .as_array()
                    .is_some_and(|caps| caps.iter().any(|cap| cap == "rotate.announce"))),
            "no channel up with rotation yet: {channels:?}"
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gateway.log()));
    eventually(ROTATION, || {
        let started = peerctl(&["rotate", "--now"])?;
        ensure!(started.contains("started"), "{started}");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gateway.log()));
    let run = eventually(ROTATION, || {
        let status: Value = serde_json::from_str(&peerctl(&["rotate", "--status", "--json"])?)?;
        let run = status["current"].clone();
        ensure!(run["finished_unix"].is_u64(), "still running: {run}");
        Ok(run)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", gateway.log()));
    assert_eq!(run["phase"], "complete", "{run}\n{}", gateway.log());
    (
        run["old_public_key"].as_str().expect("old").to_owned(),
        run["next_public_key"].as_str().expect("next").to_owned(),
    )
}
