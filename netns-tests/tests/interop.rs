//! Interoperability: our gateway in cluster a, `wireguard-go` configured by `wg` in cluster b,
//! against two builds of it: Debian's (2022, from the `PATH`) and today's (built by
//! `scripts/go-tools.sh`, with its TUN and UDP offloads). Traffic must flow both ways whichever
//! side sends the first packet (and so initiates the handshake), with and without a preshared
//! key (which our gateway reads from a Secret through the test API server). One more test
//! checks, from the kernel's side, that today's build runs with its offloads here.

use std::path::Path;
use std::time::Duration;

use kms_client::PrivateKey;
use netns_tests::{
    Cluster, Gateway, READY_TIMEOUT, TestApiServer, Topology, WgProgram, WgUserspace, require_root,
    traffic_both_ways, wait_reachable,
};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
const REACH: Duration = Duration::from_secs(10);
const PSK_SECRET: &str = "tunnel-psk";

/// Which side sends the first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    /// Our gateway (a).
    Us,
    /// wireguard-go (b).
    Them,
}

/// Today's wireguard-go, or `None` when `scripts/go-tools.sh` has not built it (the test is
/// skipped; with `ZTGW_NETNS_TESTS=required`, it fails instead).
fn current_build() -> Option<WgProgram> {
    match WgProgram::wireguard_go_current() {
        Ok(program) => Some(program),
        Err(error) => {
            if std::env::var_os("ZTGW_NETNS_TESTS").is_some_and(|v| v == "required") {
                panic!("ZTGW_NETNS_TESTS=required but {error:#}");
            }
            eprintln!("skipping: {error:#}");
            None
        }
    }
}

fn new_psk() -> String {
    PrivateKey::generate()
        .expect("random")
        .to_base64()
        .to_string()
}

/// Our gateway in a and `program` in b, started in the order `first` needs, with `psk` on
/// both sides when given; then pings both ways (the first from the side that must initiate)
/// and TCP transfers both ways.
fn interop(program: &WgProgram, first: First, psk: Option<&str>) {
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut a_for_b = a.peer();
    let mut b_for_a = b.peer();
    match first {
        // Without keepalive wireguard-go stays silent until it has something to send.
        First::Us => a_for_b.persistent_keepalive = None,
        // Keepalive 0 (off) keeps our gateway from initiating before b does.
        First::Them => b_for_a.persistent_keepalive = Some(0),
    }
    let api = psk.map(|psk| {
        let api = TestApiServer::start(&a.gw, "127.0.0.1:6443").expect("API server a");
        api.put_secret(PSK_SECRET, psk).expect("secret a");
        api.put_peer(&b_for_a, Some(PSK_SECRET))
            .expect("peer b in a");
        api
    });
    let start_gateway = || {
        let mut setup = Gateway::setup(a).expect("set up gateway a");
        match &api {
            Some(api) => setup.config.peers_toml = Some(api.peers_toml()),
            None => setup.write_peer("b", &b_for_a).expect("write peer b"),
        }
        let mut gateway = setup.start().expect("start gateway a");
        gateway.wait_ready(READY_TIMEOUT).expect("gateway a ready");
        gateway
    };
    let start_wg = || {
        WgUserspace::start_with_psk(program, b, &[a_for_b.clone()], psk)
            .unwrap_or_else(|error| panic!("start {} b: {error:#}", program.name()))
    };
    let (gw_a, wg_b) = match first {
        First::Us => {
            let wg_b = start_wg();
            (start_gateway(), wg_b)
        }
        First::Them => {
            let gw_a = start_gateway();
            (gw_a, start_wg())
        }
    };

    let (from, to): (&Cluster, &Cluster) = match first {
        First::Us => (a, b),
        First::Them => (b, a),
    };
    wait_reachable(&from.pod, to.pod_ip(), REACH).expect("the first side reaches the other");
    wait_reachable(&to.pod, from.pod_ip(), REACH).expect("the other side answers back");
    traffic_both_ways(Path::new(XFER), a, b);

    let peers = wg_b.dump().expect("wg show on b");
    let a_on_b = peers
        .peers
        .iter()
        .find(|peer| peer.public_key == a.public_key())
        .expect("a is b's peer");
    assert!(a_on_b.latest_handshake > 0, "no handshake on b: {peers:?}");
    if let Some(psk) = psk {
        let shown =
            a.gw.run(&["wg", "show", gw_a.iface(), "preshared-keys"])
                .expect("wg show preshared-keys");
        assert!(
            shown.contains(&format!("{}\t{psk}", b.public_key())),
            "gateway a does not use the preshared key for b"
        );
        assert!(!gw_a.log().contains(psk), "the preshared key was logged");
        assert!(!wg_b.log().contains(psk), "wireguard-go logged the key");
    }
}

#[test]
fn traffic_flows_both_ways_when_our_gateway_sends_first() {
    require_root!();
    interop(&WgProgram::wireguard_go(), First::Us, None);
}

#[test]
fn traffic_flows_both_ways_when_wireguard_go_sends_first() {
    require_root!();
    interop(&WgProgram::wireguard_go(), First::Them, None);
}

#[test]
fn with_a_preshared_key_traffic_flows_when_our_gateway_sends_first() {
    require_root!();
    interop(&WgProgram::wireguard_go(), First::Us, Some(&new_psk()));
}

#[test]
fn with_a_preshared_key_traffic_flows_when_wireguard_go_sends_first() {
    require_root!();
    interop(&WgProgram::wireguard_go(), First::Them, Some(&new_psk()));
}

#[test]
fn today_s_wireguard_go_with_a_preshared_key_when_our_gateway_sends_first() {
    require_root!();
    let Some(program) = current_build() else {
        return;
    };
    interop(&program, First::Us, Some(&new_psk()));
}

#[test]
fn today_s_wireguard_go_with_a_preshared_key_when_it_sends_first() {
    require_root!();
    let Some(program) = current_build() else {
        return;
    };
    interop(&program, First::Them, Some(&new_psk()));
}

/// Today's build on both sides (so that the peer sends UDP GSO super-packets for its GRO to
/// take in whole) under bulk TCP both ways: the kernel must show its TUN opened with
/// `IFF_VNET_HDR` (the TCP offloads), super-packets sent (UDP GSO) and fewer datagrams taken
/// in than messages received (UDP GRO). Its verbose log says nothing of them at start; it
/// says "disabled UDP GSO" when it turns GSO off, which must not happen here.
#[test]
fn today_s_wireguard_go_runs_with_its_tun_and_udp_offloads() {
    require_root!();
    let Some(program) = current_build() else {
        return;
    };
    let program = program.with_env("LOG_LEVEL", "verbose");
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let psk = new_psk();
    let wg_a = WgUserspace::start_with_psk(&program, a, &[b.peer()], Some(&psk)).expect("wg a");
    let wg_b = WgUserspace::start_with_psk(&program, b, &[a.peer()], Some(&psk)).expect("wg b");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    let offloads = wg_a
        .observe_offloads(|| {
            traffic_both_ways(Path::new(XFER), a, b);
            Ok(())
        })
        .expect("observe a");
    eprintln!("today's wireguard-go in a: {offloads}");
    if let Err(error) = offloads.check() {
        panic!("{error:#}\n----- log -----\n{}", wg_a.log());
    }
    for (name, device) in [("a", &wg_a), ("b", &wg_b)] {
        let log = device.log();
        assert!(
            log.contains("Starting wireguard-go version"),
            "{name}: not verbose? {log}"
        );
        assert!(
            !log.contains("disabled UDP GSO"),
            "{name} turned UDP GSO off: {log}"
        );
    }
}
