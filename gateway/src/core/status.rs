//! What a `WireGuardPeer`'s status says, and when it is worth writing.
//!
//! The status carries two conditions: `Ready` (the declaration was accepted and the device
//! runs it, or why not) and `Connected` (a recent handshake, by [`health::is_peer_up`]), plus
//! the handshake time and byte counters. Counters change all the time, so a resource is
//! written at most once per [`MIN_WRITE_INTERVAL`], except when `observedGeneration` or a
//! condition's status or reason changes: then at once.
//!
//! [`health::is_peer_up`]: super::health::is_peer_up

use std::time::{Duration, SystemTime};

use super::health::{self, REJECT_AFTER_TIME, REKEY_TIMEOUT};
use super::validate::RejectionKind;

/// The shortest time between two writes of one resource's status when nothing significant
/// changed.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(30);

/// How long to wait after a failed write before trying again.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// `type` of the condition saying whether the peer is configured.
pub const READY: &str = "Ready";
/// `type` of the condition saying whether the tunnel to the peer is up.
pub const CONNECTED: &str = "Connected";

/// How one declaration fared in a reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted, and the device runs it as declared.
    Applied,
    /// Not accepted.
    Rejected {
        /// The kind of problem (the condition's reason).
        kind: RejectionKind,
        /// Why, worded for the operator.
        message: String,
    },
    /// Accepted, but the device refused it (retried on the next pass).
    NotApplied {
        /// What failed.
        message: String,
    },
}

/// How one declaration fared, as the driver reports it to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOutcome {
    /// Where the declaration came from (the source's own naming).
    pub origin: String,
    /// Accepted and applied, or why not.
    pub verdict: Verdict,
    /// The device's view of the peer, when it runs it.
    pub link: Option<Link>,
}

/// The tunnel to one peer as the device reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// The peer's persistent keepalive, which stretches the connected window.
    pub persistent_keepalive: u16,
}

/// One status condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// [`READY`] or [`CONNECTED`].
    pub kind: String,
    /// `True` or `False`.
    pub status: bool,
    /// One CamelCase word.
    pub reason: String,
    /// Details for the operator.
    pub message: String,
    /// When `status` last changed.
    pub last_transition: SystemTime,
}

/// The status of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The `metadata.generation` the status describes.
    pub observed_generation: Option<i64>,
    /// `Ready`, then `Connected`.
    pub conditions: Vec<Condition>,
    /// Time of the last handshake, when the device reports one.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received, when the device runs the peer.
    pub rx_bytes: Option<u64>,
    /// Bytes sent, when the device runs the peer.
    pub tx_bytes: Option<u64>,
}

/// Builds a resource's status at `now`. `previous` holds the conditions last written (or
/// read back): a condition whose status did not change keeps its `last_transition`.
pub fn build(
    generation: Option<i64>,
    verdict: &Verdict,
    link: Option<&Link>,
    previous: &[Condition],
    now: SystemTime,
) -> PeerStatus {
    let (ready, reason, message) = match verdict {
        Verdict::Applied => (
            true,
            "Applied",
            "the peer is configured on the WireGuard interface".to_owned(),
        ),
        Verdict::Rejected { kind, message } => (false, kind.as_str(), message.clone()),
        Verdict::NotApplied { message } => (false, "ApplyFailed", message.clone()),
    };
    let applied = *verdict == Verdict::Applied;
    let link = link.filter(|_| applied);
    let (connected, connected_reason, connected_message) = connected(applied, link, now);
    let condition = |kind: &str, status: bool, reason: &str, message: String| Condition {
        kind: kind.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        last_transition: previous
            .iter()
            .find(|c| c.kind == kind && c.status == status)
            .map_or(now, |c| c.last_transition),
    };
    PeerStatus {
        observed_generation: generation,
        conditions: vec![
            condition(READY, ready, reason, message),
            condition(CONNECTED, connected, connected_reason, connected_message),
        ],
        last_handshake: link.and_then(|l| l.last_handshake),
        rx_bytes: link.map(|l| l.rx_bytes),
        tx_bytes: link.map(|l| l.tx_bytes),
    }
}

fn connected(applied: bool, link: Option<&Link>, now: SystemTime) -> (bool, &'static str, String) {
    if !applied {
        return (
            false,
            "NotApplied",
            "the peer is not configured on the WireGuard interface".to_owned(),
        );
    }
    // A peer applied in this very pass is not in the device report yet.
    let Some(link) = link else {
        return (
            false,
            "NoHandshake",
            "no handshake with the peer yet".to_owned(),
        );
    };
    let window = REJECT_AFTER_TIME.as_secs()
        + u64::from(link.persistent_keepalive)
        + REKEY_TIMEOUT.as_secs();
    match link.last_handshake {
        None => (
            false,
            "NoHandshake",
            "no handshake with the peer yet".to_owned(),
        ),
        Some(at) if health::is_peer_up(Some(at), link.persistent_keepalive, now) => (
            true,
            "HandshakeRecent",
            format!("a handshake within the last {window} s"),
        ),
        Some(_) => (
            false,
            "HandshakeStale",
            format!("no handshake within the last {window} s"),
        ),
    }
}

/// What the writer remembers about one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memo {
    /// The status last written, and when.
    pub written: Option<(PeerStatus, SystemTime)>,
    /// No write before this time (set after a failed write).
    pub retry_at: Option<SystemTime>,
}

impl Memo {
    /// Records a successful write of `status` at `now`.
    pub fn wrote(&mut self, status: PeerStatus, now: SystemTime) {
        self.written = Some((status, now));
        self.retry_at = None;
    }

    /// Records a failed write at `now`.
    pub fn failed(&mut self, now: SystemTime) {
        self.retry_at = Some(now + RETRY_AFTER_FAILURE);
    }

    /// Returns the conditions last written, if any.
    pub fn conditions(&self) -> Option<&[Condition]> {
        self.written.as_ref().map(|(s, _)| s.conditions.as_slice())
    }
}

/// Decides whether to write `next` at `now`: at once when nothing was written yet, or when
/// `observedGeneration` or a condition's status or reason changed; otherwise only when
/// something changed and [`MIN_WRITE_INTERVAL`] has passed since the last write. Never before
/// a failed write's retry time.
pub fn should_write(memo: &Memo, next: &PeerStatus, now: SystemTime) -> bool {
    if memo.retry_at.is_some_and(|at| now < at) {
        return false;
    }
    let Some((last, at)) = &memo.written else {
        return true;
    };
    if significant(last) != significant(next) {
        return true;
    }
    if last == next {
        return false;
    }
    // A clock that went backwards counts as "long enough ago".
    now.duration_since(*at)
        .map_or(true, |elapsed| elapsed >= MIN_WRITE_INTERVAL)
}

fn significant(status: &PeerStatus) -> (Option<i64>, Vec<(&str, bool, &str)>) {
    (
        status.observed_generation,
        status
            .conditions
            .iter()
            .map(|c| (c.kind.as_str(), c.status, c.reason.as_str()))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
