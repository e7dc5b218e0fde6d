use super::report::{FixedRate, Outcome, PlaneResult, Report, Verdict};
use super::*;

/// An iperf3 3.12 TCP client's `-J` output, trimmed to the sections that are read.
const TCP_JSON: &str = r#"{
  "start": {"version": "iperf 3.12"},
  "intervals": [],
  "end": {
    "streams": [],
    "sum_sent": {"start": 0, "end": 5.0001, "seconds": 5.0001, "bytes": 450000000,
                 "bits_per_second": 719985600.3, "retransmits": 12, "sender": true},
    "sum_received": {"start": 0, "end": 5.0021, "seconds": 5.0021, "bytes": 449000000,
                     "bits_per_second": 718105595.6, "sender": true},
    "cpu_utilization_percent": {"host_total": 40.1}
  }
}"#;

/// An iperf3 3.12 UDP client's `-J` output, trimmed (numbers from a real run).
const UDP_JSON: &str = r#"{
  "end": {
    "sum": {"seconds": 1.003341, "bytes": 9340160, "jitter_ms": 0.017, "lost_packets": 95523,
            "packets": 145940, "lost_percent": 65.45, "sender": true},
    "sum_sent": {"seconds": 1.000152, "bytes": 9340160, "lost_packets": 0, "packets": 145940,
                 "lost_percent": 0, "sender": true},
    "sum_received": {"seconds": 1.003341, "bytes": 3226112, "jitter_ms": 0.017,
                     "lost_packets": 95523, "packets": 145931, "lost_percent": 65.45,
                     "sender": false}
  }
}"#;

#[test]
fn reads_tcp_receiver_rate_and_bytes() {
    let run = parse_iperf_tcp(TCP_JSON).expect("parse");
    assert_eq!(run.bytes, 449_000_000);
    assert!((run.bits_per_second - 718_105_595.6).abs() < 1e-3);
}

#[test]
fn reads_udp_receiver_counts() {
    let run = parse_iperf_udp(UDP_JSON).expect("parse");
    assert_eq!(run.packets, 145_931);
    assert_eq!(run.lost, 95_523);
    // 3,226,112 B of 64 B datagrams were received.
    assert_eq!(run.received(), 3_226_112 / 64);
    assert!((run.received_per_second() - 50_408.0 / 1.003_341).abs() < 1e-6);
    assert!((run.loss_percent() - 65.458).abs() < 1e-3);
}

#[test]
fn udp_falls_back_to_sum_and_treats_negative_loss_as_none() {
    let json = r#"{"end": {"sum": {"seconds": 2.0, "packets": 1000, "lost_packets": -3}}}"#;
    let run = parse_iperf_udp(json).expect("parse");
    assert_eq!((run.packets, run.lost), (1000, 0));
    assert!((run.received_per_second() - 500.0).abs() < 1e-9);
    assert!(run.loss_percent().abs() < f64::EPSILON);
}

#[test]
fn iperf_errors_are_reported() {
    let json = r#"{"start": {}, "end": {}, "error": "the server is busy running a test. try again later"}"#;
    let error = parse_iperf_tcp(json).expect_err("an error");
    assert!(format!("{error:#}").contains("server is busy"), "{error:#}");
    assert!(parse_iperf_udp("not json").is_err());
    assert!(parse_iperf_tcp(r#"{"end": {"sum_sent": {}}}"#).is_err());
}

#[test]
fn fixed_rate_counts_payload_bits() {
    // Half of 100,000 packets/s of 1,400 B packets: 50,000 × 1,372 B × 8.
    assert_eq!(
        offered_bits_per_second(100_000.0, 0.5, LARGE_PACKET),
        548_800_000
    );
    assert_eq!(offered_bits_per_second(0.0, 0.5, LARGE_PACKET), 0);
}

const PING_OUTPUT: &str = "PING 10.2.0.2 (10.2.0.2) 56(84) bytes of data.
64 bytes from 10.2.0.2: icmp_seq=1 ttl=62 time=0.412 ms
64 bytes from 10.2.0.2: icmp_seq=2 ttl=62 time=0.300 ms
64 bytes from 10.2.0.2: icmp_seq=2 ttl=62 time=0.310 ms (DUP!)
64 bytes from 10.2.0.2: icmp_seq=4 ttl=62 time=1.25 ms
64 bytes from 10.2.0.2: icmp_seq=5 ttl=62 time=0.280 ms

--- 10.2.0.2 ping statistics ---
5 packets transmitted, 4 received, +1 duplicates, 20% packet loss, time 41ms
rtt min/avg/max/mdev = 0.280/0.560/1.250/0.390 ms
";

#[test]
fn reads_ping_replies_and_loss() {
    let run = parse_ping(PING_OUTPUT).expect("parse");
    assert_eq!(run.transmitted, 5);
    assert_eq!(
        run.replies,
        vec![(1, 0.412), (2, 0.300), (4, 1.25), (5, 0.280)]
    );
    assert!((run.loss_percent() - 20.0).abs() < 1e-9);
    assert_eq!(run.rtts_after(2), vec![1.25, 0.280]);
}

#[test]
fn ping_without_summary_is_an_error() {
    assert!(parse_ping("ping: connect: Network is unreachable\n").is_err());
}

#[test]
fn percentiles_use_nearest_rank() {
    let values: Vec<f64> = (1..=200).rev().map(f64::from).collect();
    assert_eq!(percentile(&values, 0.5), Some(100.0));
    assert_eq!(percentile(&values, 0.99), Some(198.0));
    assert_eq!(percentile(&values, 1.0), Some(200.0));
    assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
    assert_eq!(percentile(&[], 0.5), None);
}

#[test]
fn medians() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[5.0]), Some(5.0));
    assert_eq!(median(&[]), None);
}

#[test]
fn cpu_ticks_are_utime_plus_stime() {
    // Fields 14 and 15 (utime 1234, stime 567); the command name holds a space and a ')'.
    let stat = "4242 (native tun) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 \
                870284 3133440 393 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
    assert_eq!(parse_cpu_ticks(stat).expect("parse"), 1801);
    assert!(parse_cpu_ticks("4242 (x) S 1 2").is_err());
    assert!(parse_cpu_ticks("no name here").is_err());
}

#[test]
fn cpu_per_gigabyte() {
    // 300 ticks at 100 per second over 1.5 GB: 2 s per GB.
    let per_gb = cpu_seconds_per_gb(300, 100, 1_500_000_000).expect("bytes carried");
    assert!((per_gb - 2.0).abs() < 1e-12);
    assert_eq!(cpu_seconds_per_gb(300, 100, 0), None);
}

#[test]
fn finds_the_cpu_model() {
    let cpuinfo =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n";
    assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC"));
    assert_eq!(cpu_model("processor\t: 0\n"), None);
}

#[test]
fn planes_from_the_environment() {
    assert_eq!(parse_planes(None).expect("all"), Plane::ALL.to_vec());
    assert_eq!(parse_planes(Some(" ")).expect("all"), Plane::ALL.to_vec());
    assert_eq!(
        parse_planes(Some("veth, wireguard-go,native,veth")).expect("three"),
        vec![Plane::Native, Plane::WireguardGo, Plane::Veth]
    );
    assert_eq!(
        parse_planes(Some("wireguard-go,wireguard-go-current")).expect("two"),
        vec![Plane::WireguardGoCurrent, Plane::WireguardGo]
    );
    let error = parse_planes(Some("native,kernel")).expect_err("unknown");
    assert!(format!("{error}").contains("boringtun-cli"), "{error}");
}

#[test]
fn summary_takes_medians() {
    let samples = Samples {
        tcp1_gbps: vec![0.7, 0.9, 0.8],
        idle_p50_ms: vec![0.3, 0.2],
        ..Samples::default()
    };
    let summary = samples.summary();
    assert_eq!(summary.tcp1_gbps, Some(0.8));
    assert_eq!(summary.idle_p50_ms, Some(0.25));
    assert_eq!(summary.cpu_s_per_gb, None);
}

fn measured(plane: Plane, tcp1: f64, small_pps: f64, p50: f64, fixed_loss: f64) -> PlaneResult {
    PlaneResult {
        plane,
        outcome: Outcome::Measured(Box::new(Summary {
            tcp1_gbps: Some(tcp1),
            tcp4_gbps: Some(tcp1),
            cpu_s_per_gb: plane.has_tunnel().then_some(3.0),
            small_pps: Some(small_pps),
            small_loss: Some(0.0),
            large_pps: Some(small_pps / 2.0),
            large_loss: Some(0.0),
            fixed_pps: Some(small_pps / 4.0),
            fixed_loss: Some(fixed_loss),
            idle_p50_ms: Some(p50),
            idle_p99_ms: Some(p50 * 2.0),
            load_p50_ms: Some(p50 * 3.0),
            load_p99_ms: Some(p50 * 4.0),
            load_echo_loss: Some(0.0),
            load_gbps: Some(tcp1 / 2.0),
            idle_rss_mb: plane.has_tunnel().then_some(12.0),
            idle_cpu_percent: plane.has_tunnel().then_some(0.2),
        })),
    }
}

fn verdict<'a>(lines: &'a [super::report::TargetLine], starts: &str) -> &'a Verdict {
    &lines
        .iter()
        .find(|l| l.target.starts_with(starts))
        .unwrap_or_else(|| panic!("no target {starts}"))
        .verdict
}

#[test]
fn targets_are_judged_on_ratios() {
    let results = vec![
        measured(Plane::Native, 2.0, 300_000.0, 0.3, 0.0),
        measured(Plane::WireguardGo, 0.5, 100_000.0, 0.4, 0.5),
        measured(Plane::BoringtunCli, 1.0, 120_000.0, 0.25, 0.0),
        PlaneResult {
            plane: Plane::Veth,
            outcome: Outcome::Skipped("not selected".to_owned()),
        },
    ];
    let report = Report {
        results: &results,
        reps: 3,
        seconds: 5,
        fixed: None,
    };
    let lines = report.targets();
    assert_eq!(lines.len(), 13);
    assert_eq!(
        verdict(&lines, "TCP 1 stream ≥ 3× wireguard-go"),
        &Verdict::Met("4.00× wireguard-go, 1.33× the target".to_owned())
    );
    assert_eq!(
        verdict(&lines, "TCP 1 stream ≥ 3× boringtun-cli"),
        &Verdict::Missed("2.00× boringtun-cli, short of the target by 1.50×".to_owned())
    );
    assert!(matches!(
        verdict(&lines, "UDP 64 B"),
        Verdict::Met(text) if text.starts_with("3.00×")
    ));
    assert_eq!(
        verdict(&lines, "RTT p50 idle"),
        &Verdict::Missed("1.20× boringtun-cli's, over the limit by 1.20×".to_owned())
    );
    assert_eq!(
        verdict(&lines, "UDP loss"),
        &Verdict::NotEvaluated("raw veth (no tunnel) was not measured".to_owned())
    );
    assert_eq!(
        verdict(&lines, "idle resident set"),
        &Verdict::Met("12.0 MB, 2.50× under the limit".to_owned())
    );
    assert_eq!(
        verdict(&lines, "idle CPU"),
        &Verdict::Met("0.200 % of a core, 2.50× under the limit".to_owned())
    );
}

#[test]
fn targets_without_a_plane_are_not_evaluated() {
    let results = vec![
        measured(Plane::Native, 2.0, 300_000.0, 0.3, 0.25),
        measured(Plane::WireguardGo, 0.5, 100_000.0, 0.4, 0.5),
        PlaneResult {
            plane: Plane::BoringtunCli,
            outcome: Outcome::Skipped("boringtun-cli is not installed".to_owned()),
        },
    ];
    let report = Report {
        results: &results,
        reps: 1,
        seconds: 2,
        fixed: None,
    };
    let lines = report.targets();
    assert_eq!(
        verdict(&lines, "TCP 1 stream ≥ 3× boringtun-cli"),
        &Verdict::NotEvaluated("boringtun-cli was not measured".to_owned())
    );
    assert!(matches!(
        verdict(&lines, "RTT p99 idle"),
        Verdict::NotEvaluated(why) if why.contains("neither")
    ));
}

#[test]
fn loss_is_judged_against_raw_veth_s_in_the_same_run() {
    let judge = |native: f64, veth: f64| {
        let results = vec![
            measured(Plane::Native, 2.0, 300_000.0, 0.3, native),
            measured(Plane::Veth, 20.0, 1_000_000.0, 0.05, veth),
        ];
        let report = Report {
            results: &results,
            reps: 1,
            seconds: 2,
            fixed: None,
        };
        verdict(&report.targets(), "UDP loss").clone()
    };
    assert_eq!(
        judge(0.03, 0.02),
        Verdict::Met("0.030 % lost, raw veth 0.020 %".to_owned())
    );
    assert_eq!(
        judge(0.1, 0.02),
        Verdict::Missed(
            "0.100 % lost, raw veth 0.020 %: 5.00× raw veth's, over the limit by 2.50×".to_owned()
        )
    );
    assert_eq!(
        judge(0.1, 0.0),
        Verdict::Missed("0.100 % lost, raw veth 0.000 %".to_owned())
    );
    assert!(matches!(judge(0.0, 0.0), Verdict::Met(_)));
}

#[test]
fn latency_is_judged_against_the_better_of_two_planes() {
    let results = vec![
        measured(Plane::Native, 2.0, 300_000.0, 0.3, 0.0),
        measured(Plane::WireguardGoCurrent, 1.0, 200_000.0, 0.2, 0.0),
        measured(Plane::BoringtunCli, 1.0, 200_000.0, 0.4, 0.0),
    ];
    let report = Report {
        results: &results,
        reps: 1,
        seconds: 2,
        fixed: None,
    };
    assert_eq!(
        verdict(&report.targets(), "RTT p50 idle"),
        &Verdict::Missed(
            "1.50× wireguard-go-current (offloads on)'s, over the limit by 1.50×".to_owned()
        )
    );
}

#[test]
fn idle_figures_come_from_proc() {
    assert_eq!(
        parse_schedstat_ns("123456789 2000 17\n").expect("parsed"),
        123_456_789
    );
    assert!(parse_schedstat_ns("").is_err());
    let status = "Name:\tgateway\nVmPeak:\t  99999 kB\nVmRSS:\t   11264 kB\nThreads:\t7\n";
    assert_eq!(parse_rss_kib(status).expect("parsed"), 11_264);
    assert!(parse_rss_kib("Name:\tx\n").is_err());
    assert!(parse_rss_kib("VmRSS:\t12 MB\n").is_err());
    assert_eq!(core_percent(5_000_000, 1_000_000_000), Some(0.5));
    assert_eq!(core_percent(1, 0), None);
}

#[test]
fn report_has_a_table_per_group_and_every_target() {
    let results = vec![
        measured(Plane::Native, 2.0, 300_000.0, 0.3, 0.0),
        measured(Plane::WireguardGo, 0.5, 100_000.0, 0.4, 0.5),
        measured(Plane::Veth, 20.0, 1_000_000.0, 0.05, 0.0),
        PlaneResult {
            plane: Plane::BoringtunCli,
            outcome: Outcome::Skipped("boringtun-cli is not installed".to_owned()),
        },
        PlaneResult {
            plane: Plane::Previous,
            outcome: Outcome::Failed("gateway a not ready".to_owned()),
        },
    ];
    let report = Report {
        results: &results,
        reps: 3,
        seconds: 5,
        fixed: Some(FixedRate {
            reference: Plane::Native,
            packets_per_second: 75_000.0,
            bits_per_second: offered_bits_per_second(150_000.0, 0.5, LARGE_PACKET),
        }),
    };
    let text = report.render();
    assert!(
        text.contains("| native (ours) | 2.00 | 4.00× | 2.00 | 4.00× | 3.00 | 1.00× |"),
        "{text}"
    );
    assert!(
        text.contains("| raw veth (no tunnel) | 20.00 | 40.00× | 20.00 | 40.00× | n/a | – |"),
        "{text}"
    );
    assert!(
        text.contains("at 75.0 kpps (823 Mbit/s of payload)"),
        "{text}"
    );
    assert!(text.contains("| wireguard-go | 25.0 | 0.500 |"), "{text}");
    assert!(
        text.contains("| 1.600 | 1.00× | 0.0 | 0.25 |\n"),
        "the RTT row ends with echo loss and the load's rate: {text}"
    );
    assert!(
        text.contains("Not measured: boringtun-cli: boringtun-cli is not installed"),
        "{text}"
    );
    assert!(
        text.contains("Failed: previous userspace (ours, boringtun device): gateway a not ready"),
        "{text}"
    );
    assert_eq!(text.matches("|---|").count(), 5, "{text}");
    assert_eq!(text.matches("\n- ").count(), 13, "{text}");
    assert!(
        text.contains("| native (ours) | 12.0 | 1.00× | 0.200 | 1.00× |"),
        "{text}"
    );
    assert!(
        text.contains("| raw veth (no tunnel) | n/a | – | n/a | – |"),
        "{text}"
    );
    assert!(
        !text.contains("against wireguard-go-current"),
        "no such table without that plane: {text}"
    );
}

#[test]
fn the_native_plane_is_set_against_today_s_wireguard_go() {
    let results = vec![
        measured(Plane::Native, 2.0, 300_000.0, 0.3, 0.0),
        measured(Plane::WireguardGoCurrent, 1.0, 200_000.0, 0.2, 0.0),
        measured(Plane::WireguardGo, 0.5, 100_000.0, 0.4, 0.5),
    ];
    let report = Report {
        results: &results,
        reps: 3,
        seconds: 5,
        fixed: None,
    };
    let text = report.render();
    assert!(
        text.contains("The native plane against wireguard-go-current (offloads on)"),
        "{text}"
    );
    assert!(
        text.contains("| TCP 1 stream, Gbit/s | 2.00 | 1.00 | 2.00× |"),
        "{text}"
    );
    assert!(
        text.contains("| UDP 64 B, kpps | 300.0 | 200.0 | 1.50× |"),
        "{text}"
    );
    assert!(
        text.contains("| RTT p50 idle, ms | 0.300 | 0.200 | 1.50× |"),
        "{text}"
    );
    let lines = report.targets();
    assert_eq!(
        verdict(&lines, "TCP 1 stream ≥ 1.5× wireguard-go-current"),
        &Verdict::Met("2.00× wireguard-go-current (offloads on), 1.33× the target".to_owned())
    );
    assert!(matches!(
        verdict(&lines, "UDP 64 B packets/s ≥ 2× wireguard-go-current"),
        Verdict::Missed(text) if text.starts_with("1.50×")
    ));
    assert_eq!(
        verdict(&lines, "TCP 1 stream ≥ 3× wireguard-go"),
        &Verdict::Met("4.00× wireguard-go, 1.33× the target".to_owned())
    );
}
