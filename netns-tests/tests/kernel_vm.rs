//! The `kernel` backend against the real WireGuard module, in a virtual machine: the host
//! has no module, so [`kernel_backend_in_a_vm`] boots Debian's kernel under qemu (see
//! `netns_tests::Vm`) and runs this same test binary inside it, selecting the `guest_` tests,
//! which do nothing outside the guest. Inside, each builds the two-cluster topology with the
//! kernel backend on one or both gateways.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use base64::Engine as _;
use kms_client::PrivateKey;
use netns_tests::{
    Cluster, Gateway, PeerSpec, SteadyPing, TestApiServer, Topology, eventually, in_vm_guest,
    metric_value, ping, require_root, require_vm, tcp_transfer, wait_reachable,
};
use nix::sys::signal::Signal;

const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
/// Under software emulation everything is several times slower than on the host.
const REACH: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(20);
const EXIT: Duration = Duration::from_secs(20);
/// Boot, every guest test and shutdown.
const VM_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes each direction carries, as in the host's tests, with the same end-to-end SHA-256
/// check.
const GUEST_TRANSFER_BYTES: u64 = 20 * 1024 * 1024;
/// Under emulation the guest moves 2 to 4 MB/s (docs/kernel-backend.md); the bound leaves room
/// for a loaded machine.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
const PINGS: u32 = 10;
/// Start-up under emulation on a loaded machine: several times the host's `READY_TIMEOUT`.
const GUEST_READY: Duration = Duration::from_secs(60);
/// The crashed run's Lease (15 s) expiring, then start-up under emulation.
const LEASE_TAKEOVER: Duration = Duration::from_secs(90);
const KERNEL: &str = "kernel";
const NATIVE: &str = "native";

/// Outside the guest, each `guest_` test returns at once.
macro_rules! guest_only {
    () => {
        if !in_vm_guest() {
            eprintln!("skipping: runs inside the VM that kernel_backend_in_a_vm boots");
            return;
        }
    };
}

#[test]
fn kernel_backend_in_a_vm() {
    if in_vm_guest() {
        return;
    }
    require_root!();
    let vm = require_vm!();
    let exe = std::env::current_exe().expect("the test binary's path");
    // `ZTGW_VM_FILTER` narrows the guest tests (a test-name filter), to rerun one.
    let filter = std::env::var("ZTGW_VM_FILTER").unwrap_or_else(|_| "guest_".to_owned());
    let run = vm
        .run(
            &exe,
            &[&filter, "--test-threads=1", "--nocapture"],
            &[("ZTGW_NETNS_TESTS", "required"), ("RUST_BACKTRACE", "1")],
            VM_TIMEOUT,
        )
        .expect("boot the VM");
    eprintln!(
        "----- guest console (kernel {}) -----\n{}\n----- end of guest console -----",
        vm.release(),
        run.log
    );
    eprintln!(
        "VM: boot {:?}, boot + tests + shutdown {:?}",
        run.boot, run.elapsed
    );
    assert!(
        run.success(),
        "the guest tests failed: exit {:?}",
        run.exit_code
    );
    let passed = run
        .log
        .lines()
        .filter_map(|l| l.trim().strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u32>().ok())
        .sum::<u32>();
    assert!(passed > 0, "no guest test reported a result");
    // Every guest test ran: none skipped for want of root, a tool or the guest.
    assert!(
        !run.log.contains("skipping"),
        "a guest test skipped inside the VM"
    );
}

/// Pings both ways with no loss, then a TCP transfer each way whose SHA-256 must match.
fn traffic_both_ways(a: &Cluster, b: &Cluster) {
    for (from, to) in [(a, b), (b, a)] {
        let stats = ping(&from.pod, to.pod_ip(), PINGS)
            .unwrap_or_else(|e| panic!("ping {} -> {}: {e:#}", from.name, to.name));
        assert_eq!(
            stats.received, PINGS,
            "pod {} -> pod {}: {stats:?}",
            from.name, to.name
        );
    }
    for (seed, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
        #[allow(
            clippy::disallowed_methods,
            reason = "reports the transfer's rate; nothing is decided on it"
        )]
        let started = std::time::Instant::now();
        tcp_transfer(
            Path::new(XFER),
            &from.pod,
            &to.pod,
            SocketAddrV4::new(to.pod_ip(), 5001),
            GUEST_TRANSFER_BYTES,
            seed as u64,
            TRANSFER_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("transfer pod {} -> pod {}: {e:#}", from.name, to.name));
        let took = started.elapsed();
        eprintln!(
            "transfer pod {} -> pod {}: {GUEST_TRANSFER_BYTES} bytes in {took:.1?} ({:.2} MB/s)",
            from.name,
            to.name,
            GUEST_TRANSFER_BYTES as f64 / took.as_secs_f64() / 1e6
        );
    }
}

/// Returns the kernel's own view of an interface's link type (`ip -d link show`).
fn link_kind(cluster: &Cluster, iface: &str) -> anyhow::Result<String> {
    let out = cluster.gw.run(&["ip", "-d", "-o", "link", "show", iface])?;
    Ok(out)
}

fn assert_no_private_key(what: &str, text: &str, clusters: &[&Cluster]) {
    for c in clusters {
        let (base64, hex) = (c.key.to_base64(), c.key.to_hex());
        assert!(
            !text.contains(base64.as_str()),
            "{what}: base64 private key of {}",
            c.name
        );
        assert!(
            !text.to_lowercase().contains(&hex[..16]),
            "{what}: hex private key of {}",
            c.name
        );
    }
}

/// Waits for a handshake with `peer` in the kernel's own `wg show <iface> dump`.
fn wait_handshake(gw: &Gateway<'_>, peer: &Cluster) -> netns_tests::WgPeer {
    eventually(SETTLE, || {
        let dump = gw.dump()?;
        let p = dump
            .peer(&peer.public_key())
            .ok_or_else(|| anyhow!("peer {} missing from {dump:?}", peer.name))?
            .clone();
        ensure!(p.latest_handshake > 0, "no handshake yet: {p:?}");
        ensure!(p.rx_bytes > 0 && p.tx_bytes > 0, "no bytes yet: {p:?}");
        Ok(p)
    })
    .expect("wg show dump lists the peer with a handshake and bytes")
}

fn stop_removes_the_interface(cluster: &Cluster, gw: &mut Gateway<'_>) {
    let iface = gw.iface().to_owned();
    let status = gw.stop(EXIT).expect("the gateway stops on SIGTERM");
    assert!(status.success(), "exit status {status}");
    eventually(SETTLE, || {
        ensure!(
            link_kind(cluster, &iface).is_err(),
            "{iface} still exists after a clean stop"
        );
        Ok(())
    })
    .expect("clean shutdown removes the interface");
}

#[test]
fn guest_kernel_gateway_talks_to_a_native_gateway() {
    guest_only!();
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut gw_a = launch(a, &[b], KERNEL).expect("kernel gateway a ready");
    let mut gw_b = launch(b, &[a], NATIVE).expect("native gateway b ready");

    let kind = link_kind(a, gw_a.iface()).expect("ip -d link show");
    assert!(
        kind.contains("wireguard"),
        "gateway a's interface is not the kernel's: {kind}"
    );
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");
    traffic_both_ways(a, b);

    // `wg show` here is the kernel's own (netlink), not a UAPI socket.
    let peer = wait_handshake(&gw_a, b);
    assert_eq!(peer.endpoint.as_deref(), Some(b.endpoint().as_str()));
    let mut allowed = peer.allowed_ips.clone();
    allowed.sort();
    assert_eq!(allowed, [format!("{}/32", b.tunnel_ip()), b.pod_cidr()]);
    let dump = gw_a.dump().expect("dump");
    assert_eq!(dump.public_key, a.public_key());
    let shown = a.gw.run(&["wg", "show", gw_a.iface()]).expect("wg show");
    assert!(shown.contains(&b.public_key()), "{shown}");
    assert!(
        !shown.contains(a.key.to_base64().as_str()),
        "wg show printed the private key"
    );
    wait_handshake(&gw_b, a);

    stop_removes_the_interface(a, &mut gw_a);
    stop_removes_the_interface(b, &mut gw_b);
    assert_no_private_key("gateway a's log", &gw_a.log(), &[a, b]);
    assert_no_private_key("gateway b's log", &gw_b.log(), &[a, b]);
}

#[test]
fn guest_two_kernel_gateways_live_changes_metrics_and_status() {
    guest_only!();
    require_root!();
    let topo = Topology::clusters(3).expect("build topology");
    let (a, b, c) = (&topo.clusters[0], &topo.clusters[1], &topo.clusters[2]);
    let mut gw_a = launch(a, &[b], KERNEL).expect("kernel gateway a ready");
    let mut gw_b = launch(b, &[a], KERNEL).expect("kernel gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    traffic_both_ways(a, b);
    wait_handshake(&gw_a, b);

    // Metrics: one peer, up, bytes counted.
    let metrics = eventually(SETTLE, || {
        let text = gw_a.metrics()?;
        let up = metric_value(&text, "zt_wireguard_peer_up", &[("cluster", "b")])
            .context("zt_wireguard_peer_up for b")?;
        ensure!(up == 1.0, "zt_wireguard_peer_up {{cluster=b}} {up}");
        let rx = metric_value(
            &text,
            "zt_wireguard_peer_receive_bytes_total",
            &[("cluster", "b")],
        )
        .context("receive bytes for b")?;
        ensure!(rx > 0.0, "no bytes received from b: {rx}");
        Ok(text)
    })
    .expect("metrics report peer b up");
    assert_no_private_key("metrics", &metrics, &[a, b]);

    // Live add of c under a steady ping to b: nothing lost.
    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(20))
        .expect("steady ping a -> b");
    eventually(SETTLE, || {
        ensure!(steady.sent() >= 20, "only {} pings", steady.sent());
        Ok(())
    })
    .expect("steady ping runs");
    let mut gw_c = launch(c, &[a], KERNEL).expect("kernel gateway c ready");
    gw_a.write_peer(&c.name, &c.peer())
        .expect("add peer c on a");
    wait_reachable(&a.pod, c.pod_ip(), REACH).expect("pod a reaches pod c after a live add");

    // Live modify: c gains an extra allowed range, in place.
    let mut spec = c.peer();
    spec.allowed_ips.push("10.99.0.0/16".to_owned());
    gw_a.write_peer(&c.name, &spec).expect("modify peer c on a");
    eventually(SETTLE, || {
        let dump = gw_a.dump()?;
        let p = dump.peer(&c.public_key()).context("peer c")?;
        ensure!(
            p.allowed_ips.iter().any(|n| n == "10.99.0.0/16"),
            "not updated: {p:?}"
        );
        Ok(())
    })
    .expect("live modify reaches the kernel");

    // Live remove: c leaves the kernel's peer list, b stays.
    gw_a.remove_peer_file(&format!("{}.yaml", c.name))
        .expect("remove peer c on a");
    eventually(SETTLE, || {
        let dump = gw_a.dump()?;
        ensure!(dump.peer(&c.public_key()).is_none(), "c still there");
        ensure!(dump.peer(&b.public_key()).is_some(), "b gone");
        Ok(())
    })
    .expect("live remove reaches the kernel");
    let sent = steady.sent();
    eventually(SETTLE, || {
        ensure!(steady.sent() >= sent + 20, "ping stalled");
        Ok(())
    })
    .expect("steady ping runs");
    let stats = steady.stop().expect("steady ping");
    assert!(
        stats.lost.is_empty(),
        "pings to b lost across live changes to c: {stats:?}"
    );

    // peerctl status over the admin socket.
    let peerctl = netns_tests::peerctl_bin().expect("peerctl");
    let peerctl = peerctl.to_string_lossy();
    let socket = gw_a.config().admin_socket.to_string_lossy().into_owned();
    let status = eventually(SETTLE, || {
        let out =
            a.gw.run(&[&peerctl, "status", "--socket", &socket, "--output", "json"])?;
        let doc: serde_json::Value = serde_json::from_str(&out)?;
        let peers = doc["peers"].as_array().context("no peers array")?;
        ensure!(
            peers
                .iter()
                .any(|p| p["connected"] == true && p["public_key"] == b.public_key().as_str()),
            "b not connected: {doc}"
        );
        Ok(out)
    })
    .expect("peerctl status shows b connected");
    assert_no_private_key("peerctl status", &status, &[a, b, c]);

    stop_removes_the_interface(c, &mut gw_c);
    stop_removes_the_interface(a, &mut gw_a);
    stop_removes_the_interface(b, &mut gw_b);
    for (name, gw) in [("a", &gw_a), ("b", &gw_b), ("c", &gw_c)] {
        assert_no_private_key(&format!("gateway {name}'s log"), &gw.log(), &[a, b, c]);
    }
}

/// Starts `cluster`'s gateway on `backend` with `peers` from files, and waits until it is ready.
fn launch<'c>(
    cluster: &'c Cluster,
    peers: &[&Cluster],
    backend: &str,
) -> anyhow::Result<Gateway<'c>> {
    let mut gw = Gateway::setup(cluster)?
        .backend(backend)
        .with_peers(peers)?
        .start()?;
    gw.wait_ready(GUEST_READY)?;
    Ok(gw)
}

/// Starts `cluster`'s gateway on the kernel backend with its peers from `api`.
fn start_from_api<'c>(
    cluster: &'c Cluster,
    api: &TestApiServer<'_>,
    ready: Duration,
) -> Gateway<'c> {
    let mut setup = Gateway::setup(cluster).expect("setup").backend(KERNEL);
    setup.config.peers_toml = Some(api.peers_toml());
    let mut gw = setup.start().expect("start");
    gw.wait_ready(ready).expect("ready");
    gw
}

#[test]
fn guest_kernel_psk_bad_peer_and_crash_recovery() {
    guest_only!();
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let api_a = TestApiServer::start(&a.gw, "127.0.0.1:6443").expect("API server a");
    let api_b = TestApiServer::start(&b.gw, "127.0.0.1:6443").expect("API server b");
    let psk = PrivateKey::generate()
        .expect("random")
        .to_base64()
        .to_string();
    api_a.put_secret("tunnel-psk", &psk).expect("secret a");
    api_b.put_secret("tunnel-psk", &psk).expect("secret b");
    api_a
        .put_peer(&b.peer(), Some("tunnel-psk"))
        .expect("peer b in a");
    api_b
        .put_peer(&a.peer(), Some("tunnel-psk"))
        .expect("peer a in b");
    let mut gw_a = start_from_api(a, &api_a, GUEST_READY);
    let mut gw_b = start_from_api(b, &api_b, GUEST_READY);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b with a PSK");

    // The kernel holds the preshared key (its own `wg show`).
    let shown =
        a.gw.run(&["wg", "show", gw_a.iface(), "preshared-keys"])
            .expect("wg show preshared-keys");
    assert!(
        shown.contains(&format!("{}\t{psk}", b.public_key())),
        "the kernel does not use the preshared key for b: {shown}"
    );
    wait_handshake(&gw_a, b);

    // A bad peer (its allowed IPs would capture b's endpoint) is rejected; b keeps working.
    let intruder = PrivateKey::generate().expect("random");
    let bad = PeerSpec {
        name: "intruder".to_owned(),
        cluster: "intruder".to_owned(),
        public_key: base64::engine::general_purpose::STANDARD
            .encode(intruder.public_key().as_ref()),
        endpoint: Some("192.0.2.77:51820".to_owned()),
        allowed_ips: vec!["192.0.2.2/32".to_owned()],
        persistent_keepalive: None,
    };
    api_a.put_peer(&bad, None).expect("bad peer in a");
    eventually(SETTLE, || {
        let text = gw_a.metrics()?;
        let rejected = metric_value(&text, "zt_wireguard_peers", &[("state", "rejected")])
            .context("peers rejected")?;
        ensure!(rejected == 1.0, "rejected {rejected}");
        Ok(())
    })
    .expect("the bad peer is counted as rejected");
    let dump = gw_a.dump().expect("dump");
    assert_eq!(dump.peers.len(), 1, "the kernel got the bad peer: {dump:?}");
    let stats = ping(&a.pod, b.pod_ip(), PINGS).expect("ping b");
    assert_eq!(stats.received, PINGS, "{stats:?}");

    // Crash: the kernel's interface outlives the process and keeps forwarding.
    gw_a.signal(Signal::SIGKILL).expect("kill -9");
    gw_a.wait_exit(EXIT).expect("killed gateway exits");
    let kind = link_kind(a, &a.iface).expect("the interface outlives a crash");
    assert!(kind.contains("wireguard"), "{kind}");
    let stats = ping(&a.pod, b.pod_ip(), PINGS).expect("ping b");
    assert_eq!(
        stats.received, PINGS,
        "the kernel stops forwarding when the gateway dies: {stats:?}"
    );
    // The restarted gateway waits for the crashed run's Lease to expire, then removes the
    // stale interface and comes back.
    let mut restarted = start_from_api(a, &api_a, LEASE_TAKEOVER);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b after the restart");
    let log = restarted.log();
    assert!(log.contains("stale interface"), "{log}");

    stop_removes_the_interface(a, &mut restarted);
    stop_removes_the_interface(b, &mut gw_b);
    for (name, log) in [
        ("a (crashed)", gw_a.log()),
        ("a", restarted.log()),
        ("b", gw_b.log()),
    ] {
        assert_no_private_key(&format!("gateway {name}'s log"), &log, &[a, b]);
        assert!(
            !log.contains(&psk),
            "gateway {name} logged the preshared key"
        );
    }
}

/// Runs `peerctl` against `gateway`'s admin socket.
fn peerctl(gateway: &Gateway<'_>, args: &[&str]) -> anyhow::Result<String> {
    let socket = gateway.config().admin_socket.to_string_lossy().into_owned();
    let out = std::process::Command::new(netns_tests::peerctl_bin()?)
        .args(args)
        .args(["--socket", &socket])
        .output()?;
    ensure!(
        out.status.success(),
        "peerctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The streams leave in bursts of 50 every 50 ms (1,000 packets/s on average): paced one by
/// one, their senders' 2,000 wake-ups a second and the native gateway's as many kept the
/// emulated guest's two vCPUs busy, the gateway's socket queued seconds of datagrams, and
/// the handshake under the new key waited behind them (docs/rotation.md, "Measured").
#[test]
fn guest_kernel_gateway_rotates_its_key_by_a_flip_losing_under_a_second() {
    guest_only!();
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut setup_a = Gateway::setup(a)
        .expect("setup a")
        .backend(KERNEL)
        .with_peers(&[b])
        .expect("peers");
    setup_a.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
    let mut gw_a = setup_a.start().expect("start a");
    gw_a.wait_ready(GUEST_READY)
        .expect("kernel gateway a ready");
    let mut setup_b = Gateway::setup(b)
        .expect("setup b")
        .backend(NATIVE)
        .with_peers(&[a])
        .expect("peers");
    setup_b.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
    let mut gw_b = setup_b.start().expect("start b");
    gw_b.wait_ready(GUEST_READY)
        .expect("native gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a");
    // The kernel gateway does not take a peer's next key; b does, and says so.
    eventually(SETTLE, || {
        let doc: serde_json::Value =
            serde_json::from_str(&peerctl(&gw_a, &["status", "--output", "json"])?)?;
        let channel = &doc["channels"][0];
        ensure!(
            channel["state"] == "up"
                && channel["capabilities"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|cap| cap == "rotate.announce")),
            "b's channel: {channel}"
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog a:\n{}", gw_a.log()));

    let pairs = [(&a.pod, a.pod_ip(), &b.pod, b.pod_ip())];
    // The same streams without a rotation first: what emulation alone loses.
    let baseline = netns_tests::Streams::start_in_bursts(&pairs, STREAM_PPS, STREAM_BURST, 40_410)
        .expect("streams");
    stream_for(Duration::from_secs(10));
    let baseline = baseline
        .stop(Duration::from_secs(3))
        .expect("stop the streams");
    eprintln!(
        "kernel flip: 10 s without a rotation at 1000 packets/s:\n{}",
        netns_tests::format_stats(&baseline)
    );
    let kernel_log = kernel_handshake_log();
    let streams = netns_tests::Streams::start_in_bursts(&pairs, STREAM_PPS, STREAM_BURST, 40_400)
        .expect("streams");
    stream_for(Duration::from_secs(3));
    let started = peerctl(&gw_a, &["rotate", "--now"]).expect("rotate a");
    assert!(started.contains("started"), "{started}");
    let run = eventually(Duration::from_secs(120), || {
        let status: serde_json::Value =
            serde_json::from_str(&peerctl(&gw_a, &["rotate", "--status", "--json"])?)?;
        let run = status["current"].clone();
        ensure!(run["finished_unix"].is_u64(), "still running: {run}");
        Ok(run)
    })
    .unwrap_or_else(|e| {
        let show = |c: &Cluster| c.gw.run(&["wg", "show"]).unwrap_or_else(|e| e.to_string());
        // A receive queue full of datagrams is a gateway short of CPU.
        let sockets = |c: &Cluster| c.gw.run(&["ss", "-uanm"]).unwrap_or_else(|e| e.to_string());
        panic!(
            "{e:#}\nwg a:\n{}\nwg b:\n{}\nsockets a:\n{}\nsockets b:\n{}\nkernel: {}\n\
             ping a->b: {:?}\nlog a:\n{}\nlog b:\n{}",
            show(a),
            show(b),
            sockets(a),
            sockets(b),
            kernel_log(),
            ping(&a.pod, b.pod_ip(), 3),
            gw_a.log(),
            gw_b.log()
        )
    });
    assert_eq!(run["phase"], "complete", "{run}\nlog a:\n{}", gw_a.log());
    stream_for(Duration::from_secs(3));
    let stats = streams
        .stop(Duration::from_secs(3))
        .expect("stop the streams");
    let text = gw_a.metrics().expect("metrics");
    let took =
        metric_value(&text, "zt_wireguard_rotation_last_duration_seconds", &[]).expect("duration");
    eprintln!(
        "kernel flip: rotation took {took:.3} s; streams at 1000 packets/s:\n{}\nkernel: {}",
        netns_tests::format_stats(&stats),
        kernel_log()
    );
    // The flip's outage is the longest run of consecutive losses; emulation's own losses
    // are scattered over the whole run (see the baseline above).
    for (direction, s) in &stats {
        assert!(
            s.longest_loss < 1000,
            "{direction}: {} consecutive packets lost across the flip, a second or more at \
             1000 packets/s",
            s.longest_loss
        );
    }
    let new = run["next_public_key"].as_str().expect("new key");
    assert_eq!(
        gw_a.dump().expect("a dump").public_key,
        new,
        "the kernel runs the new key"
    );
    let b_peers = gw_b.dump().expect("b dump").peers;
    assert_eq!(b_peers[0].public_key, new, "b knows a by its new key");
    traffic_both_ways(a, b);
    stop_removes_the_interface(a, &mut gw_a);
    stop_removes_the_interface(b, &mut gw_b);
}

/// The streams' average rate, and how many datagrams leave at each wake-up of a sender.
const STREAM_PPS: u32 = 1000;
const STREAM_BURST: u32 = 50;

/// Turns on the WireGuard module's debug messages (handshakes sent and received, keypairs)
/// and forgets the kernel log so far; the returned function reads the handshake lines
/// logged since, with the kernel's timestamps: the flip's outage is the time the handshake
/// under the new key takes, less what the kernel queues meanwhile (128 packets).
fn kernel_handshake_log() -> impl Fn() -> String {
    let enabled =
        std::fs::write("/proc/dynamic_debug/control", "module wireguard +p").and_then(|()| {
            std::process::Command::new("dmesg")
                .arg("-C")
                .status()
                .map(|_| ())
        });
    move || match &enabled {
        Err(e) => format!("no kernel debug messages: {e}"),
        Ok(()) => match std::process::Command::new("dmesg").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("handshake") || l.contains("Keypair"))
                .fold(String::new(), |text, l| text + "\n  " + l),
            Err(e) => format!("dmesg: {e}"),
        },
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the streams run for a fixed time around the rotation; no event marks it"
)]
fn stream_for(time: Duration) {
    std::thread::sleep(time);
}
