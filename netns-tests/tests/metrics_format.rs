//! A running gateway's `/metrics`, read by a Prometheus text-format parser (not by
//! substring): every family of the "Exported metrics" table of docs/metrics.md, with its
//! type and labels, HELP text on each, counters and only counters ending in `_total`; and
//! `promtool check metrics` finds nothing to complain about.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netns_tests::rules::repo_root;
use netns_tests::{
    Gateway, Topology, eventually, metric_value, promtool_check_metrics, require_root,
    require_tool, wait_reachable,
};
use prometheus_parse::{Scrape, Value};

#[test]
fn running_gateway_exports_the_documented_metrics() {
    require_root!();
    require_tool!("promtool");
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = Gateway::launch(a, &[b]).expect("gateway a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    // Traffic starts the first handshake (a keepalive would only after 25 s).
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");
    let text = eventually(Duration::from_secs(10), || {
        let text = gw_a.metrics()?;
        let up = metric_value(&text, "zt_wireguard_peer_up", &[("cluster", "b")]);
        anyhow::ensure!(up == Some(1.0), "peer b not up yet");
        Ok(text)
    })
    .expect("peer b connected");

    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse /metrics");
    let mut families: BTreeMap<String, (&str, BTreeSet<String>)> = BTreeMap::new();
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("zt_wireguard_"))
    {
        let kind = match sample.value {
            Value::Counter(_) => "counter",
            Value::Gauge(_) => "gauge",
            _ => "other",
        };
        let entry = families
            .entry(sample.metric.clone())
            .or_insert_with(|| (kind, BTreeSet::new()));
        assert_eq!(entry.0, kind, "{} has mixed types", sample.metric);
        entry.1.extend(sample.labels.keys().cloned());
    }
    let documented = documented();
    assert_eq!(
        families.keys().collect::<Vec<_>>(),
        documented.keys().collect::<Vec<_>>()
    );
    for (name, (kind, labels)) in &families {
        let (doc_kind, doc_labels) = &documented[name];
        assert_eq!(kind, doc_kind, "{name}: type");
        assert_eq!(labels, doc_labels, "{name}: labels");
        assert_eq!(
            *kind == "counter",
            name.ends_with("_total"),
            "{name}: _total"
        );
        assert!(
            scrape.docs.get(name).is_some_and(|help| help.len() > 20),
            "{name}: HELP"
        );
    }
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

    let lint = promtool_check_metrics(&text);
    assert!(lint.0, "promtool check metrics failed:\n{}", lint.1);
    assert!(
        lint.1.trim().is_empty(),
        "promtool check metrics:\n{}",
        lint.1
    );
}

/// The "Exported metrics" table: name -> (type, labels).
fn documented() -> BTreeMap<String, (&'static str, BTreeSet<String>)> {
    let text = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("metrics.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Exported metrics"))
        .expect("Exported metrics section");
    section
        .lines()
        .filter(|line| line.starts_with("| `zt_wireguard_"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let kind = if cells[2] == "counter" {
                "counter"
            } else {
                "gauge"
            };
            let labels = cells[3]
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty() && l != "none")
                .collect();
            (cells[1].trim_matches('`').to_owned(), (kind, labels))
        })
        .collect()
}
