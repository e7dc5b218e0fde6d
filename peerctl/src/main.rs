//! `peerctl`: the operator CLI for ZT Gateway. Exit codes: 0 ok, 1 failure, 2 usage.

use std::process::ExitCode;

use clap::Parser as _;

mod cmd;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
