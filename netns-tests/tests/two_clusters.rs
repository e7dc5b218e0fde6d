//! Two clusters joined by our gateway on both sides: pods reach each other by ping, and bulk
//! TCP arrives intact in both directions.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use netns_tests::{Gateway, Topology, ping, require_root, tcp_transfer, wait_reachable};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
const REACH: Duration = Duration::from_secs(10);
const TRANSFER_BYTES: u64 = 20 * 1024 * 1024;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn pods_ping_each_other_through_both_gateways() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");

    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");

    let a_to_b = ping(&a.pod, b.pod_ip(), 20).expect("ping a -> b");
    let b_to_a = ping(&b.pod, a.pod_ip(), 20).expect("ping b -> a");
    assert_eq!(a_to_b.received, 20, "pod a -> pod b: {a_to_b:?}");
    assert_eq!(b_to_a.received, 20, "pod b -> pod a: {b_to_a:?}");
}

#[test]
fn tcp_20mb_arrives_intact_in_both_directions() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let xfer = Path::new(XFER);
    let at_b = SocketAddrV4::new(b.pod_ip(), 5001);
    tcp_transfer(
        xfer,
        &a.pod,
        &b.pod,
        at_b,
        TRANSFER_BYTES,
        1,
        TRANSFER_TIMEOUT,
    )
    .expect("20 MB pod a -> pod b");
    let at_a = SocketAddrV4::new(a.pod_ip(), 5001);
    tcp_transfer(
        xfer,
        &b.pod,
        &a.pod,
        at_a,
        TRANSFER_BYTES,
        2,
        TRANSFER_TIMEOUT,
    )
    .expect("20 MB pod b -> pod a");
}
