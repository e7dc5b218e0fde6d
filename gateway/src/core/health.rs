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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    /// The private key was loaded and validated.
    pub key_loaded: bool,
    /// Why this gateway is waiting for the lease (e.g. `lease held by gw-7f_a1b2`); `None`
    /// when it holds the lease or runs without one.
    pub lease_wait: Option<String>,
    /// The WireGuard device is up with its address and port.
    pub device_up: bool,
    /// The first reconcile of declared peers has completed.
    pub peers_reconciled: bool,
}

impl Readiness {
    /// Returns the failing checks, in start-up order; empty when ready.
    pub fn failing(&self) -> Vec<String> {
        let mut failing: Vec<String> = Vec::new();
        if !self.key_loaded {
            failing.push("key_loaded".to_owned());
        }
        failing.extend(self.lease_wait.clone());
        if !self.device_up {
            failing.push("device_up".to_owned());
        }
        if !self.peers_reconciled {
            failing.push("peers_reconciled".to_owned());
        }
        failing
    }

    /// Returns whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }
}

#[cfg(test)]
mod tests;
