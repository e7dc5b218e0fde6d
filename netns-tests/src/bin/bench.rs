//! `bench`: throughput, packet rate, loss, latency and CPU cost of each data plane between two
//! pods, on the two-cluster topology in network namespaces. Not a test: run it as root from a
//! release build, best through `scripts/bench.sh`, which installs the tools first. It finds the
//! `gateway` binary next to itself (or via `ZTGW_GATEWAY_BIN`).
//!
//! Planes: our gateway (`native`, the userspace backend) on both sides; the previous build of
//! it whose userspace backend embedded boringtun's device (`previous`: the gateway binary at
//! `ZTGW_PREVIOUS_GATEWAY_BIN`, skipped when unset); today's wireguard-go on both sides
//! (`wireguard-go-current`, as `scripts/go-tools.sh` builds it; skipped when missing), refused
//! unless the kernel shows its offloads on (TUN with `IFF_VNET_HDR`, UDP GSO and GRO, checked
//! during a short TCP run each way before measuring: without them the plane would be Debian's
//! build again); Debian's wireguard-go on both sides, boringtun-cli on both sides (`ZTGW_BORINGTUN_BIN`, else `boringtun-cli` on the `PATH`;
//! skipped when missing), and the raw veth underlay between the two gateway namespaces.
//!
//! Per plane, once: the tunnel left idle for `IDLE_SECONDS`, the tunnel processes' largest
//! resident set and busiest CPU time. Per plane and repetition: idle ping RTT; iperf3 TCP
//! with 1 stream (counting the CPU time of the tunnel processes on both sides) and 4 streams;
//! UDP at the maximum rate with 64 B and 1,400 B packets; ping RTT during a 1-stream TCP run.
//! Then UDP 1,400 B at half the first measured plane's (normally native's) maximum rate, the
//! same rate for every plane. It prints the machine, then medians as markdown tables with
//! ratios against wireguard-go, the native plane against wireguard-go-current, and whether
//! each target of the native plane is met. The parsing and the arithmetic live in
//! `netns_tests::bench`.
//!
//! Options: `BENCH_REPS` (default 3), `BENCH_SECONDS` per iperf3 run (default 5),
//! `BENCH_PLANES` (comma list of
//! `native,previous,wireguard-go-current,wireguard-go,boringtun-cli,veth`; default all).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use netns_tests::bench::report::{FixedRate, Outcome, PlaneResult, Report};
use netns_tests::bench::{
    FIXED_RATE_SHARE, IDLE_PINGS, IDLE_SECONDS, LARGE_PACKET, LOAD_WARMUP_ECHOES, PING_INTERVAL_MS,
    PingRun, Plane, SMALL_PACKET, Samples, Summary, TcpRun, UDP_OVERHEAD, UdpRun, core_percent,
    cpu_model, cpu_seconds_per_gb, median, offered_bits_per_second, parse_cpu_ticks,
    parse_iperf_tcp, parse_iperf_udp, parse_ping, parse_planes, parse_rss_kib, parse_schedstat_ns,
    percentile,
};
use netns_tests::{
    Gateway, Netns, Offloads, Proc, READY_TIMEOUT, Topology, WgProgram, WgUserspace, eventually,
    has_tool, wait_reachable,
};
use nix::unistd::{SysconfVar, sysconf};

/// How long the pods may take to reach each other through a new tunnel.
const REACH: Duration = Duration::from_secs(10);

/// How long an iperf3 client keeps retrying while the server is not listening or still busy.
const SERVER_RETRY: Duration = Duration::from_secs(10);

/// Seconds of each TCP run (one each way) while today's wireguard-go's offloads are checked.
const OFFLOAD_CHECK_SECONDS: u32 = 2;

fn main() -> ExitCode {
    match try_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("bench: some planes failed (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every measurement needs to know.
#[derive(Debug)]
struct Settings {
    reps: u32,
    seconds: u32,
    /// `sysconf(_SC_CLK_TCK)`: the unit of `/proc/<pid>/stat` CPU times.
    ticks_per_second: u64,
    /// boringtun-cli's path, or why it cannot be used.
    boringtun: Result<PathBuf, String>,
    /// The previous gateway build's path, or why it cannot be used.
    previous: Result<PathBuf, String>,
    /// Today's wireguard-go, or why it cannot be used.
    current: Result<WgProgram, String>,
}

fn env_number(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Returns whether every selected plane was measured or skipped (none failed).
fn try_main() -> Result<bool> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!("the benchmark creates network namespaces and must run as root");
    }
    for tool in ["iperf3", "ping", "ip"] {
        ensure!(
            has_tool(tool),
            "{tool} is not installed (scripts/bench.sh installs it)"
        );
    }
    let planes = parse_planes(std::env::var("BENCH_PLANES").ok().as_deref())?;
    let ticks = sysconf(SysconfVar::CLK_TCK)
        .context("sysconf(_SC_CLK_TCK)")?
        .context("no clock tick rate")?;
    let settings = Settings {
        reps: env_number("BENCH_REPS", 3)?.max(1),
        seconds: env_number("BENCH_SECONDS", 5)?.max(1),
        ticks_per_second: u64::try_from(ticks).context("bad clock tick rate")?,
        boringtun: boringtun_bin(),
        previous: previous_bin(),
        current: WgProgram::wireguard_go_current().map_err(|error| format!("{error:#}")),
    };
    println!("{}", describe_machine(&settings));

    let mut results = Vec::new();
    let mut fixed = None;
    for plane in planes {
        if let Some(why) = unavailable(plane, &settings) {
            eprintln!("skipping {}: {why}", plane.label());
            results.push(PlaneResult {
                plane,
                outcome: Outcome::Skipped(why),
            });
            continue;
        }
        eprintln!("measuring {} (BENCH_REPS={})", plane.label(), settings.reps);
        let outcome = match measure(plane, &settings, &mut fixed) {
            Ok(summary) => Outcome::Measured(Box::new(summary)),
            Err(error) => {
                eprintln!("{} failed: {error:#}", plane.label());
                // The first line of the error is enough for the table; the rest is above.
                let first = format!("{error:#}");
                Outcome::Failed(first.lines().next().unwrap_or_default().to_owned())
            }
        };
        results.push(PlaneResult { plane, outcome });
    }
    let report = Report {
        results: &results,
        reps: settings.reps,
        seconds: settings.seconds,
        fixed,
    };
    print!("{}", report.render());
    Ok(!results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed(_))))
}

/// `$ZTGW_BORINGTUN_BIN`, else `boringtun-cli` on the `PATH`, else why neither works.
fn boringtun_bin() -> Result<PathBuf, String> {
    match std::env::var_os("ZTGW_BORINGTUN_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "ZTGW_BORINGTUN_BIN={} is not a file (scripts/bench.sh installs boringtun-cli)",
                    path.display()
                ))
            }
        }
        None if has_tool("boringtun-cli") => Ok(PathBuf::from("boringtun-cli")),
        None => Err(
            "boringtun-cli is not installed: set ZTGW_BORINGTUN_BIN or run scripts/bench.sh"
                .to_owned(),
        ),
    }
}

/// `$ZTGW_PREVIOUS_GATEWAY_BIN`, else why the previous plane cannot run.
fn previous_bin() -> Result<PathBuf, String> {
    match std::env::var_os("ZTGW_PREVIOUS_GATEWAY_BIN") {
        Some(path) if PathBuf::from(&path).is_file() => Ok(PathBuf::from(path)),
        Some(path) => Err(format!(
            "ZTGW_PREVIOUS_GATEWAY_BIN={} is not a file",
            PathBuf::from(path).display()
        )),
        None => Err(
            "ZTGW_PREVIOUS_GATEWAY_BIN is not set (a gateway built from an earlier commit; see the README)"
                .to_owned(),
        ),
    }
}

/// Why `plane` cannot be measured here, if it cannot.
fn unavailable(plane: Plane, settings: &Settings) -> Option<String> {
    let needs_wg = matches!(
        plane,
        Plane::WireguardGo | Plane::WireguardGoCurrent | Plane::BoringtunCli
    );
    if needs_wg && !has_tool("wg") {
        return Some("wg (wireguard-tools) is not installed".to_owned());
    }
    match plane {
        Plane::WireguardGo if !has_tool("wireguard-go") => {
            Some("wireguard-go is not installed".to_owned())
        }
        Plane::WireguardGoCurrent => settings.current.as_ref().err().cloned(),
        Plane::BoringtunCli => settings.boringtun.as_ref().err().cloned(),
        Plane::Previous => settings.previous.as_ref().err().cloned(),
        _ => None,
    }
}

/// The CPU, cores, kernel and tool versions, as a markdown list.
fn describe_machine(settings: &Settings) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boringtun = match &settings.boringtun {
        Ok(path) => version(&path.to_string_lossy()),
        Err(_) => "not installed".to_owned(),
    };
    let current = match &settings.current {
        Ok(program) => program.path().map_or_else(|| "unknown".to_owned(), version),
        Err(_) => "not built (scripts/go-tools.sh)".to_owned(),
    };
    format!(
        "Machine:\n\n\
         - CPU: {} ({cores} cores available to this run: `taskset` limits them)\n\
         - kernel: {}\n\
         - wireguard-go: {}\n\
         - wireguard-go-current: {current}\n\
         - boringtun-cli: {boringtun}\n\
         - iperf3: {}\n",
        cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned()),
        kernel.trim(),
        version("wireguard-go"),
        version("iperf3"),
    )
}

/// The first line of `<program> --version`, or why there is none.
fn version(program: &str) -> String {
    match Command::new(program).arg("--version").output() {
        Ok(output) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("unknown")
            .trim()
            .to_owned(),
        Err(_) => "not installed".to_owned(),
    }
}

/// Builds a topology with `plane` between the pods and runs every measurement on it.
fn measure(plane: Plane, settings: &Settings, fixed: &mut Option<FixedRate>) -> Result<Summary> {
    let topo = Topology::clusters(2).context("failed to build the topology")?;
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    // Tunnel processes, killed when these drop.
    let mut gateways = Vec::new();
    let mut devices = Vec::new();
    // Client and server namespaces and the address the client targets.
    let (client, server, target): (&Netns, &Netns, Ipv4Addr) = match plane {
        Plane::Native | Plane::Previous => {
            let binary = match (plane, &settings.previous) {
                (Plane::Previous, Ok(path)) => Some(path.clone()),
                (Plane::Previous, Err(why)) => bail!("{why}"),
                _ => None,
            };
            for (cluster, peer) in [(a, b), (b, a)] {
                let mut setup = Gateway::setup(cluster)?.with_peers(&[peer])?;
                // The previous build predates `[peers] state_path`.
                setup.config.peer_state_path = binary.is_none();
                setup.binary.clone_from(&binary);
                let mut gateway = setup.start()?;
                gateway.wait_ready(READY_TIMEOUT)?;
                gateways.push(gateway);
            }
            (&a.pod, &b.pod, b.pod_ip())
        }
        Plane::WireguardGo | Plane::WireguardGoCurrent | Plane::BoringtunCli => {
            let program = match (plane, &settings.boringtun, &settings.current) {
                (Plane::BoringtunCli, Ok(path), _) => WgProgram::boringtun_cli(path),
                (Plane::BoringtunCli, Err(why), _) | (Plane::WireguardGoCurrent, _, Err(why)) => {
                    bail!("{why}")
                }
                (Plane::WireguardGoCurrent, _, Ok(program)) => program.clone(),
                _ => WgProgram::wireguard_go(),
            };
            devices.push(WgUserspace::start_with(&program, a, &[b.peer()])?);
            devices.push(WgUserspace::start_with(&program, b, &[a.peer()])?);
            (&a.pod, &b.pod, b.pod_ip())
        }
        Plane::Veth => (&a.gw, &b.gw, b.underlay_ip()),
    };
    let pids: Vec<u32> = gateways
        .iter()
        .map(Gateway::pid)
        .chain(devices.iter().map(WgUserspace::pid))
        .collect();
    wait_reachable(client, target, REACH).context("the pods do not reach each other")?;
    let mut samples = Samples::default();
    if !pids.is_empty() {
        let (rss_mb, cpu_percent) = idle(&pids)?;
        eprintln!(
            "  {} idle: largest RSS {rss_mb:.1} MB, busiest CPU {cpu_percent:.3} % of a core",
            plane.name()
        );
        samples.idle_rss_mb.push(rss_mb);
        samples.idle_cpu_percent.push(cpu_percent);
    }
    // Killed on drop; clients retry until it listens.
    let _server: Proc = server.spawn(&["iperf3", "-s"], &[])?;
    let run = Run {
        client,
        target,
        seconds: settings.seconds,
    };
    if plane == Plane::WireguardGoCurrent {
        let device = devices.first().context("no device in a")?;
        let offloads = check_offloads(device, run)?;
        eprintln!("  {}: offloads on: {offloads}", plane.name());
    }

    for rep in 1..=settings.reps {
        eprintln!("  {} repetition {rep}/{}", plane.name(), settings.reps);
        let idle = run.ping(IDLE_PINGS)?.rtts_after(0);
        samples
            .idle_p50_ms
            .push(percentile(&idle, 0.5).context("no idle ping replies")?);
        samples
            .idle_p99_ms
            .push(percentile(&idle, 0.99).context("no idle ping replies")?);

        let before = cpu_ticks(&pids)?;
        let tcp1 = run.tcp(1)?;
        let ticks = cpu_ticks(&pids)?.saturating_sub(before);
        samples.tcp1_gbps.push(tcp1.bits_per_second / 1e9);
        if plane.has_tunnel() {
            samples.cpu_s_per_gb.extend(cpu_seconds_per_gb(
                ticks,
                settings.ticks_per_second,
                tcp1.bytes,
            ));
        }
        samples.tcp4_gbps.push(run.tcp(4)?.bits_per_second / 1e9);

        let small = run.udp(SMALL_PACKET, 0)?;
        samples.small_pps.push(small.received_per_second());
        samples.small_loss.push(small.loss_percent());
        let large = run.udp(LARGE_PACKET, 0)?;
        samples.large_pps.push(large.received_per_second());
        samples.large_loss.push(large.loss_percent());

        let (loaded, load) = run.ping_under_load()?;
        let rtts = loaded.rtts_after(LOAD_WARMUP_ECHOES);
        samples
            .load_p50_ms
            .push(percentile(&rtts, 0.5).context("no ping replies under load")?);
        samples
            .load_p99_ms
            .push(percentile(&rtts, 0.99).context("no ping replies under load")?);
        samples.load_echo_loss.push(loaded.loss_percent());
        samples.load_gbps.push(load.bits_per_second / 1e9);
    }

    // The first plane measured sets the loss test's rate for all.
    let rate = match fixed {
        Some(rate) => *rate,
        None => {
            let max = median(&samples.large_pps).context("no UDP rate measured")?;
            let rate = FixedRate {
                reference: plane,
                packets_per_second: max * FIXED_RATE_SHARE,
                bits_per_second: offered_bits_per_second(max, FIXED_RATE_SHARE, LARGE_PACKET),
            };
            ensure!(
                rate.bits_per_second > 0,
                "{} carried no UDP packets",
                plane.label()
            );
            *fixed = Some(rate);
            rate
        }
    };
    for rep in 1..=settings.reps {
        eprintln!(
            "  {} UDP at a fixed rate {rep}/{}",
            plane.name(),
            settings.reps
        );
        let at_rate = run.udp(LARGE_PACKET, rate.bits_per_second)?;
        samples.fixed_pps.push(at_rate.received_per_second());
        samples.fixed_loss.push(at_rate.loss_percent());
    }
    Ok(samples.summary())
}

/// Checks from the kernel's side that `device` (in the client's cluster) runs with its TUN and
/// UDP offloads, during a short TCP run each way: the plane is refused without them.
fn check_offloads(device: &WgUserspace<'_>, run: Run<'_>) -> Result<Offloads> {
    let short = Run {
        seconds: OFFLOAD_CHECK_SECONDS,
        ..run
    };
    let offloads = device.observe_offloads(|| {
        short.tcp(1)?;
        short.iperf(&["-P", "1", "-R"])?;
        Ok(())
    })?;
    offloads.check().context(
        "the wireguard-go-current plane is only meaningful with its offloads on: refused",
    )?;
    Ok(offloads)
}

/// Leaves the tunnel idle for [`IDLE_SECONDS`] and returns the largest resident set (MB)
/// and the busiest CPU time (percent of one core) among the processes `pids`.
#[allow(
    clippy::disallowed_methods,
    reason = "idleness is a fixed stretch of wall time with nothing happening: no event marks its end"
)]
fn idle(pids: &[u32]) -> Result<(f64, f64)> {
    let before: Vec<u64> = pids
        .iter()
        .map(|&pid| run_time_ns(pid))
        .collect::<Result<_>>()?;
    let started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(u64::from(IDLE_SECONDS)));
    let wall = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut rss_mb = 0f64;
    let mut cpu_percent = 0f64;
    for (&pid, before) in pids.iter().zip(before) {
        let used = run_time_ns(pid)?.saturating_sub(before);
        cpu_percent = cpu_percent.max(core_percent(used, wall).unwrap_or_default());
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {path}: has the tunnel process exited?"))?;
        rss_mb = rss_mb.max(parse_rss_kib(&status)? as f64 * 1024.0 / 1e6);
    }
    Ok((rss_mb, cpu_percent))
}

/// The time on the CPU, in nanoseconds, of every thread the process `pid` has now
/// (`/proc/<pid>/task/*/schedstat`; finer than the clock ticks of `/proc/<pid>/stat`).
fn run_time_ns(pid: u32) -> Result<u64> {
    let tasks = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&tasks)
        .with_context(|| format!("failed to read {tasks}: has the tunnel process exited?"))?;
    let mut total = 0u64;
    for entry in entries {
        let path = entry
            .context("reading a task entry")?
            .path()
            .join("schedstat");
        // A thread that ended between the listing and the read is not counted.
        if let Ok(text) = std::fs::read_to_string(&path) {
            total = total.saturating_add(parse_schedstat_ns(&text)?);
        }
    }
    Ok(total)
}

/// The sum of utime and stime, in clock ticks, of every process in `pids`.
fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    pids.iter().try_fold(0, |sum, pid| {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {path}: has the tunnel process exited?"))?;
        Ok(sum + parse_cpu_ticks(&stat)?)
    })
}

/// The client side of the measurements: where they run and what they target.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    client: &'a Netns,
    target: Ipv4Addr,
    seconds: u32,
}

impl Run<'_> {
    /// iperf3 TCP with `streams` parallel streams.
    fn tcp(&self, streams: u32) -> Result<TcpRun> {
        let out = self.iperf(&["-P", &streams.to_string()])?;
        parse_iperf_tcp(&out)
    }

    /// iperf3 UDP with `packet`-byte packets (IP header included) at `bits_per_second` of
    /// payload, 0 for as fast as the sender can.
    fn udp(&self, packet: u32, bits_per_second: u64) -> Result<UdpRun> {
        let payload = (packet - UDP_OVERHEAD).to_string();
        let rate = bits_per_second.to_string();
        let out = self.iperf(&["-u", "-b", &rate, "-l", &payload])?;
        parse_iperf_udp(&out)
    }

    /// Runs an iperf3 client with `extra` options and returns its JSON; retries while the
    /// server does not listen yet or is still busy with the previous test.
    fn iperf(&self, extra: &[&str]) -> Result<String> {
        let argv = self.iperf_argv(extra);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        eventually(SERVER_RETRY, || self.client.run(&argv))
    }

    fn iperf_argv(&self, extra: &[&str]) -> Vec<String> {
        let mut argv: Vec<String> = ["iperf3", "-c", &self.target.to_string(), "-J", "-t"]
            .iter()
            .map(ToString::to_string)
            .collect();
        argv.push(self.seconds.to_string());
        argv.extend(extra.iter().map(ToString::to_string));
        argv
    }

    /// `count` echo requests, one every `PING_INTERVAL_MS`.
    fn ping(&self, count: u32) -> Result<PingRun> {
        let interval = format!("{:.3}", f64::from(PING_INTERVAL_MS) / 1e3);
        let target = self.target.to_string();
        let count = count.to_string();
        // ping exits non-zero when replies are missing; the output still counts them.
        let output = self
            .client
            .exec(&["ping", "-n", "-c", &count, "-i", &interval, &target])?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let run = parse_ping(&stdout).with_context(|| {
            format!(
                "ping failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        ensure!(!run.replies.is_empty(), "no ping replies:\n{stdout}");
        Ok(run)
    }

    /// Pings during a 1-stream iperf3 TCP run, stopping half a second before it ends;
    /// returns the pings and the run.
    fn ping_under_load(&self) -> Result<(PingRun, TcpRun)> {
        let count = (self.seconds * 1000 / PING_INTERVAL_MS)
            .saturating_sub(50)
            .max(LOAD_WARMUP_ECHOES + 20);
        let argv = self.iperf_argv(&["-P", "1"]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        eventually(SERVER_RETRY, || {
            let load = self.client.spawn(&argv, &[])?;
            let pings = self.ping(count)?;
            // The load must have run for the RTTs to mean anything.
            let out = load.finish(Duration::from_secs(u64::from(self.seconds) + 30))?;
            Ok((pings, parse_iperf_tcp(&out)?))
        })
    }
}
