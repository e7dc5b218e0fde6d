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
    identity: Arc<Identity>,
    latest: Arc<RwLock<Option<Status>>>,
    channels: Arc<RwLock<Vec<ChannelStatus>>>,
}

impl StatusBoard {
    /// Creates an empty board: [`StatusBoard::latest`] is `None` until the first publish.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity: Arc::new(identity),
            latest: Arc::new(RwLock::new(None)),
            channels: Arc::new(RwLock::new(Vec::new())),
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
        let id = &self.identity;
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
        Some(status)
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
