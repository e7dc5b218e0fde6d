//! The measurement logic of the `bench` binary, without IO so that it is unit-tested: which
//! planes to measure, reading iperf3's JSON and ping's output, percentiles and medians, CPU
//! time from `/proc/<pid>/stat`, and the report (tables and targets, in [`report`]).
//!
//! The binary (`src/bin/bench.rs`) only builds the topology, starts the processes, runs the
//! tools and hands their output here.

pub mod report;
#[cfg(test)]
mod tests;

use anyhow::{Context as _, Result, bail, ensure};

/// IPv4 and UDP headers: an iperf3 payload of `n` bytes is an `n + 28`-byte packet in the
/// tunnel.
pub const UDP_OVERHEAD: u32 = 28;

/// The small UDP packet, IP header included (64 B).
pub const SMALL_PACKET: u32 = 64;

/// The large UDP packet, IP header included (1,400 B). As a payload, 1,400 B would make
/// 1,428-byte packets, more than the tunnel MTU of 1,420: each would be fragmented in two.
pub const LARGE_PACKET: u32 = 1400;

/// The share of the reference plane's maximum large-packet rate offered in the loss test.
pub const FIXED_RATE_SHARE: f64 = 0.5;

/// Echo requests per idle RTT measurement, one every [`PING_INTERVAL_MS`].
pub const IDLE_PINGS: u32 = 200;

/// Seconds the tunnel is left idle (up, nothing sent through it) while its processes' memory
/// and CPU time are read.
pub const IDLE_SECONDS: u32 = 10;

/// Interval between echo requests, idle and under load (100 per second).
pub const PING_INTERVAL_MS: u32 = 10;

/// Replies under load that are not counted, while the TCP stream ramps up (the first 100 ms).
pub const LOAD_WARMUP_ECHOES: u32 = 10;

/// A data plane between the two pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plane {
    /// Our gateway with `backend = "native"` on both sides.
    Native,
    /// An earlier build of our gateway (`$ZTGW_PREVIOUS_GATEWAY_BIN`, the last one whose
    /// `userspace` backend embedded boringtun's device) on both sides.
    Previous,
    /// Today's wireguard-go (built by `scripts/go-tools.sh`) on both sides, measured only when
    /// it runs with its TUN and UDP offloads; the native plane's targets are also judged
    /// against it.
    WireguardGoCurrent,
    /// `wireguard-go` from the `PATH` (Debian's 2022 build, before the offloads) on both
    /// sides, the reference for the tables' ratios.
    WireguardGo,
    /// `boringtun-cli` on both sides.
    BoringtunCli,
    /// No tunnel: the two gateway namespaces over the underlay bridge.
    Veth,
}

impl Plane {
    /// Every plane, in the order they are measured (the reference for the loss test first).
    pub const ALL: [Plane; 6] = [
        Plane::Native,
        Plane::Previous,
        Plane::WireguardGoCurrent,
        Plane::WireguardGo,
        Plane::BoringtunCli,
        Plane::Veth,
    ];

    /// The name `BENCH_PLANES` uses.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Native => "native",
            Plane::Previous => "previous",
            Plane::WireguardGoCurrent => "wireguard-go-current",
            Plane::WireguardGo => "wireguard-go",
            Plane::BoringtunCli => "boringtun-cli",
            Plane::Veth => "veth",
        }
    }

    /// The row label in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Plane::Native => "native (ours)",
            Plane::Previous => "previous userspace (ours, boringtun device)",
            Plane::WireguardGoCurrent => "wireguard-go-current (offloads on)",
            Plane::WireguardGo => "wireguard-go",
            Plane::BoringtunCli => "boringtun-cli",
            Plane::Veth => "raw veth (no tunnel)",
        }
    }

    /// Whether tunnel processes carry the traffic (whose CPU time is then counted).
    pub fn has_tunnel(self) -> bool {
        self != Plane::Veth
    }
}

/// Parses `BENCH_PLANES`, a comma-separated list of plane names; `None` or an empty list
/// selects every plane. The result is in measuring order ([`Plane::ALL`]), without duplicates.
///
/// # Errors
/// Fails on an unknown name, listing the known ones.
pub fn parse_planes(list: Option<&str>) -> Result<Vec<Plane>> {
    let Some(list) = list.filter(|l| !l.trim().is_empty()) else {
        return Ok(Plane::ALL.to_vec());
    };
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(plane) = Plane::ALL.into_iter().find(|p| p.name() == name) else {
            let known: Vec<&str> = Plane::ALL.iter().map(|p| p.name()).collect();
            bail!(
                "unknown plane {name:?} in BENCH_PLANES (known: {})",
                known.join(", ")
            );
        };
        chosen.push(plane);
    }
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

/// What the receiving side of an iperf3 TCP test counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpRun {
    /// Received bits per second.
    pub bits_per_second: f64,
    /// Bytes received.
    pub bytes: u64,
}

/// Reads an iperf3 TCP client's `-J` output (`end.sum_received`).
///
/// # Errors
/// Fails when iperf3 reported an error or the fields are missing.
pub fn parse_iperf_tcp(json: &str) -> Result<TcpRun> {
    let end = iperf_end(json)?;
    let sum = &end["sum_received"];
    let bits_per_second = sum["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3 output")?;
    let bytes = sum["bytes"]
        .as_u64()
        .context("no end.sum_received.bytes in iperf3 output")?;
    Ok(TcpRun {
        bits_per_second,
        bytes,
    })
}

/// What the receiving side of an iperf3 UDP test counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpRun {
    /// Length of the test as the receiver measured it, in seconds.
    pub seconds: f64,
    /// Datagrams the receiver accounts for: received plus lost (iperf3's `packets`).
    pub packets: u64,
    /// Datagrams missing from the sequence.
    pub lost: u64,
}

impl UdpRun {
    /// Datagrams received.
    pub fn received(&self) -> u64 {
        self.packets.saturating_sub(self.lost)
    }

    /// Datagrams received per second.
    pub fn received_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.received() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Lost datagrams in percent of those sent (0 when nothing was accounted for).
    pub fn loss_percent(&self) -> f64 {
        if self.packets == 0 {
            return 0.0;
        }
        self.lost as f64 * 100.0 / self.packets as f64
    }
}

/// Reads an iperf3 UDP client's `-J` output: `end.sum_received` (iperf3 3.11 and later), else
/// `end.sum`, which older versions fill from the receiver's report.
///
/// # Errors
/// Fails when iperf3 reported an error or the fields are missing.
pub fn parse_iperf_udp(json: &str) -> Result<UdpRun> {
    let end = iperf_end(json)?;
    let sum = if end["sum_received"].is_object() {
        &end["sum_received"]
    } else {
        &end["sum"]
    };
    let seconds = sum["seconds"]
        .as_f64()
        .context("no seconds in iperf3's UDP summary")?;
    let packets = sum["packets"]
        .as_u64()
        .context("no packets in iperf3's UDP summary")?;
    // Reordering can make iperf3's count negative; a negative loss is no loss.
    let lost = sum["lost_packets"]
        .as_i64()
        .context("no lost_packets in iperf3's UDP summary")?;
    Ok(UdpRun {
        seconds,
        packets,
        lost: u64::try_from(lost).unwrap_or(0),
    })
}

fn iperf_end(json: &str) -> Result<serde_json::Value> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).context("iperf3 output is not JSON")?;
    if let Some(error) = value["error"].as_str() {
        bail!("iperf3: {error}");
    }
    let end = value["end"].take();
    ensure!(end.is_object(), "no end section in iperf3 output");
    Ok(end)
}

/// The iperf3 `-b` rate, in bits per second of payload, that offers `share` of `packets_per_second`
/// packets of `packet` bytes (IP header included).
pub fn offered_bits_per_second(packets_per_second: f64, share: f64, packet: u32) -> u64 {
    let payload = f64::from(packet.saturating_sub(UDP_OVERHEAD));
    // Rounded to whole bits per second; rates are far below 2^53.
    (packets_per_second * share * payload * 8.0).round() as u64
}

/// What `ping` printed: the RTT of each reply by sequence number, and the counts.
#[derive(Debug, Clone, PartialEq)]
pub struct PingRun {
    /// `(icmp_seq, rtt in ms)` for each reply, in arrival order.
    pub replies: Vec<(u32, f64)>,
    /// Echo requests sent.
    pub transmitted: u32,
}

impl PingRun {
    /// RTTs of the replies whose sequence number is above `warmup` (ping counts from 1).
    pub fn rtts_after(&self, warmup: u32) -> Vec<f64> {
        self.replies
            .iter()
            .filter(|(seq, _)| *seq > warmup)
            .map(|(_, ms)| *ms)
            .collect()
    }

    /// Lost echoes in percent of those sent.
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        let received = u32::try_from(self.replies.len()).unwrap_or(u32::MAX);
        f64::from(self.transmitted.saturating_sub(received)) * 100.0 / f64::from(self.transmitted)
    }
}

/// Reads iputils `ping -n` output: `... icmp_seq=N ttl=T time=X ms` lines and the
/// `N packets transmitted, M received` summary. Duplicate replies are ignored.
///
/// # Errors
/// Fails when there is no summary line.
pub fn parse_ping(output: &str) -> Result<PingRun> {
    let mut replies: Vec<(u32, f64)> = Vec::new();
    let mut transmitted = None;
    for line in output.lines() {
        if line.contains("(DUP!)") {
            continue;
        }
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .map(str::to_owned)
        };
        if let (Some(seq), Some(time)) = (field("icmp_seq="), field("time=")) {
            if let (Ok(seq), Ok(ms)) = (seq.parse(), time.parse()) {
                replies.push((seq, ms));
            }
        } else if let Some((count, _)) = line.split_once(" packets transmitted") {
            transmitted = count.trim().parse().ok();
        }
    }
    let transmitted = transmitted.context("no \"packets transmitted\" line in ping output")?;
    Ok(PingRun {
        replies,
        transmitted,
    })
}

/// The nearest-rank `q`-quantile (0 < q ≤ 1) of `values`; `None` when there are none.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => sorted.get(n / 2).copied(),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Reads `utime + stime` (clock ticks, all threads) from the text of `/proc/<pid>/stat`.
///
/// # Errors
/// Fails when the text does not have the expected fields.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself;
    // the fields after the last ')' start with field 3, the state.
    let (_, rest) = stat
        .rsplit_once(')')
        .context("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15.
    let tick = |index: usize| -> Result<u64> {
        fields
            .get(index - 3)
            .context("/proc/<pid>/stat has too few fields")?
            .parse()
            .context("bad CPU time in /proc/<pid>/stat")
    };
    Ok(tick(14)? + tick(15)?)
}

/// Reads a thread's time on the CPU, in nanoseconds, from the text of
/// `/proc/<pid>/task/<tid>/schedstat` (its first field).
///
/// # Errors
/// Fails when the first field is missing or not a number.
pub fn parse_schedstat_ns(text: &str) -> Result<u64> {
    text.split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()
        .context("bad run time in schedstat")
}

/// Reads the resident set size, in KiB, from the text of `/proc/<pid>/status` (`VmRSS:`).
///
/// # Errors
/// Fails when the line is missing or not in kB.
pub fn parse_rss_kib(status: &str) -> Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("no VmRSS line in /proc/<pid>/status")?;
    let value = line
        .trim()
        .strip_suffix("kB")
        .context("VmRSS is not in kB")?;
    value.trim().parse().context("bad VmRSS value")
}

/// The share of one core, in percent, that `cpu_ns` of CPU time over `wall_ns` is.
pub fn core_percent(cpu_ns: u64, wall_ns: u64) -> Option<f64> {
    (wall_ns > 0).then(|| cpu_ns as f64 / wall_ns as f64 * 100.0)
}

/// CPU seconds per GB (10^9 bytes) carried; `None` when nothing was carried.
pub fn cpu_seconds_per_gb(ticks: u64, ticks_per_second: u64, bytes: u64) -> Option<f64> {
    if bytes == 0 || ticks_per_second == 0 {
        return None;
    }
    Some(ticks as f64 / ticks_per_second as f64 / (bytes as f64 / 1e9))
}

/// The CPU model named in `/proc/cpuinfo` text (`model name`).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// Every measurement of one plane, one value per repetition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// TCP, 1 stream, Gbit/s received.
    pub tcp1_gbps: Vec<f64>,
    /// TCP, 4 streams, Gbit/s received.
    pub tcp4_gbps: Vec<f64>,
    /// CPU seconds of the tunnel processes per GB during the 1-stream TCP run.
    pub cpu_s_per_gb: Vec<f64>,
    /// Small UDP packets at the maximum rate: received per second.
    pub small_pps: Vec<f64>,
    /// Small UDP packets at the maximum rate: loss in percent.
    pub small_loss: Vec<f64>,
    /// Large UDP packets at the maximum rate: received per second.
    pub large_pps: Vec<f64>,
    /// Large UDP packets at the maximum rate: loss in percent.
    pub large_loss: Vec<f64>,
    /// Large UDP packets at the fixed rate: received per second.
    pub fixed_pps: Vec<f64>,
    /// Large UDP packets at the fixed rate: loss in percent.
    pub fixed_loss: Vec<f64>,
    /// Idle RTT p50, ms.
    pub idle_p50_ms: Vec<f64>,
    /// Idle RTT p99, ms.
    pub idle_p99_ms: Vec<f64>,
    /// RTT p50 during a 1-stream TCP run, ms.
    pub load_p50_ms: Vec<f64>,
    /// RTT p99 during a 1-stream TCP run, ms.
    pub load_p99_ms: Vec<f64>,
    /// Echo requests lost during a 1-stream TCP run, percent.
    pub load_echo_loss: Vec<f64>,
    /// The rate of that TCP run, Gbit/s received.
    pub load_gbps: Vec<f64>,
    /// Idle: the resident set of the largest tunnel process, MB (10^6 bytes).
    pub idle_rss_mb: Vec<f64>,
    /// Idle: the CPU time of the busiest tunnel process, percent of one core.
    pub idle_cpu_percent: Vec<f64>,
}

impl Samples {
    /// The medians of every measurement.
    pub fn summary(&self) -> Summary {
        Summary {
            tcp1_gbps: median(&self.tcp1_gbps),
            tcp4_gbps: median(&self.tcp4_gbps),
            cpu_s_per_gb: median(&self.cpu_s_per_gb),
            small_pps: median(&self.small_pps),
            small_loss: median(&self.small_loss),
            large_pps: median(&self.large_pps),
            large_loss: median(&self.large_loss),
            fixed_pps: median(&self.fixed_pps),
            fixed_loss: median(&self.fixed_loss),
            idle_p50_ms: median(&self.idle_p50_ms),
            idle_p99_ms: median(&self.idle_p99_ms),
            load_p50_ms: median(&self.load_p50_ms),
            load_p99_ms: median(&self.load_p99_ms),
            load_echo_loss: median(&self.load_echo_loss),
            load_gbps: median(&self.load_gbps),
            idle_rss_mb: median(&self.idle_rss_mb),
            idle_cpu_percent: median(&self.idle_cpu_percent),
        }
    }
}

/// The medians of one plane's measurements, field by field those of [`Samples`]; `None`
/// where nothing was measured (e.g. CPU time without tunnel processes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// TCP, 1 stream, Gbit/s received.
    pub tcp1_gbps: Option<f64>,
    /// TCP, 4 streams, Gbit/s received.
    pub tcp4_gbps: Option<f64>,
    /// CPU seconds of the tunnel processes per GB during the 1-stream TCP run.
    pub cpu_s_per_gb: Option<f64>,
    /// Small UDP packets at the maximum rate: received per second.
    pub small_pps: Option<f64>,
    /// Small UDP packets at the maximum rate: loss in percent.
    pub small_loss: Option<f64>,
    /// Large UDP packets at the maximum rate: received per second.
    pub large_pps: Option<f64>,
    /// Large UDP packets at the maximum rate: loss in percent.
    pub large_loss: Option<f64>,
    /// Large UDP packets at the fixed rate: received per second.
    pub fixed_pps: Option<f64>,
    /// Large UDP packets at the fixed rate: loss in percent.
    pub fixed_loss: Option<f64>,
    /// Idle RTT p50, ms.
    pub idle_p50_ms: Option<f64>,
    /// Idle RTT p99, ms.
    pub idle_p99_ms: Option<f64>,
    /// RTT p50 during a 1-stream TCP run, ms.
    pub load_p50_ms: Option<f64>,
    /// RTT p99 during a 1-stream TCP run, ms.
    pub load_p99_ms: Option<f64>,
    /// Echo requests lost during a 1-stream TCP run, percent.
    pub load_echo_loss: Option<f64>,
    /// The rate of that TCP run, Gbit/s received.
    pub load_gbps: Option<f64>,
    /// Idle: the resident set of the largest tunnel process, MB (10^6 bytes).
    pub idle_rss_mb: Option<f64>,
    /// Idle: the CPU time of the busiest tunnel process, percent of one core.
    pub idle_cpu_percent: Option<f64>,
}
