//! `tcp-xfer`: a tiny bulk TCP sender and receiver that both print `<bytes> <sha256hex>`, so a
//! test can check a transfer through the tunnel end to end.
//!
//! ```text
//! tcp-xfer serve <addr:port>                 accept one connection, read to EOF
//! tcp-xfer send  <addr:port> <bytes> <seed>  send deterministic pseudo-random bytes
//! ```
//!
//! `serve` prints `listening <addr>` on stderr once bound. Every socket operation has a
//! timeout, so neither side can hang forever.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};

/// Longest wait for one read or write to make progress.
const STALL: Duration = Duration::from_secs(30);
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tcp-xfer: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["serve", addr] => serve(addr.parse().context("bad address")?),
        ["send", addr, bytes, seed] => send(
            addr.parse().context("bad address")?,
            bytes.parse().context("bad byte count")?,
            seed.parse().context("bad seed")?,
        ),
        _ => bail!("usage: tcp-xfer serve <addr:port> | tcp-xfer send <addr:port> <bytes> <seed>"),
    }
}

fn serve(addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("failed to bind {addr}"))?;
    eprintln!("listening {addr}");
    let (mut stream, peer) = listener.accept().context("failed to accept")?;
    stream.set_read_timeout(Some(STALL))?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("failed to read from {peer} after {total} bytes"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    println!("{total} {}", hex(&hasher.finalize()));
    Ok(())
}

fn send(addr: SocketAddr, bytes: u64, seed: u64) -> Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("failed to connect to {addr}"))?;
    stream.set_write_timeout(Some(STALL))?;
    let mut rng = SplitMix64(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |left| left.min(CHUNK));
        rng.fill(&mut buf[..n]);
        stream
            .write_all(&buf[..n])
            .with_context(|| format!("failed to write after {} bytes", bytes - left))?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .context("failed to shut down")?;
    // Wait for the receiver to close, so every byte was read before this reports success.
    stream.set_read_timeout(Some(STALL))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .context("failed waiting for the receiver to close")?;
    println!("{bytes} {}", hex(&hasher.finalize()));
    Ok(())
}

/// SplitMix64: a fast, deterministic byte stream (not for cryptography).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
