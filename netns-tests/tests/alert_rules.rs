//! The shipped alert rules: valid for Prometheus (`promtool check rules`), proven by
//! `promtool test rules` unit tests for every alert (fires, stays silent on healthy series,
//! resolves), the `PrometheusRule` carrying exactly the same groups, and every alert
//! documented. Needs `promtool` (Debian's `prometheus` package); without it the promtool tests
//! skip, unless `ZTGW_NETNS_TESTS=required`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use netns_tests::require_tool;
use netns_tests::rules::{alert_rules, prometheus_rule_path, read_yaml, repo_root, rules_path};

fn unit_test_files() -> Vec<PathBuf> {
    let dir = repo_root().join("manifests/prometheus/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("manifests/prometheus/tests")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn alert_names() -> BTreeSet<String> {
    alert_rules(&read_yaml(&rules_path()).expect("rules"))
        .iter()
        .map(|rule| rule["alert"].as_str().expect("alert name").to_owned())
        .collect()
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check() {
    require_tool!("promtool");
    let path = rules_path();
    let text = promtool(&["check", "rules", &path.to_string_lossy()]);
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_alert_passes_its_promtool_unit_tests() {
    require_tool!("promtool");
    let files = unit_test_files();
    let mut args = vec!["test".to_owned(), "rules".to_owned()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = promtool(&args);
    assert_eq!(text.matches("SUCCESS").count(), files.len(), "{text}");
}

#[test]
fn every_alert_has_unit_tests_that_fire_and_that_stay_silent() {
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in unit_test_files() {
        let doc = read_yaml(&file).expect("test file");
        let tests = doc["tests"].as_array().expect("tests");
        for case in tests.iter().filter_map(|t| t["alert_rule_test"].as_array()) {
            for check in case {
                let name = check["alertname"].as_str().expect("alertname").to_owned();
                let expected = check["exp_alerts"].as_array().map_or(0, Vec::len);
                if expected > 0 {
                    fired.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    let alerts = alert_names();
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    assert_eq!(fired, alerts, "alerts never shown firing by a unit test");
    assert_eq!(silent, alerts, "alerts never shown silent by a unit test");
}

#[test]
fn prometheus_rule_carries_exactly_the_groups_of_the_rules_file() {
    let plain = read_yaml(&rules_path()).expect("rules");
    let generated = read_yaml(&prometheus_rule_path()).expect("PrometheusRule");
    assert_eq!(generated["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(generated["kind"], "PrometheusRule");
    assert_eq!(generated["metadata"]["name"], "zt-gateway");
    assert_eq!(
        generated["spec"]["groups"], plain["groups"],
        "manifests/monitoring/prometheusrule.yaml is out of date: run scripts/gen-prometheusrule.sh"
    );
}

#[test]
fn every_alert_has_severity_summary_description_and_a_runbook_section() {
    let runbooks =
        std::fs::read_to_string(repo_root().join("docs/runbooks.md")).expect("docs/runbooks.md");
    let sections: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(str::to_owned)
        .collect();
    for rule in alert_rules(&read_yaml(&rules_path()).expect("rules")) {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity"
        );
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or("");
            assert!(text.len() > 20, "{name}: {key}");
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        let anchor = url
            .strip_prefix("https://github.com/hanzoai/zt-gateway/blob/main/docs/runbooks.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not in docs/runbooks.md"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor");
        assert!(
            sections.contains(name),
            "{name}: no '## {name}' in docs/runbooks.md"
        );
    }
    assert_eq!(
        sections,
        alert_names(),
        "one runbook section per alert, no more"
    );
}

#[test]
fn rules_use_only_metric_names_of_docs_metrics() {
    let docs = std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("metrics.md");
    let documented: BTreeSet<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("zt_wireguard_"))
        .collect();
    for rule in alert_rules(&read_yaml(&rules_path()).expect("rules")) {
        let expr = rule["expr"].as_str().expect("expr");
        for name in metric_names(expr) {
            assert!(
                documented.contains(name.as_str()),
                "{}: {name} is not in docs/metrics.md",
                rule["alert"]
            );
        }
    }
}

/// Returns the `zt_wireguard_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("zt_wireguard_"))
        .map(str::to_owned)
        .collect()
}
