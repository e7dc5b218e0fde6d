//! `peerctl pubkey`: private key on stdin, public key on stdout.

use std::io::{Read as _, Write as _};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use zeroize::Zeroizing;

/// Reads the private key and prints its public key.
pub fn run() -> anyhow::Result<()> {
    let mut input = Zeroizing::new(String::new());
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .context("cannot read the private key from stdin")?;
    let key = PrivateKey::from_base64(&input)
        .map_err(|e| anyhow::anyhow!("the private key on stdin {e}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", STANDARD.encode(key.public_key()))
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(())
}
