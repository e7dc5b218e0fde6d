//! Padding of data messages seen from the underlay (whitepaper section 5.4.6). A packet socket
//! on gateway a's underlay interface records every WireGuard message in both directions while
//! pings of every payload size from 0 to 80 and from 1290 to 1372 bytes (and a spread in
//! between) and a TCP transfer each way cross the tunnel. Every data message must carry a
//! plaintext padded to a multiple of 16 bytes, or exactly the MTU; the capture must have seen
//! the message length of every ping size and at least the transferred bytes in each
//! direction; every ping must come back byte for byte and every transfer must arrive with the
//! hash it was sent with. GSO super-packets are split into their messages
//! ([`netns_tests::wire`]).
//!
//! Run between two of our gateways, and between ours and `wireguard-go` (which pads as the
//! whitepaper says), so padded messages are shown to be delivered exactly both ways.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use netns_tests::wire::{Census, padded_len};
use netns_tests::{
    Capture, Cluster, Gateway, LISTEN_PORT, Topology, WgUserspace, echo_sizes, require_root,
    require_tool, tcp_transfer, wait_reachable,
};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
const REACH: Duration = Duration::from_secs(10);
/// The tunnel MTU of both ends.
const MTU: usize = 1420;
/// Bytes of the TCP transfer each way.
const TRANSFER: u64 = 8 * 1024 * 1024;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// An IPv4 header and an ICMP echo header: a ping of `n` payload bytes is a packet of `n + 28`.
const ECHO_HEADERS: usize = 28;

#[test]
fn every_data_message_between_our_gateways_is_padded_to_16_bytes() {
    require_root!();
    between_our_gateways("userspace");
}

#[test]
fn data_messages_between_our_gateway_and_wireguard_go_are_padded_both_ways() {
    require_root!();
    require_tool!("wireguard-go");
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let capture = Capture::start(&a.gw, "eth0", LISTEN_PORT).expect("start the capture");
    let _wg_b = WgUserspace::start(b, &[a.peer()]).expect("start wireguard-go b");
    let _gw_a = Gateway::launch_with(a, &[b], "userspace").expect("gateway a ready");
    padded_on_the_wire(a, b, capture);
}

/// Runs the check between two of our gateways on `backend`.
fn between_our_gateways(backend: &str) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let capture = Capture::start(&a.gw, "eth0", LISTEN_PORT).expect("start the capture");
    let _gw_a = Gateway::launch_with(a, &[b], backend).expect("gateway a ready");
    let _gw_b = Gateway::launch_with(b, &[a], backend).expect("gateway b ready");
    padded_on_the_wire(a, b, capture);
}

/// Sends pings of every size and a transfer between the pods of `a` and `b` both ways while
/// `capture` runs on a's underlay (from before the first handshake), then checks every data
/// message's length and that the capture saw the traffic.
fn padded_on_the_wire(a: &Cluster, b: &Cluster, capture: Capture) {
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");

    let sizes = ping_sizes();
    for (from, to) in [(a, b), (b, a)] {
        let failed = echo_sizes(&from.pod, to.pod_ip(), &sizes, ECHO_TIMEOUT)
            .unwrap_or_else(|e| panic!("ping {} -> {}: {e:#}", from.name, to.name));
        assert!(
            failed.is_empty(),
            "pod {} -> pod {}: no exact reply for payload sizes {failed:?}",
            from.name,
            to.name
        );
    }
    for (seed, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
        let listen = SocketAddrV4::new(to.pod_ip(), 5001);
        tcp_transfer(
            Path::new(XFER),
            &from.pod,
            &to.pod,
            listen,
            TRANSFER,
            seed as u64,
            TRANSFER_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("transfer pod {} -> pod {}: {e:#}", from.name, to.name));
    }

    let datagrams = capture.stop().expect("stop the capture");
    let census = Census::of(&datagrams);
    eprintln!("captured on a's underlay:\n{}", census.histogram(MTU));
    census
        .check_padding(MTU)
        .unwrap_or_else(|e| panic!("{e:#}"));
    for (from, to) in [(a, b), (b, a)] {
        let direction = (from.underlay_ip(), to.underlay_ip());
        let unseen: Vec<usize> = sizes
            .iter()
            .map(|size| padded_len(size + ECHO_HEADERS, MTU))
            .filter(|len| !census.saw(direction, *len))
            .collect();
        assert!(
            unseen.is_empty(),
            "{} -> {}: no data message of lengths {unseen:?}, which the pings make\n{}",
            from.name,
            to.name,
            census.histogram(MTU)
        );
        let carried = census.plaintext_bytes(direction);
        assert!(
            carried >= TRANSFER,
            "{} -> {}: the capture saw {carried} plaintext bytes, less than the {TRANSFER} \
             transferred\n{}",
            from.name,
            to.name,
            census.histogram(MTU)
        );
    }
}

/// Returns the ping payload sizes: all of 0..=80 and 1290..=1372, so both ends of the range
/// meet every remainder modulo 16, and every seventh size in between.
fn ping_sizes() -> Vec<usize> {
    (0..=80)
        .chain((81..1290).step_by(7))
        .chain(1290..=1372)
        .collect()
}
