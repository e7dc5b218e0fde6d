//! `fake-apiserver`: the test Kubernetes API server as a process, for network-namespace tests.
//!
//! `fake-apiserver --listen ADDR [--token TOKEN] [--history N] [--bookmark-interval SECS]
//!                 [--too-old event|status]` prints `listening on ADDR` once bound. Objects are
//! created through the `/_fake/` controls.

use std::time::Duration;

use anyhow::{Context as _, bail};
use kube_fake::{FakeApiServer, FakeConfig, TooOld};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut config = FakeConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--token" => config.token = Some(value),
            "--history" => config.history = value.parse().context("--history")?,
            "--bookmark-interval" => {
                config.bookmark_interval =
                    Duration::from_secs(value.parse().context("--bookmark-interval")?);
            }
            "--too-old" => {
                config.too_old = match value.as_str() {
                    "event" => TooOld::Event,
                    "status" => TooOld::Status,
                    other => bail!("--too-old wants event or status, not {other}"),
                };
            }
            other => bail!("unknown flag {other}"),
        }
    }
    let fake = FakeApiServer::start(listen.parse().context("--listen")?, config).await?;
    println!("listening on {}", fake.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
