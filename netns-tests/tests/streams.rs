//! Three clusters joined by our gateway: paced UDP streams both ways between every pair of
//! pods arrive whole and in order. The baseline for measuring a key rotation.

use std::time::Duration;

use netns_tests::{
    Gateway, Streams, Topology, check_in_order, check_no_loss, format_stats, require_root,
    wait_reachable,
};

const REACH: Duration = Duration::from_secs(10);
const RATE_PPS: u32 = 1000;
const PORT: u16 = 40_000;
const RUN: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(2);

#[test]
fn three_clusters_stream_1000pps_each_way_without_loss() {
    require_root!();
    let topo = Topology::clusters(3).expect("build topology");
    let (a, b, c) = (&topo.clusters[0], &topo.clusters[1], &topo.clusters[2]);
    let _gw_a = Gateway::launch(a, &[b, c]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a, c]).expect("gateway b ready");
    let _gw_c = Gateway::launch(c, &[a, b]).expect("gateway c ready");
    for from in [a, b, c] {
        for to in [a, b, c] {
            if from.index != to.index {
                wait_reachable(&from.pod, to.pod_ip(), REACH).unwrap_or_else(|error| {
                    panic!("pod {} reaches pod {}: {error:#}", from.name, to.name)
                });
            }
        }
    }

    let pairs = [(a, b), (a, c), (b, c)].map(|(x, y)| (&x.pod, x.pod_ip(), &y.pod, y.pod_ip()));
    let streams = Streams::start(&pairs, RATE_PPS, PORT).expect("start the streams");
    run_for(RUN);
    let stats = streams.stop(DRAIN).expect("stop the streams");

    println!(
        "streams at {RATE_PPS} packets/s for {RUN:?}:\n{}",
        format_stats(&stats)
    );
    assert_eq!(stats.len(), 6, "one entry per direction");
    check_no_loss(&stats).unwrap_or_else(|error| panic!("{error:#}"));
    check_in_order(&stats).unwrap_or_else(|error| panic!("{error:#}"));
}

#[allow(
    clippy::disallowed_methods,
    reason = "the streams run for a fixed time; no event marks its end"
)]
fn run_for(time: Duration) {
    std::thread::sleep(time);
}
