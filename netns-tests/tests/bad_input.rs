//! Bad peer files on a running gateway: each is rejected with a WARN line naming the file and
//! the reason, the gateway keeps running, traffic between pods a and b keeps flowing, and once
//! the bad files are gone a good change still applies.

use std::time::Duration;

use anyhow::{bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use netns_tests::{
    Cluster, Gateway, PeerSpec, SteadyPing, Topology, eventually, ping, require_root,
    wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
/// The contract is 2 s from a file change to the device; this leaves room for a slow machine.
const APPLY: Duration = Duration::from_secs(6);

/// One class of bad input: the file written and the words its rejection must contain.
struct BadFile {
    file: &'static str,
    text: String,
    reason: &'static [&'static str],
}

#[test]
fn bad_peer_files_are_rejected_with_reasons_while_traffic_flows() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");

    let bad_files = bad_files(b);
    for bad in &bad_files {
        gw_a.write_peer_file(bad.file, &bad.text)
            .expect("write bad file");
        eventually(APPLY, || {
            let log = gw_a.log();
            let found = log.lines().any(|line| {
                line.contains("rejected")
                    && line.contains(bad.file)
                    && bad.reason.iter().all(|word| line.contains(word))
            });
            if !found {
                bail!("no line with `rejected`, {} and {:?}", bad.file, bad.reason);
            }
            Ok(())
        })
        .unwrap_or_else(|error| panic!("{}: {error:#}\nlog:\n{}", bad.file, gw_a.log()));
        assert!(gw_a.is_running(), "gateway a exited after {}", bad.file);
        let back = ping(&b.pod, a.pod_ip(), 3).expect("ping b -> a");
        assert_eq!(
            back.received, 3,
            "pod b -> pod a after {}: {back:?}",
            bad.file
        );
    }

    for bad in &bad_files {
        gw_a.remove_peer_file(bad.file).expect("remove bad file");
    }
    let good = fresh_peer("d", 50, "10.50.0.0/16");
    gw_a.write_peer("d", &good).expect("write good file");
    eventually(APPLY, || {
        let dump = gw_a.dump()?;
        ensure!(
            dump.peer(&good.public_key).is_some(),
            "peer d not applied: {dump:?}"
        );
        ensure!(
            dump.peer(&b.public_key()).is_some(),
            "peer b lost: {dump:?}"
        );
        ensure!(
            a.gw.has_route("10.50.0.0/16", gw_a.iface())?,
            "no route for peer d"
        );
        Ok(())
    })
    .expect("a good change applies after the bad files are removed");

    assert!(gw_a.is_running(), "gateway a exited");
    let stats = steady.stop().expect("stop steady ping");
    assert!(
        stats.transmitted >= 100,
        "steady ping ran too briefly: {stats:?}"
    );
    assert_eq!(
        stats.received, stats.transmitted,
        "steady ping a -> b lost packets during bad input: {stats:?}"
    );
}

/// One file per class. Names, clusters and address ranges are distinct from each other and
/// from peer b, except where a conflict is the point; file names sort after `b.yaml`.
fn bad_files(b: &Cluster) -> Vec<BadFile> {
    let yaml = |spec: PeerSpec| spec.to_yaml();
    let mut bad_base64 = fresh_peer("x1", 61, "10.61.0.0/16");
    bad_base64.public_key = "not*base64*at*all".to_owned();
    let mut short_key = fresh_peer("x2", 62, "10.62.0.0/16");
    short_key.public_key = STANDARD.encode([7u8; 16]);
    let bad_cidr = fresh_peer("x3", 63, "10.63.0.0/33");
    let overlap = fresh_peer("x4", 64, "10.2.1.0/24");
    let tunnel = fresh_peer("x5", 65, "10.10.0.1/32");
    let mut duplicate = fresh_peer("x6", 66, "10.66.0.0/16");
    duplicate.public_key = b.public_key();
    let unknown_field = format!(
        "{}  colour: blue\n",
        yaml(fresh_peer("x8", 68, "10.68.0.0/16"))
    );
    vec![
        BadFile {
            file: "x-base64.yaml",
            text: yaml(bad_base64),
            reason: &["base64"],
        },
        BadFile {
            file: "x-key-length.yaml",
            text: yaml(short_key),
            reason: &["32"],
        },
        BadFile {
            file: "x-cidr.yaml",
            text: yaml(bad_cidr),
            reason: &["CIDR"],
        },
        BadFile {
            file: "x-overlap.yaml",
            text: yaml(overlap),
            reason: &["overlaps"],
        },
        BadFile {
            file: "x-tunnel.yaml",
            text: yaml(tunnel),
            reason: &["overlaps", "tunnel"],
        },
        BadFile {
            file: "x-duplicate.yaml",
            text: yaml(duplicate),
            reason: &["duplicate"],
        },
        BadFile {
            file: "x-yaml.yaml",
            text: "apiVersion: zt.hanzo.ai/v1alpha1\nkind: WireGuardPeer\nmetadata: {name: [x7\n"
                .to_owned(),
            reason: &["YAML"],
        },
        BadFile {
            file: "x-unknown-field.yaml",
            text: unknown_field,
            reason: &["unknown field"],
        },
    ]
}

/// A well-formed peer with a fresh key, endpoint `192.0.2.<host>:51820` (nobody there) and one
/// allowed CIDR.
fn fresh_peer(name: &str, host: u8, cidr: &str) -> PeerSpec {
    let key = PrivateKey::generate().expect("generate key");
    PeerSpec {
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: STANDARD.encode(key.public_key()),
        endpoint: Some(format!("192.0.2.{host}:51820")),
        allowed_ips: vec![cidr.to_owned()],
        persistent_keepalive: Some(25),
    }
}
