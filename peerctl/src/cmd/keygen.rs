//! `peerctl keygen`: a new private key on stdout, or in a file created with mode 0600.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use anyhow::Context as _;
use kms_client::PrivateKey;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write the key to this new file (mode 0600) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Generates and writes the key.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let key = PrivateKey::generate().context("the system random source failed")?;
    let mut line = key.to_base64();
    line.push('\n');
    match &args.output {
        Some(path) => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| {
                    format!("cannot create {} (it must not exist yet)", path.display())
                })?;
            file.write_all(line.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            warn_if_world_accessible();
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write to stdout")?;
        }
    }
    Ok(())
}

/// Warns, as `wg genkey` does, when stdout is a file others can read.
fn warn_if_world_accessible() {
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return;
    };
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "peerctl: warning: writing a private key to a file others can read; run `chmod 600` on it, or use --output"
        );
    }
}
