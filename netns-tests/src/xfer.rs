//! Bulk TCP transfers between namespaces with the `tcp-xfer` helper binary, checked end to end
//! by SHA-256.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;
use crate::wait::eventually;

/// Sends `bytes` pseudo-random bytes (from `seed`) over TCP from `from` to `to`, where a
/// `tcp-xfer serve` listens on `listen`, and checks that the receiver saw exactly what was sent.
///
/// `bin` is the `tcp-xfer` binary (`env!("CARGO_BIN_EXE_tcp-xfer")` in a test).
///
/// # Errors
/// Fails when either side fails, the whole transfer takes longer than `timeout`, or the byte
/// counts or hashes differ.
pub fn tcp_transfer(
    bin: &Path,
    from: &Netns,
    to: &Netns,
    listen: SocketAddrV4,
    bytes: u64,
    seed: u64,
    timeout: Duration,
) -> Result<()> {
    let bin = bin.to_string_lossy();
    let listen = listen.to_string();
    let mut server = to.spawn(&[&bin, "serve", &listen], &[])?;
    eventually(Duration::from_secs(5), || {
        if let Some(status) = server.try_status()? {
            bail!("tcp-xfer serve exited ({status}): {}", server.stderr());
        }
        if !server.stderr().contains("listening") {
            bail!("tcp-xfer serve is not listening yet");
        }
        Ok(())
    })?;
    let sender = from.spawn(
        &[&bin, "send", &listen, &bytes.to_string(), &seed.to_string()],
        &[],
    )?;
    let sent = sender
        .finish(timeout)
        .with_context(|| format!("sending {bytes} bytes to {listen}"))?;
    // The receiver finishes right after the sender's FIN arrives.
    let received = server
        .finish(Duration::from_secs(10))
        .with_context(|| format!("receiving on {listen}"))?;
    let (sent, received) = (sent.trim(), received.trim());
    if sent != received {
        bail!("transfer to {listen} corrupted: sent `{sent}`, received `{received}`");
    }
    let expected = bytes.to_string();
    if sent.split_whitespace().next() != Some(expected.as_str()) {
        bail!("sender reported `{sent}`, expected {bytes} bytes");
    }
    Ok(())
}

/// Bytes each direction carries in the standard two-cluster traffic check.
pub const TRANSFER_BYTES: u64 = 20 * 1024 * 1024;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
const PINGS: u32 = 20;

/// Checks traffic between two clusters' pods in both directions: 20 pings each way with no
/// loss, then a 20 MB TCP transfer each way whose SHA-256 must match (`bin` is `tcp-xfer`).
///
/// # Panics
/// When any packet or byte goes missing: this is a test assertion.
pub fn traffic_both_ways(bin: &Path, a: &crate::Cluster, b: &crate::Cluster) {
    for (from, to) in [(a, b), (b, a)] {
        let stats = crate::ping(&from.pod, to.pod_ip(), PINGS)
            .unwrap_or_else(|e| panic!("ping {} -> {}: {e:#}", from.name, to.name));
        assert_eq!(
            stats.received, PINGS,
            "pod {} -> pod {}: {stats:?}",
            from.name, to.name
        );
    }
    for (seed, (from, to)) in [(a, b), (b, a)].into_iter().enumerate() {
        let listen = SocketAddrV4::new(to.pod_ip(), 5001);
        tcp_transfer(
            bin,
            &from.pod,
            &to.pod,
            listen,
            TRANSFER_BYTES,
            seed as u64,
            TRANSFER_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("20 MB pod {} -> pod {}: {e:#}", from.name, to.name));
    }
}
