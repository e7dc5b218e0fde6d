//! Restart after a crash, a live interface never taken over, and no key material in what the
//! gateway prints or serves.

use std::time::Duration;

use netns_tests::{Gateway, Topology, require_root, wait_reachable};
use nix::sys::signal::Signal;

const REACH: Duration = Duration::from_secs(10);
const EXIT: Duration = Duration::from_secs(10);

#[test]
fn restart_after_kill_recovers_stale_socket_and_interface() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let mut crashed = Gateway::launch(a, &[b]).expect("gateway a ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let socket = crashed.socket_path();

    crashed.signal(Signal::SIGKILL).expect("kill -9");
    crashed.wait_exit(EXIT).expect("killed gateway exits");
    assert!(socket.exists(), "a killed gateway leaves its socket behind");
    // A leftover interface of the same name, as a crashed run of another build might leave.
    a.gw.ip(&["tuntap", "add", "dev", &a.iface, "mode", "tun"])
        .expect("create a stale interface");

    let restarted = Gateway::launch(a, &[b]).expect("restarted gateway a ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b after the restart");
    let log = restarted.log();
    assert!(log.contains("stale UAPI socket"), "{log}");
    assert!(log.contains("stale interface"), "{log}");
}

#[test]
fn second_gateway_never_takes_over_a_live_interface() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let first = Gateway::launch(a, &[b]).expect("gateway a ready");

    // Same interface name (so the same UAPI socket path) from another namespace.
    let mut setup = Gateway::setup(b).expect("setup");
    setup.config.iface = first.iface().to_owned();
    let mut second = setup.start().expect("start second gateway");
    let status = second.wait_exit(EXIT).expect("second gateway exits");

    assert!(!status.success());
    let stderr = second.stderr();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("already served"), "{stderr}");
    assert!(first.socket_path().exists(), "the live socket was removed");
    assert!(
        a.gw.has_link(first.iface()).expect("ip link"),
        "the live interface was removed"
    );
}

#[test]
fn private_key_never_appears_in_logs_metrics_or_health() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let mut gw_a = Gateway::setup(a)
        .expect("setup")
        .with_peers(&[b])
        .expect("peers")
        .start()
        .expect("start");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT).expect("ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let mut served = String::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        served.push_str(&gw_a.http(path).expect("http").1);
    }
    gw_a.stop(EXIT).expect("clean stop");
    let printed = format!("{}{}", gw_a.log(), gw_a.stderr());

    let base64 = a.key.to_base64();
    let hex = a.key.to_hex();
    for (what, text) in [("log", &printed), ("HTTP answers", &served)] {
        assert!(
            !text.contains(base64.as_str()),
            "base64 private key in the {what}"
        );
        assert!(
            !text.contains(hex.as_str()),
            "hex private key in the {what}"
        );
        assert!(
            !text.to_lowercase().contains(&hex[..16]),
            "part of the hex private key in the {what}"
        );
    }
    assert!(
        printed.contains(&a.public_key()),
        "the log names the key by its public key"
    );
}
