//! Self-tests of the harness, runnable without our gateway: two clusters joined by
//! `wireguard-go` on both sides, the pinger, the HTTP client and namespace cleanup.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netns_tests::{
    Netns, SteadyPing, Topology, WgUserspace, eventually, http_get, ping, require_root,
    tcp_transfer, wait_reachable,
};

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");

#[test]
fn wireguard_go_on_both_sides_carries_ping_and_tcp_both_ways() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let wg_a = WgUserspace::start(a, &[b.peer()]).expect("start wireguard-go a");
    let wg_b = WgUserspace::start(b, &[a.peer()]).expect("start wireguard-go b");

    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), Duration::from_secs(10)).expect("pod b reaches pod a");
    let stats = ping(&a.pod, b.pod_ip(), 20).expect("ping");
    assert_eq!(stats.received, 20, "{stats:?}");

    let to_b = SocketAddrV4::new(b.pod_ip(), 5001);
    let to_a = SocketAddrV4::new(a.pod_ip(), 5001);
    let timeout = Duration::from_secs(30);
    tcp_transfer(Path::new(XFER), &a.pod, &b.pod, to_b, 2_000_000, 1, timeout)
        .expect("transfer a -> b");
    tcp_transfer(Path::new(XFER), &b.pod, &a.pod, to_a, 2_000_000, 2, timeout)
        .expect("transfer b -> a");

    let dump = wg_a.dump().expect("dump a");
    let peer = dump.peer(&b.public_key()).expect("a lists b");
    assert!(peer.latest_handshake > 0, "{peer:?}");
    assert!(
        peer.rx_bytes > 2_000_000 && peer.tx_bytes > 2_000_000,
        "{peer:?}"
    );
    assert_eq!(wg_b.dump().expect("dump b").public_key, b.public_key());
}

#[test]
fn steady_ping_counts_every_reply_and_every_loss() {
    require_root!();
    let topo = Topology::clusters(1).expect("build topology");
    let a = &topo.clusters[0];
    let gateway_side = Ipv4Addr::new(10, 1, 0, 1);
    let nobody = Ipv4Addr::new(10, 1, 0, 77);

    let good = SteadyPing::start(&a.pod, gateway_side, Duration::from_millis(10)).expect("start");
    let bad = SteadyPing::start(&a.pod, nobody, Duration::from_millis(50)).expect("start");
    eventually(Duration::from_secs(5), || {
        anyhow::ensure!(good.sent() >= 50 && bad.sent() >= 3, "not enough sent yet");
        Ok(())
    })
    .expect("pings are sent");
    let good = good.stop().expect("stop");
    let bad = bad.stop().expect("stop");

    assert!(good.transmitted >= 50, "{good:?}");
    assert_eq!(good.received, good.transmitted, "{good:?}");
    assert!(bad.transmitted >= 3, "{bad:?}");
    assert_eq!(bad.received, 0, "{bad:?}");
    assert_eq!(bad.lost.first(), Some(&0), "{bad:?}");
}

#[test]
fn http_get_reads_status_and_body_inside_the_namespace() {
    require_root!();
    let ns = Netns::new("http").expect("netns");
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            ns.run_in(|| {
                let listener = TcpListener::bind("127.0.0.1:8055")?;
                let (mut stream, _) = listener.accept()?;
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = stream.read(&mut buf)?;
                    anyhow::ensure!(n > 0, "request ended early");
                    request.extend_from_slice(&buf[..n]);
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                stream.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready: peers")?;
                Ok(request)
            })
        });
        let (status, body) = eventually(Duration::from_secs(5), || {
            http_get(&ns, "127.0.0.1:8055", "/readyz")
        })
        .expect("get");
        assert_eq!((status, body.as_str()), (503, "not ready: peers"));
        let request = server.join().expect("server thread").expect("server");
        assert!(request.starts_with("GET /readyz HTTP/1.0\r\n"), "{request}");
    });
}

#[test]
fn dropping_a_namespace_kills_its_processes_and_deletes_it() {
    require_root!();
    let ns = Netns::new("drop").expect("netns");
    let name = ns.name().to_owned();
    let mut sleeper = ns.spawn(&["sleep", "30"], &[]).expect("spawn");
    let pid = i32::try_from(sleeper.pid()).expect("pid");
    // `ip netns exec` enters the namespace just after it starts.
    eventually(Duration::from_secs(5), || {
        anyhow::ensure!(ns.pids()?.contains(&pid), "sleep not in {} yet", ns.name());
        Ok(())
    })
    .expect("sleep runs inside the namespace");

    drop(ns);

    sleeper
        .wait_timeout(Duration::from_secs(5))
        .expect("sleeper was killed");
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name.as_str())),
        "{name} still listed:\n{list}"
    );
}
