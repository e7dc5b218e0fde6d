use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prometheus_parse::{Scrape, Value};

use super::*;

fn sample() -> PeerSample {
    PeerSample {
        cluster: "lux-k8s".to_owned(),
        up: true,
        last_handshake_seconds: 1_763_900_000.0,
        rx_bytes: 42,
        tx_bytes: 7,
    }
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("valid exposition")
}

/// A metrics table of docs/metrics.md, by the title of its section: name -> (type, labels).
fn documented(title: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("docs/metrics.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(title))
        .unwrap_or_else(|| panic!("a '{title}' section"));
    section
        .lines()
        .filter(|line| line.starts_with("| `zt_wireguard_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let labels = cells[3]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty() && l != "none")
                .collect();
            (
                cells[1].trim_matches('`').to_owned(),
                (cells[2].to_owned(), labels),
            )
        })
        .collect()
}

#[test]
fn exposition_matches_the_documented_names_types_and_labels() {
    let metrics = Metrics::new().expect("metrics");
    metrics.set_peers(vec![sample()]);
    metrics.set_key(
        kms_client::Origin::Kms,
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_763_000_000)),
    );
    metrics.set_peer_counts(PeerCounts {
        connected: 1,
        disconnected: 0,
        rejected: 2,
    });
    metrics.set_dropped_packets("wg0", &[(DropReason::Invalid, 1)]);
    let scrape = parse(&metrics.render());

    let mut seen: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for s in &scrape.samples {
        let kind = match s.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            Value::Histogram(_) => "histogram",
            Value::Summary(_) => "summary",
            Value::Untyped(_) => "untyped",
        };
        let entry = seen
            .entry(s.metric.clone())
            .or_insert_with(|| (kind.to_owned(), BTreeSet::new()));
        entry.1.extend(s.labels.keys().cloned());
    }
    assert_eq!(seen, documented("Exported metrics"));
    for (name, (kind, _)) in &seen {
        assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        let help = scrape.docs.get(name).map(String::as_str).unwrap_or("");
        assert!(help.len() > 20, "{name} needs HELP text");
    }
}

#[test]
fn peer_samples_render_with_their_values() {
    let metrics = Metrics::new().expect("metrics");
    metrics.set_peers(vec![sample()]);
    let scrape = parse(&metrics.render());
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("cluster") == Some("lux-k8s"))
            .map(|s| s.value.clone())
    };
    assert_eq!(value("zt_wireguard_peer_up"), Some(Value::Gauge(1.0)));
    assert_eq!(
        value("zt_wireguard_peer_last_handshake_timestamp_seconds"),
        Some(Value::Gauge(1_763_900_000.0))
    );
    assert_eq!(
        value("zt_wireguard_peer_receive_bytes_total"),
        Some(Value::Counter(42.0))
    );
    assert_eq!(
        value("zt_wireguard_peer_transmit_bytes_total"),
        Some(Value::Counter(7.0))
    );
}

#[test]
fn every_peer_state_and_the_build_version_are_exported_from_the_start() {
    let metrics = Metrics::new().expect("metrics");
    let scrape = parse(&metrics.render());
    let states: BTreeSet<&str> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "zt_wireguard_peers")
        .filter_map(|s| s.labels.get("state"))
        .collect();
    assert_eq!(
        states,
        BTreeSet::from(["connected", "disconnected", "rejected"])
    );
    let build = scrape
        .samples
        .iter()
        .find(|s| s.metric == "zt_wireguard_build_info")
        .expect("build info");
    assert_eq!(build.labels.get("version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(build.value, Value::Gauge(1.0));
}

#[test]
fn dropped_packets_render_as_one_counter_per_interface_and_reason() {
    let metrics = Metrics::new().expect("metrics");
    let before = parse(&metrics.render());
    assert!(
        !before
            .samples
            .iter()
            .any(|s| s.metric == "zt_wireguard_dropped_packets_total"),
        "no series before a data plane reports drops"
    );

    metrics.set_dropped_packets(
        "wg0",
        &[(DropReason::Invalid, 27), (DropReason::NoRoute, 0)],
    );
    metrics.set_dropped_packets(
        "wg0",
        &[(DropReason::Invalid, 30), (DropReason::NoRoute, 2)],
    );

    let scrape = parse(&metrics.render());
    let value = |reason: &str| {
        scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == "zt_wireguard_dropped_packets_total"
                    && s.labels.get("interface") == Some("wg0")
                    && s.labels.get("reason") == Some(reason)
            })
            .map(|s| s.value.clone())
    };
    assert_eq!(value("invalid"), Some(Value::Counter(30.0)));
    assert_eq!(value("no_route"), Some(Value::Counter(2.0)));
    assert_eq!(value("bad_source"), None);
    assert!(
        scrape
            .docs
            .get("zt_wireguard_dropped_packets_total")
            .is_some_and(|help| help.len() > 20)
    );
}
