//! WireGuard devices behind one trait. The driver does not know which backend it drives.
//!
//! Backends: [`userspace`] (the native data plane, [`native`], in this process over a TUN
//! device, driven through its typed handle; what runs here and in CI) and [`kernel`] (the
//! Linux module over netlink; needs the module). Both share the [`netlink`] adapter for the
//! interface address, MTU, link state and one route per allowed IP.
//!
//! Key rotation ([`Device::stage_key`], [`Device::promote_key`],
//! [`Device::drop_previous_key`]) needs a device that holds two static keys at once: the
//! native plane does; the kernel holds one and answers [`Error::Unsupported`] (its strategy
//! is in `docs/kernel-backend.md`).

pub mod kernel;
pub mod native;
pub mod netlink;
pub mod ownership;
pub mod uapi_client;
pub mod uapi_server;
pub mod userspace;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use kms_client::PrivateKey;

use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::DeviceReport;

/// What a device needs to come up (everything but the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSettings {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// UDP listen port.
    pub listen_port: u16,
    /// The gateway's tunnel address with prefix.
    pub address: IpNet,
    /// Interface MTU.
    pub mtu: u32,
}

/// Device failures. Messages name the interface and what failed, never key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another live process already serves this interface's UAPI socket.
    #[error(
        "interface {name} is already served by a running WireGuard process (its UAPI socket {socket} answers)"
    )]
    InUse {
        /// Interface name.
        name: String,
        /// Socket path.
        socket: String,
    },
    /// A link of the configured name exists and the gateway did not create it.
    #[error(
        "interface {name} exists and was not created by the gateway (it lacks the gateway's ownership marker); refusing to touch it"
    )]
    Foreign {
        /// Interface name.
        name: String,
    },
    /// Something that is not a socket lies at the interface's UAPI socket path.
    #[error("interface {name}: {socket} exists and is not a socket; refusing to remove it")]
    NotSocket {
        /// Interface name.
        name: String,
        /// Socket path.
        socket: String,
    },
    /// The UDP port is taken.
    #[error("interface.listen_port {port} is already in use")]
    PortInUse {
        /// The port.
        port: u16,
    },
    /// Creating the device failed.
    #[error("cannot create WireGuard interface {name}: {reason}")]
    Create {
        /// Interface name.
        name: String,
        /// What failed.
        reason: String,
    },
    /// The native device refused an operation.
    #[error("interface {name} refused the change")]
    Native {
        /// Interface name.
        name: String,
        /// Why.
        #[source]
        source: native::handle::Error,
    },
    /// The backend cannot do this at all.
    #[error("interface {name}: {what} is not supported by this backend")]
    Unsupported {
        /// Interface name.
        name: String,
        /// What was asked, e.g. "staging a second private key".
        what: &'static str,
    },
    /// A netlink request failed.
    #[error("netlink: {what} on {name} failed")]
    Netlink {
        /// Interface name.
        name: String,
        /// The operation, e.g. "add route 10.2.0.0/16".
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel backend failed.
    #[error("kernel WireGuard on {name}: {reason}")]
    Kernel {
        /// Interface name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// Why a data plane dropped a packet (the `reason` label of
/// `zt_wireguard_dropped_packets_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// A datagram from the network that did not parse, authenticate or match a session.
    Invalid,
    /// A handshake initiation from a static key that is not a peer.
    UnknownPeer,
    /// A packet from the TUN device for an address no peer holds.
    NoRoute,
    /// A packet from the TUN device for a peer with no known endpoint.
    NoEndpoint,
    /// A decrypted packet whose inner source is not in the sender's allowed IPs.
    BadSource,
    /// A packet for a peer whose session used up its message counter.
    KeyExhausted,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 6] = [
        Self::Invalid,
        Self::UnknownPeer,
        Self::NoRoute,
        Self::NoEndpoint,
        Self::BadSource,
        Self::KeyExhausted,
    ];

    /// Returns the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::UnknownPeer => "unknown_peer",
            Self::NoRoute => "no_route",
            Self::NoEndpoint => "no_endpoint",
            Self::BadSource => "bad_source",
            Self::KeyExhausted => "key_exhausted",
        }
    }
}

/// A WireGuard device the driver can reconcile.
#[allow(async_fn_in_trait)]
pub trait Device {
    /// Returns the interface name.
    fn name(&self) -> &str;

    /// Reads the device's peers and counters.
    ///
    /// # Errors
    /// When the device cannot be queried.
    async fn report(&mut self) -> Result<DeviceReport, Error>;

    /// Returns how many packets the data plane dropped, by reason, since it started. Only the
    /// native plane counts them; the others return nothing.
    fn dropped_packets(&self) -> Vec<(DropReason, u64)> {
        Vec::new()
    }

    /// Returns the addresses of the host's network interfaces other than this one (the
    /// underlay, loopback included), which no peer's allowed IPs may take.
    ///
    /// # Errors
    /// When the interfaces cannot be listed.
    fn underlay_addresses(&self) -> std::io::Result<BTreeSet<IpAddr>> {
        host_addresses(self.name())
    }

    /// Applies one operation, including the routes for the peer's allowed IPs. `previous` is
    /// the peer's configuration before the operation, if the device had it.
    ///
    /// # Errors
    /// When the device or the routing table refused the change.
    async fn apply(&mut self, op: &Op, previous: Option<&PeerConfig>) -> Result<(), Error>;

    /// Switches the device to `key` in one step, keeping every peer (the kernel backend's
    /// rotation flip: its sessions restart under the new key). The native plane rotates by
    /// [`Device::stage_key`] and [`Device::promote_key`] instead.
    ///
    /// # Errors
    /// [`Error::Unsupported`] on the native plane; the kernel's refusal.
    async fn flip_private_key(&mut self, key: &PrivateKey) -> Result<(), Error> {
        let _ = key;
        Err(Error::Unsupported {
            name: self.name().to_owned(),
            what: "flipping the private key (the native plane stages and promotes)",
        })
    }

    /// Stages `key` as the device's next private key: handshakes addressed to it are answered
    /// besides those to the current key, and no session changes. Staging again replaces the
    /// staged key.
    ///
    /// # Errors
    /// [`Error::Unsupported`] on a backend with one key; [`Error::Native`] when the device
    /// refuses (no current key, the key is the current one, the previous key still held).
    async fn stage_key(&mut self, key: &PrivateKey) -> Result<(), Error>;

    /// Makes the staged key current without rebuilding any tunnel or dropping any
    /// established session; the old key still answers handshakes until
    /// [`Device::drop_previous_key`].
    ///
    /// # Errors
    /// [`Error::Unsupported`]; [`Error::Native`] when nothing is staged.
    async fn promote_key(&mut self) -> Result<(), Error>;

    /// Forgets the previous key: peers still on it move to the current key with a new
    /// handshake.
    ///
    /// # Errors
    /// [`Error::Unsupported`]; [`Error::Native`] when no previous key is held.
    async fn drop_previous_key(&mut self) -> Result<(), Error>;

    /// Accepts the peer known as `current` under its announced next key `next` too, until
    /// [`Device::complete_peer_key`] or [`Device::forget_peer_next_key`]: handshakes from
    /// either key are answered, and traffic moves to the next key's session once the peer
    /// confirms one.
    ///
    /// # Errors
    /// [`Error::Unsupported`] on a backend that knows a peer by one key; [`Error::Native`]
    /// when the device refuses (unknown peer, key in use, another next key, or its own
    /// rotation under way).
    async fn accept_peer_next_key(
        &mut self,
        current: &PublicKey,
        next: &PublicKey,
    ) -> Result<(), Error>;

    /// Ends the rotation of the peer whose next key is `next`: it is known under `next`
    /// only.
    ///
    /// # Errors
    /// [`Error::Unsupported`]; [`Error::Native`] when no peer has that key.
    async fn complete_peer_key(&mut self, next: &PublicKey) -> Result<(), Error>;

    /// Aborts the rotation of the peer known as `current`: its next key is forgotten.
    ///
    /// # Errors
    /// [`Error::Unsupported`]; [`Error::Native`] when the peer is unknown.
    async fn forget_peer_next_key(&mut self, current: &PublicKey) -> Result<(), Error>;

    /// Removes the interface and its UAPI socket.
    ///
    /// # Errors
    /// When cleanup failed; the caller logs it and exits anyway.
    async fn shutdown(self) -> Result<(), Error>;
}

/// Returns the addresses of every network interface of this network namespace except
/// `except` (the tunnel).
///
/// # Errors
/// When the interfaces cannot be listed.
pub fn host_addresses(except: &str) -> std::io::Result<BTreeSet<IpAddr>> {
    let addresses = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    Ok(addresses
        .filter(|a| a.interface_name != except)
        .filter_map(|a| {
            let address = a.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}

/// Resolves an endpoint given as IP literal or DNS name. DNS lookups go through the system
/// resolver.
///
/// # Errors
/// When the name does not resolve.
pub async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    let mut addrs = tokio::net::lookup_host((host, port)).await?;
    addrs.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    })
}
