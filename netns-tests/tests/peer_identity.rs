//! A peer is its declaration: on a running gateway, a new peer file that sorts before the
//! running peer's file and collides with it (same public key, name or cluster, or allowed IPs
//! overlapping its own) is rejected with a reason naming the running peer, and the running
//! peer keeps its key, allowed IPs and routes while traffic through it flows.

use std::time::Duration;

use anyhow::bail;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use netns_tests::{
    Gateway, PeerSpec, SteadyPing, Topology, eventually, require_root, wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
/// The contract is 2 s from a file change to the device; this leaves room for a slow machine.
const APPLY: Duration = Duration::from_secs(6);

#[test]
fn new_files_that_collide_with_a_running_peer_cannot_take_it_over() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");
    let running = b.peer();
    let before = gw_a.dump().expect("wg dump");
    let held = before
        .peer(&running.public_key)
        .expect("peer b applied")
        .clone();

    // Each file name sorts before b.yaml, the running peer's file.
    let mut same_key = fresh_peer("x1", 71, "10.71.0.0/16");
    same_key.public_key = running.public_key.clone();
    let mut same_name = fresh_peer("x2", 72, "10.72.0.0/16");
    same_name.name = running.name.clone();
    let mut same_cluster = fresh_peer("x3", 73, "10.73.0.0/16");
    same_cluster.cluster = running.cluster.clone();
    let overlap = fresh_peer("x4", 74, "10.2.1.0/24");
    let cases = [
        (
            "a-key.yaml",
            same_key,
            "duplicate publicKey: already used by peer b (b.yaml, running)",
        ),
        (
            "a-name.yaml",
            same_name,
            "duplicate metadata.name b: already declared by peer b (b.yaml, running)",
        ),
        (
            "a-cluster.yaml",
            same_cluster,
            "duplicate spec.cluster b: already declared by peer b (b.yaml, running)",
        ),
        (
            "a-ips.yaml",
            overlap,
            "allowedIPs 10.2.1.0/24 overlaps 10.2.0.0/16 of peer b (b.yaml, running)",
        ),
    ];
    for (file, spec, reason) in &cases {
        gw_a.write_peer_file(file, &spec.to_yaml())
            .expect("write colliding file");
        eventually(APPLY, || {
            let log = gw_a.log();
            if !log.lines().any(|line| {
                line.contains("rejected") && line.contains(file) && line.contains(reason)
            }) {
                bail!("no line with `rejected`, {file} and {reason:?}");
            }
            Ok(())
        })
        .unwrap_or_else(|error| panic!("{file}: {error:#}\nlog:\n{}", gw_a.log()));
        let now = gw_a.dump().expect("wg dump");
        let peer = now.peer(&running.public_key).expect("peer b still there");
        assert_eq!(peer.allowed_ips, held.allowed_ips, "{file}");
        assert_eq!(now.peers.len(), 1, "{file}: {now:?}");
        assert!(
            a.gw.has_route(&b.pod_cidr(), gw_a.iface())
                .expect("ip route"),
            "{file}: the route to pod b is gone"
        );
        for cidr in &spec.allowed_ips {
            if cidr != "10.2.1.0/24" {
                assert!(
                    !a.gw.has_route(cidr, gw_a.iface()).expect("ip route"),
                    "{file}: {cidr} is routed into the tunnel"
                );
            }
        }
    }

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

/// A well-formed peer with a fresh key, endpoint `198.51.100.<host>:51820` (nobody there) and
/// one allowed CIDR.
fn fresh_peer(name: &str, host: u8, cidr: &str) -> PeerSpec {
    let key = PrivateKey::generate().expect("generate key");
    PeerSpec {
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: STANDARD.encode(key.public_key()),
        endpoint: Some(format!("198.51.100.{host}:51820")),
        allowed_ips: vec![cidr.to_owned()],
        persistent_keepalive: Some(25),
    }
}
