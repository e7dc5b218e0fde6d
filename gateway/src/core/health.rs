//! Health rules: when a peer counts as connected, and when the gateway is ready.

use std::time::{Duration, SystemTime};

/// WireGuard rejects a session's keys this long after its handshake (whitepaper §6).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// WireGuard retries a handshake after this long without an answer.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);

/// Returns whether a peer is connected at `now`: its last handshake is younger than
/// `REJECT_AFTER_TIME + keepalive + REKEY_TIMEOUT`.
///
/// An idle tunnel on a boringtun-based plane re-handshakes only after its session expired
/// (180 s) and the next keepalive fired, plus one round trip; the allowance keeps such a
/// healthy idle tunnel from flapping to "down". A handshake in the future (clock step) counts
/// as recent.
pub fn is_peer_up(last_handshake: Option<SystemTime>, keepalive: u16, now: SystemTime) -> bool {
    let Some(at) = last_handshake else {
        return false;
    };
    let limit = REJECT_AFTER_TIME + Duration::from_secs(u64::from(keepalive)) + REKEY_TIMEOUT;
    match now.duration_since(at) {
        Ok(age) => age <= limit,
        Err(_) => true,
    }
}

/// The start-up checks `/readyz` reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The private key was loaded and validated.
    pub key_loaded: bool,
    /// The WireGuard device is up with its address and port.
    pub device_up: bool,
    /// The first reconcile of declared peers has completed.
    pub peers_reconciled: bool,
}

impl Readiness {
    /// Returns the names of the failing checks, in start-up order; empty when ready.
    pub fn failing(&self) -> Vec<&'static str> {
        [
            (self.key_loaded, "key_loaded"),
            (self.device_up, "device_up"),
            (self.peers_reconciled, "peers_reconciled"),
        ]
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, name)| name)
        .collect()
    }

    /// Returns whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }
}

#[cfg(test)]
mod tests;
