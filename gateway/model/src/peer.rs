//! The peer model: where a peer is declared ([`PeerId`]), what an operator declares
//! ([`PeerSpec`]) and what a device holds ([`PeerConfig`]).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;

use super::key::PublicKey;
use super::psk::PresharedKey;

/// Persistent keepalive applied when a resource does not say: short enough to keep NAT
/// mappings of cloud load balancers alive.
pub const DEFAULT_PERSISTENT_KEEPALIVE: u16 = 25;

/// A peer's identity: where it is declared. Its public key is an attribute that may change
/// (the peer rotated); the declaration stays the same peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerId {
    /// A `WireGuardPeer` resource of the Kubernetes source.
    Resource {
        /// `metadata.namespace`.
        namespace: String,
        /// `metadata.name`.
        name: String,
    },
    /// A document in the directory source.
    File {
        /// The file's path relative to the peers directory.
        path: String,
        /// The document's `metadata.name`.
        name: String,
    },
}

impl PeerId {
    /// The id of the resource `namespace/name`.
    pub fn resource(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PeerId::Resource {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The id of the document named `name` in the file at `path` (relative to the peers
    /// directory).
    pub fn file(path: impl Into<String>, name: impl Into<String>) -> Self {
        PeerId::File {
            path: path.into(),
            name: name.into(),
        }
    }

    /// Returns the declared `metadata.name`.
    pub fn name(&self) -> &str {
        match self {
            PeerId::Resource { name, .. } | PeerId::File { name, .. } => name,
        }
    }
}

/// A peer endpoint as written: an IP or DNS host and a port. Resolution happens in an adapter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// An IP literal with port; needs no resolution.
    Addr(SocketAddr),
    /// A DNS name with port.
    Host {
        /// The DNS name.
        host: String,
        /// The UDP port.
        port: u16,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(addr) => write!(f, "{addr}"),
            Endpoint::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A validated `WireGuardPeer`: every field checked, ready to become a [`PeerConfig`] once
/// its endpoint is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's identity: where it is declared.
    pub id: PeerId,
    /// Where the declaration came from, worded for the operator (a file and document index,
    /// or a resource name).
    pub origin: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.cluster`, a DNS label; the `cluster` label of every metric.
    pub cluster: String,
    /// `spec.publicKey`.
    pub public_key: PublicKey,
    /// `spec.endpoint`; `None` for a passive peer.
    pub endpoint: Option<Endpoint>,
    /// `spec.allowedIPs`, normalized and sorted.
    pub allowed_ips: BTreeSet<IpNet>,
    /// `spec.persistentKeepalive`; 0 means off.
    pub persistent_keepalive: u16,
    /// The key read through `spec.presharedKeySecretRef`, if any.
    pub preshared_key: Option<PresharedKey>,
}

impl PeerSpec {
    /// Returns the device configuration with the endpoint already resolved (or `None`).
    pub fn to_config(&self, endpoint: Option<SocketAddr>) -> PeerConfig {
        PeerConfig {
            public_key: self.public_key,
            endpoint,
            allowed_ips: self.allowed_ips.clone(),
            persistent_keepalive: self.persistent_keepalive,
            preshared_key: self.preshared_key.clone(),
        }
    }
}

/// What a WireGuard device holds for one peer, as far as the gateway manages it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key (its identity on the device).
    pub public_key: PublicKey,
    /// The configured endpoint, if any.
    pub endpoint: Option<SocketAddr>,
    /// The peer's allowed IPs (cryptokey routing and kernel routes).
    pub allowed_ips: BTreeSet<IpNet>,
    /// Persistent keepalive in seconds; 0 means off.
    pub persistent_keepalive: u16,
    /// The preshared key; `None` means none (all zeros on the wire).
    pub preshared_key: Option<PresharedKey>,
}
