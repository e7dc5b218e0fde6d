//! The native data plane seen from outside: `wg show dump` and `wg set` against its UAPI
//! socket, an in-place allowed-IPs change under a steady ping (nothing lost, no new
//! handshake), and garbage on its UDP port dropped and counted (in the log and on `/metrics`)
//! while the tunnel keeps working.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{anyhow, ensure};
use netns_tests::{
    Gateway, LISTEN_PORT, SteadyPing, Topology, eventually, metric_value, ping,
    promtool_check_metrics, require_root, require_tool, wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(5);
const NATIVE: &str = "native";
const DROPPED: &str = "zt_wireguard_dropped_packets_total";
const REASONS: [&str; 6] = [
    "invalid",
    "unknown_peer",
    "no_route",
    "no_endpoint",
    "bad_source",
    "key_exhausted",
];

#[test]
fn wg_show_and_wg_set_update_a_peer_in_place_without_loss_or_new_handshake() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch_with(a, &[b], NATIVE).expect("gateway a ready");
    let _gw_b = Gateway::launch_with(b, &[a], NATIVE).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let before = eventually(SETTLE, || {
        let dump = gw_a.dump()?;
        let peer = dump
            .peer(&b.public_key())
            .ok_or_else(|| anyhow!("peer b missing from {dump:?}"))?
            .clone();
        ensure!(peer.latest_handshake > 0, "no handshake yet: {peer:?}");
        ensure!(
            peer.rx_bytes > 0 && peer.tx_bytes > 0,
            "no bytes yet: {peer:?}"
        );
        ensure!(dump.public_key == a.public_key(), "interface key {dump:?}");
        ensure!(dump.listen_port == LISTEN_PORT, "listen port {dump:?}");
        Ok(peer)
    })
    .expect("wg show dump lists peer b with a handshake and bytes");
    assert_eq!(before.endpoint.as_deref(), Some(b.endpoint().as_str()));
    let mut allowed = before.allowed_ips.clone();
    allowed.sort();
    assert_eq!(allowed, [format!("{}/32", b.tunnel_ip()), b.pod_cidr()]);

    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10))
        .expect("start steady ping a -> b");
    let sent_at_least = |n: u32| {
        eventually(SETTLE, || {
            ensure!(steady.sent() >= n, "only {} pings sent", steady.sent());
            Ok(())
        })
        .expect("the steady ping runs");
    };
    sent_at_least(50);
    let extra = "10.99.0.0/16";
    let list = format!("{}/32,{},{extra}", b.tunnel_ip(), b.pod_cidr());
    a.gw.run(&[
        "wg",
        "set",
        gw_a.iface(),
        "peer",
        &b.public_key(),
        "allowed-ips",
        &list,
    ])
    .expect("wg set allowed-ips on the existing peer");
    let after = gw_a.dump().expect("dump after wg set");
    let peer = after.peer(&b.public_key()).expect("peer b still there");
    assert!(
        peer.allowed_ips.iter().any(|n| n == extra),
        "allowed IPs not updated: {peer:?}"
    );
    sent_at_least(steady.sent() + 150);
    let stats = steady.stop().expect("steady ping");
    assert!(stats.transmitted > 100, "{stats:?}");
    assert!(
        stats.lost.is_empty(),
        "packets lost across the update: {stats:?}"
    );
    let peer = gw_a
        .dump()
        .expect("dump")
        .peer(&b.public_key())
        .cloned()
        .expect("peer b");
    assert_eq!(
        peer.latest_handshake, before.latest_handshake,
        "the update started a new handshake"
    );
    // `wg showconf` reads the same socket.
    let conf =
        a.gw.run(&["wg", "showconf", gw_a.iface()])
            .expect("wg showconf");
    assert!(conf.contains(&b.public_key()), "{conf}");
}

fn dropped_invalid(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.split("dropped_invalid=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn garbage_on_the_udp_port_is_dropped_and_counted_while_the_tunnel_works() {
    require_root!();
    require_tool!("promtool");
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch_with(a, &[b], NATIVE).expect("gateway a ready");
    let _gw_b = Gateway::launch_with(b, &[a], NATIVE).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let dropped = |text: &str, reason: &str| {
        metric_value(
            text,
            DROPPED,
            &[("interface", gw_a.iface()), ("reason", reason)],
        )
    };
    // Every reason is exported from the driver's first pass on.
    let invalid_before = eventually(SETTLE, || {
        let text = gw_a.metrics()?;
        for reason in REASONS {
            ensure!(dropped(&text, reason).is_some(), "no {reason} series yet");
        }
        dropped(&text, "invalid").ok_or_else(|| anyhow!("no invalid series"))
    })
    .expect("the drop counters are on /metrics");

    let target = SocketAddr::new(a.underlay_ip().into(), LISTEN_PORT);
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        (0..200u8).collect(),
        // Truncated handshake initiation and response.
        [vec![1, 0, 0, 0], vec![7; 60]].concat(),
        [vec![2, 0, 0, 0], vec![7; 40]].concat(),
        // A well-formed initiation length with zeroed contents (bad MAC).
        [vec![1, 0, 0, 0], vec![0; 144]].concat(),
        // A data packet for a receiver index nobody holds.
        [vec![4, 0, 0, 0], vec![0x55; 60]].concat(),
    ];
    garbage.extend((0..20u8).map(|i| vec![i; 32 + usize::from(i)]));
    let sent = garbage.len() as u64;
    let from = b.underlay_ip();
    b.gw.run_in(|| {
        let socket = UdpSocket::bind((from, 0))?;
        for d in &garbage {
            socket.send_to(d, target)?;
        }
        Ok(())
    })
    .expect("send garbage from b's namespace");

    let stats = ping(&a.pod, b.pod_ip(), 20).expect("ping a -> b");
    assert_eq!(stats.received, 20, "tunnel after garbage: {stats:?}");
    let stats = ping(&b.pod, a.pod_ip(), 20).expect("ping b -> a");
    assert_eq!(stats.received, 20, "tunnel after garbage: {stats:?}");
    eventually(SETTLE, || {
        let counted = dropped_invalid(&gw_a.log());
        ensure!(
            counted >= sent,
            "counted {counted} of {sent} invalid datagrams"
        );
        Ok(())
    })
    .expect("the garbage is counted");
    let expected = invalid_before + sent as f64;
    let text = eventually(SETTLE, || {
        let text = gw_a.metrics()?;
        let counted = dropped(&text, "invalid").unwrap_or(0.0);
        ensure!(
            counted >= expected,
            "{DROPPED}{{reason=\"invalid\"}} is {counted}, expected at least {expected}"
        );
        Ok(text)
    })
    .expect("the garbage is counted on /metrics");
    let (passed, printed) = promtool_check_metrics(&text);
    assert!(
        passed && printed.trim().is_empty(),
        "promtool check metrics:\n{printed}"
    );
}
