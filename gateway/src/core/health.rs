//! Health rules: when a peer counts as connected, and when the gateway is ready.
//!
//! The connected rule is defined here once; the metrics (`zt_wireguard_peer_up`,
//! `zt_wireguard_peers{state}`) and the admin status (`connected`) all read it.

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
    is_within(at, limit, now)
}

/// What the health rule knows about one peer at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerActivity {
    /// When the last handshake completed; `None` if there was none.
    pub last_handshake: Option<SystemTime>,
    /// When traffic from the peer was last seen (see [`observe_receive`]).
    pub last_receive: Option<SystemTime>,
    /// The peer's persistent keepalive in seconds (0 = off).
    pub keepalive: u16,
}

/// How the gateway decides that a peer is connected.
///
/// The default is the production rule, [`is_peer_up`]. `receive_window` exists for
/// integration tests only: a cut tunnel keeps its last handshake for minutes, far longer than
/// a test can wait, so a test may additionally require traffic from the peer within a short
/// window (with a short keepalive on both sides, a healthy tunnel receives a keepalive every
/// interval). It never relaxes the production rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Liveness {
    /// When set, a peer also needs traffic from it within this window to count as up.
    pub receive_window: Option<Duration>,
}

impl Liveness {
    /// Returns whether the peer counts as connected at `now`.
    pub fn is_up(&self, activity: &PeerActivity, now: SystemTime) -> bool {
        let handshake_ok = is_peer_up(activity.last_handshake, activity.keepalive, now);
        match self.receive_window {
            None => handshake_ok,
            Some(window) => {
                handshake_ok
                    && activity
                        .last_receive
                        .is_some_and(|at| is_within(at, window, now))
            }
        }
    }
}

/// The receive counter of a peer at the last observation, and when it last grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveMark {
    /// The counter value seen last.
    pub rx_bytes: u64,
    /// When it was last seen to change; `None` while it has never been above zero.
    pub at: Option<SystemTime>,
}

/// Updates a peer's receive mark with the counter read at `now`.
///
/// Any change of a non-zero counter counts as traffic (a smaller value means the device
/// re-created the peer, which then received again); a counter first seen above zero counts
/// as traffic now, since nothing earlier is known.
pub fn observe_receive(
    previous: Option<ReceiveMark>,
    rx_bytes: u64,
    now: SystemTime,
) -> ReceiveMark {
    let at = match previous {
        _ if rx_bytes == 0 => None,
        Some(mark) if mark.rx_bytes == rx_bytes => mark.at,
        _ => Some(now),
    };
    ReceiveMark { rx_bytes, at }
}

/// How many declared peers are in each state, for `zt_wireguard_peers{state}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Applied peers that count as connected.
    pub connected: usize,
    /// Applied peers that do not.
    pub disconnected: usize,
    /// Declarations that were rejected and not applied.
    pub rejected: usize,
}

impl PeerCounts {
    /// Returns `(state label, count)` for every state, always all of them, in a fixed order.
    pub fn by_state(&self) -> [(&'static str, usize); 3] {
        [
            ("connected", self.connected),
            ("disconnected", self.disconnected),
            ("rejected", self.rejected),
        ]
    }
}

/// Returns whether `at` lies at most `limit` before `now`; a time after `now` counts.
fn is_within(at: SystemTime, limit: Duration, now: SystemTime) -> bool {
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
    /// The last audit record could not be written (`[audit]` on only); the tunnel keeps
    /// running, but the gateway is not ready until a write succeeds again.
    pub audit_unwritable: bool,
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
        if self.audit_unwritable {
            failing.push("audit_writable".to_owned());
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
