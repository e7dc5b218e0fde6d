//! Interoperability: our gateway in cluster a, `wireguard-go` configured by `wg` in cluster b.
//! Traffic must flow both ways whichever side sends the first packet (and so initiates the
//! handshake).

use std::path::Path;
use std::time::Duration;

use netns_tests::{
    Gateway, READY_TIMEOUT, Topology, WgUserspace, require_root, traffic_both_ways, wait_reachable,
};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
const REACH: Duration = Duration::from_secs(10);

fn we_send_first(backend: &str) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // Without keepalive wireguard-go stays silent until it has something to send.
    let mut a_for_b = a.peer();
    a_for_b.persistent_keepalive = None;
    let _wg_b = WgUserspace::start(b, &[a_for_b]).expect("start wireguard-go b");
    let _gw_a = Gateway::launch_with(a, &[b], backend).expect("gateway a ready");

    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b (a first)");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");
    traffic_both_ways(Path::new(XFER), a, b);
}

fn they_send_first(backend: &str) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // Keepalive 0 (off) keeps our gateway from initiating before b does.
    let mut b_for_a = b.peer();
    b_for_a.persistent_keepalive = Some(0);
    let setup = Gateway::setup(a)
        .expect("set up gateway a")
        .backend(backend);
    setup.write_peer("b", &b_for_a).expect("write peer b");
    let mut gw_a = setup.start().expect("start gateway a");
    gw_a.wait_ready(READY_TIMEOUT).expect("gateway a ready");
    let _wg_b = WgUserspace::start(b, &[a.peer()]).expect("start wireguard-go b");

    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a (b first)");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    traffic_both_ways(Path::new(XFER), a, b);
}

#[test]
fn traffic_flows_both_ways_when_our_gateway_sends_first() {
    require_root!();
    we_send_first("userspace");
}

#[test]
fn traffic_flows_both_ways_when_wireguard_go_sends_first() {
    require_root!();
    they_send_first("userspace");
}
