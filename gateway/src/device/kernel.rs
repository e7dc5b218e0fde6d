//! The `kernel` backend: the Linux WireGuard module, driven over generic netlink through
//! `defguard_wireguard_rs`. Needs the module (`ip link add type wireguard` must work); the
//! test machines do not load it, so the netns tests run it inside a VM with Debian's kernel
//! (`netns-tests/tests/kernel_vm.rs`).
//!
//! A peer update is an in-place `SetDevice` with `REPLACE_ALLOWEDIPS`, which keeps the
//! peer's session.
//!
//! The kernel holds one private key: staging a second one is [`Error::Unsupported`]. Its
//! rotation strategy (a pre-staged flip) is in `docs/kernel-backend.md`.

mod genl;

use std::time::UNIX_EPOCH;

use defguard_wireguard_rs::host::Host;
use defguard_wireguard_rs::key::Key;
use defguard_wireguard_rs::net::IpAddrMask;
use defguard_wireguard_rs::peer::Peer;
use defguard_wireguard_rs::{InterfaceConfiguration, Kernel, WGApi, WireguardInterfaceApi as _};
use ipnet::IpNet;
use kms_client::PrivateKey;
use zeroize::Zeroize as _;

use super::netlink::Netlink;
use super::ownership::{self, Owner};
use super::{Device, Error, InterfaceSettings};
use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::{DeviceReport, PeerReport};

/// A kernel WireGuard interface.
pub struct KernelDevice {
    name: String,
    index: u32,
    api: WGApi<Kernel>,
    netlink: Netlink,
}

impl std::fmt::Debug for KernelDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelDevice")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KernelDevice {
    /// Creates the interface and marks it as the gateway's, then sets key and port, MTU,
    /// address and link up. A marked WireGuard interface of the same name, left by an earlier
    /// run, is deleted first; any other link of that name is refused and left alone
    /// ([`ownership`]).
    ///
    /// # Errors
    /// [`Error::Foreign`]; [`Error::Kernel`] when the module is missing or refuses; netlink
    /// failures.
    pub async fn create(settings: &InterfaceSettings, key: &PrivateKey) -> Result<Self, Error> {
        let name = settings.name.clone();
        let kernel_err = |reason: String| Error::Kernel {
            name: name.clone(),
            reason,
        };
        let netlink =
            Netlink::open().map_err(|e| kernel_err(format!("cannot open netlink: {e}")))?;
        ownership::clear_stale(&netlink, &name, Owner::KERNEL, None).await?;
        let mut api = WGApi::<Kernel>::new(name.clone()).map_err(|e| kernel_err(e.to_string()))?;
        api.create_interface().map_err(|e| {
            kernel_err(format!(
                "cannot create the interface ({e}); is the wireguard kernel module loaded?"
            ))
        })?;
        let index = match netlink.index(&name).await {
            Ok(Some(index)) => index,
            Ok(None) => {
                return Err(kernel_err(
                    "the interface vanished after creation".to_owned(),
                ));
            }
            Err(e) => {
                let _ = api.remove_interface();
                return Err(e);
            }
        };
        if let Err(e) = netlink
            .set_alias(&name, index, ownership::MARKER_KERNEL)
            .await
        {
            let _ = netlink.delete_link(&name, index).await;
            return Err(e);
        }
        let mut config = InterfaceConfiguration {
            name: name.clone(),
            prvkey: key.to_base64().to_string(),
            addresses: Vec::new(),
            port: settings.listen_port,
            peers: Vec::new(),
            mtu: None,
            fwmark: None,
        };
        // Our copy is wiped; defguard_wireguard_rs converts it into its own `Key`, which is not
        // zeroized on drop, before handing it to the kernel (see docs/key-custody.md).
        let configured = api.configure_interface(&config);
        config.prvkey.zeroize();
        if let Err(e) = configured {
            let _ = netlink.delete_link(&name, index).await;
            return Err(kernel_err(e.to_string()));
        }
        netlink
            .configure(&name, index, settings.mtu, settings.address)
            .await?;
        Ok(Self {
            name,
            index,
            api,
            netlink,
        })
    }
}

impl KernelDevice {
    fn unsupported(&self, what: &'static str) -> Error {
        Error::Unsupported {
            name: self.name.clone(),
            what,
        }
    }
}

impl Device for KernelDevice {
    fn name(&self) -> &str {
        &self.name
    }

    async fn report(&mut self) -> Result<DeviceReport, Error> {
        let host = self.api.read_interface_data().map_err(|e| Error::Kernel {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(report_from_host(&host))
    }

    async fn apply(&mut self, op: &Op, previous: Option<&PeerConfig>) -> Result<(), Error> {
        let result = match op {
            Op::RemovePeer(key) => self.api.remove_peer(&Key::new(*key.as_bytes())),
            Op::UpsertPeer(config) => self.api.configure_peer(&peer_from_config(config)),
            // The kernel moves allowed IPs to the peer configured last, so adding the new key
            // first keeps the routes served; then the old peer goes.
            Op::ReplaceKey { old, config } => self
                .api
                .configure_peer(&peer_from_config(config))
                .and_then(|()| self.api.remove_peer(&Key::new(*old.as_bytes()))),
        };
        result.map_err(|e| Error::Kernel {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        self.netlink
            .route_peer(&self.name, self.index, op, previous)
            .await
    }

    async fn stage_key(&mut self, _key: &PrivateKey) -> Result<(), Error> {
        Err(self.unsupported("staging a second private key"))
    }

    async fn flip_private_key(&mut self, key: &PrivateKey) -> Result<(), Error> {
        genl::set_private_key(&self.name, key.expose_bytes()).map_err(|e| Error::Kernel {
            name: self.name.clone(),
            reason: format!("cannot set the private key: {e}"),
        })
    }

    async fn promote_key(&mut self) -> Result<(), Error> {
        Err(self.unsupported("promoting a staged private key"))
    }

    async fn drop_previous_key(&mut self) -> Result<(), Error> {
        Err(self.unsupported("dropping a previous private key"))
    }

    async fn accept_peer_next_key(
        &mut self,
        _current: &PublicKey,
        _next: &PublicKey,
    ) -> Result<(), Error> {
        Err(self.unsupported("accepting a peer's next key"))
    }

    async fn complete_peer_key(&mut self, _next: &PublicKey) -> Result<(), Error> {
        Err(self.unsupported("completing a peer's key rotation"))
    }

    async fn forget_peer_next_key(&mut self, _current: &PublicKey) -> Result<(), Error> {
        Err(self.unsupported("forgetting a peer's next key"))
    }

    /// Deletes the link over our own netlink adapter. `defguard_wireguard_rs`'s
    /// `remove_interface` first clears DNS settings through systemd-resolved or
    /// `resolvconf` and, where neither exists (a container), fails before deleting anything;
    /// the gateway never sets DNS on the interface, so there is nothing of that to undo.
    async fn shutdown(self) -> Result<(), Error> {
        self.netlink.delete_link(&self.name, self.index).await
    }
}

/// Converts our peer configuration to defguard's.
pub fn peer_from_config(config: &PeerConfig) -> Peer {
    let mut peer = Peer::new(Key::new(*config.public_key.as_bytes()));
    // All zeros means "no preshared key"; always sending one clears a key removed from the
    // declaration when the peer is updated in place.
    peer.preshared_key = Some(Key::new(
        config
            .preshared_key
            .as_ref()
            .map_or([0; 32], |psk| *psk.as_bytes()),
    ));
    peer.endpoint = config.endpoint;
    peer.persistent_keepalive_interval = Some(config.persistent_keepalive).filter(|k| *k != 0);
    peer.allowed_ips = config
        .allowed_ips
        .iter()
        .map(|net| IpAddrMask::new(net.network(), net.prefix_len()))
        .collect();
    peer
}

/// Converts defguard's host dump to our report, ordered by public key.
pub fn report_from_host(host: &Host) -> DeviceReport {
    let mut peers: Vec<PeerReport> = host
        .peers
        .values()
        .map(|peer| PeerReport {
            public_key: PublicKey::from_bytes(peer.public_key.as_array()),
            endpoint: peer.endpoint,
            allowed_ips: peer
                .allowed_ips
                .iter()
                .filter_map(|m| IpNet::new(m.address, m.cidr).ok())
                .collect(),
            persistent_keepalive: peer.persistent_keepalive_interval.unwrap_or(0),
            last_handshake: peer
                .last_handshake
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .filter(|d| !d.is_zero()),
            rx_bytes: peer.rx_bytes,
            tx_bytes: peer.tx_bytes,
        })
        .collect();
    peers.sort_by_key(|p| p.public_key);
    DeviceReport {
        listen_port: Some(host.listen_port),
        peers,
    }
}

#[cfg(test)]
mod tests;
