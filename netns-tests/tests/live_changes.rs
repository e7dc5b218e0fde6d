//! Peer files changing under a running gateway: adding, modifying (allowed IPs, then the
//! endpoint) and removing peer c on gateway a takes effect within seconds, while a steady
//! 100 packets/s ping from pod a to pod b loses nothing.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, ensure};
use netns_tests::{
    Gateway, SteadyPing, Topology, WgPeer, eventually, ping, require_root, wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
/// The contract is 2 s from a file change to the device; this leaves room for a slow machine.
const APPLY: Duration = Duration::from_secs(6);

#[test]
fn peer_added_modified_and_removed_live_without_disturbing_other_peers() {
    require_root!();
    live_changes("userspace");
}

fn live_changes(backend: &str) {
    let topo = Topology::clusters(3).expect("build topology");
    let (a, b, c) = (&topo.clusters[0], &topo.clusters[1], &topo.clusters[2]);
    let gw_a = Gateway::launch_with(a, &[b], backend).expect("gateway a ready");
    let _gw_b = Gateway::launch_with(b, &[a], backend).expect("gateway b ready");
    let _gw_c = Gateway::launch_with(c, &[a], backend).expect("gateway c ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");
    let peer_c =
        |dump: &netns_tests::WgDump| -> Option<WgPeer> { dump.peer(&c.public_key()).cloned() };

    // Add: pod c becomes reachable from pod a.
    let no_reply = ping(&a.pod, c.pod_ip(), 2).expect("ping a -> c");
    assert_eq!(
        no_reply.received, 0,
        "c reachable before a knows it: {no_reply:?}"
    );
    let mut spec = c.peer();
    gw_a.write_peer("c", &spec).expect("add c.yaml");
    wait_reachable(&a.pod, c.pod_ip(), REACH).expect("pod a reaches pod c after adding c");

    // Modify allowed IPs: narrow c's pod CIDR from /16 to /24.
    spec.allowed_ips = vec![format!("{}/32", c.tunnel_ip()), "10.3.0.0/24".to_owned()];
    gw_a.write_peer("c", &spec)
        .expect("modify c.yaml allowedIPs");
    eventually(APPLY, || {
        let dump = gw_a.dump()?;
        let peer = peer_c(&dump).ok_or_else(|| anyhow!("peer c missing: {dump:?}"))?;
        let mut allowed = peer.allowed_ips.clone();
        allowed.sort();
        ensure!(
            allowed == ["10.10.0.3/32", "10.3.0.0/24"],
            "allowed IPs still {allowed:?}"
        );
        ensure!(
            a.gw.has_route("10.3.0.0/24", gw_a.iface())?,
            "no route 10.3.0.0/24"
        );
        ensure!(
            !a.gw.has_route("10.3.0.0/16", gw_a.iface())?,
            "stale route 10.3.0.0/16"
        );
        Ok(())
    })
    .expect("new allowed IPs applied to device and routes");
    wait_reachable(&a.pod, c.pod_ip(), REACH).expect("pod c reachable after allowedIPs change");

    // Modify the endpoint: c moves to a second underlay address and loses the first, so only
    // the new endpoint can work.
    let new_ip = Ipv4Addr::new(192, 0, 2, 100 + c.index);
    c.add_underlay_address(new_ip)
        .expect("add c's second address");
    spec.endpoint = Some(format!("{new_ip}:51820"));
    gw_a.write_peer("c", &spec).expect("modify c.yaml endpoint");
    // The gateway applies the new endpoint; until c loses its first address, c's own packets
    // still come from it and roaming (on authenticated packets) may move the endpoint back,
    // so the device's current endpoint is not the proof: the gateway's log of the change is.
    let new_endpoint = format!("endpoint=Some({new_ip}:51820)");
    eventually(APPLY, || {
        let log = gw_a.log();
        ensure!(
            log.lines()
                .any(|line| line.contains("peer applied") && line.contains(&new_endpoint)),
            "the new endpoint was not applied"
        );
        Ok(())
    })
    .expect("new endpoint applied");
    c.gw.sysctl("net.ipv4.conf.eth0.promote_secondaries", "1")
        .expect("keep the new address when the old one goes");
    c.gw.ip(&[
        "addr",
        "del",
        &format!("{}/24", c.underlay_ip()),
        "dev",
        "eth0",
    ])
    .expect("remove c's first address");
    wait_reachable(&a.pod, c.pod_ip(), REACH).expect("pod c reachable at its new endpoint");

    // Remove: pod c becomes unreachable.
    gw_a.remove_peer_file("c.yaml").expect("remove c.yaml");
    eventually(APPLY, || {
        let dump = gw_a.dump()?;
        ensure!(peer_c(&dump).is_none(), "peer c still configured: {dump:?}");
        ensure!(
            !a.gw.has_route("10.3.0.0/24", gw_a.iface())?,
            "route to c left behind"
        );
        Ok(())
    })
    .expect("peer c removed from device and routes");
    let after = ping(&a.pod, c.pod_ip(), 3).expect("ping a -> c");
    assert_eq!(
        after.received, 0,
        "pod c still reachable after removal: {after:?}"
    );

    let stats = steady.stop().expect("stop steady ping");
    assert!(
        stats.transmitted >= 100,
        "steady ping ran too briefly: {stats:?}"
    );
    assert_eq!(
        stats.received, stats.transmitted,
        "steady ping a -> b lost packets while c changed: {stats:?}"
    );
}
