//! The status snapshot that the admin API serves (`GET /v1/status`, schema in
//! `docs/admin-api.md`): the interface and every applied peer as of the last reconcile.
//!
//! The driver publishes a fresh snapshot every pass, the same way it publishes metrics; the
//! admin handlers only read it. `peerctl` reads the same types back. Nothing here holds key
//! material: public keys only.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The version of the JSON document; bumped only for changes that break readers.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Unix time (seconds) of the reconcile pass that produced this snapshot.
    pub now_unix: u64,
    /// The gateway process.
    pub gateway: GatewayInfo,
    /// The WireGuard interface.
    pub interface: InterfaceStatus,
    /// Every applied peer, ordered by cluster name.
    pub peers: Vec<PeerStatus>,
    /// Declarations that were rejected and not applied, in file order.
    pub rejected: Vec<RejectedDeclaration>,
    /// Each applied peer's control channel, by declaration name (`docs/control-channel.md`);
    /// empty when the channel is disabled or before the first hello round. Absent in
    /// documents of older gateways.
    #[serde(default)]
    pub channels: Vec<ChannelStatus>,
    /// This gateway's key rotations and what it holds of its peers' (`docs/rotation.md`).
    /// Absent in documents of older gateways and of gateways that cannot rotate.
    #[serde(default)]
    pub rotation: Option<RotationStatus>,
}

/// Key rotation, as the admin API reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationStatus {
    /// Whether this gateway can rotate its key (the native data plane); `detail` says why
    /// not.
    pub available: bool,
    /// Why rotation is not available, or why the last rotation cannot be resumed.
    #[serde(default)]
    pub detail: Option<String>,
    /// The rotation in flight, or the last one (finished).
    #[serde(default)]
    pub current: Option<RotationRun>,
    /// When the schedule makes the next rotation due (Unix seconds), when the key's creation
    /// time is known.
    #[serde(default)]
    pub due_unix: Option<u64>,
    /// The schedule's last decision, e.g. `not_due`, `waiting_for_window`, `blocked: ...`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// What this gateway holds of each peer's own rotations.
    #[serde(default)]
    pub peers: Vec<PeerKeyStatus>,
}

/// One rotation of this gateway's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRun {
    /// The rotation id.
    pub id: String,
    /// Its sequence.
    pub sequence: u64,
    /// `staging`, `announcing`, `committing`, `verifying`, `rolling_back`, `complete` or
    /// `rolled_back`.
    pub phase: String,
    /// Unix time the rotation started.
    pub started_unix: u64,
    /// Unix time the phase was entered.
    pub phase_since_unix: u64,
    /// Unix time it ended, once it has.
    #[serde(default)]
    pub finished_unix: Option<u64>,
    /// The key being replaced.
    pub old_public_key: String,
    /// The key replacing it.
    pub next_public_key: String,
    /// Why it rolls or rolled back, in our words.
    #[serde(default)]
    pub rollback_reason: Option<String>,
    /// Each peer's progress, by declaration name.
    pub peers: Vec<RotationPeer>,
}

/// One peer's progress through a rotation of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPeer {
    /// The peer's declaration name.
    pub name: String,
    /// Whether it acknowledged the next key (a manual peer: the operator was given the line).
    pub acked: bool,
    /// Whether a handshake under the new key was seen.
    pub handshake: bool,
    /// Whether it was told the end.
    pub told_end: bool,
    /// Whether the operator handles it out of band; `manual_line` is the command to run there.
    pub manual: bool,
    /// For a manual peer, the `wg set` line to run on it.
    #[serde(default)]
    pub manual_line: Option<String>,
}

/// What `peerctl rotate --plan` shows: whether a rotation would start now, and what
/// happens with each peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPlan {
    /// `start`, `blocked`, `not_due`, `waiting_for_window` or `key_age_unknown` (for `--now`:
    /// `start` or `blocked` only).
    pub decision: String,
    /// What blocks it, one line each, in our words.
    pub blockers: Vec<String>,
    /// Each peer, by declaration name.
    pub peers: Vec<PlanPeer>,
    /// When the schedule makes the key due (Unix seconds), when the key's age is known.
    #[serde(default)]
    pub due_unix: Option<u64>,
}

/// One peer in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPeer {
    /// The declaration name.
    pub name: String,
    /// `announce` (told over the control channel), `manual` (`--manual-peer`) or `blocked`.
    pub how: String,
    /// What blocks it, when it is blocked.
    #[serde(default)]
    pub blocker: Option<String>,
}

/// What this gateway holds of one peer's own key rotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerKeyStatus {
    /// The peer's declaration name.
    pub name: String,
    /// The key the peer runs under now.
    pub active_public_key: String,
    /// The next key it announced, while its rotation is pending.
    #[serde(default)]
    pub next_public_key: Option<String>,
    /// The key its declaration names, when that differs from `active_public_key` because the
    /// peer rotated: the declaration is to be updated (the gateway never rewrites it).
    #[serde(default)]
    pub declared_public_key: Option<String>,
}

/// The state of one peer's control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    /// The last hello was answered.
    Up,
    /// The tunnel is up but nothing answers on the peer's control port: plain WireGuard.
    Plain,
    /// Hellos fail and the tunnel is down, or the peer's channel refuses us.
    Down,
    /// The declaration has no tunnel address, so the peer has no channel.
    None,
    /// Not decided yet (also any state a newer gateway reports that this build does not know).
    #[serde(other)]
    Unknown,
}

impl ChannelState {
    /// The word used in the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Plain => "plain",
            Self::Down => "down",
            Self::None => "none",
        }
    }
}

/// One peer's control channel, as this gateway's hello client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The peer's declaration name (`PeerStatus::name`).
    pub peer: String,
    /// Its cluster.
    pub cluster: String,
    /// The state.
    pub state: ChannelState,
    /// Its tunnel address, where the channel is reached; `None` without one.
    pub address: Option<String>,
    /// What the peer's last hello announced it serves.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The public key the peer's last hello announced, base64.
    #[serde(default)]
    pub public_key: Option<String>,
    /// The key age the peer's last hello announced, in seconds.
    #[serde(default)]
    pub key_age_seconds: Option<u64>,
    /// The gateway release the peer's last hello announced.
    #[serde(default)]
    pub version: Option<String>,
    /// Unix time of the last answered hello; `None` if there was none.
    #[serde(default)]
    pub last_contact_unix: Option<u64>,
    /// Why the state is not `up`, in our words.
    #[serde(default)]
    pub detail: Option<String>,
}

/// What runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The gateway build's version.
    pub version: String,
    /// This cluster's name (`cluster.name`).
    pub cluster: String,
    /// `userspace` or `kernel`.
    pub backend: String,
}

/// The local interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Interface name.
    pub name: String,
    /// The gateway's public key, base64.
    pub public_key: String,
    /// UDP listen port.
    pub listen_port: u16,
    /// Tunnel address with prefix, e.g. `10.10.0.1/24`.
    pub address: String,
    /// Unix time the private key was created, when the key source knows it.
    pub key_created_unix: Option<u64>,
    /// Age of the private key in seconds, when its creation time is known.
    pub key_age_seconds: Option<u64>,
}

/// One applied peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// `metadata.name` of its declaration.
    pub name: String,
    /// `spec.cluster`.
    pub cluster: String,
    /// Its public key, base64.
    pub public_key: String,
    /// The endpoint the device uses now (configured or learned), if any.
    pub endpoint: Option<String>,
    /// Whether it counts as connected (the rule of `zt_wireguard_peer_up`).
    pub connected: bool,
    /// Unix time of the last handshake; `None` if there was none.
    pub last_handshake_unix: Option<u64>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// Its allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
}

/// A declaration that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedDeclaration {
    /// Where it came from (file and document).
    pub origin: String,
    /// Its name, when it had one.
    pub name: Option<String>,
    /// Why, worded for the operator.
    pub reason: String,
}

/// What does not change while the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The process.
    pub gateway: GatewayInfo,
    /// Interface name.
    pub interface: String,
    /// The gateway's public key, base64.
    pub public_key: String,
    /// UDP listen port.
    pub listen_port: u16,
    /// Tunnel address with prefix.
    pub address: String,
    /// When the private key was created, when the key source knows it.
    pub key_created: Option<SystemTime>,
}

/// Where the driver publishes the latest [`Status`] and the admin API reads it.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    identity: Arc<RwLock<Identity>>,
    latest: Arc<RwLock<Option<Status>>>,
    channels: Arc<RwLock<Vec<ChannelStatus>>>,
    rotation: Arc<RwLock<Option<RotationStatus>>>,
}

impl StatusBoard {
    /// Creates an empty board: [`StatusBoard::latest`] is `None` until the first publish.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity: Arc::new(RwLock::new(identity)),
            latest: Arc::new(RwLock::new(None)),
            channels: Arc::new(RwLock::new(Vec::new())),
            rotation: Arc::new(RwLock::new(None)),
        }
    }

    /// Replaces the snapshot with one taken at `now`.
    pub fn publish(
        &self,
        now: SystemTime,
        mut peers: Vec<PeerStatus>,
        rejected: Vec<RejectedDeclaration>,
    ) {
        peers.sort_by(|a, b| a.cluster.cmp(&b.cluster).then(a.name.cmp(&b.name)));
        let id = self.identity();
        let id = &id;
        let key_created_unix = id.key_created.map(unix_seconds);
        let status = Status {
            schema: SCHEMA_VERSION,
            now_unix: unix_seconds(now),
            gateway: id.gateway.clone(),
            interface: InterfaceStatus {
                name: id.interface.clone(),
                public_key: id.public_key.clone(),
                listen_port: id.listen_port,
                address: id.address.clone(),
                key_created_unix,
                key_age_seconds: id
                    .key_created
                    .map(|at| now.duration_since(at).map_or(0, |age| age.as_secs())),
            },
            peers,
            rejected,
            channels: Vec::new(),
            rotation: None,
        };
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some(status);
        }
    }

    /// Returns the latest snapshot with the latest channel states, or `None` before the first
    /// reconcile pass.
    pub fn latest(&self) -> Option<Status> {
        let mut status = self.latest.read().ok().and_then(|latest| latest.clone())?;
        if let Ok(channels) = self.channels.read() {
            status.channels = channels.clone();
        }
        if let Ok(rotation) = self.rotation.read() {
            status.rotation = rotation.clone();
        }
        // The key may have changed since the snapshot (a rotation's switch).
        let id = self.identity();
        status.interface.public_key = id.public_key;
        status.interface.key_created_unix = id.key_created.map(unix_seconds);
        Some(status)
    }

    /// Returns what is known of this gateway now.
    pub fn identity(&self) -> Identity {
        match self.identity.read() {
            Ok(identity) => identity.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Returns this gateway's current public key, base64.
    pub fn public_key(&self) -> String {
        self.identity().public_key
    }

    /// Records that the gateway's key is now `public_key`, created at `key_created` (a
    /// rotation's switch, or its rollback).
    pub fn set_key(&self, public_key: String, key_created: Option<SystemTime>) {
        if let Ok(mut identity) = self.identity.write() {
            identity.public_key = public_key;
            identity.key_created = key_created;
        }
    }

    /// Replaces the rotation section (published by the rotation service).
    pub fn publish_rotation(&self, rotation: RotationStatus) {
        if let Ok(mut latest) = self.rotation.write() {
            *latest = Some(rotation);
        }
    }

    /// Replaces the channel states (published by the control channel's hello client).
    pub fn publish_channels(&self, channels: Vec<ChannelStatus>) {
        if let Ok(mut latest) = self.channels.write() {
            *latest = channels;
        }
    }
}

/// Returns whole seconds since the Unix epoch (0 for a time before it).
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
