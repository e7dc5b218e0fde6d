//! Under handshake load a real peer still gets through, with the cookie: a stranger keeps
//! gateway a past its handshake limit with messages that carry a valid MAC1 (only a's
//! public key is needed for that), then wireguard-go in cluster b initiates. a answers with
//! a cookie reply, which wireguard-go must decrypt and keep; its retry carries MAC2 for its
//! own address and port, which a accepts, and the tunnel comes up.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netns_tests::forge::handshake_response;
use netns_tests::{
    Gateway, READY_TIMEOUT, Topology, WgProgram, WgUserspace, require_root, wait_reachable,
};

/// How long wireguard-go gets to come through: its first initiation gets a cookie reply, it
/// retries after Rekey-Timeout (5 s, plus up to a third of a second of jitter).
const REACH: Duration = Duration::from_secs(20);
/// The gateway answers this many handshake messages per window before it asks for cookies.
const HANDSHAKE_LIMIT: u32 = 100;
/// A receiver index whose slot no peer holds: such a response passes the MAC check, counts
/// against the limit and goes no further.
const EMPTY_SLOT: u32 = 5000 << 8;
/// The stranger keeping the gateway under load.
const STRANGER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 200), 4500);
/// How long the stranger waits for the cookie reply to a probe before it takes the count as
/// reset and sends a burst.
const PROBE_WAIT: Duration = Duration::from_millis(2);
/// wireguard-go runs this many times at most: the count resets once a second and the
/// stranger refills it within a few milliseconds, so an initiation may, rarely, arrive in
/// that gap and need no cookie; the next run then tries again.
const RUNS: usize = 3;
const COOKIE_RECEIVED: &str = "Receiving cookie response";
const COOKIE_REFUSED: &str = "Could not decrypt invalid cookie response";

#[test]
fn wireguard_go_gets_through_a_gateway_under_load_with_its_cookie() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // Keepalive 0 (off) keeps our gateway from initiating: b does, under load.
    let mut b_for_a = b.peer();
    b_for_a.persistent_keepalive = Some(0);
    let setup = Gateway::setup(a)
        .expect("set up gateway a")
        .backend("userspace");
    setup.write_peer("b", &b_for_a).expect("write peer b");
    let mut gw_a = setup.start().expect("start gateway a");
    gw_a.wait_ready(READY_TIMEOUT).expect("gateway a ready");
    topo.underlay
        .ip(&[
            "addr",
            "add",
            &format!("{}/24", STRANGER.ip()),
            "dev",
            "br0",
        ])
        .expect("stranger address");
    let target = SocketAddrV4::new(a.underlay_ip(), netns_tests::LISTEN_PORT);
    let key = a.key.public_key();
    let wireguard_go = WgProgram::wireguard_go().with_env("LOG_LEVEL", "verbose");

    let stop = AtomicBool::new(false);
    let (log, cookie_replies) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            topo.underlay
                .run_in(|| keep_under_load(&key, target, &stop))
        });
        // Whatever happens to wireguard-go, the load stops before this thread may panic.
        let log = runs(&wireguard_go, &topo);
        stop.store(true, Ordering::Relaxed);
        let replies = load.join().expect("load thread");
        (log, replies)
    });
    let log = log.unwrap_or_else(|e| panic!("{e:#}"));
    let cookie_replies = cookie_replies.expect("keep gateway a under load");

    assert!(
        cookie_replies > 0,
        "the stranger's messages got no cookie reply: gateway a was never under load"
    );
    assert!(
        log.contains(COOKIE_RECEIVED),
        "wireguard-go got through without a cookie in every run:\n{log}"
    );
    assert!(
        !log.contains(COOKIE_REFUSED),
        "wireguard-go refused a cookie reply:\n{log}"
    );
}

/// Runs wireguard-go in cluster b until pod b reaches pod a through it after a cookie, at
/// most [`RUNS`] times; returns wireguard-go's log of the last run.
fn runs(wireguard_go: &WgProgram, topo: &Topology) -> anyhow::Result<String> {
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut log = String::new();
    for _ in 0..RUNS {
        let wg_b = WgUserspace::start_with(wireguard_go, b, &[a.peer()])?;
        let reached = wait_reachable(&b.pod, a.pod_ip(), REACH);
        log = wg_b.log();
        drop(wg_b);
        if let Err(e) = reached {
            anyhow::bail!("pod b does not reach pod a under load: {e:#}\nwireguard-go:\n{log}");
        }
        if log.contains(COOKIE_RECEIVED) {
            break;
        }
    }
    Ok(log)
}

/// Keeps the gateway at `target` past its handshake limit until `stop`: probes with one
/// message at a time and, when a probe gets no cookie reply (the count was reset), sends a
/// burst that fills the count again. Returns the number of cookie replies received.
fn keep_under_load(key: &[u8; 32], target: SocketAddrV4, stop: &AtomicBool) -> anyhow::Result<u64> {
    let socket = UdpSocket::bind(STRANGER)?;
    socket.set_read_timeout(Some(PROBE_WAIT))?;
    let mut replies = 0u64;
    let mut answer = [0u8; 128];
    // Sender indexes: 0 for bursts, from 1 on for probes, so a late reply is told apart.
    let burst = handshake_response(key, 0, EMPTY_SLOT);
    let mut probe = 0u32;
    while !stop.load(Ordering::Relaxed) {
        probe = probe.wrapping_add(1).max(1);
        socket.send_to(&handshake_response(key, probe, EMPTY_SLOT), target)?;
        let mut loaded = false;
        while let Ok(n) = socket.recv(&mut answer) {
            if n == 64 && answer[0] == 3 {
                replies += 1;
                if answer[4..8] == probe.to_le_bytes() {
                    loaded = true;
                    break;
                }
            }
        }
        if !loaded {
            for _ in 0..HANDSHAKE_LIMIT {
                socket.send_to(&burst, target)?;
            }
        }
    }
    Ok(replies)
}
