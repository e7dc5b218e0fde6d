//! A real Prometheus (Debian's `prometheus` package) started inside a test namespace with its
//! own configuration and data directory, scraping gateways every second and evaluating rules
//! every second, and read back through its HTTP API. It is killed when dropped (and with its
//! namespace).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tempfile::TempDir;

use crate::http::http_get;
use crate::netns::Netns;
use crate::process::Proc;
use crate::wait::eventually;

/// Scrape interval (and evaluation interval) of the test Prometheus.
pub const PROMETHEUS_INTERVAL: Duration = Duration::from_secs(1);

/// Where Prometheus listens, inside its namespace.
const LISTEN: &str = "127.0.0.1:9090";

/// How long [`Prometheus::start`] waits for `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// One alert as `/api/v1/alerts` lists it (pending or firing).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Its labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

impl Alert {
    /// Returns whether the alert is firing and carries every one of `labels`.
    pub fn is_firing_with(&self, labels: &[(&str, &str)]) -> bool {
        self.state == "firing"
            && labels
                .iter()
                .all(|(k, v)| self.labels.get(*k).is_some_and(|value| value == v))
    }
}

/// A running Prometheus.
#[derive(Debug)]
pub struct Prometheus<'n> {
    ns: &'n Netns,
    proc: Proc,
    _dir: TempDir,
}

impl<'n> Prometheus<'n> {
    /// Starts Prometheus in `ns` with one scrape job `zt-gateway` over `targets`
    /// (`host:port`), the rules file text `rules`, a 1 s scrape and evaluation interval, and a
    /// fresh data directory; waits until it is ready.
    ///
    /// # Errors
    /// Fails when it cannot be started or does not become ready (with its log).
    pub fn start(ns: &'n Netns, targets: &[String], rules: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ztgw-prometheus-")
            .tempdir()
            .context("failed to create a Prometheus directory")?;
        std::fs::write(dir.path().join("rules.yaml"), rules).context("failed to write rules")?;
        let quoted: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n  - job_name: zt-gateway\n    static_configs:\n      - targets: [{}]\n",
            quoted.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).context("failed to write prometheus.yml")?;
        let data = dir.path().join("data");
        let proc = ns.spawn(
            &[
                "prometheus",
                &format!("--config.file={}", config_path.display()),
                &format!("--storage.tsdb.path={}", data.display()),
                &format!("--web.listen-address={LISTEN}"),
                "--log.level=warn",
            ],
            &[],
        )?;
        let mut prometheus = Self {
            ns,
            proc,
            _dir: dir,
        };
        let ready = eventually(READY_TIMEOUT, || {
            if let Some(status) = prometheus.proc.try_status()? {
                return Ok(Some(status));
            }
            let (code, body) = http_get(prometheus.ns, LISTEN, "/-/ready")?;
            anyhow::ensure!(code == 200, "/-/ready answered {code}: {body}");
            Ok(None)
        });
        match ready {
            Ok(None) => Ok(prometheus),
            Ok(Some(status)) => bail!(
                "prometheus exited ({status}) before it was ready; log:\n{}",
                prometheus.proc.stderr()
            ),
            Err(e) => Err(e.context(format!(
                "prometheus not ready; log:\n{}",
                prometheus.proc.stderr()
            ))),
        }
    }

    /// Evaluates an instant query and returns each sample's labels and value.
    ///
    /// # Errors
    /// Fails when the request fails or the answer is not a vector.
    pub fn query(&self, expr: &str) -> Result<Vec<(BTreeMap<String, String>, f64)>> {
        let data = self.api(&format!("/api/v1/query?query={}", percent_encode(expr)))?;
        let result = data["result"]
            .as_array()
            .with_context(|| format!("no vector result for {expr}: {data}"))?;
        result
            .iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("bad sample {sample}"))?;
                Ok((labels(&sample["metric"]), value))
            })
            .collect()
    }

    /// Returns the active (pending and firing) alerts.
    ///
    /// # Errors
    /// Fails when the request fails or the answer has no alert list.
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        let data = self.api("/api/v1/alerts")?;
        let alerts = data["alerts"]
            .as_array()
            .with_context(|| format!("no alert list: {data}"))?;
        Ok(alerts
            .iter()
            .map(|alert| Alert {
                labels: labels(&alert["labels"]),
                state: alert["state"].as_str().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Returns what Prometheus logged so far.
    pub fn log(&self) -> String {
        self.proc.stderr()
    }

    fn api(&self, path: &str) -> Result<serde_json::Value> {
        let (code, body) = http_get(self.ns, LISTEN, path)?;
        anyhow::ensure!(code == 200, "{path} answered {code}: {body}");
        let json: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{path}: not JSON: {body}"))?;
        anyhow::ensure!(json["status"] == "success", "{path}: {body}");
        Ok(json["data"].clone())
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- prometheus log -----\n{}----- end of prometheus log -----",
                self.proc.stderr()
            );
        }
        self.proc.kill();
    }
}

fn labels(value: &serde_json::Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Percent-encodes a query parameter (everything but RFC 3986 unreserved characters).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
