//! Observing our gateway from outside: `wg show <iface> dump` over its UAPI socket, and its
//! HTTP health and metrics endpoints.

use std::time::Duration;

use anyhow::ensure;
use netns_tests::{
    Gateway, LISTEN_PORT, Topology, eventually, metric_value, ping, require_root, unix_time,
    wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
/// Counters and handshake times may be published a little after the packets passed.
const SETTLE: Duration = Duration::from_secs(5);

#[test]
fn wg_show_dump_lists_peer_with_recent_handshake_and_growing_counters() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let before = eventually(SETTLE, || {
        let dump = gw_a.dump()?;
        let peer = dump
            .peer(&b.public_key())
            .ok_or_else(|| anyhow::anyhow!("peer b missing from {dump:?}"))?
            .clone();
        ensure!(peer.latest_handshake > 0, "no handshake yet: {peer:?}");
        ensure!(
            peer.rx_bytes > 0 && peer.tx_bytes > 0,
            "no bytes yet: {peer:?}"
        );
        Ok((dump, peer))
    })
    .expect("dump shows peer b after a handshake");
    let (dump, peer) = before;

    assert_eq!(dump.public_key, a.public_key(), "interface key");
    assert_eq!(dump.listen_port, LISTEN_PORT, "listen port");
    let now = unix_time().as_secs();
    assert!(
        peer.latest_handshake + 200 >= now && peer.latest_handshake <= now + 5,
        "handshake at {} is not within 200 s of now ({now})",
        peer.latest_handshake
    );
    assert_eq!(
        peer.endpoint.as_deref(),
        Some(b.endpoint().as_str()),
        "endpoint"
    );
    let mut allowed = peer.allowed_ips.clone();
    allowed.sort();
    assert_eq!(
        allowed,
        [format!("{}/32", b.tunnel_ip()), b.pod_cidr()],
        "allowed IPs"
    );

    let stats = ping(&a.pod, b.pod_ip(), 30).expect("ping a -> b");
    assert_eq!(stats.received, 30, "{stats:?}");
    eventually(SETTLE, || {
        let dump = gw_a.dump()?;
        let now = dump
            .peer(&b.public_key())
            .ok_or_else(|| anyhow::anyhow!("peer b missing from {dump:?}"))?;
        // 30 echo requests and replies of 84 bytes each, plus WireGuard overhead.
        ensure!(
            now.rx_bytes >= peer.rx_bytes + 30 * 84 && now.tx_bytes >= peer.tx_bytes + 30 * 84,
            "counters did not grow enough: before {peer:?}, now {now:?}"
        );
        Ok(())
    })
    .expect("rx and tx counters grow with traffic");
}

#[test]
fn metrics_report_peer_up_with_handshake_time_and_bytes() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let stats = ping(&a.pod, b.pod_ip(), 10).expect("ping a -> b");
    assert_eq!(stats.received, 10, "{stats:?}");

    assert_eq!(
        gw_a.http("/healthz").expect("GET /healthz").0,
        200,
        "/healthz"
    );
    assert_eq!(gw_a.http("/readyz").expect("GET /readyz").0, 200, "/readyz");
    let b_label = [("cluster", b.name.as_str())];
    eventually(SETTLE, || {
        let text = gw_a.metrics()?;
        let value = |name: &str| {
            metric_value(&text, name, &b_label)
                .ok_or_else(|| anyhow::anyhow!("no {name}{{cluster=\"b\"}} in:\n{text}"))
        };
        ensure!(
            value("zt_wireguard_peer_up")? == 1.0,
            "peer b not up:\n{text}"
        );
        let now = unix_time().as_secs_f64();
        let handshake = value("zt_wireguard_peer_last_handshake_timestamp_seconds")?;
        ensure!(
            handshake > now - 200.0 && handshake < now + 5.0,
            "handshake timestamp {handshake} not within 200 s of {now}"
        );
        ensure!(
            value("zt_wireguard_peer_receive_bytes_total")? > 0.0,
            "no rx:\n{text}"
        );
        ensure!(
            value("zt_wireguard_peer_transmit_bytes_total")? > 0.0,
            "no tx:\n{text}"
        );
        Ok(())
    })
    .expect("metrics describe peer b");
}
