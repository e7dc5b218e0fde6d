//! Start-up, the main loop and shutdown.
//!
//! Every check that can fail runs before anything is created (key, peers directory, UDP
//! port, HTTP listeners, admin token, admin socket), so a failed start leaves no interface and
//! no socket behind.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::admin::{self, SocketGuard, Token};
use crate::config::{Backend, Config, PeersConfig};
use crate::core::health::{Liveness, Readiness};
use crate::core::key::PublicKey;
use crate::device::kernel::KernelDevice;
use crate::device::userspace::UserspaceDevice;
use crate::device::{Device, InterfaceSettings};
use crate::driver::{Driver, INTERVAL, Outputs};
use crate::http::{self, AppState};
use crate::keys;
use crate::metrics::Metrics;
use crate::source::directory::DirectorySource;
use crate::status::{GatewayInfo, Identity, StatusBoard};

/// Runs the gateway until SIGTERM or SIGINT.
///
/// # Errors
/// A start-up check failed, or the device could not be created.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;

    let metrics = Metrics::new().context("cannot register metrics")?;
    let key_source = keys::prepare(&config.key, &metrics)?;
    let PeersConfig::Directory { path: peers_path } = &config.peers;
    if !peers_path.is_dir() {
        bail!("peers.path {} is not a directory", peers_path.display());
    }
    check_udp_port(config.interface.listen_port)?;
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen {} cannot be bound", config.http.listen))?;
    let admin_tcp = match &config.http.admin_tcp {
        None => None,
        Some(tcp) => {
            let token = Token::load(&tcp.token_file)?;
            let listener = TcpListener::bind(tcp.listen)
                .await
                .with_context(|| format!("http.admin_listen {} cannot be bound", tcp.listen))?;
            Some((listener, token))
        }
    };
    let (admin_listener, admin_guard) = admin::bind_socket(&config.http.admin_socket)?;
    if let Some(window) = config.liveness.receive_window {
        tracing::warn!(
            window_seconds = window.as_secs(),
            "test-only setting: a peer also needs traffic within the window to count as connected"
        );
    }

    // Health and metrics answer while the key is fetched: /readyz says what is missing.
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let state = AppState {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(async move {
        if let Err(e) = http::serve(listener, state).await {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    });
    let loaded = tokio::select! {
        loaded = keys::load(&key_source) => loaded?,
        _ = sigterm.recv() => bail!("stopped by SIGTERM while loading the private key"),
        _ = sigint.recv() => bail!("stopped by SIGINT while loading the private key"),
    };
    let public_key = PublicKey::from_bytes(loaded.key.public_key());
    tracing::info!(
        public_key = %public_key,
        origin = loaded.origin.as_str(),
        version = loaded.version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
        "private key loaded"
    );
    metrics.set_key(loaded.origin, loaded.created_at);
    if let Ok(mut r) = readiness.write() {
        r.key_loaded = true;
    }

    // The admin status names the key, so its servers start once the key is known; the socket
    // already exists and queues early clients.
    let status = StatusBoard::new(identity(&config, &public_key, loaded.created_at));
    let board = status.clone();
    tokio::spawn(async move {
        if let Err(e) = admin::serve_unix(admin_listener, board).await {
            tracing::warn!(error = %e, "admin socket server stopped");
        }
    });
    if let Some((listener, token)) = admin_tcp {
        let board = status.clone();
        tokio::spawn(async move {
            if let Err(e) = admin::serve_tcp(listener, board, token).await {
                tracing::warn!(error = %e, "admin TCP server stopped");
            }
        });
    }

    let wiring = Wiring {
        settings: config.interface.clone(),
        source: DirectorySource::new(peers_path.clone()),
        public_key,
        own_address: config.tunnel_address(),
        liveness: config.liveness,
        outputs: Outputs {
            metrics,
            readiness,
            status,
        },
        admin_guard,
    };
    // The key is dropped (and wiped) as soon as the device holds it.
    match config.backend {
        Backend::Userspace => {
            let device = UserspaceDevice::create(&config.interface, &loaded.key).await;
            drop(loaded);
            wiring.serve(device?, &mut sigterm, &mut sigint).await
        }
        Backend::Kernel => {
            let device = KernelDevice::create(&config.interface, &loaded.key).await;
            drop(loaded);
            wiring.serve(device?, &mut sigterm, &mut sigint).await
        }
    }
}

/// What the main loop needs besides the device.
struct Wiring {
    settings: InterfaceSettings,
    source: DirectorySource,
    public_key: PublicKey,
    own_address: std::net::IpAddr,
    liveness: Liveness,
    outputs: Outputs,
    /// Removes the admin socket when the gateway stops (or fails to start).
    admin_guard: SocketGuard,
}

impl Wiring {
    /// Runs the driver on `device` until a signal, then removes the interface.
    async fn serve<D: Device>(
        self,
        device: D,
        sigterm: &mut Signal,
        sigint: &mut Signal,
    ) -> anyhow::Result<()> {
        let settings = self.settings;
        if let Ok(mut r) = self.outputs.readiness.write() {
            r.device_up = true;
        }
        tracing::info!(
            interface = %settings.name,
            listen_port = settings.listen_port,
            address = %settings.address,
            mtu = settings.mtu,
            "interface up"
        );
        let mut driver = Driver::new(
            device,
            self.source,
            self.public_key,
            self.own_address,
            self.liveness,
            self.outputs,
        );
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                _ = ticker.tick() => driver.tick(crate::clock::now()).await,
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
            }
        };
        tracing::info!(signal = reason, "shutting down");
        let device = driver.into_device();
        let name = device.name().to_owned();
        device
            .shutdown()
            .await
            .with_context(|| format!("cannot remove interface {name}"))?;
        tracing::info!(interface = %name, "interface removed");
        drop(self.admin_guard);
        Ok(())
    }
}

/// What the admin status says about this gateway that never changes while it runs.
fn identity(
    config: &Config,
    public_key: &PublicKey,
    key_created: Option<std::time::SystemTime>,
) -> Identity {
    Identity {
        gateway: GatewayInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: config.cluster_name.clone(),
            backend: match config.backend {
                Backend::Userspace => "userspace",
                Backend::Kernel => "kernel",
            }
            .to_owned(),
        },
        interface: config.interface.name.clone(),
        public_key: public_key.to_string(),
        listen_port: config.interface.listen_port,
        address: config.interface.address.to_string(),
        key_created,
    }
}

/// Fails with a clear message when the UDP port is taken, before the device binds it.
fn check_udp_port(port: u16) -> anyhow::Result<()> {
    let addrs = [
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    ];
    for addr in addrs {
        // Each probe socket is dropped before the next bind: a dual-stack IPv6 bind would
        // otherwise collide with our own IPv4 probe.
        if let Err(e) = UdpSocket::bind(addr)
            && e.kind() == std::io::ErrorKind::AddrInUse
        {
            bail!("interface.listen_port {port} is already in use");
        }
    }
    Ok(())
}
