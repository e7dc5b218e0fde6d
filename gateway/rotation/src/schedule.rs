//! When a rotation starts.
//!
//! A gateway's key is **due** once it is older than `max_age - lead`, plus a small
//! per-gateway **jitter** derived from its own public key so that clusters due the same day
//! do not all start in the same minute. A due rotation waits for the maintenance
//! [`Window`] (when one is set), then for every peer to be ready: reachable, able to take the
//! announcement (or handled out of band by the operator), not rotating itself, and not due
//! with a lower public key (the **tie-break**: of two peers due together, the one with the
//! lower key goes first, so the two sides of a pair never rotate at once).
//!
//! [`decide`] is the scheduler's question and [`decide_now`] the operator's `--now`, which
//! skips the age and the window but keeps every blocker. A key whose creation time is unknown
//! is never rotated by the scheduler ([`Decision::KeyAgeUnknown`]).

mod window;

use std::fmt;
use std::time::{Duration, SystemTime};

use ztgw_model::key::PublicKey;

pub use window::{Window, WindowError};

/// When rotations are due and may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The age at which a key must have been replaced (default 90 days).
    pub max_age: Duration,
    /// How long before `max_age` the rotation is due (default 5 days).
    pub lead: Duration,
    /// The daily UTC range in which a scheduled rotation may start; `None` is any time.
    pub window: Option<Window>,
    /// The spread of the per-gateway offset added to the due time (default 30 minutes).
    pub jitter: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(90 * DAY),
            lead: Duration::from_secs(5 * DAY),
            window: None,
            jitter: Duration::from_secs(30 * 60),
        }
    }
}

const DAY: u64 = 86_400;

/// Everything [`decide`] looks at, gathered by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleInput {
    /// This gateway's current public key.
    pub own_public_key: PublicKey,
    /// When the current key was created; `None` when the key store does not say.
    pub key_created: Option<SystemTime>,
    /// The schedule.
    pub schedule: Schedule,
    /// Whether a rotation of this gateway's own key is already under way (not finished).
    pub rotation_in_flight: bool,
    /// Every peer this gateway has.
    pub peers: Vec<PeerReadiness>,
}

/// What a rotation needs to know about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReadiness {
    /// The peer's name (its `WireGuardPeer` name).
    pub name: String,
    /// The peer's current public key.
    pub public_key: PublicKey,
    /// The peer's control channel.
    pub channel: Channel,
    /// Whether the tunnel to the peer is up (a recent handshake).
    pub tunnel_up: bool,
    /// Whether the peer says it is rotating its own key.
    pub rotating: bool,
    /// Whether the peer says its own key is due as well.
    pub peer_due: bool,
    /// Whether the operator handles this peer out of band (`--manual-peer`).
    pub manual: bool,
}

/// A peer's control channel, as its last hello left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The peer answers; `can_rotate` says whether it listed the rotation messages.
    Up {
        /// Whether the peer's capabilities include `rotate.announce`.
        can_rotate: bool,
    },
    /// The peer is plain WireGuard: no control channel.
    Plain,
    /// The peer had a channel and does not answer now.
    Down,
    /// The peer's declaration gives no channel address.
    None,
}

/// What the scheduler should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The key is not due yet.
    NotDue {
        /// When it will be.
        due_at: SystemTime,
    },
    /// The key is due, outside the maintenance window.
    WaitingForWindow {
        /// When the window opens next.
        opens_at: SystemTime,
    },
    /// The key is due (or the operator asked), and something stands in the way.
    Blocked(Vec<Blocker>),
    /// Start a rotation.
    Start,
    /// The key's creation time is unknown: never rotate blindly.
    KeyAgeUnknown,
}

/// Why a rotation cannot start now. Each peer appears at most once, with the first reason
/// that applies in the order of the variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocker {
    /// A rotation of our own is already under way.
    OwnRotationInFlight,
    /// The tunnel to the peer is down, or its control channel does not answer.
    PeerDown(String),
    /// The peer cannot be told the next key: plain WireGuard, no channel address, or a
    /// channel without the rotation messages; `--manual-peer` lifts it.
    NoChannel(String),
    /// The peer is rotating its own key.
    PeerRotating(String),
    /// The peer is due as well and its key is lower than ours: it goes first.
    PeerGoesFirst(String),
}

impl Blocker {
    /// Returns a fixed word for the kind of blocker (for metrics and logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Blocker::OwnRotationInFlight => "own_rotation_in_flight",
            Blocker::PeerDown(_) => "peer_down",
            Blocker::NoChannel(_) => "no_channel",
            Blocker::PeerRotating(_) => "peer_rotating",
            Blocker::PeerGoesFirst(_) => "peer_goes_first",
        }
    }

    /// Returns the peer this blocker names, if any.
    pub fn peer(&self) -> Option<&str> {
        match self {
            Blocker::OwnRotationInFlight => None,
            Blocker::PeerDown(peer)
            | Blocker::NoChannel(peer)
            | Blocker::PeerRotating(peer)
            | Blocker::PeerGoesFirst(peer) => Some(peer),
        }
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::OwnRotationInFlight => f.write_str("a rotation is already under way"),
            Blocker::PeerDown(peer) => write!(f, "peer {peer} is down"),
            Blocker::NoChannel(peer) => write!(
                f,
                "peer {peer} cannot be told the next key (no control channel with rotation); \
                 use --manual-peer {peer} to handle it out of band"
            ),
            Blocker::PeerRotating(peer) => write!(f, "peer {peer} is rotating its own key"),
            Blocker::PeerGoesFirst(peer) => {
                write!(f, "peer {peer} is due as well and rotates first")
            }
        }
    }
}

/// Returns the per-gateway offset in `[0, spread)`, whole seconds, derived from the
/// gateway's public key (FNV-1a 64 over its 32 bytes): stable across restarts, and different
/// for different gateways. A spread under one second gives zero.
pub fn jitter(own_key: &PublicKey, spread: Duration) -> Duration {
    let seconds = spread.as_secs();
    if seconds == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(fnv1a64(own_key.as_bytes()) % seconds)
}

/// Returns when a key created at `key_created` is due:
/// `key_created + max_age - lead + jitter(own_key)`. A lead longer than `max_age` counts as
/// `max_age`; a time beyond what the platform represents saturates far in the future.
pub fn due_at(key_created: SystemTime, schedule: &Schedule, own_key: &PublicKey) -> SystemTime {
    let wait = schedule
        .max_age
        .saturating_sub(schedule.lead)
        .saturating_add(jitter(own_key, schedule.jitter));
    key_created.checked_add(wait).unwrap_or_else(far_future)
}

/// Decides whether the scheduler starts a rotation at `now`.
///
/// The checks run in order: key age unknown, not due, outside the window, blockers, start.
pub fn decide(input: &ScheduleInput, now: SystemTime) -> Decision {
    let Some(created) = input.key_created else {
        return Decision::KeyAgeUnknown;
    };
    let due = due_at(created, &input.schedule, &input.own_public_key);
    if now < due {
        return Decision::NotDue { due_at: due };
    }
    if let Some(window) = &input.schedule.window
        && !window.contains(now)
    {
        return Decision::WaitingForWindow {
            opens_at: window.next_open(now),
        };
    }
    decide_now(input)
}

/// Decides whether the operator's `--now` may start a rotation: the key's age and the window
/// do not matter, every blocker does.
pub fn decide_now(input: &ScheduleInput) -> Decision {
    let blockers = blockers(input);
    if blockers.is_empty() {
        Decision::Start
    } else {
        Decision::Blocked(blockers)
    }
}

/// Lists what stands in the way, ours first, then one entry per blocked peer by name.
fn blockers(input: &ScheduleInput) -> Vec<Blocker> {
    let mut peers: Vec<&PeerReadiness> = input.peers.iter().collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    let own = input
        .rotation_in_flight
        .then_some(Blocker::OwnRotationInFlight);
    own.into_iter()
        .chain(
            peers
                .into_iter()
                .filter_map(|peer| peer_blocker(peer, &input.own_public_key)),
        )
        .collect()
}

/// Returns the first reason `peer` is not ready, if any.
fn peer_blocker(peer: &PeerReadiness, own_key: &PublicKey) -> Option<Blocker> {
    let name = || peer.name.clone();
    // A manual peer is told out of band, so its channel does not matter; the verification
    // still needs its tunnel.
    let channel_down = !peer.manual && peer.channel == Channel::Down;
    if !peer.tunnel_up || channel_down {
        return Some(Blocker::PeerDown(name()));
    }
    let can_announce = matches!(peer.channel, Channel::Up { can_rotate: true });
    if !peer.manual && !can_announce {
        return Some(Blocker::NoChannel(name()));
    }
    if peer.rotating {
        return Some(Blocker::PeerRotating(name()));
    }
    if peer.peer_due && peer.public_key.as_bytes() < own_key.as_bytes() {
        return Some(Blocker::PeerGoesFirst(name()));
    }
    None
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// 9999-12-31T23:59:59Z, or 2038-01-19 where the platform's time is narrower.
fn far_future() -> SystemTime {
    let end_of_9999 = Duration::from_secs(253_402_300_799);
    let end_of_i32 = Duration::from_secs(2_147_483_647);
    SystemTime::UNIX_EPOCH
        .checked_add(end_of_9999)
        .or_else(|| SystemTime::UNIX_EPOCH.checked_add(end_of_i32))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests;
