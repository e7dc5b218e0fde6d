//! Two clusters joined by our gateway on both sides: pods reach each other by ping, and bulk
//! TCP arrives intact in both directions.

use std::path::Path;
use std::time::Duration;

use netns_tests::{Gateway, Topology, require_root, traffic_both_ways, wait_reachable};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
const REACH: Duration = Duration::from_secs(10);

fn pings_and_bulk_tcp(backend: &str) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_a = Gateway::launch_with(a, &[b], backend).expect("gateway a ready");
    let _gw_b = Gateway::launch_with(b, &[a], backend).expect("gateway b ready");

    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");
    traffic_both_ways(Path::new(XFER), a, b);
}

#[test]
fn pings_and_20mb_tcp_pass_both_ways_through_both_gateways() {
    require_root!();
    pings_and_bulk_tcp("userspace");
}
