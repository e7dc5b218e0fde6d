//! Reading single samples out of Prometheus text exposition format, and linting it with
//! `promtool check metrics`.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Returns the value of the first sample of metric `name` whose labels include all of
/// `labels` (other labels are allowed), e.g.
/// `metric_value(text, "zt_wireguard_peer_up", &[("cluster", "b")])`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (label_text, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once('}')?,
                None if rest.starts_with(' ') => ("", rest),
                None => return None,
            };
            let matches = labels
                .iter()
                .all(|(key, value)| label_text.contains(&format!("{key}=\"{value}\"")));
            if !matches {
                return None;
            }
            value.split_whitespace().next()?.parse().ok()
        })
}

/// Runs `promtool check metrics` on `text`: returns whether it passed and what it printed
/// (nothing when it has no complaint).
///
/// # Panics
/// When `promtool` cannot be run (callers check it with `require_tool!` first).
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

#[cfg(test)]
mod tests;
