//! Static-key rotation end to end (`docs/rotation.md`): three clusters stream sequence-numbered
//! UDP at 1,000 packets/s both ways between every pair of pods while a, then b, then c rotate
//! their keys with `peerctl rotate --now`; no packet is lost or reordered, every gateway ends
//! on its new key and knows its peers' new keys, and the key files hold the new key with the
//! old one kept as previous. Then forged and replayed announcements are refused and counted,
//! and change no key.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use netns_tests::{
    Cluster, Gateway, Netns, Streams, Topology, WgUserspace, check_in_order, check_no_loss,
    eventually, format_stats, metric_value, peerctl_bin, require_root, wait_reachable,
};
use socket2::{Domain, Socket, Type};

const REACH: Duration = Duration::from_secs(10);
const CHANNELS_UP: Duration = Duration::from_secs(30);
/// A rotation takes a few seconds here; this bounds a stuck one.
const ROTATION: Duration = Duration::from_secs(60);
const RATE_PPS: u32 = 1000;
const PORT: u16 = 40_100;
const DRAIN: Duration = Duration::from_secs(2);
const CONTROL_PORT: u16 = 51821;
const XFER: &str = env!("CARGO_BIN_EXE_tcp-xfer");
/// Enough to outlast a rotation (about a second here).
const TCP_BYTES: u64 = 300 * 1024 * 1024;

fn start_gateway<'c>(cluster: &'c Cluster, peers: &[&Cluster]) -> Gateway<'c> {
    let mut setup = Gateway::setup(cluster)
        .expect("setup")
        .with_peers(peers)
        .expect("peers");
    setup.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
    let mut gateway = setup.start().expect("start");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    gateway
}

fn peerctl(gateway: &Gateway<'_>, args: &[&str]) -> Output {
    let socket = gateway.config().admin_socket.to_string_lossy().into_owned();
    Command::new(peerctl_bin().expect("peerctl binary"))
        .args(args)
        .args(["--socket", &socket])
        .output()
        .expect("run peerctl")
}

fn ok_stdout(out: &Output) -> Result<String> {
    ensure!(
        out.status.success(),
        "peerctl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout.clone())?)
}

/// The rotation section of the gateway's status.
fn rotation_status(gateway: &Gateway<'_>) -> Result<serde_json::Value> {
    let text = ok_stdout(&peerctl(gateway, &["rotate", "--status", "--json"]))?;
    Ok(serde_json::from_str(&text)?)
}

/// Waits until every channel of `gateway` is up and announces the rotation messages.
fn wait_channels(gateway: &Gateway<'_>, peers: usize) {
    eventually(CHANNELS_UP, || {
        let text = ok_stdout(&peerctl(gateway, &["status", "--output", "json"]))?;
        let doc: serde_json::Value = serde_json::from_str(&text)?;
        let channels = doc["channels"].as_array().context("channels")?;
        let ready = channels
            .iter()
            .filter(|c| {
                c["state"] == "up"
                    && c["capabilities"]
                        .as_array()
                        .is_some_and(|caps| caps.iter().any(|cap| cap == "rotate.announce"))
            })
            .count();
        ensure!(
            ready == peers,
            "channels not all up with rotation: {channels:?}"
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
}

/// Rotates `gateway`'s key and waits for the end; returns (old key, new key, seconds taken).
fn rotate(gateway: &Gateway<'_>) -> (String, String, f64) {
    let started = ok_stdout(&peerctl(gateway, &["rotate", "--now"]))
        .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
    assert!(started.contains("started"), "{started}");
    let run = eventually(ROTATION, || {
        let status = rotation_status(gateway)?;
        let run = status["current"].clone();
        ensure!(run["finished_unix"].is_u64(), "still running: {run}");
        Ok(run)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
    assert_eq!(run["phase"], "complete", "{run}\nlog:\n{}", gateway.log());
    let text = gateway.metrics().expect("metrics");
    let took = metric_value(&text, "zt_wireguard_rotation_last_duration_seconds", &[])
        .expect("zt_wireguard_rotation_last_duration_seconds");
    (
        run["old_public_key"].as_str().expect("old").to_owned(),
        run["next_public_key"].as_str().expect("next").to_owned(),
        took,
    )
}

/// Sends one control message from inside `ns`, bound to `source`, and returns the status
/// code and body of the answer.
fn control(
    ns: &Netns,
    source: Ipv4Addr,
    to: Ipv4Addr,
    message: &serde_json::Value,
) -> Result<(u16, String)> {
    let body = message.to_string();
    let request = format!(
        "POST /v1/control HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    ns.run_in(move || {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
        let target = SocketAddr::new(IpAddr::V4(to), CONTROL_PORT);
        socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
        let mut stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !answer.is_empty() => {}
            Err(e) => return Err(e).context("read the answer"),
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no status line in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    })
}

fn announce(
    from: &str,
    sequence: u64,
    next: &str,
    sender: &str,
    receiver: &str,
) -> serde_json::Value {
    serde_json::json!({
        "type": "rotate.announce",
        "version": 1,
        "from": from,
        "id": "forged-1",
        "body": {
            "rotation_id": "00000000000000f0",
            "sequence": sequence,
            "next_public_key": next,
            "sender_key": sender,
            "receiver_key": receiver,
        },
    })
}

fn refused_count(gateway: &Gateway<'_>) -> f64 {
    let text = gateway.metrics().expect("metrics");
    metric_value(
        &text,
        "zt_wireguard_control_messages_total",
        &[("type", "rotate.announce"), ("result", "refused")],
    )
    .unwrap_or(0.0)
}

/// The key `gateway`'s device runs for each peer, and its own key.
fn keys(gateway: &Gateway<'_>) -> (String, Vec<String>) {
    let dump = gateway.dump().expect("wg dump");
    let mut peers: Vec<String> = dump.peers.into_iter().map(|p| p.public_key).collect();
    peers.sort();
    (dump.public_key, peers)
}

#[test]
fn three_clusters_rotate_in_turn_without_losing_a_packet_and_forgeries_are_refused() {
    require_root!();
    let topo = Topology::clusters(3).expect("build topology");
    let (a, b, c) = (&topo.clusters[0], &topo.clusters[1], &topo.clusters[2]);
    let gw_a = start_gateway(a, &[b, c]);
    let gw_b = {
        let (mut setup, _) = Gateway::setup(b)
            .expect("setup b")
            .with_peers(&[a, c])
            .expect("peers")
            .with_audit("2s")
            .expect("audit");
        setup.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
        let mut gateway = setup.start().expect("start b");
        gateway
            .wait_ready(netns_tests::READY_TIMEOUT)
            .expect("b ready");
        gateway
    };
    let gw_c = start_gateway(c, &[a, b]);
    for from in [a, b, c] {
        for to in [a, b, c] {
            if from.index != to.index {
                wait_reachable(&from.pod, to.pod_ip(), REACH).unwrap_or_else(|error| {
                    panic!("pod {} reaches pod {}: {error:#}", from.name, to.name)
                });
            }
        }
    }
    for gateway in [&gw_a, &gw_b, &gw_c] {
        wait_channels(gateway, 2);
    }

    let pairs = [(a, b), (a, c), (b, c)].map(|(x, y)| (&x.pod, x.pod_ip(), &y.pod, y.pod_ip()));
    let streams = Streams::start(&pairs, RATE_PPS, PORT).expect("start the streams");
    #[allow(
        clippy::disallowed_methods,
        reason = "the test reports how long the three rotations took"
    )]
    let began = Instant::now();
    let mut rotated = Vec::new();
    for gateway in [&gw_a, &gw_b, &gw_c] {
        let (old, new, took) = rotate(gateway);
        assert_ne!(old, new);
        rotated.push((old, new, took));
    }
    let stats = streams.stop(DRAIN).expect("stop the streams");
    println!(
        "three rotations in {:?} ({:.3} s, {:.3} s, {:.3} s each), streams at {RATE_PPS} packets/s:\n{}",
        began.elapsed(),
        rotated[0].2,
        rotated[1].2,
        rotated[2].2,
        format_stats(&stats)
    );
    check_no_loss(&stats).unwrap_or_else(|error| {
        panic!("{error:#}\nlog a:\n{}\nlog b:\n{}", gw_a.log(), gw_b.log())
    });
    check_in_order(&stats).unwrap_or_else(|error| panic!("{error:#}"));

    // Every device runs its new key, and its peers under theirs.
    let new: Vec<&str> = rotated.iter().map(|(_, new, _)| new.as_str()).collect();
    for (index, gateway) in [&gw_a, &gw_b, &gw_c].into_iter().enumerate() {
        let (own, mut peers) = keys(gateway);
        assert_eq!(own, new[index], "gateway {index} runs its new key");
        let mut expected: Vec<String> = new
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, k)| (*k).to_owned())
            .collect();
        expected.sort();
        peers.sort();
        assert_eq!(peers, expected, "gateway {index} knows its peers' new keys");
    }
    // The key file holds the new key, the old one is kept as previous.
    let key_file = &gw_a.config().key_path;
    let pubkey = |path: &std::path::Path| {
        let out = Command::new(peerctl_bin().expect("peerctl"))
            .arg("pubkey")
            .stdin(std::fs::File::open(path).expect("open key"))
            .output()
            .expect("peerctl pubkey");
        String::from_utf8(out.stdout)
            .expect("utf8")
            .trim()
            .to_owned()
    };
    assert_eq!(pubkey(key_file), rotated[0].1);
    assert_eq!(
        pubkey(&key_file.with_extension("key.previous")),
        rotated[0].0
    );
    // Peers' declarations still name the old keys: the status says which update to make.
    let status = rotation_status(&gw_b).expect("b's rotation status");
    let about_a = status["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == a.name))
        .cloned()
        .expect("b holds a's rotation");
    assert_eq!(about_a["active_public_key"], rotated[0].1.as_str());
    assert_eq!(about_a["declared_public_key"], rotated[0].0.as_str());

    // Forgeries, each refused, counted, and changing no key.
    let before = keys(&gw_b);
    let refused_before = refused_count(&gw_b);
    let a_now = rotated[0].1.as_str();
    let b_now = rotated[1].1.as_str();
    let next = c.public_key();
    // From a pod behind a: not a gateway.
    let (code, _) = control(
        &a.pod,
        a.pod_ip(),
        b.tunnel_ip(),
        &announce("a", u64::MAX / 2, &next, a_now, b_now),
    )
    .expect("from a pod");
    assert!(code == 403 || code == 0, "a pod is refused: {code}");
    // From c's gateway claiming to be a.
    let (code, body) = control(
        &c.gw,
        c.tunnel_ip(),
        b.tunnel_ip(),
        &announce("a", u64::MAX / 2, &next, a_now, b_now),
    )
    .expect("c as a");
    assert_eq!(code, 403, "{body}");
    // a's earlier rotation replayed: its sender key is no longer a's key.
    let (code, body) = control(
        &a.gw,
        a.tunnel_ip(),
        b.tunnel_ip(),
        &announce("a", 1, &next, &rotated[0].0, &rotated[1].0),
    )
    .expect("replay");
    assert_eq!((code, body.trim()), (409, r#"{"error":"sender_key"}"#));
    // Bound to today's keys, but a sequence that does not advance.
    let (code, body) = control(
        &a.gw,
        a.tunnel_ip(),
        b.tunnel_ip(),
        &announce("a", 1, &next, a_now, b_now),
    )
    .expect("stale");
    assert_eq!((code, body.trim()), (409, r#"{"error":"stale_sequence"}"#));
    assert_eq!(keys(&gw_b), before, "no key changed");
    // Each refusal is an audit record with its fixed word, and nothing of the message.
    let audit = eventually(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(gw_b.dir().join("audit.jsonl"))?;
        ensure!(text.contains("\"stale_sequence\""), "not audited yet");
        Ok(text)
    })
    .expect("audit records");
    let refusals: Vec<&str> = audit
        .lines()
        .filter(|line| line.contains("\"peer_rotation\""))
        .collect();
    assert!(
        refusals.iter().any(|l| l.contains("\"sender_key\"")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("\"stale_sequence\"")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("\"acked\"")),
        "the real announcements are audited too: {refusals:?}"
    );
    assert!(refused_count(&gw_b) >= refused_before + 2.0);
    assert!(
        !gw_b.log().contains("00000000000000f0"),
        "the forged id is not logged"
    );

    // A TCP transfer checksummed end to end across another rotation of a.
    let listen = std::net::SocketAddrV4::new(b.pod_ip(), 40_300);
    let (result, new, overlapped) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            netns_tests::tcp_transfer(
                std::path::Path::new(XFER),
                &a.pod,
                &b.pod,
                listen,
                TCP_BYTES,
                7,
                Duration::from_secs(120),
            )
        });
        wait_for_bytes(&gw_a);
        let (_, new, _) = rotate(&gw_a);
        let overlapped = !running.is_finished();
        (running.join().expect("transfer thread"), new, overlapped)
    });
    result.unwrap_or_else(|e| panic!("the transfer across the rotation: {e:#}"));
    assert!(
        overlapped,
        "the rotation ended while the transfer still ran"
    );
    assert_eq!(keys(&gw_a).0, new);
    println!("a {TCP_BYTES}-byte TCP transfer arrived intact across a rotation");
}

/// Waits until a's tunnel has carried a few megabytes more (the transfer is under way).
fn wait_for_bytes(gateway: &Gateway<'_>) {
    let start: u64 = gateway
        .dump()
        .map(|d| d.peers.iter().map(|p| p.tx_bytes).sum())
        .unwrap_or(0);
    eventually(Duration::from_secs(20), || {
        let now: u64 = gateway.dump()?.peers.iter().map(|p| p.tx_bytes).sum();
        ensure!(now > start + 4 * 1024 * 1024, "transfer not under way");
        Ok(())
    })
    .expect("the transfer starts");
}

#[test]
fn a_plain_wireguard_peer_blocks_the_rotation_unless_handed_to_the_operator() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let wg_b = WgUserspace::start(b, &[a.peer()]).expect("start wireguard-go b");
    let gw_a = start_gateway(a, &[b]);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");
    eventually(CHANNELS_UP, || {
        let text = ok_stdout(&peerctl(&gw_a, &["status", "--output", "json"]))?;
        let doc: serde_json::Value = serde_json::from_str(&text)?;
        ensure!(
            doc["channels"][0]["state"] == "plain",
            "{}",
            doc["channels"]
        );
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gw_a.log()));

    // The plan names the peer and the way out; --now refuses with one line.
    let plan = ok_stdout(&peerctl(&gw_a, &["rotate", "--plan"])).expect("plan");
    assert!(
        plan.contains("cannot start") && plan.contains("--manual-peer b"),
        "{plan}"
    );
    let refused = peerctl(&gw_a, &["rotate", "--now"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("peer b cannot be told the next key"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let plan =
        ok_stdout(&peerctl(&gw_a, &["rotate", "--plan", "--manual-peer", "b"])).expect("plan");
    assert!(
        plan.contains("can start") && plan.contains("manual"),
        "{plan}"
    );

    // Handed to the operator: the status gives the line to run on b.
    let started = ok_stdout(&peerctl(&gw_a, &["rotate", "--now", "--manual-peer", "b"]))
        .expect("start with a manual peer");
    assert!(started.contains("started"), "{started}");
    let line = eventually(Duration::from_secs(10), || {
        let status = rotation_status(&gw_a)?;
        let line = status["current"]["peers"][0]["manual_line"]
            .as_str()
            .map(str::to_owned);
        line.with_context(|| format!("no manual line yet: {status}"))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gw_a.log()));
    let text = ok_stdout(&peerctl(&gw_a, &["rotate", "--status"])).expect("status text");
    assert!(text.contains("run on b: wg set"), "{text}");
    let command = line.replace("<interface>", &b.iface);
    let out =
        b.gw.exec(&["sh", "-c", &command])
            .expect("run the line on b");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = eventually(ROTATION, || {
        let run = rotation_status(&gw_a)?["current"].clone();
        ensure!(run["phase"] == "complete", "not complete: {run}");
        Ok(run)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}\nwireguard-go:\n{}", gw_a.log(), wg_b.log()));
    let new = run["next_public_key"].as_str().expect("new key");
    let dump = wg_b.dump().expect("wireguard-go dump");
    assert_eq!(dump.peers.len(), 1, "{dump:?}");
    assert_eq!(
        dump.peers[0].public_key, new,
        "wireguard-go knows a by its new key"
    );
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b on the new key");
    wait_reachable(&b.pod, a.pod_ip(), REACH).expect("pod b reaches pod a on the new key");
}

#[test]
fn a_key_past_its_age_is_rotated_by_the_schedule_and_its_age_starts_over() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut setup_a = Gateway::setup(a)
        .expect("setup")
        .with_peers(&[b])
        .expect("peers");
    // A key written 100 days ago, with the default 90-day maximum age and no jitter.
    let key_path = setup_a.config.key_path.clone();
    let out = Command::new("touch")
        .args(["-d", "100 days ago"])
        .arg(&key_path)
        .output()
        .expect("touch");
    assert!(out.status.success());
    setup_a.config.key_toml = Some(format!(
        "source = \"file\"\npath = {}\nrotation_jitter = \"0s\"",
        serde_json::Value::from(key_path.to_string_lossy())
    ));
    setup_a.extra_args = vec!["--control-hello-interval".to_owned(), "2s".to_owned()];
    let mut gw_a = setup_a.start().expect("start a");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready");
    let gw_b = start_gateway(b, &[a]);
    wait_reachable(&a.pod, b.pod_ip(), REACH)
        .unwrap_or_else(|e| panic!("pod a reaches pod b: {e:#}\nlog a:\n{}", gw_a.log()));
    let created = |gateway: &Gateway<'_>| {
        let text = gateway.metrics().expect("metrics");
        metric_value(
            &text,
            "zt_wireguard_private_key_created_timestamp_seconds",
            &[],
        )
        .expect("key creation time")
    };
    let before = created(&gw_a);
    assert!(
        netns_tests::unix_time().as_secs_f64() - before > 99.0 * 86_400.0,
        "the key is 100 days old"
    );

    let run = eventually(Duration::from_secs(90), || {
        let run = rotation_status(&gw_a)?["current"].clone();
        ensure!(
            run["phase"] == "complete",
            "no scheduled rotation yet: {run}"
        );
        Ok(run)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gw_a.log()));
    assert!(gw_a.log().contains("by=\"schedule\""), "{}", gw_a.log());
    assert_eq!(
        keys(&gw_a).0,
        run["next_public_key"].as_str().expect("next")
    );
    let after = created(&gw_a);
    assert!(
        netns_tests::unix_time().as_secs_f64() - after < 120.0,
        "the key's creation time moved to the new key: {after}"
    );
    // b's key is new: nothing is due there.
    let b_status = rotation_status(&gw_b).expect("b status");
    assert!(b_status["current"].is_null(), "{b_status}");
    assert_eq!(b_status["schedule"], "not_due", "{b_status}");
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b on the new key");
}
