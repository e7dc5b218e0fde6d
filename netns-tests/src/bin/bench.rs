//! `bench`: throughput and latency of each data plane between two pods, on the two-cluster
//! topology in network namespaces. Not a test: run it as root from a release build
//! (`cargo build --release --bins && sudo target/release/bench`), which finds the `gateway`
//! binary next to itself (or via `ZTGW_GATEWAY_BIN`).
//!
//! For each plane (our `native` and `userspace` gateways on both sides, wireguard-go on both
//! sides, and the raw veth underlay between the two gateway namespaces) it measures, several
//! times: iperf3 TCP with 1 and 4 streams, and idle ping RTT (p50, p99). It prints medians
//! and ratios against wireguard-go as a markdown table.
//!
//! Options: `BENCH_REPS` (default 3), `BENCH_SECONDS` per iperf3 run (default 5).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use netns_tests::{Gateway, Netns, Proc, Topology, WgUserspace, eventually, wait_reachable};

const REACH: Duration = Duration::from_secs(10);
const PINGS: u32 = 200;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Plane {
    Native,
    Userspace,
    WireguardGo,
    Veth,
}

impl Plane {
    fn label(self) -> &'static str {
        match self {
            Plane::Native => "native (ours)",
            Plane::Userspace => "userspace (boringtun device)",
            Plane::WireguardGo => "wireguard-go",
            Plane::Veth => "raw veth (no tunnel)",
        }
    }
}

/// Medians over the repetitions.
#[derive(Debug, Clone, Copy, Default)]
struct Result1 {
    tcp1_gbps: f64,
    tcp4_gbps: f64,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn try_main() -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the benchmark creates network namespaces and must run as root");
    }
    let reps = env_number("BENCH_REPS", 3).max(1);
    let seconds = env_number("BENCH_SECONDS", 5).max(1);
    let planes = [
        Plane::Native,
        Plane::Userspace,
        Plane::WireguardGo,
        Plane::Veth,
    ];
    let mut results = Vec::new();
    for plane in planes {
        eprintln!("measuring {} ({reps} repetitions)", plane.label());
        results.push((plane, measure(plane, reps, seconds)?));
    }
    print_table(&results, reps, seconds);
    Ok(())
}

fn measure(plane: Plane, reps: u32, seconds: u32) -> Result<Result1> {
    let topo = Topology::clusters(2).context("failed to build the topology")?;
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut _gateways = Vec::new();
    let mut _wggo = Vec::new();
    // Client and server namespaces and the address the client targets.
    let (client, server, target): (&Netns, &Netns, Ipv4Addr) = match plane {
        Plane::Native | Plane::Userspace => {
            let backend = if plane == Plane::Native {
                "native"
            } else {
                "userspace"
            };
            _gateways.push(Gateway::launch_with(a, &[b], backend)?);
            _gateways.push(Gateway::launch_with(b, &[a], backend)?);
            (&a.pod, &b.pod, b.pod_ip())
        }
        Plane::WireguardGo => {
            _wggo.push(WgUserspace::start(a, &[b.peer()])?);
            _wggo.push(WgUserspace::start(b, &[a.peer()])?);
            (&a.pod, &b.pod, b.pod_ip())
        }
        Plane::Veth => (&a.gw, &b.gw, b.underlay_ip()),
    };
    wait_reachable(client, target, REACH).context("the pods do not reach each other")?;
    // Killed on drop; the client retries until it listens.
    let _server: Proc = server.spawn(&["iperf3", "-s"], &[])?;
    let mut tcp1 = Vec::new();
    let mut tcp4 = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for _ in 0..reps {
        let (median, tail) = rtt(client, target)?;
        p50.push(median);
        p99.push(tail);
        tcp1.push(iperf(client, target, 1, seconds)?);
        tcp4.push(iperf(client, target, 4, seconds)?);
    }
    Ok(Result1 {
        tcp1_gbps: median_of(&mut tcp1),
        tcp4_gbps: median_of(&mut tcp4),
        rtt_p50_ms: median_of(&mut p50),
        rtt_p99_ms: median_of(&mut p99),
    })
}

/// Runs an iperf3 client; returns the received rate in Gbit/s.
fn iperf(client: &Netns, target: Ipv4Addr, streams: u32, seconds: u32) -> Result<f64> {
    let target = target.to_string();
    let (streams, seconds) = (streams.to_string(), seconds.to_string());
    let argv = [
        "iperf3", "-c", &target, "-P", &streams, "-t", &seconds, "-J",
    ];
    // The server may not listen yet at the first run.
    let out = eventually(Duration::from_secs(10), || client.run(&argv))?;
    parse_iperf(&out)
}

fn parse_iperf(json: &str) -> Result<f64> {
    let value: serde_json::Value = serde_json::from_str(json).context("iperf3 JSON")?;
    let bps = value["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3 output")?;
    Ok(bps / 1e9)
}

/// Pings `PINGS` times at 10 ms intervals; returns (p50, p99) RTT in ms.
fn rtt(client: &Netns, target: Ipv4Addr) -> Result<(f64, f64)> {
    let target = target.to_string();
    let count = PINGS.to_string();
    let out = client.run(&["ping", "-c", &count, "-i", "0.01", "-n", &target])?;
    let mut times: Vec<f64> = out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect();
    if times.is_empty() {
        bail!("no ping replies:\n{out}");
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn print_table(results: &[(Plane, Result1)], reps: u32, seconds: u32) {
    let reference = results
        .iter()
        .find(|(p, _)| *p == Plane::WireguardGo)
        .map(|(_, r)| *r)
        .unwrap_or_default();
    let ratio = |value: f64, of: f64| {
        if of > 0.0 {
            format!("{:.2}×", value / of)
        } else {
            "–".to_owned()
        }
    };
    println!(
        "Medians of {reps} runs; iperf3 TCP {seconds} s per run; ping: {PINGS} echoes at 10 ms, idle.\n"
    );
    println!(
        "| plane | TCP 1 stream Gbit/s | vs wg-go | TCP 4 streams Gbit/s | vs wg-go | RTT p50 ms | RTT p99 ms | p50 vs wg-go |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (plane, r) in results {
        println!(
            "| {} | {:.2} | {} | {:.2} | {} | {:.3} | {:.3} | {} |",
            plane.label(),
            r.tcp1_gbps,
            ratio(r.tcp1_gbps, reference.tcp1_gbps),
            r.tcp4_gbps,
            ratio(r.tcp4_gbps, reference.tcp4_gbps),
            r.rtt_p50_ms,
            r.rtt_p99_ms,
            ratio(r.rtt_p50_ms, reference.rtt_p50_ms),
        );
    }
}
