//! The control channel between two gateways (`docs/control-channel.md`): hello exchanged both
//! ways and shown by `peerctl status`; while a steady ping runs and the hellos keep being
//! answered, a request from a pod behind the peer, one from the peer's underlay address, one
//! whose `from` claims another peer's cluster, a 2 MiB body, a slow-loris client and garbage
//! JSON are each refused and counted. Against `wireguard-go`, `peerctl status` shows "plain
//! WireGuard".

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use netns_tests::{
    Cluster, Gateway, Netns, SteadyPing, Topology, WgUserspace, eventually, metric_value,
    peerctl_bin, require_root, wait_reachable,
};
use socket2::{Domain, Socket, Type};

/// The control port (the default).
const PORT: u16 = 51821;
/// Hello interval of the gateways under test, so that "hello keeps working" shows quickly.
const HELLO_INTERVAL: &str = "2s";
const METRIC: &str = "zt_wireguard_control_messages_total";
const REACH: Duration = Duration::from_secs(10);
const CHANNEL_UP: Duration = Duration::from_secs(30);
/// How long a refused request may take to be answered (the slow-loris needs the server's
/// header deadline, 5 s, to pass).
const ANSWER: Duration = Duration::from_secs(20);

fn start_gateway<'c>(cluster: &'c Cluster, peers: &[&Cluster]) -> Gateway<'c> {
    let mut setup = Gateway::setup(cluster)
        .expect("setup")
        .with_peers(peers)
        .expect("peers");
    setup.extra_args = vec![
        "--control-hello-interval".to_owned(),
        HELLO_INTERVAL.to_owned(),
    ];
    let mut gateway = setup.start().expect("start");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    gateway
}

fn peerctl_status(gateway: &Gateway<'_>, json: bool) -> Result<String> {
    let socket = gateway.config().admin_socket.to_string_lossy().into_owned();
    let mut args = vec!["status", "--socket", socket.as_str()];
    if json {
        args.extend(["--output", "json"]);
    }
    let out = Command::new(peerctl_bin()?).args(&args).output()?;
    ensure!(
        out.status.success(),
        "peerctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// The channel entry of peer `name` in the gateway's status.
fn channel(gateway: &Gateway<'_>, name: &str) -> Result<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(&peerctl_status(gateway, true)?)?;
    doc["channels"]
        .as_array()
        .and_then(|channels| channels.iter().find(|c| c["peer"] == name))
        .cloned()
        .with_context(|| format!("no channel for {name}: {doc}"))
}

/// Waits until the gateway's channel to `peer` is `state`, and returns the entry.
fn wait_channel(gateway: &Gateway<'_>, peer: &Cluster, state: &str) -> serde_json::Value {
    eventually(CHANNEL_UP, || {
        let entry = channel(gateway, &peer.name)?;
        ensure!(entry["state"] == state, "channel to {}: {entry}", peer.name);
        Ok(entry)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()))
}

fn count(gateway: &Gateway<'_>, kind: &str, result: &str) -> f64 {
    let text = gateway.metrics().expect("metrics");
    metric_value(&text, METRIC, &[("type", kind), ("result", result)])
        .unwrap_or_else(|| panic!("no {METRIC}{{type={kind},result={result}}}"))
}

/// Connects to `target` from inside `ns`, from `source` when given.
fn connect(source: Option<Ipv4Addr>, target: SocketAddr) -> Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    }
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(ANSWER))?;
    Ok(stream)
}

/// Sends `request` (ignoring a write cut short by the server's answer) and returns the
/// status code and body of the answer.
fn exchange(
    ns: &Netns,
    source: Option<Ipv4Addr>,
    target: SocketAddr,
    request: Vec<u8>,
) -> Result<(u16, String)> {
    ns.run_in(move || {
        let mut stream = connect(source, target)?;
        let _ = stream.write_all(&request);
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer) {
            Ok(_) => {}
            // A reset after the answer (the rest of a large body was never read) is expected.
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

fn post(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/control HTTP/1.1\r\nHost: 10.10.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn hello_from(cluster: &Cluster, claimed: &str) -> Vec<u8> {
    post(
        serde_json::json!({
            "type": "hello",
            "version": 1,
            "from": claimed,
            "id": "t-1",
            "body": {
                "cluster": claimed,
                "version": "0.1.0",
                "capabilities": ["hello"],
                "public_key": cluster.public_key(),
                "key_age_seconds": 1,
            },
        })
        .to_string()
        .as_bytes(),
    )
}

/// Opens a connection and dribbles a request head one byte a second, never ending it;
/// returns once the server has closed the connection.
fn slow_loris(ns: &Netns, source: Ipv4Addr, target: SocketAddr) -> Result<usize> {
    ns.run_in(move || {
        let mut stream = connect(Some(source), target)?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"POST /v1/control HTTP/1.1\r\nHost: x\r\nX-Slow: ")?;
        let mut sent = 0;
        let mut buf = [0_u8; 512];
        for _ in 0..60 {
            match stream.read(&mut buf) {
                Ok(_) => return Ok(sent),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stream.write_all(b"a").is_err() {
                        return Ok(sent);
                    }
                    sent += 1;
                }
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(sent),
                Err(e) => return Err(e.into()),
            }
        }
        bail!("the server kept a never-ending request head open for a minute")
    })
}

#[test]
fn hello_is_exchanged_and_hostile_requests_are_refused_and_counted() {
    require_root!();
    let topo = Topology::clusters(3).expect("build topology");
    let (a, b, c) = (&topo.clusters[0], &topo.clusters[1], &topo.clusters[2]);
    // a knows b and c; only b runs (c is declared so that b can claim its name).
    let gw_a = start_gateway(a, &[b, c]);
    let gw_b = start_gateway(b, &[a]);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    // Hello both ways, shown by peerctl status (JSON and table).
    let b_seen_by_a = wait_channel(&gw_a, b, "up");
    assert_eq!(
        b_seen_by_a["capabilities"],
        serde_json::json!([
            "hello",
            "rotate.announce",
            "rotate.complete",
            "rotate.abort"
        ])
    );
    assert_eq!(b_seen_by_a["public_key"], b.public_key().as_str());
    assert_eq!(b_seen_by_a["address"], "10.10.0.2");
    let a_seen_by_b = wait_channel(&gw_b, a, "up");
    assert_eq!(a_seen_by_b["public_key"], a.public_key().as_str());
    let table = peerctl_status(&gw_a, false).expect("table");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("b ") && line.contains(" up ") && line.contains("hello")),
        "{table}"
    );

    let steady = SteadyPing::start(&a.pod, b.pod_ip(), Duration::from_millis(10)).expect("ping");
    let target = SocketAddr::new(IpAddr::V4(a.tunnel_ip()), PORT);
    let accepted_before = count(&gw_a, "hello", "accepted");
    let refused_unread = count(&gw_a, "unknown", "refused");
    let refused_read = count(&gw_a, "hello", "refused");
    let too_large = count(&gw_a, "unknown", "too_large");
    let timeouts = count(&gw_a, "unknown", "timeout");
    let malformed = count(&gw_a, "unknown", "malformed");

    // b's own tunnel address speaking for b: answered with a's hello, public key only.
    let (code, body) =
        exchange(&b.gw, Some(b.tunnel_ip()), target, hello_from(b, "b")).expect("a proper hello");
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json answer");
    assert_eq!(answer["from"], "a");
    assert_eq!(answer["id"], "t-1");
    assert_eq!(answer["body"]["public_key"], a.public_key().as_str());
    assert!(
        !body.contains(a.key.to_base64().as_str()),
        "private key in the answer"
    );

    // 1. A pod behind b (b's pod namespace, 10.2.0.2: inside b's allowed IPs, not its tunnel
    //    address), speaking a perfect hello in b's name.
    let (code, body) = exchange(&b.pod, None, target, hello_from(b, "b")).expect("from the pod");
    assert_eq!((code, body.as_str()), (403, "{\"error\":\"forbidden\"}\n"));
    // The same from b's gateway namespace, bound to its pod-side address 10.2.0.1.
    let (code, _) = exchange(
        &b.gw,
        Some(Ipv4Addr::new(10, 2, 0, 1)),
        target,
        hello_from(b, "b"),
    )
    .expect("from the pod network");
    assert_eq!(code, 403);

    // 2. b's underlay address: a policy route sends it to a's tunnel address over the underlay.
    b.gw.ip(&[
        "route",
        "add",
        "10.10.0.1/32",
        "via",
        "192.0.2.1",
        "dev",
        "eth0",
        "table",
        "100",
    ])
    .expect("route");
    b.gw.ip(&[
        "rule",
        "add",
        "from",
        "192.0.2.2",
        "to",
        "10.10.0.1",
        "lookup",
        "100",
    ])
    .expect("rule");
    let (code, _) = exchange(&b.gw, Some(b.underlay_ip()), target, hello_from(b, "b"))
        .expect("from the underlay");
    assert_eq!(code, 403);
    assert_eq!(count(&gw_a, "unknown", "refused"), refused_unread + 3.0);

    // 3. b's own tunnel address, claiming to be c.
    let (code, _) =
        exchange(&b.gw, Some(b.tunnel_ip()), target, hello_from(b, "c")).expect("claiming c");
    assert_eq!(code, 403);
    assert_eq!(count(&gw_a, "hello", "refused"), refused_read + 1.0);

    // 4. A 2 MiB body: refused from its announced length, without reading it.
    let mut big = post(&[]);
    let head = String::from_utf8(big.clone())
        .expect("head")
        .replace("Content-Length: 0", "Content-Length: 2097152");
    big = head.into_bytes();
    big.resize(big.len() + 2 * 1024 * 1024, b'{');
    let (code, body) = exchange(&b.gw, Some(b.tunnel_ip()), target, big).expect("2 MiB");
    assert_eq!((code, body.as_str()), (413, "{\"error\":\"too_large\"}\n"));
    assert_eq!(count(&gw_a, "unknown", "too_large"), too_large + 1.0);

    // 5. A slow-loris client: the head never ends, the server cuts it off.
    let dribbled = slow_loris(&b.gw, b.tunnel_ip(), target).expect("slow loris");
    assert!(dribbled >= 1, "the head was not dribbled");
    eventually(Duration::from_secs(5), || {
        ensure!(
            count(&gw_a, "unknown", "timeout") >= timeouts + 1.0,
            "not counted yet"
        );
        Ok(())
    })
    .expect("slow loris counted");

    // 6. Garbage JSON: 400 with a fixed code, nothing of the request echoed.
    let (code, body) = exchange(
        &b.gw,
        Some(b.tunnel_ip()),
        target,
        post(b"{\"type\": <garbage>"),
    )
    .expect("garbage");
    assert_eq!((code, body.as_str()), (400, "{\"error\":\"malformed\"}\n"));
    assert_eq!(count(&gw_a, "unknown", "malformed"), malformed + 1.0);
    assert!(
        !gw_a.log().contains("garbage"),
        "request content in the log"
    );

    // The hellos kept working throughout, and still do.
    let last_contact = b_seen_by_a["last_contact_unix"]
        .as_u64()
        .expect("last contact");
    eventually(CHANNEL_UP, || {
        let entry = channel(&gw_a, "b")?;
        ensure!(entry["state"] == "up", "{entry}");
        ensure!(
            entry["last_contact_unix"].as_u64() > Some(last_contact),
            "no newer hello answered: {entry}"
        );
        ensure!(
            count(&gw_a, "hello", "accepted") > accepted_before,
            "b's hellos not accepted"
        );
        Ok(())
    })
    .expect("hello keeps working");
    assert!(
        channel(&gw_a, "c").expect("c")["state"] != "up",
        "c never ran"
    );

    let stats = steady.stop().expect("stop steady ping");
    assert!(stats.transmitted >= 100, "ping ran too briefly: {stats:?}");
    assert_eq!(
        stats.received, stats.transmitted,
        "pings lost while the channel was attacked: {stats:?}"
    );
}

#[test]
fn a_wireguard_go_peer_shows_as_plain_wireguard() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _wg_b = WgUserspace::start(b, &[a.peer()]).expect("start wireguard-go b");
    let gw_a = start_gateway(a, &[b]);
    wait_reachable(&a.pod, b.pod_ip(), REACH).expect("pod a reaches pod b");

    let entry = wait_channel(&gw_a, b, "plain");
    assert!(entry["last_contact_unix"].is_null(), "{entry}");
    let table = peerctl_status(&gw_a, false).expect("table");
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("b ") && line.contains("plain WireGuard")),
        "{table}"
    );
}

#[test]
fn the_channel_follows_the_tunnel_address_away_and_back() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = start_gateway(a, &[b]);
    let gw_b = start_gateway(b, &[a]);
    wait_channel(&gw_b, a, "up");

    let address = a.tunnel_address();
    a.gw.ip(&["addr", "del", &address, "dev", &a.iface])
        .expect("remove the address");
    eventually(CHANNEL_UP, || {
        let entry = channel(&gw_b, &a.name)?;
        ensure!(entry["state"] != "up", "{entry}");
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gw_a.log()));

    a.gw.ip(&["addr", "add", &address, "dev", &a.iface])
        .expect("restore the address");
    wait_channel(&gw_b, a, "up");
    let log = gw_a.log();
    assert!(
        log.contains("the tunnel address is gone")
            && log.matches("control channel listening").count() >= 2,
        "not re-bound:\n{log}"
    );
}
