//! The health and metrics listener under a flood of slow and idle connections: 500 of them,
//! held open from inside the gateway's namespace, do not grow the gateway's memory beyond a
//! bound, and `/metrics` still answers while they are held.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use netns_tests::{Gateway, HTTP_LISTEN, Netns, Topology, require_root};

/// Connections held open at once.
const HELD: usize = 500;
/// Allowed growth of the gateway's resident memory while they are held.
const RSS_BOUND_KIB: u64 = 32 * 1024;
/// How long `/metrics` may take under the flood (the held connections stay below the cap of 512
/// per listener, so it should answer at once); also how long a held connection may wait to be
/// cut off after the header timeout (10 s).
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS line")
}

/// Opens `HELD` connections: even ones send the start of a head that never ends, odd ones send
/// nothing.
fn flood(ns: &Netns, addr: SocketAddr) -> Result<Vec<TcpStream>> {
    ns.run_in(|| {
        let mut held = Vec::with_capacity(HELD);
        for i in 0..HELD {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .with_context(|| format!("connection {i}"))?;
            if i % 2 == 0 {
                stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: a")?;
            }
            held.push(stream);
        }
        Ok(held)
    })
}

/// `GET /metrics` with a long read timeout; returns the status code and the body length.
fn metrics_under_flood(ns: &Netns, addr: SocketAddr) -> Result<(u16, usize)> {
    ns.run_in(|| {
        let mut stream = TcpStream::connect_timeout(&addr, METRICS_TIMEOUT)?;
        stream.set_read_timeout(Some(METRICS_TIMEOUT))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("no status line")?;
        let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
        Ok((status, body))
    })
}

#[test]
fn held_slow_and_idle_connections_neither_grow_memory_nor_stop_metrics() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw = Gateway::launch(a, &[b]).expect("gateway a ready");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", gw.pid())).expect("comm");
    assert_eq!(
        comm.trim(),
        "gateway",
        "the process id is not the gateway's"
    );
    let addr: SocketAddr = HTTP_LISTEN.parse().expect("listen address");
    // Warm up: the first scrapes allocate what every later one reuses.
    for _ in 0..3 {
        gw.metrics().expect("metrics before the flood");
    }
    let before = vm_rss_kib(gw.pid()).expect("VmRSS before");

    let held = flood(&a.gw, addr).expect("open the connections");
    let (status, body) = metrics_under_flood(&a.gw, addr).expect("metrics under the flood");
    assert_eq!(status, 200);
    assert!(body > 0, "empty /metrics");
    let during = vm_rss_kib(gw.pid()).expect("VmRSS during");
    assert!(
        during.saturating_sub(before) < RSS_BOUND_KIB,
        "VmRSS grew from {before} KiB to {during} KiB with {HELD} connections held"
    );
    // The server cut the connections that never completed a head.
    let cut =
        a.gw.run_in(|| {
            let mut cut = 0;
            for (i, mut stream) in held.into_iter().take(20).enumerate() {
                // The first waits out the header timeout; the others were opened with it.
                let wait = if i == 0 {
                    METRICS_TIMEOUT
                } else {
                    Duration::from_secs(2)
                };
                stream.set_read_timeout(Some(wait))?;
                let mut buf = [0_u8; 64];
                let closed = match stream.read(&mut buf) {
                    Ok(n) => n == 0,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                };
                if closed {
                    cut += 1;
                }
            }
            ensure!(cut == 20, "only {cut} of 20 held connections were cut off");
            Ok(cut)
        })
        .expect("held connections cut off");
    assert_eq!(cut, 20);
    gw.metrics().expect("metrics after the flood");
    let after = vm_rss_kib(gw.pid()).expect("VmRSS after");
    assert!(
        after.saturating_sub(before) < RSS_BOUND_KIB,
        "VmRSS grew from {before} KiB to {after} KiB"
    );
}
