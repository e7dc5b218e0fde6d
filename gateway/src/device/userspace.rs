//! The `userspace` backend: boringtun's device running in this process over a TUN device.
//! The gateway talks to it over a private UAPI channel and serves the standard socket
//! `/var/run/wireguard/<name>.sock` itself, so `wg show` works against it.
//!
//! boringtun asserts when a `set` names a peer it already has, so a changed peer is removed
//! and added again in two transactions: its session restarts, every other peer is untouched.
//!
//! The same adapter runs the `native` backend ([`super::native`]): the same private channel
//! and public socket, but peers are updated in place, keeping their sessions.

use std::os::fd::IntoRawFd as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use defguard_boringtun::device::{DeviceConfig, DeviceHandle};
use kms_client::PrivateKey;
use zeroize::Zeroizing;

use super::native::NativeHandle;
use super::netlink::Netlink;
use super::uapi_client::Channel;
use super::uapi_server::Server;
use super::{Device, DropReason, Error, InterfaceSettings, uapi_client};
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::{self, DeviceReport, UpsertStyle};

const EADDRINUSE: i64 = 98;

/// A running userspace WireGuard interface.
pub struct UserspaceDevice {
    name: String,
    index: u32,
    socket: PathBuf,
    netlink: Netlink,
    channel: Arc<Channel>,
    server: Option<Server>,
    handle: Option<Engine>,
    style: UpsertStyle,
}

/// The data plane behind the channel.
enum Engine {
    Boringtun(DeviceHandle),
    Native(NativeHandle),
}

/// Which data plane [`UserspaceDevice::create_with`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// boringtun's device (`backend = "userspace"`).
    Boringtun,
    /// Our own device on `boringtun::noise` (`backend = "native"`).
    Native,
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
    /// Creates the interface, sets key and port, then MTU, address and link up. A stale
    /// socket or interface left by a crashed run is removed first; a live one is an error.
    /// On failure nothing is left behind.
    ///
    /// # Errors
    /// [`Error::InUse`], [`Error::PortInUse`], [`Error::Create`] and netlink failures.
    pub async fn create(settings: &InterfaceSettings, key: &PrivateKey) -> Result<Self, Error> {
        Self::create_with(settings, key, Plane::Boringtun).await
    }

    /// Like [`Self::create`], with the data plane chosen.
    ///
    /// # Errors
    /// As [`Self::create`].
    pub async fn create_with(
        settings: &InterfaceSettings,
        key: &PrivateKey,
        plane: Plane,
    ) -> Result<Self, Error> {
        let name = settings.name.clone();
        let socket = uapi_client::socket_path(&name);
        let netlink = Netlink::open().map_err(|e| Error::Create {
            name: name.clone(),
            reason: format!("cannot open netlink: {e}"),
        })?;
        recover_stale(&netlink, &name, &socket).await?;

        let (channel, device_end) = Channel::pair_stream().map_err(|e| Error::Create {
            name: name.clone(),
            reason: format!("cannot create the UAPI channel: {e}"),
        })?;
        let (handle, style) = match plane {
            Plane::Boringtun => (
                Engine::Boringtun(start_boringtun(&name, device_end).await?),
                UpsertStyle::RemoveThenAdd,
            ),
            Plane::Native => {
                let (create_name, port) = (name.clone(), settings.listen_port);
                let handle = tokio::task::spawn_blocking(move || {
                    NativeHandle::start(&create_name, port, device_end)
                })
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
                (Engine::Native(handle), UpsertStyle::InPlace)
            }
        };
        let mut device = Self {
            name: name.clone(),
            index: 0,
            socket,
            netlink,
            channel: Arc::new(channel),
            server: None,
            handle: Some(handle),
            style,
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
}

/// Starts boringtun's device with `device_end` as its UAPI descriptor.
async fn start_boringtun(name: &str, device_end: UnixStream) -> Result<DeviceHandle, Error> {
    {
        let name = name.to_owned();
        let device_fd = device_end.into_raw_fd();
        // One event thread: several would reorder a flow's packets across threads, which TCP
        // reads as loss.
        let config = DeviceConfig {
            n_threads: 1,
            use_connected_socket: true,
            use_multi_queue: false,
            uapi_fd: device_fd,
        };
        let create_name = name.clone();
        tokio::task::spawn_blocking(move || DeviceHandle::new(&create_name, config))
            .await
            .map_err(|e| Error::Create {
                name: name.clone(),
                reason: format!("device thread failed: {e}"),
            })?
            .map_err(|e| Error::Create {
                name: name.clone(),
                reason: e.to_string(),
            })
    }
}

impl UserspaceDevice {
    async fn bring_up(
        &mut self,
        settings: &InterfaceSettings,
        key: &PrivateKey,
    ) -> Result<(), Error> {
        let mut body = Zeroizing::new(String::with_capacity(128));
        body.push_str("private_key=");
        body.push_str(&key.to_hex());
        body.push('\n');
        body.push_str(&format!("listen_port={}\n", settings.listen_port));
        let channel = self.channel.clone();
        let result = tokio::task::spawn_blocking(move || channel.set(&body))
            .await
            .map_err(|e| self.create_error(format!("UAPI thread failed: {e}")))?;
        match result {
            Ok(()) => {}
            Err(e) if e.errno().map(i64::abs) == Some(EADDRINUSE) => {
                return Err(Error::PortInUse {
                    port: settings.listen_port,
                });
            }
            Err(source) => {
                return Err(Error::Uapi {
                    name: self.name.clone(),
                    source,
                });
            }
        }
        self.index = self.netlink.index(&self.name).await?.ok_or_else(|| {
            self.create_error("the TUN device vanished after creation".to_owned())
        })?;
        self.netlink
            .configure(&self.name, self.index, settings.mtu, settings.address)
            .await?;
        let in_place = self.style == UpsertStyle::InPlace;
        let server = Server::start(&self.socket, self.channel.clone(), in_place).map_err(|e| {
            self.create_error(format!(
                "cannot serve the UAPI socket {}: {e}",
                self.socket.display()
            ))
        })?;
        self.server = Some(server);
        Ok(())
    }

    fn create_error(&self, reason: String) -> Error {
        Error::Create {
            name: self.name.clone(),
            reason,
        }
    }

    async fn teardown(&mut self) -> Result<(), Error> {
        drop(self.server.take());
        match self.handle.take() {
            Some(Engine::Boringtun(handle)) => {
                // Dropping the handle stops the device threads and removes the socket; the
                // TUN device disappears when its last descriptor closes.
                tokio::task::spawn_blocking(move || drop(handle))
                    .await
                    .map_err(|e| self.create_error(format!("device thread failed: {e}")))?;
            }
            Some(Engine::Native(handle)) => {
                // The threads stop; deleting the link wakes the one blocked reading the TUN.
                drop(handle);
                let _ = std::fs::remove_file(&self.socket);
                if let Some(index) = self.netlink.index(&self.name).await? {
                    self.netlink.delete_link(&self.name, index).await?;
                }
                return Ok(());
            }
            None => {}
        }
        let _ = std::fs::remove_file(&self.socket);
        for _ in 0..50 {
            if self.netlink.index(&self.name).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(index) = self.netlink.index(&self.name).await? {
            self.netlink.delete_link(&self.name, index).await?;
        }
        Ok(())
    }

    async fn uapi_set(&self, body: Zeroizing<String>) -> Result<(), Error> {
        let channel = self.channel.clone();
        tokio::task::spawn_blocking(move || channel.set(&body))
            .await
            .map_err(|e| self.create_error(format!("UAPI thread failed: {e}")))?
            .map_err(|source| Error::Uapi {
                name: self.name.clone(),
                source,
            })
    }
}

impl Device for UserspaceDevice {
    fn name(&self) -> &str {
        &self.name
    }

    async fn report(&mut self) -> Result<DeviceReport, Error> {
        let channel = self.channel.clone();
        tokio::task::spawn_blocking(move || channel.get())
            .await
            .map_err(|e| self.create_error(format!("UAPI thread failed: {e}")))?
            .map_err(|source| Error::Uapi {
                name: self.name.clone(),
                source,
            })
    }

    fn dropped_packets(&self) -> Vec<(DropReason, u64)> {
        let Some(Engine::Native(handle)) = &self.handle else {
            return Vec::new();
        };
        let counters = handle.counters();
        DropReason::ALL
            .into_iter()
            .map(|reason| {
                let count = match reason {
                    DropReason::Invalid => counters.invalid,
                    DropReason::UnknownPeer => counters.unknown_peer,
                    DropReason::NoRoute => counters.no_route,
                    DropReason::NoEndpoint => counters.no_endpoint,
                    DropReason::BadSource => counters.bad_source,
                };
                (reason, count)
            })
            .collect()
    }

    async fn apply(&mut self, op: &Op, previous: Option<&PeerConfig>) -> Result<(), Error> {
        for body in uapi::transactions(op, previous.is_some(), self.style) {
            self.uapi_set(body).await?;
        }
        self.netlink
            .route_peer(&self.name, self.index, op, previous)
            .await
    }

    async fn shutdown(mut self) -> Result<(), Error> {
        self.teardown().await
    }
}

/// Removes what a crashed run left: a socket nobody answers on, and an interface of our
/// name without a live socket. A live socket means another process serves the interface.
async fn recover_stale(
    netlink: &Netlink,
    name: &str,
    socket: &std::path::Path,
) -> Result<(), Error> {
    if socket.exists() {
        if uapi_client::is_live(socket) {
            return Err(Error::InUse {
                name: name.to_owned(),
                socket: socket.display().to_string(),
            });
        }
        tracing::warn!(interface = %name, socket = %socket.display(), "removing stale UAPI socket left by an earlier run");
        let _ = std::fs::remove_file(socket);
    }
    if let Some(index) = netlink.index(name).await? {
        tracing::warn!(interface = %name, "removing stale interface left by an earlier run");
        netlink.delete_link(name, index).await?;
    }
    Ok(())
}
