//! Peer declarations written to hurt the gateway that reads them, on a running gateway:
//! - a link in the peer directory to a secret file, and documents whose bad fields hold a
//!   secret-looking marker: each is rejected, and the secret is in neither the log, the
//!   admin status (`peerctl status --output json`) nor `/metrics`;
//! - allowed IPs over the other gateway's endpoint or the local underlay: refused, the tunnel
//!   keeps carrying traffic;
//! - allowed IPs equal to a route the gateway did not make: that route is left in place while
//!   the peer exists and after it is removed.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use netns_tests::{
    Gateway, PeerSpec, SteadyPing, Topology, eventually, peerctl_bin, ping, require_root,
    wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
/// The contract is 2 s from a file change to the device; this leaves room for a slow machine.
const APPLY: Duration = Duration::from_secs(6);
/// What the secret file holds; no reason, log line, status or metric may contain it.
const MARKER: &str = "c2VjcmV0LW1hcmtlci1kby1ub3QtbG9nLTEyMzQ1Ng==";

/// A well-formed peer with a fresh key, an endpoint nobody answers on, and the given CIDRs.
fn fresh_peer(name: &str, endpoint: &str, cidrs: &[&str]) -> PeerSpec {
    let key = PrivateKey::generate().expect("generate key");
    PeerSpec {
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: STANDARD.encode(key.public_key()),
        endpoint: Some(endpoint.to_owned()),
        allowed_ips: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        persistent_keepalive: Some(25),
    }
}

fn wait_rejected(gw: &Gateway<'_>, file: &str, words: &[&str]) {
    eventually(APPLY, || {
        let log = gw.log();
        let found = log.lines().any(|line| {
            line.contains("rejected")
                && line.contains(file)
                && words.iter().all(|word| line.contains(word))
        });
        if !found {
            bail!("no line with `rejected`, {file} and {words:?}");
        }
        Ok(())
    })
    .unwrap_or_else(|error| panic!("{file}: {error:#}\nlog:\n{}", gw.log()));
}

fn status_json(gw: &Gateway<'_>) -> String {
    let socket = gw.config().admin_socket.to_string_lossy().into_owned();
    let out = Command::new(peerctl_bin().expect("peerctl binary"))
        .args(["status", "--socket", &socket, "--output", "json"])
        .output()
        .expect("run peerctl");
    assert!(
        out.status.success(),
        "peerctl status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn secrets_behind_peer_files_reach_neither_log_nor_status_nor_metrics() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let peers = gw_a.config().peers_path.clone();

    // Links out of the peer directory: to a secret file, and to the gateway's private key.
    let secret = gw_a.dir().join("client.secret");
    std::fs::write(&secret, format!("{MARKER}\n")).expect("write secret");
    std::os::unix::fs::symlink(&secret, peers.join("x-secret.yaml")).expect("symlink");
    std::os::unix::fs::symlink(&gw_a.config().key_path, peers.join("x-key.yaml")).expect("symlink");
    wait_rejected(&gw_a, "x-secret.yaml", &["symbolic link", "outside"]);
    wait_rejected(&gw_a, "x-key.yaml", &["symbolic link", "outside"]);

    // Documents whose bad fields hold the marker.
    let mut bad_cidr = fresh_peer("x3", "192.0.2.63:51820", &["10.63.0.0/16"]);
    bad_cidr.allowed_ips.push(MARKER.to_owned());
    gw_a.write_peer("x-cidr", &bad_cidr).expect("write");
    wait_rejected(&gw_a, "x-cidr.yaml", &["spec.allowedIPs[1]"]);
    let mut bad_cluster = fresh_peer("x4", "192.0.2.64:51820", &["10.64.0.0/16"]);
    bad_cluster.cluster = MARKER.to_owned();
    gw_a.write_peer("x-cluster", &bad_cluster).expect("write");
    wait_rejected(&gw_a, "x-cluster.yaml", &["spec.cluster"]);
    let wrong_type = fresh_peer("x5", "192.0.2.65:51820", &["10.65.0.0/16"])
        .to_yaml()
        .replace(
            "persistentKeepalive: 25",
            &format!("persistentKeepalive: {MARKER}"),
        );
    gw_a.write_peer_file("x-type.yaml", &wrong_type)
        .expect("write");
    wait_rejected(&gw_a, "x-type.yaml", &["persistentKeepalive", "wrong type"]);
    gw_a.write_peer_file("x-yaml.yaml", &format!("spec: [{MARKER}\n  x: {{\n"))
        .expect("write");
    wait_rejected(&gw_a, "x-yaml.yaml", &["unparseable YAML at line"]);

    let key = a.key.to_base64();
    let status = status_json(&gw_a);
    assert!(status.contains("x-secret.yaml"), "{status}");
    let metrics = gw_a.metrics().expect("metrics");
    let log = gw_a.log();
    for (what, text) in [("log", &log), ("status", &status), ("metrics", &metrics)] {
        assert!(
            !text.contains(MARKER),
            "the marker is in the {what}:\n{text}"
        );
        assert!(
            !text.contains(&key.as_str()[..16]),
            "the private key is in the {what}:\n{text}"
        );
    }
    let back = ping(&b.pod, a.pod_ip(), 3).expect("ping b -> a");
    assert_eq!(back.received, 3, "pod b -> pod a: {back:?}");
}

#[test]
fn allowed_ips_cannot_take_endpoints_the_underlay_or_routes_the_gateway_did_not_make() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");

    // Peer b's endpoint (192.0.2.2), then the underlay subnet holding a's own address.
    let endpoint = fresh_peer("x1", "198.51.100.1:51820", &["192.0.2.2/32"]);
    gw_a.write_peer("x-endpoint", &endpoint).expect("write");
    wait_rejected(&gw_a, "x-endpoint.yaml", &["endpoint address of peer b"]);
    let underlay = fresh_peer("x2", "198.51.100.2:51820", &["192.0.2.0/24"]);
    gw_a.write_peer("x-underlay", &underlay).expect("write");
    wait_rejected(&gw_a, "x-underlay.yaml", &["own network interfaces"]);
    for prefix in ["192.0.2.2/32", "192.0.2.0/24"] {
        assert!(
            !a.gw.has_route(prefix, gw_a.iface()).expect("ip route"),
            "{prefix} is routed into the tunnel"
        );
    }

    // A route the gateway did not make, and a peer that claims the same prefix.
    a.gw.ip(&[
        "route",
        "add",
        "10.70.0.0/16",
        "via",
        "192.0.2.254",
        "dev",
        "eth0",
    ])
    .expect("add a foreign route");
    a.gw.ip(&[
        "route",
        "add",
        "10.71.0.0/16",
        "via",
        "192.0.2.254",
        "dev",
        "eth0",
        "metric",
        "100",
    ])
    .expect("add a foreign route with a metric");
    let claimer = fresh_peer("y", "198.51.100.3:51820", &["10.70.0.0/16", "10.71.0.0/16"]);
    gw_a.write_peer("y", &claimer).expect("write");
    eventually(APPLY, || {
        ensure!(
            gw_a.log().contains("did not install"),
            "the refused route is not reported"
        );
        Ok(())
    })
    .unwrap_or_else(|error| panic!("{error:#}\nlog:\n{}", gw_a.log()));
    let foreign_routes_intact = || {
        for prefix in ["10.70.0.0/16", "10.71.0.0/16"] {
            ensure!(
                a.gw.has_route(prefix, "eth0")?,
                "the route to {prefix} via eth0 is gone"
            );
            ensure!(
                !a.gw.has_route(prefix, gw_a.iface())?,
                "{prefix} is routed into the tunnel"
            );
        }
        Ok(())
    };
    foreign_routes_intact().expect("foreign routes while peer y exists");
    gw_a.remove_peer_file("y.yaml").expect("remove y");
    let removed = format!("peer removed public_key={}", claimer.public_key);
    eventually(APPLY, || {
        ensure!(gw_a.log().contains(&removed), "peer y not removed");
        Ok(())
    })
    .unwrap_or_else(|error| panic!("{error:#}\nlog:\n{}", gw_a.log()));
    // A later pass (it applies another peer), then the routes must still be there.
    let later = fresh_peer("w", "198.51.100.4:51820", &["10.72.0.0/16"]);
    gw_a.write_peer("w", &later).expect("write");
    eventually(APPLY, || {
        ensure!(
            gw_a.log().contains("peer applied peer=\"w\""),
            "peer w not applied"
        );
        Ok(())
    })
    .unwrap_or_else(|error| panic!("{error:#}\nlog:\n{}", gw_a.log()));
    foreign_routes_intact().expect("foreign routes after peer y is removed");

    assert!(gw_a.is_running(), "gateway a exited");
    let stats = steady.stop().expect("stop steady ping");
    assert!(
        stats.transmitted >= 100,
        "steady ping ran too briefly: {stats:?}"
    );
    assert_eq!(
        stats.received, stats.transmitted,
        "steady ping a -> b lost packets: {stats:?}"
    );
}
