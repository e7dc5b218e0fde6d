//! The `gateway` binary: parse the command line, load the configuration, run.

use std::process::ExitCode;

use clap::Parser as _;
use gateway::cli::Cli;
use gateway::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway::telemetry::init(&cli.log);
    // Before anything else, and long before the key is loaded: no core file may hold it.
    if let Err(e) = gateway::keys::forbid_core_dumps() {
        tracing::error!("{e:#}");
        return ExitCode::FAILURE;
    }
    let config = match Config::from_cli(&cli) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gateway::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
