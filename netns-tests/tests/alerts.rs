//! The shipped alert rules in a real Prometheus, scraping real gateways in network
//! namespaces: cutting the tunnel (gateway b killed) makes `ZTWireGuardPeerDown` fire for
//! cluster b at gateway a's series and `ZTWireGuardGatewayDown` fire for gateway b; bringing
//! b back resolves both.
//!
//! Two test-only settings, both documented in docs/metrics.md:
//! - The rules are loaded with every `for:` shortened to 2 s. Nothing else is rewritten: the
//!   test checks that every expression, label and annotation is the shipped one.
//! - The gateways run with `--test-peer-receive-window 3` and keepalive 1 s, so a cut tunnel
//!   reads as down within seconds instead of after 180 s + keepalive. The window only adds a
//!   condition to the production rule; the alert expression is unchanged.

use std::collections::BTreeSet;
use std::time::Duration;

use netns_tests::rules::{alert_rules, read_yaml, rules_path, with_for};
use netns_tests::{
    Alert, Cluster, Gateway, PROMETHEUS_INTERVAL, Prometheus, eventually, require_root,
    require_tool,
};
use nix::sys::signal::Signal;

/// The `for:` every rule gets in this test.
const FOR: Duration = Duration::from_secs(2);
/// After Prometheus has the sample: one evaluation to notice it, `for`, one evaluation to
/// fire, plus the test's own polling and HTTP round trip.
const FIRE_WITHIN: Duration = FOR
    .saturating_add(PROMETHEUS_INTERVAL.saturating_mul(2))
    .saturating_add(Duration::from_millis(500));
/// Test-only: a peer needs traffic within this window to count as up.
const RECEIVE_WINDOW: &str = "3";
const METRICS_PORT: u16 = 8055;

#[test]
fn peer_down_and_gateway_down_fire_when_the_tunnel_is_cut_and_resolve_when_it_is_back() {
    require_root!();
    require_tool!("prometheus");
    let topo = netns_tests::Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    topo.underlay
        .ip(&["addr", "add", "192.0.2.254/24", "dev", "br0"])
        .expect("give the monitoring side an underlay address");
    let target = |c: &Cluster| format!("{}:{METRICS_PORT}", c.underlay_ip());
    let (target_a, target_b) = (target(a), target(b));

    let rules = shortened_rules();
    eprintln!(
        "loading the shipped rules with every for: set to {FOR:?} (expressions unchanged); gateways run with --test-peer-receive-window {RECEIVE_WINDOW}"
    );
    let _gw_a = start(a, b);
    let mut gw_b = start(b, a);
    let prometheus = Prometheus::start(
        &topo.underlay,
        &[target_a.clone(), target_b.clone()],
        &rules,
    )
    .expect("prometheus ready");

    // Healthy: both directions up, as Prometheus sees them, and no alert active.
    wait_for_query(&prometheus, "zt_wireguard_peer_up == 1", 2, "both peers up");
    eventually(Duration::from_secs(10), || {
        let alerts = prometheus.alerts()?;
        anyhow::ensure!(alerts.is_empty(), "active alerts: {alerts:?}");
        Ok(())
    })
    .expect("no alert while healthy");

    // Cut: gateway b dies.
    gw_b.signal(Signal::SIGKILL).expect("kill gateway b");
    gw_b.wait_exit(Duration::from_secs(5))
        .expect("gateway b exits");
    let a_sees_b_down =
        format!("zt_wireguard_peer_up{{instance=\"{target_a}\",cluster=\"b\"}} == 0");
    wait_for_query(
        &prometheus,
        &a_sees_b_down,
        1,
        "gateway a reports cluster b down",
    );
    let peer_down = [
        ("alertname", "ZTWireGuardPeerDown"),
        ("severity", "critical"),
        ("instance", target_a.as_str()),
        ("cluster", "b"),
    ];
    wait_for_alert(
        &prometheus,
        &peer_down,
        FIRE_WITHIN,
        "PeerDown for cluster b",
    );
    let b_unscraped = format!("up{{instance=\"{target_b}\"}} == 0");
    wait_for_query(&prometheus, &b_unscraped, 1, "gateway b not scraped");
    let gateway_down = [
        ("alertname", "ZTWireGuardGatewayDown"),
        ("severity", "critical"),
        ("instance", target_b.as_str()),
    ];
    wait_for_alert(
        &prometheus,
        &gateway_down,
        FIRE_WITHIN,
        "GatewayDown for gateway b",
    );
    let active: BTreeSet<String> = prometheus
        .alerts()
        .expect("alerts")
        .into_iter()
        .filter_map(|alert| alert.labels.get("alertname").cloned())
        .collect();
    assert_eq!(
        active,
        BTreeSet::from([
            "ZTWireGuardGatewayDown".to_owned(),
            "ZTWireGuardPeerDown".to_owned()
        ]),
        "no other alert (the handshake is still recent)"
    );

    // Restore: gateway b comes back with the same key and addresses.
    drop(gw_b);
    let _gw_b = start(b, a);
    let a_sees_b_up = format!("zt_wireguard_peer_up{{instance=\"{target_a}\",cluster=\"b\"}} == 1");
    wait_for_query(
        &prometheus,
        &a_sees_b_up,
        1,
        "gateway a reports cluster b up again",
    );
    eventually(FIRE_WITHIN, || {
        let alerts = prometheus.alerts()?;
        anyhow::ensure!(alerts.is_empty(), "still active: {alerts:?}");
        Ok(())
    })
    .expect("both alerts resolve");
}

/// The shipped rules with every `for:` set to [`FOR`]; checks that nothing else changed.
fn shortened_rules() -> String {
    let shipped = std::fs::read_to_string(rules_path()).expect("rules file");
    let shortened = with_for(&shipped, &format!("{}s", FOR.as_secs()));
    let strip_for = |rules: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        rules
            .into_iter()
            .map(|mut rule| {
                if let Some(map) = rule.as_object_mut() {
                    map.remove("for");
                }
                rule
            })
            .collect()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("rules.yaml");
    std::fs::write(&copy, &shortened).expect("write copy");
    let ours = alert_rules(&read_yaml(&copy).expect("copy parses"));
    let theirs = alert_rules(&read_yaml(&rules_path()).expect("rules parse"));
    assert!(ours.iter().any(|r| r["for"] == "2s"), "for: not rewritten");
    assert_eq!(strip_for(ours), strip_for(theirs), "only for: may change");
    shortened
}

/// Starts `cluster`'s gateway with metrics on its underlay address, `peer` as its one peer
/// with keepalive 1 s, and the test-only receive window.
fn start<'c>(cluster: &'c Cluster, peer: &Cluster) -> Gateway<'c> {
    let mut setup = Gateway::setup(cluster).expect("set up gateway");
    setup.config.http_listen = format!("{}:{METRICS_PORT}", cluster.underlay_ip());
    setup.extra_args = vec![
        "--test-peer-receive-window".to_owned(),
        RECEIVE_WINDOW.to_owned(),
    ];
    let spec = netns_tests::PeerSpec {
        persistent_keepalive: Some(1),
        ..peer.peer()
    };
    setup.write_peer(&peer.name, &spec).expect("peer file");
    let mut gateway = setup.start().expect("start gateway");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    gateway
}

fn wait_for_query(prometheus: &Prometheus<'_>, expr: &str, count: usize, what: &str) {
    eventually(Duration::from_secs(15), || {
        let samples = prometheus.query(expr)?;
        anyhow::ensure!(samples.len() == count, "{expr}: {samples:?}");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{what}: {e:#}"));
}

fn wait_for_alert(
    prometheus: &Prometheus<'_>,
    labels: &[(&str, &str)],
    within: Duration,
    what: &str,
) {
    let found = eventually(within, || {
        let alerts = prometheus.alerts()?;
        let firing: Vec<&Alert> = alerts.iter().filter(|a| a.is_firing_with(labels)).collect();
        anyhow::ensure!(!firing.is_empty(), "not firing yet; active: {alerts:?}");
        Ok(firing.len())
    })
    .unwrap_or_else(|e| panic!("{what} within {within:?}: {e:#}"));
    assert_eq!(found, 1, "{what}: one alert");
}
