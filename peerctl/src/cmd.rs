//! Subcommands, one module each.

mod audit;
mod keygen;
mod peer;
mod pubkey;
mod rotate;
mod status;

use clap::{Parser, Subcommand};

/// Operator CLI for ZT Gateway.
#[derive(Debug, Parser)]
#[command(name = "peerctl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a private key (base64, as `wg genkey` writes it).
    Keygen(keygen::Args),
    /// Read a private key on stdin and print its public key (as `wg pubkey`).
    Pubkey,
    /// Manage WireGuardPeer resources.
    #[command(subcommand)]
    Peer(peer::Command),
    /// Show the gateway's interface and peers (from its admin socket).
    Status(status::Args),
    /// Rotate the gateway's static key: --plan, --now, --status or --abort.
    Rotate(rotate::Args),
    /// Verify an audit log, or create an audit key.
    #[command(subcommand)]
    Audit(audit::Command),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen(args) => keygen::run(&args),
        Command::Pubkey => pubkey::run(),
        Command::Peer(command) => peer::run(command),
        Command::Status(args) => status::run(&args),
        Command::Rotate(args) => rotate::run(&args),
        Command::Audit(command) => audit::run(command),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
