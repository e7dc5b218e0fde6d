//! The benchmark's report: one markdown table per group of measurements, with ratios against
//! wireguard-go, a table of the native plane against today's wireguard-go, and one line per
//! target of the native plane saying whether it is met.

use std::fmt::Write as _;

use super::{
    FIXED_RATE_SHARE, IDLE_PINGS, IDLE_SECONDS, LARGE_PACKET, LOAD_WARMUP_ECHOES, PING_INTERVAL_MS,
    Plane, SMALL_PACKET, Summary,
};

/// Round two: TCP 1 stream at least this many times wireguard-go-current's.
pub const TCP_VS_CURRENT: f64 = 1.5;
/// Round two: TCP 1 stream at least this share of raw veth's.
pub const TCP_VS_VETH: f64 = 0.35;
/// Round two: loss at the fixed rate at most this many times raw veth's.
pub const LOSS_VS_VETH: f64 = 2.0;
/// Round two: the idle gateway's resident set under this, MB.
pub const IDLE_RSS_MB: f64 = 30.0;
/// Round two: the idle gateway's CPU time under this, percent of one core.
pub const IDLE_CPU_PERCENT: f64 = 0.5;

/// What became of one plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Measured: the medians.
    Measured(Box<Summary>),
    /// Not measured, and why (e.g. a missing tool).
    Skipped(String),
    /// The measurement failed, with the error.
    Failed(String),
}

/// One plane's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneResult {
    /// The plane.
    pub plane: Plane,
    /// What became of it.
    pub outcome: Outcome,
}

impl PlaneResult {
    /// The medians, if the plane was measured.
    pub fn summary(&self) -> Option<&Summary> {
        match &self.outcome {
            Outcome::Measured(summary) => Some(summary.as_ref()),
            Outcome::Skipped(_) | Outcome::Failed(_) => None,
        }
    }
}

/// The rate every plane is offered in the loss test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedRate {
    /// The plane whose maximum large-packet rate it is a share of.
    pub reference: Plane,
    /// Large packets offered per second.
    pub packets_per_second: f64,
    /// The same as iperf3's `-b`: payload bits per second.
    pub bits_per_second: u64,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The planes, in measuring order.
    pub results: &'a [PlaneResult],
    /// Repetitions per measurement.
    pub reps: u32,
    /// Seconds per iperf3 run.
    pub seconds: u32,
    /// The loss test's rate, once known.
    pub fixed: Option<FixedRate>,
}

/// Whether a target is met.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Met; the text says by how much.
    Met(String),
    /// Missed; the text says by how much.
    Missed(String),
    /// Could not be evaluated, and why.
    NotEvaluated(String),
}

/// One target of the native plane and its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetLine {
    /// The target, e.g. "TCP 1 stream ≥ 3× wireguard-go".
    pub target: String,
    /// Whether it is met.
    pub verdict: Verdict,
}

impl Report<'_> {
    /// Renders the tables, the planes not measured, and the targets, as markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Medians of {} repetition{}; iperf3 runs of {} s; ratios (×) against wireguard-go.\n",
            self.reps,
            if self.reps == 1 { "" } else { "s" },
            self.seconds
        );
        self.tcp_table(&mut out);
        self.udp_table(&mut out);
        self.fixed_table(&mut out);
        self.rtt_table(&mut out);
        self.idle_table(&mut out);
        self.current_table(&mut out);
        let mut unmeasured = false;
        for result in self.results {
            let _ = match &result.outcome {
                Outcome::Measured(_) => continue,
                Outcome::Skipped(why) => {
                    writeln!(out, "Not measured: {}: {why}", result.plane.label())
                }
                Outcome::Failed(error) => {
                    writeln!(out, "Failed: {}: {error}", result.plane.label())
                }
            };
            unmeasured = true;
        }
        if unmeasured {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "Targets for the native plane (ratios from this run):\n"
        );
        for line in self.targets() {
            let _ = match &line.verdict {
                Verdict::Met(how) => writeln!(out, "- met: {}: {how}", line.target),
                Verdict::Missed(how) => writeln!(out, "- missed: {}: {how}", line.target),
                Verdict::NotEvaluated(why) => {
                    writeln!(out, "- not evaluated: {}: {why}", line.target)
                }
            };
        }
        out
    }

    /// Evaluates every target of the native plane: this round's first, then the earlier
    /// round's that still hold.
    pub fn targets(&self) -> Vec<TargetLine> {
        let field = |plane: Plane, pick: Field| self.summary(plane).and_then(pick);
        let ratio_target = |text: &str, other: Plane, pick: Field, goal| TargetLine {
            target: text.to_owned(),
            verdict: judge_ratio(field(Plane::Native, pick), field(other, pick), other, goal),
        };
        let mut lines = vec![
            ratio_target(
                &format!("TCP 1 stream ≥ {TCP_VS_CURRENT}× wireguard-go-current"),
                Plane::WireguardGoCurrent,
                |s| s.tcp1_gbps,
                Goal::AtLeast(TCP_VS_CURRENT),
            ),
            ratio_target(
                &format!("TCP 1 stream ≥ {:.0} % of raw veth", TCP_VS_VETH * 100.0),
                Plane::Veth,
                |s| s.tcp1_gbps,
                Goal::AtLeast(TCP_VS_VETH),
            ),
        ];
        let rtts: [(&str, Field); 4] = [
            ("RTT p50 idle", |s| s.idle_p50_ms),
            ("RTT p99 idle", |s| s.idle_p99_ms),
            ("RTT p50 under load", |s| s.load_p50_ms),
            ("RTT p99 under load", |s| s.load_p99_ms),
        ];
        for (what, pick) in rtts {
            // The lower of the two: the best of them is the bar.
            let best = [Plane::BoringtunCli, Plane::WireguardGoCurrent]
                .into_iter()
                .filter_map(|plane| field(plane, pick).map(|value| (plane, value)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            lines.push(TargetLine {
                target: format!(
                    "{what} no worse than the best of boringtun-cli and wireguard-go-current"
                ),
                verdict: match best {
                    Some((plane, value)) => judge_ratio(
                        field(Plane::Native, pick),
                        Some(value),
                        plane,
                        Goal::AtMost(1.0),
                    ),
                    None => Verdict::NotEvaluated(
                        "neither boringtun-cli nor wireguard-go-current was measured".to_owned(),
                    ),
                },
            });
        }
        lines.push(TargetLine {
            target: format!(
                "UDP loss at {:.0} % of the native plane's maximum {LARGE_PACKET} B rate ≤ {LOSS_VS_VETH}× raw veth's",
                FIXED_RATE_SHARE * 100.0
            ),
            verdict: judge_loss(
                field(Plane::Native, |s| s.fixed_loss),
                field(Plane::Veth, |s| s.fixed_loss),
            ),
        });
        lines.push(TargetLine {
            target: format!("idle resident set < {IDLE_RSS_MB} MB"),
            verdict: judge_below(
                field(Plane::Native, |s| s.idle_rss_mb),
                IDLE_RSS_MB,
                "MB",
                1,
            ),
        });
        lines.push(TargetLine {
            target: format!("idle CPU < {IDLE_CPU_PERCENT} % of a core"),
            verdict: judge_below(
                field(Plane::Native, |s| s.idle_cpu_percent),
                IDLE_CPU_PERCENT,
                "% of a core",
                3,
            ),
        });
        // The earlier round's targets that this round did not replace.
        lines.extend([
            ratio_target(
                "TCP 1 stream ≥ 3× wireguard-go",
                Plane::WireguardGo,
                |s| s.tcp1_gbps,
                Goal::AtLeast(3.0),
            ),
            ratio_target(
                "TCP 1 stream ≥ 3× boringtun-cli",
                Plane::BoringtunCli,
                |s| s.tcp1_gbps,
                Goal::AtLeast(3.0),
            ),
            ratio_target(
                &format!("UDP {SMALL_PACKET} B packets/s ≥ 2× wireguard-go"),
                Plane::WireguardGo,
                |s| s.small_pps,
                Goal::AtLeast(2.0),
            ),
            ratio_target(
                &format!("UDP {SMALL_PACKET} B packets/s ≥ 2× wireguard-go-current"),
                Plane::WireguardGoCurrent,
                |s| s.small_pps,
                Goal::AtLeast(2.0),
            ),
        ]);
        lines
    }

    fn summary(&self, plane: Plane) -> Option<&Summary> {
        self.results
            .iter()
            .find(|r| r.plane == plane)
            .and_then(PlaneResult::summary)
    }

    fn measured(&self) -> impl Iterator<Item = (Plane, &Summary)> {
        self.results
            .iter()
            .filter_map(|r| r.summary().map(|s| (r.plane, s)))
    }

    /// The ratio of `value` to wireguard-go's value of the same field.
    fn vs_reference(&self, value: Option<f64>, pick: Field) -> String {
        ratio(value, self.summary(Plane::WireguardGo).and_then(pick))
    }

    fn tcp_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "TCP (iperf3, Gbit/s received) and CPU seconds per GB of the tunnel processes on both sides during the 1-stream run:\n"
        );
        let _ = writeln!(
            out,
            "| plane | TCP 1 stream Gbit/s | vs wg-go | TCP 4 streams Gbit/s | vs wg-go | CPU s/GB | vs wg-go |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (plane, s) in self.measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                plane.label(),
                number(s.tcp1_gbps, 2),
                self.vs_reference(s.tcp1_gbps, |s| s.tcp1_gbps),
                number(s.tcp4_gbps, 2),
                self.vs_reference(s.tcp4_gbps, |s| s.tcp4_gbps),
                number(s.cpu_s_per_gb, 2),
                self.vs_reference(s.cpu_s_per_gb, |s| s.cpu_s_per_gb),
            );
        }
        out.push('\n');
    }

    fn udp_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "UDP at the maximum rate (iperf3 -u -b 0; {SMALL_PACKET} B and {LARGE_PACKET} B IP packets, payloads {} B and {} B): thousands of packets received per second, loss at the receiver:\n",
            SMALL_PACKET - super::UDP_OVERHEAD,
            LARGE_PACKET - super::UDP_OVERHEAD,
        );
        let _ = writeln!(
            out,
            "| plane | {SMALL_PACKET} B kpps | vs wg-go | {SMALL_PACKET} B loss % | {LARGE_PACKET} B kpps | vs wg-go | {LARGE_PACKET} B loss % |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (plane, s) in self.measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                plane.label(),
                number(s.small_pps.map(|p| p / 1e3), 1),
                self.vs_reference(s.small_pps, |s| s.small_pps),
                number(s.small_loss, 2),
                number(s.large_pps.map(|p| p / 1e3), 1),
                self.vs_reference(s.large_pps, |s| s.large_pps),
                number(s.large_loss, 2),
            );
        }
        out.push('\n');
    }

    fn fixed_table(&self, out: &mut String) {
        match self.fixed {
            Some(rate) => {
                let _ = writeln!(
                    out,
                    "UDP at a fixed rate: {LARGE_PACKET} B packets at {:.1} kpps ({:.0} Mbit/s of payload), {:.0} % of the maximum that {} reached, offered to every plane:\n",
                    rate.packets_per_second / 1e3,
                    rate.bits_per_second as f64 / 1e6,
                    FIXED_RATE_SHARE * 100.0,
                    rate.reference.label(),
                );
            }
            None => {
                let _ = writeln!(out, "UDP at a fixed rate: not measured.\n");
                return;
            }
        }
        let _ = writeln!(out, "| plane | received kpps | loss % |");
        let _ = writeln!(out, "|---|---:|---:|");
        for (plane, s) in self.measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                plane.label(),
                number(s.fixed_pps.map(|p| p / 1e3), 1),
                number(s.fixed_loss, 3),
            );
        }
        out.push('\n');
    }

    fn rtt_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Ping RTT, ms: idle ({IDLE_PINGS} echoes, one every {PING_INTERVAL_MS} ms) and under load (one every {PING_INTERVAL_MS} ms during a 1-stream TCP run, the first {LOAD_WARMUP_ECHOES} not counted):\n"
        );
        let _ = writeln!(
            out,
            "| plane | idle p50 | vs wg-go | idle p99 | vs wg-go | load p50 | vs wg-go | load p99 | vs wg-go | echoes lost under load % | load Gbit/s |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for (plane, s) in self.measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                plane.label(),
                number(s.idle_p50_ms, 3),
                self.vs_reference(s.idle_p50_ms, |s| s.idle_p50_ms),
                number(s.idle_p99_ms, 3),
                self.vs_reference(s.idle_p99_ms, |s| s.idle_p99_ms),
                number(s.load_p50_ms, 3),
                self.vs_reference(s.load_p50_ms, |s| s.load_p50_ms),
                number(s.load_p99_ms, 3),
                self.vs_reference(s.load_p99_ms, |s| s.load_p99_ms),
                number(s.load_echo_loss, 1),
                number(s.load_gbps, 2),
            );
        }
        out.push('\n');
    }
}

impl Report<'_> {
    fn idle_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "Idle: the tunnel up for {IDLE_SECONDS} s with nothing sent through it; the largest resident set and the busiest CPU time among the tunnel processes (one per side):\n"
        );
        let _ = writeln!(
            out,
            "| plane | RSS MB | vs wg-go | CPU % of a core | vs wg-go |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for (plane, s) in self.measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                plane.label(),
                number(s.idle_rss_mb, 1),
                self.vs_reference(s.idle_rss_mb, |s| s.idle_rss_mb),
                number(s.idle_cpu_percent, 3),
                self.vs_reference(s.idle_cpu_percent, |s| s.idle_cpu_percent),
            );
        }
        out.push('\n');
    }
}

impl Report<'_> {
    /// The native plane against today's wireguard-go, measure by measure, when both ran.
    fn current_table(&self, out: &mut String) {
        let (Some(native), Some(current)) = (
            self.summary(Plane::Native),
            self.summary(Plane::WireguardGoCurrent),
        ) else {
            return;
        };
        let _ = writeln!(
            out,
            "The native plane against {} (× = native / wireguard-go-current; higher is better for rates, lower for CPU and RTT):\n",
            Plane::WireguardGoCurrent.label()
        );
        let _ = writeln!(out, "| measure | native | wireguard-go-current | × |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let rows: [(String, Field, f64, usize); 11] = [
            ("TCP 1 stream, Gbit/s".to_owned(), |s| s.tcp1_gbps, 1.0, 2),
            ("TCP 4 streams, Gbit/s".to_owned(), |s| s.tcp4_gbps, 1.0, 2),
            ("CPU s/GB (1 stream)".to_owned(), |s| s.cpu_s_per_gb, 1.0, 2),
            (
                format!("UDP {SMALL_PACKET} B, kpps"),
                |s| s.small_pps,
                1e3,
                1,
            ),
            (
                format!("UDP {LARGE_PACKET} B, kpps"),
                |s| s.large_pps,
                1e3,
                1,
            ),
            (
                format!("UDP {LARGE_PACKET} B at the fixed rate, loss %"),
                |s| s.fixed_loss,
                1.0,
                3,
            ),
            ("RTT p50 idle, ms".to_owned(), |s| s.idle_p50_ms, 1.0, 3),
            ("RTT p99 idle, ms".to_owned(), |s| s.idle_p99_ms, 1.0, 3),
            (
                "RTT p50 under load, ms".to_owned(),
                |s| s.load_p50_ms,
                1.0,
                3,
            ),
            (
                "RTT p99 under load, ms".to_owned(),
                |s| s.load_p99_ms,
                1.0,
                3,
            ),
            (
                "TCP under the ping load, Gbit/s".to_owned(),
                |s| s.load_gbps,
                1.0,
                2,
            ),
        ];
        for (what, pick, unit, decimals) in rows {
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} |",
                number(pick(native).map(|v| v / unit), decimals),
                number(pick(current).map(|v| v / unit), decimals),
                ratio(pick(native), pick(current)),
            );
        }
        out.push('\n');
    }
}

/// Picks one median out of a [`Summary`].
type Field = fn(&Summary) -> Option<f64>;

/// A target on the ratio of the native plane's value to another plane's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Goal {
    /// The ratio must be at least this (throughput).
    AtLeast(f64),
    /// The ratio must be at most this (latency).
    AtMost(f64),
}

fn judge_ratio(native: Option<f64>, other: Option<f64>, other_plane: Plane, goal: Goal) -> Verdict {
    let (Some(native), Some(other)) = (native, other) else {
        let missing = if native.is_none() {
            Plane::Native
        } else {
            other_plane
        };
        return Verdict::NotEvaluated(format!("{} was not measured", missing.label()));
    };
    if other <= 0.0 {
        return Verdict::NotEvaluated(format!("{} measured 0", other_plane.label()));
    }
    let ratio = native / other;
    let of = other_plane.label();
    match goal {
        Goal::AtLeast(target) if ratio >= target => Verdict::Met(format!(
            "{ratio:.2}× {of}, {:.2}× the target",
            ratio / target
        )),
        Goal::AtLeast(target) => Verdict::Missed(format!(
            "{ratio:.2}× {of}, short of the target by {:.2}×",
            target / ratio.max(f64::MIN_POSITIVE)
        )),
        Goal::AtMost(limit) if ratio <= limit => Verdict::Met(format!(
            "{ratio:.2}× {of}'s, {:.2}× under the limit",
            limit / ratio.max(f64::MIN_POSITIVE)
        )),
        Goal::AtMost(limit) => Verdict::Missed(format!(
            "{ratio:.2}× {of}'s, over the limit by {:.2}×",
            ratio / limit
        )),
    }
}

/// The native plane's loss at the fixed rate against raw veth's in the same run.
fn judge_loss(native: Option<f64>, veth: Option<f64>) -> Verdict {
    let (Some(native), Some(veth)) = (native, veth) else {
        let missing = if native.is_none() {
            Plane::Native
        } else {
            Plane::Veth
        };
        return Verdict::NotEvaluated(format!("{} was not measured", missing.label()));
    };
    let how = format!("{native:.3} % lost, raw veth {veth:.3} %");
    if native <= veth * LOSS_VS_VETH {
        Verdict::Met(how)
    } else if veth > 0.0 {
        Verdict::Missed(format!(
            "{how}: {:.2}× raw veth's, over the limit by {:.2}×",
            native / veth,
            native / (veth * LOSS_VS_VETH)
        ))
    } else {
        Verdict::Missed(how)
    }
}

/// An absolute bound on one of the native plane's figures.
fn judge_below(native: Option<f64>, limit: f64, unit: &str, decimals: usize) -> Verdict {
    match native {
        None => Verdict::NotEvaluated(format!("{} was not measured", Plane::Native.label())),
        Some(value) if value < limit => Verdict::Met(format!(
            "{value:.decimals$} {unit}, {:.2}× under the limit",
            limit / value.max(f64::MIN_POSITIVE)
        )),
        Some(value) => Verdict::Missed(format!(
            "{value:.decimals$} {unit}, over the limit by {:.2}×",
            value / limit
        )),
    }
}

/// `value` with `decimals`, or "n/a".
fn number(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `value / reference` as "1.23×", or "–" when either is missing or the reference is 0.
fn ratio(value: Option<f64>, reference: Option<f64>) -> String {
    match (value, reference) {
        (Some(value), Some(reference)) if reference > 0.0 => format!("{:.2}×", value / reference),
        _ => "–".to_owned(),
    }
}
