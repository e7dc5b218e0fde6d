//! The shipped alert rules and their Kubernetes twin, as files of this repository, plus the
//! one rewrite tests may apply to them: shorter `for:` durations.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

/// Returns the repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Returns the path of the plain Prometheus rules file, the one source of the rules.
pub fn rules_path() -> PathBuf {
    repo_root().join("manifests/prometheus/zt-gateway-rules.yaml")
}

/// Returns the path of the generated `PrometheusRule`.
pub fn prometheus_rule_path() -> PathBuf {
    repo_root().join("manifests/monitoring/prometheusrule.yaml")
}

/// Reads a YAML file into a JSON value.
///
/// # Errors
/// Fails when it cannot be read or parsed.
pub fn read_yaml(path: &std::path::Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("{} is not YAML", path.display()))
}

/// Rewrites every `for:` duration of a rules file to `duration` (e.g. `2s`), leaving every
/// other line, expressions included, as it is.
pub fn with_for(rules: &str, duration: &str) -> String {
    rules
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("for: ") {
                let indent = &line[..line.len() - trimmed.len()];
                format!("{indent}for: {duration}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// Returns every rule of every group of a parsed rules document (`groups[].rules[]`).
pub fn alert_rules(groups_holder: &serde_json::Value) -> Vec<serde_json::Value> {
    groups_holder["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}
