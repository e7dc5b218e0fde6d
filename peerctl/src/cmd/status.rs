//! `peerctl status`: the gateway's interface and peers, from its admin API
//! (`docs/admin-api.md`), as a table for people or as the API's JSON for scripts.

pub(super) mod client;
pub(super) mod model;
mod render;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use client::Target;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format: `table` for people, `json` (the admin API document) for scripts.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The gateway's admin socket.
    #[arg(
        long,
        default_value = "/run/zt-gateway/admin.sock",
        conflicts_with = "url"
    )]
    socket: PathBuf,
    /// The gateway's admin TCP listener instead of the socket, e.g. `http://127.0.0.1:8056`.
    #[arg(long, requires = "token_file")]
    url: Option<String>,
    /// File holding the bearer token for `--url`.
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
}

/// How to print the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// A table that fits 80 columns.
    Table,
    /// The admin API's JSON document, unchanged.
    Json,
}

/// Fetches the status and prints it.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let target = match (&args.url, &args.token_file) {
        (Some(url), Some(token_file)) => Target::tcp(url, token_file)?,
        _ => Target::Socket(args.socket.clone()),
    };
    let body = target.get("/v1/status")?;
    let status = model::parse(&body)?;
    let text = match args.output {
        Output::Table => render::table(&status),
        Output::Json => body,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(())
}

#[cfg(test)]
mod tests;
