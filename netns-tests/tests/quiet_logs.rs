//! The gateway's log stays quiet while peers do not answer, and says once when a peer comes
//! up or goes down.
//!
//! - 200 peers whose endpoint never answers, each sent a packet so that each starts
//!   handshakes: at the default level the log gains only a bounded number of lines while the
//!   handshakes are retried every 5 s, and none is a handshake retry of the WireGuard
//!   library. A listener on the peers' endpoint counts the initiations, so the test knows
//!   the retries happened.
//! - Naming the library in `--log` (`info,boringtun=warn`) shows its retries again.
//! - Two gateways: gateway a logs its peer once as up, with the peer's name, and once as down
//!   after gateway b is killed. The gateways run with `--test-peer-receive-window 3` and
//!   keepalive 1 s (see docs/metrics.md), so a cut tunnel reads as down within seconds
//!   instead of after 180 s + keepalive.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use netns_tests::{Cluster, Gateway, Netns, PeerSpec, Topology, eventually, require_root};
use nix::sys::signal::Signal;

const SILENT_PEERS: u8 = 200;
/// Where every silent peer's endpoint points: an address on the underlay bridge, where only
/// the test's counting listener receives (and never answers).
const VOID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const VOID_PORT: u16 = 40_000;
/// How long the silent peers keep retrying while the log is watched: three rounds of the
/// 5 s handshake retry.
const WATCH: Duration = Duration::from_secs(15);
/// The most lines the log may gain while [`WATCH`] runs (one per peer per retry would be
/// about 600).
const MAX_LINES: usize = 50;
/// Handshake initiations the listener must see: at least two per peer, a first one and a
/// retry.
const MIN_INITIATIONS: usize = 2 * SILENT_PEERS as usize;
const INITIATION: u8 = 1;
const INITIATION_LEN: usize = 148;

#[test]
fn two_hundred_silent_peers_retrying_handshakes_log_a_bounded_number_of_lines() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    topo.underlay
        .ip(&["addr", "add", &format!("{VOID}/24"), "dev", "br0"])
        .expect("give the void an underlay address");

    let setup = Gateway::setup(a).expect("set up gateway");
    let peers: Vec<PeerSpec> = (1..=SILENT_PEERS).map(silent_peer).collect();
    setup.write_peers("silent", &peers).expect("peers file");
    let mut gateway = setup.start().expect("start gateway");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    eventually(Duration::from_secs(10), || {
        let count = gateway.dump()?.peers.len();
        anyhow::ensure!(count == usize::from(SILENT_PEERS), "{count} peers applied");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
    let before = gateway.stderr().lines().count();

    let initiations = std::thread::scope(|scope| {
        let (bound, listening) = mpsc::channel();
        let listener = scope.spawn(|| topo.underlay.run_in(|| count_initiations(bound)));
        listening.recv().expect("the listener is bound");
        send_one_packet_to_each_peer(&a.gw, SILENT_PEERS);
        listener
            .join()
            .expect("listener thread")
            .expect("count initiations")
    });

    let log = gateway.stderr();
    let added: Vec<&str> = log.lines().skip(before).collect();
    eprintln!(
        "{initiations} handshake initiations reached the void; the log gained {} lines:\n{}",
        added.len(),
        added.join("\n")
    );
    assert!(
        initiations >= MIN_INITIATIONS,
        "only {initiations} handshake initiations: the peers did not retry, the test proves nothing"
    );
    assert!(
        added.len() < MAX_LINES,
        "{} lines logged while {SILENT_PEERS} peers retried handshakes",
        added.len()
    );
    for word in ["REKEY_TIMEOUT", "HANDSHAKE("] {
        assert!(
            !log.contains(word),
            "the library's per-retry event {word} was logged at the default level"
        );
    }
    assert!(gateway.is_running(), "gateway exited:\n{log}");
}

#[test]
fn naming_the_library_in_the_filter_shows_its_handshake_retries() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let mut setup = Gateway::setup(a).expect("set up gateway");
    setup.extra_args = vec!["--log".to_owned(), "info,boringtun=warn".to_owned()];
    setup
        .write_peer("silent", &silent_peer(1))
        .expect("peer file");
    let mut gateway = setup.start().expect("start gateway");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    eventually(Duration::from_secs(10), || {
        anyhow::ensure!(gateway.dump()?.peers.len() == 1, "peer not applied");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
    send_one_packet_to_each_peer(&a.gw, 1);
    // The first retry comes 5 s after the first initiation.
    wait_for_line(&gateway, "WARN", "HANDSHAKE(REKEY_TIMEOUT)");
}

#[test]
fn a_peer_is_logged_once_up_with_its_name_and_once_down_when_its_gateway_dies() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = start_named(a, b, "b-east");
    let mut gw_b = start_named(b, a, "a-west");

    let up = wait_for_line(&gw_a, "peer up", "b-east");
    assert!(up.contains("INFO"), "up is logged at INFO: {up}");
    wait_for_line(&gw_b, "peer up", "a-west");

    gw_b.signal(Signal::SIGKILL).expect("kill gateway b");
    gw_b.wait_exit(Duration::from_secs(5))
        .expect("gateway b exits");
    let down = wait_for_line(&gw_a, "peer down", "b-east");
    assert!(down.contains("WARN"), "down is logged at WARN: {down}");

    // A few more reconcile passes with the peer still down add no line about it.
    settle(Duration::from_secs(4));
    let log = gw_a.stderr();
    let about_b: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("b-east") && !line.contains("peer applied"))
        .collect();
    assert_eq!(
        about_b.len(),
        2,
        "exactly one up and one down line about b:\n{log}"
    );
    assert!(about_b[0].contains("peer up") && about_b[1].contains("peer down"));
    for line in &about_b {
        assert!(
            !line.contains(&b.public_key()),
            "a transition line carries the peer's key: {line}"
        );
    }
}

/// A peer named `silent-<i>` with a fresh key, its endpoint in the void and one address of
/// its own, `10.100.0.<i>/32`.
fn silent_peer(index: u8) -> PeerSpec {
    let key = PrivateKey::generate().expect("generate key");
    PeerSpec {
        name: format!("silent-{index:03}"),
        cluster: format!("silent-{index:03}"),
        public_key: STANDARD.encode(key.public_key()),
        endpoint: Some(format!("{VOID}:{VOID_PORT}")),
        allowed_ips: vec![format!("{}/32", silent_address(index))],
        persistent_keepalive: None,
    }
}

fn silent_address(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 100, 0, index)
}

/// Sends one UDP datagram from the gateway's namespace to the address of each of the first
/// `count` silent peers, so that the gateway starts a handshake with each.
fn send_one_packet_to_each_peer(gw: &Netns, count: u8) {
    gw.run_in(|| {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        for index in 1..=count {
            socket.send_to(b"hello", SocketAddr::from((silent_address(index), 9)))?;
        }
        Ok(())
    })
    .expect("send a packet to each peer");
}

/// Listens on the void's endpoint for [`WATCH`] and counts the handshake initiations that
/// arrive; it never answers. It says on `bound` when it is listening.
#[allow(
    clippy::disallowed_methods,
    reason = "the listener runs for a fixed wall-clock time while the gateway retries"
)]
fn count_initiations(bound: mpsc::Sender<()>) -> anyhow::Result<usize> {
    let socket = UdpSocket::bind(SocketAddr::from((VOID, VOID_PORT)))?;
    bound.send(())?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + WATCH;
    let mut buf = [0u8; 2048];
    let mut count = 0;
    while Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) if len == INITIATION_LEN && buf[0] == INITIATION => count += 1,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count)
}

/// Starts `cluster`'s gateway with `peer` as its one peer, named `name`, keepalive 1 s, and
/// the test-only receive window.
fn start_named<'c>(cluster: &'c Cluster, peer: &Cluster, name: &str) -> Gateway<'c> {
    let mut setup = Gateway::setup(cluster).expect("set up gateway");
    setup.extra_args = vec!["--test-peer-receive-window".to_owned(), "3".to_owned()];
    let spec = PeerSpec {
        name: name.to_owned(),
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

/// Waits up to 15 s for a log line holding both `event` and `name`, and returns it.
fn wait_for_line(gateway: &Gateway<'_>, event: &str, name: &str) -> String {
    eventually(Duration::from_secs(15), || {
        gateway
            .stderr()
            .lines()
            .find(|line| line.contains(event) && line.contains(name))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no `{event}` line naming {name}"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()))
}

#[allow(
    clippy::disallowed_methods,
    reason = "waits out reconcile passes in which nothing should be logged; no event marks them"
)]
fn settle(time: Duration) {
    std::thread::sleep(time);
}
