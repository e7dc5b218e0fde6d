//! `peerctl audit verify FILE [--key PUBKEY]` and `peerctl audit keygen` (`docs/audit.md`).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use anyhow::Context as _;
use ztgw_audit::{AuditKey, AuditPublicKey, rfc3339};

/// `peerctl audit` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replay an audit log's chain and checkpoints; name the first bad record (exit 1).
    Verify(VerifyArgs),
    /// Generate an audit signing key (base64 of the 32-byte Ed25519 seed) and print its
    /// public key.
    Keygen(KeygenArgs),
}

/// Arguments of `audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The audit log (JSON lines).
    file: PathBuf,
    /// The audit public key (base64) every checkpoint must be signed with.
    #[arg(long, value_parser = parse_public_key)]
    key: Option<AuditPublicKey>,
}

/// Arguments of `audit keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Write the key to this new file (mode 0600); the public key goes to stdout.
    #[arg(long, short)]
    output: PathBuf,
}

/// Runs an `audit` subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Verify(args) => verify(&args),
        Command::Keygen(args) => keygen(&args),
    }
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let shown = args.file.display();
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {shown}"))?;
    let summary = ztgw_audit::verify(&bytes, args.key.as_ref())
        .map_err(|failure| anyhow::anyhow!("{shown}: {failure}"))?;
    let mut out = format!("{shown}: {} records verify\n", summary.records);
    if let Some(last) = &summary.last_checkpoint {
        out.push_str(&format!(
            "last checkpoint: line {}, seq {}, {} ({}), key {}\n",
            last.line,
            last.seq,
            rfc3339(last.time),
            last.reason,
            last.key_id
        ));
    }
    if summary.recoveries > 0 {
        out.push_str(&format!(
            "recovered after an unclean stop: {} time(s)\n",
            summary.recoveries
        ));
    }
    match &args.key {
        Some(key) => out.push_str(&format!(
            "every checkpoint is signed by key {}\n",
            key.key_id()
        )),
        None => out.push_str(&format!(
            "checkpoints signed by key(s) {}; pass --key PUBKEY to require the expected one\n",
            summary.key_ids.join(", ")
        )),
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let key = AuditKey::generate().context("the system random source failed")?;
    let mut line = key.to_base64();
    line.push('\n');
    let path = &args.output;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(line.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{}", key.public().to_base64());
    Ok(())
}

fn parse_public_key(text: &str) -> Result<AuditPublicKey, String> {
    AuditPublicKey::from_base64(text).map_err(|e| format!("not an audit public key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_argument_is_checked() {
        assert!(parse_public_key("abc").is_err());
        let key = AuditKey::from_seed(&[1u8; 32]).public();
        assert_eq!(parse_public_key(&key.to_base64()), Ok(key));
    }
}
