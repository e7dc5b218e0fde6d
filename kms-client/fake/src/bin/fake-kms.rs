//! `fake-kms`: the test KMS as a process, for network-namespace tests.
//!
//! `fake-kms --listen ADDR --client-id ID --client-secret S --token-ttl SECS
//!           --secret PROJECT/ENV/PATH/NAME=VALUE …` prints `listening on ADDR` once bound.

use std::time::Duration;

use anyhow::{Context as _, bail};
use kms_fake::{FakeConfig, FakeKms};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut config = FakeConfig {
        client_id: String::new(),
        client_secret: String::new(),
        token_ttl: Duration::from_secs(3600),
        secrets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--client-id" => config.client_id = value,
            "--client-secret" => config.client_secret = value,
            "--token-ttl" => config.token_ttl = Duration::from_secs(value.parse()?),
            "--secret" => {
                let (location, secret) = value
                    .split_once('=')
                    .context("--secret wants LOCATION=VALUE")?;
                let parts: Vec<&str> = location.splitn(3, '/').collect();
                let [project, env, rest] = parts.as_slice() else {
                    bail!("--secret location is PROJECT/ENV/PATH/NAME");
                };
                let (path, name) = rest.rsplit_once('/').map_or(("", *rest), |(p, n)| (p, n));
                config.secrets.push((
                    (*project).to_owned(),
                    (*env).to_owned(),
                    format!("/{path}"),
                    name.to_owned(),
                    secret.to_owned(),
                ));
            }
            other => bail!("unknown flag {other}"),
        }
    }
    let fake = FakeKms::start(listen.parse()?, config).await?;
    println!("listening on {}", fake.addr);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
