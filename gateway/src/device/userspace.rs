//! The `userspace` backend: the gateway's own WireGuard device ([`super::native`], the
//! native data plane) running in this process over a TUN device. The gateway drives it
//! through its typed handle ([`DeviceHandle`]) and serves the standard socket
//! `/var/run/wireguard/<name>.sock` as an adapter over the same handle, so `wg show` works
//! against it. Peers are updated in place, keeping their sessions.

use std::path::PathBuf;

use kms_client::PrivateKey;

use super::native::NativeHandle;
use super::native::handle::{self, DeviceHandle};
use super::netlink::Netlink;
use super::ownership::{self, Owner};
use super::uapi_server::Server;
use super::{Device, DropReason, Error, InterfaceSettings, uapi_client};
use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::DeviceReport;

/// A running userspace WireGuard interface.
pub struct UserspaceDevice {
    name: String,
    index: u32,
    socket: PathBuf,
    netlink: Netlink,
    device: DeviceHandle,
    server: Option<Server>,
    native: Option<NativeHandle>,
}

impl std::fmt::Debug for UserspaceDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceDevice")
            .field("name", &self.name)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl UserspaceDevice {
    /// Creates the interface, marks it as the gateway's, sets key and port, then MTU, address
    /// and link up. A stale socket or interface left by a crashed run is removed first; a
    /// live one, or one the gateway did not make, is an error ([`ownership`]). On failure
    /// nothing is left behind.
    ///
    /// # Errors
    /// [`Error::InUse`], [`Error::Foreign`], [`Error::NotSocket`], [`Error::PortInUse`],
    /// [`Error::Create`] and netlink failures.
    pub async fn create(settings: &InterfaceSettings, key: &PrivateKey) -> Result<Self, Error> {
        let name = settings.name.clone();
        let socket = uapi_client::socket_path(&name);
        let netlink = Netlink::open().map_err(|e| Error::Create {
            name: name.clone(),
            reason: format!("cannot open netlink: {e}"),
        })?;
        ownership::clear_stale(&netlink, &name, Owner::USERSPACE, Some(&socket)).await?;

        let (create_name, port, mtu) = (name.clone(), settings.listen_port, settings.mtu);
        let native =
            tokio::task::spawn_blocking(move || NativeHandle::start(&create_name, port, mtu))
                .await
                .map_err(|e| Error::Create {
                    name: name.clone(),
                    reason: format!("device thread failed: {e}"),
                })?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::AddrInUse => Error::PortInUse { port },
                    _ => Error::Create {
                        name: name.clone(),
                        reason: e.to_string(),
                    },
                })?;
        let mut device = Self {
            name: name.clone(),
            index: 0,
            socket,
            netlink,
            device: native.device().clone(),
            server: None,
            native: Some(native),
        };
        match device.bring_up(settings, key).await {
            Ok(()) => Ok(device),
            Err(e) => {
                if let Err(cleanup) = device.teardown().await {
                    tracing::warn!(interface = %name, error = %cleanup, "cleanup after failed start-up failed");
                }
                Err(e)
            }
        }
    }

    /// Returns the typed handle on the device (for what the [`Device`] trait does not cover:
    /// its keys, the full report).
    pub fn handle(&self) -> &DeviceHandle {
        &self.device
    }
}

impl UserspaceDevice {
    async fn bring_up(
        &mut self,
        settings: &InterfaceSettings,
        key: &PrivateKey,
    ) -> Result<(), Error> {
        // Marked first, so a later run recognises the interface as the gateway's.
        self.index = self.netlink.index(&self.name).await?.ok_or_else(|| {
            self.create_error("the TUN device vanished after creation".to_owned())
        })?;
        self.netlink
            .set_alias(&self.name, self.index, ownership::MARKER_USERSPACE)
            .await?;
        self.device
            .set_listen_port(settings.listen_port)
            .map_err(|source| self.native_error(source))?;
        self.device.set_private_key(key);
        self.netlink
            .configure(&self.name, self.index, settings.mtu, settings.address)
            .await?;
        let server = Server::start(&self.socket, self.device.clone()).map_err(|e| {
            self.create_error(format!(
                "cannot serve the UAPI socket {}: {e}",
                self.socket.display()
            ))
        })?;
        self.server = Some(server);
        Ok(())
    }

    fn native_error(&self, source: handle::Error) -> Error {
        Error::Native {
            name: self.name.clone(),
            source,
        }
    }

    fn create_error(&self, reason: String) -> Error {
        Error::Create {
            name: self.name.clone(),
            reason,
        }
    }

    async fn teardown(&mut self) -> Result<(), Error> {
        drop(self.server.take());
        if let Some(native) = self.native.take() {
            // The threads stop; deleting the link wakes the one blocked reading the TUN.
            drop(native);
        }
        let _ = std::fs::remove_file(&self.socket);
        if let Some(index) = self.netlink.index(&self.name).await? {
            self.netlink.delete_link(&self.name, index).await?;
        }
        Ok(())
    }
}

impl Device for UserspaceDevice {
    fn name(&self) -> &str {
        &self.name
    }

    async fn report(&mut self) -> Result<DeviceReport, Error> {
        Ok(self.device.report().device)
    }

    fn dropped_packets(&self) -> Vec<(DropReason, u64)> {
        let counters = self.device.counters();
        DropReason::ALL
            .into_iter()
            .map(|reason| {
                let count = match reason {
                    DropReason::Invalid => counters.invalid,
                    DropReason::UnknownPeer => counters.unknown_peer,
                    DropReason::NoRoute => counters.no_route,
                    DropReason::NoEndpoint => counters.no_endpoint,
                    DropReason::BadSource => counters.bad_source,
                    DropReason::KeyExhausted => counters.key_exhausted,
                };
                (reason, count)
            })
            .collect()
    }

    async fn apply(&mut self, op: &Op, previous: Option<&PeerConfig>) -> Result<(), Error> {
        // Cryptokey routing changes first, in one step under the core's lock (a replaced key
        // keeps its routing entry); the kernel routes via the interface follow.
        self.device
            .apply(op)
            .map_err(|source| self.native_error(source))?;
        self.netlink
            .route_peer(&self.name, self.index, op, previous)
            .await
    }

    async fn stage_key(&mut self, key: &PrivateKey) -> Result<(), Error> {
        self.device
            .stage_key(key)
            .map_err(|source| self.native_error(source))
    }

    async fn promote_key(&mut self) -> Result<(), Error> {
        self.device
            .promote_staged()
            .map_err(|source| self.native_error(source))
    }

    async fn drop_previous_key(&mut self) -> Result<(), Error> {
        self.device
            .drop_previous()
            .map_err(|source| self.native_error(source))
    }

    async fn accept_peer_next_key(
        &mut self,
        current: &PublicKey,
        next: &PublicKey,
    ) -> Result<(), Error> {
        self.device
            .accept_peer_next_key(current, next)
            .map_err(|source| self.native_error(source))
    }

    async fn complete_peer_key(&mut self, next: &PublicKey) -> Result<(), Error> {
        self.device
            .complete_peer_key(next)
            .map_err(|source| self.native_error(source))
    }

    async fn forget_peer_next_key(&mut self, current: &PublicKey) -> Result<(), Error> {
        self.device
            .forget_peer_next_key(current)
            .map_err(|source| self.native_error(source))
    }

    async fn shutdown(mut self) -> Result<(), Error> {
        self.teardown().await
    }
}
