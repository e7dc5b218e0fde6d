//! Start-up, the main loop and shutdown.
//!
//! Every check that can fail runs before anything is created (key, peers directory or
//! Kubernetes API configuration, UDP port, HTTP listeners, admin token, admin socket), so a
//! failed start leaves no interface and no socket behind. With the Kubernetes peer source the interface comes up only
//! once this gateway holds the lease (see [`crate::lease`]), and the peers' rotation states
//! are read from their resources' status then, so that a standby sees the holder's last
//! writes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::admin::{self, SocketGuard, Token};
use crate::audit::{self, Audit};
use crate::cluster;
use crate::config::{AuditKeySource, Backend, Config, PeersConfig};
use crate::core::health::{Liveness, Readiness};
use crate::core::key::PublicKey;
use crate::device::kernel::KernelDevice;
use crate::device::userspace::UserspaceDevice;
use crate::device::{Device, InterfaceSettings};
use crate::driver::{Driver, INTERVAL, Outputs};
use crate::http::{self, AppState, Limits};
use crate::keys;
use crate::lease::{self, LeaseEnd, LeaseGuard, LeaseLock};
use crate::metrics::Metrics;
use crate::source::PeerSource;
use crate::source::directory::DirectorySource;
use crate::source::kube::KubeSource;
use crate::status::{GatewayInfo, Identity, StatusBoard};

/// The peer source, prepared at start-up.
enum Peers {
    Directory(DirectorySource),
    Kubernetes {
        client: kube::Client,
        namespace: String,
    },
}

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
    // A file audit key is checked now; one from the KMS is read with the private key below.
    let mut audit_key = match &config.audit {
        Some(audit) if matches!(audit.key, AuditKeySource::File(_)) => {
            Some(audit::load_key(audit, &key_source).await?)
        }
        Some(_) => None,
        None => {
            tracing::warn!(
                "the audit log is off: no [audit] section in the configuration (see docs/audit.md)"
            );
            None
        }
    };
    let peers = match &config.peers {
        PeersConfig::Directory { path } => {
            if !path.is_dir() {
                bail!("peers.path {} is not a directory", path.display());
            }
            Peers::Directory(DirectorySource::new(path.clone()))
        }
        PeersConfig::Kubernetes {
            namespace,
            kubeconfig,
        } => {
            let client = cluster::connect(kubeconfig.as_deref()).await?;
            let namespace = namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            Peers::Kubernetes { client, namespace }
        }
    };
    // A kernel interface left by a crashed run still holds the port until the device
    // replaces it (it is ours: its marker says so); the module itself refuses a port that is
    // really taken.
    if matches!(config.backend, Backend::Userspace) {
        check_udp_port(config.interface.listen_port)?;
    }
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("http.listen {} cannot be bound", config.http.listen))?;
    let admin_tcp = match &config.http.admin_tcp {
        None => None,
        Some(tcp) => {
            let token = Token::load(&tcp.token_file)?;
            if !tcp.listen.ip().is_loopback() {
                // Allowed only by http.admin_allow_plaintext_remote (see the config check).
                tracing::warn!(
                    listen = %tcp.listen,
                    "the admin API listens beyond loopback in plain HTTP \
                     (http.admin_allow_plaintext_remote): its bearer token crosses the network \
                     unencrypted"
                );
            }
            let listener = TcpListener::bind(tcp.listen)
                .await
                .with_context(|| format!("http.admin_listen {} cannot be bound", tcp.listen))?;
            Some((listener, token))
        }
    };
    // With the Kubernetes source the peers' states are in their resources' status, read once
    // this gateway holds the lease (below).
    let file_store = match &peers {
        Peers::Directory(_) => Some(crate::rotate::PeerStore::open(&config.peer_state)?),
        Peers::Kubernetes { .. } => None,
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
    tokio::spawn(http::serve(listener, state));

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
    let audit = match &config.audit {
        None => None,
        Some(audit_config) => {
            let loaded_audit_key = match audit_key.take() {
                Some(key) => key,
                None => audit::load_key(audit_config, &key_source).await?,
            };
            let audit = Audit::open(
                audit_config,
                loaded_audit_key,
                start_details(&config),
                metrics.clone(),
                readiness.clone(),
            )?;
            audit.key_load(
                "wireguard",
                loaded.origin.as_str(),
                loaded.version,
                &public_key.to_string(),
            );
            tokio::spawn(audit.clone().run_checkpoints());
            Some(audit)
        }
    };

    // The admin status names the key, so its servers start once the key is known; the socket
    // already exists and queues early clients.
    let status = StatusBoard::new(identity(&config, &public_key, loaded.created_at));
    let board = status.clone();
    let rotation_slot = admin::RotationSlot::default();
    tokio::spawn(admin::serve_unix(
        admin_listener,
        board,
        audit.clone(),
        rotation_slot.clone(),
        Limits::DEFAULT,
    ));
    if let Some((listener, token)) = admin_tcp {
        let board = status.clone();
        tokio::spawn(admin::serve_tcp(
            listener,
            board,
            token,
            audit.clone(),
            rotation_slot.clone(),
            Limits::DEFAULT,
        ));
    }
    let slots = Some(match &config.key {
        crate::config::KeyConfig::File { path } => {
            crate::rotate::KeySlots::File(kms_client::slots::FileKeySlots::new(path.clone()))
        }
        crate::config::KeyConfig::Kms(kms) => {
            let observed = metrics.clone();
            let store = kms_client::infisical::InfisicalStore::new(kms.store.clone())
                .context("cannot set up the KMS client")?
                .with_observer(Arc::new(move |operation, ok| {
                    observed.observe_kms(operation, ok)
                }));
            crate::rotate::KeySlots::Kms {
                store: Box::new(store),
                name: kms.secret_name.clone(),
            }
        }
    });
    let (rotation_config, cluster, tunnel, control_port, rotation_metrics) = (
        config.rotation.clone(),
        config.cluster_name.clone(),
        config.interface.address,
        config.control.port,
        metrics.clone(),
    );
    let rotation = move |store| RotationSetup {
        slot: rotation_slot,
        store,
        config: rotation_config,
        slots,
        cluster,
        tunnel,
        control_port,
        metrics: rotation_metrics,
    };
    let control = crate::control::Service {
        config: config.control,
        tunnel: config.interface.address,
        identity: crate::control::Identity {
            cluster: config.cluster_name.clone(),
            public_key: public_key.to_string(),
            key_created: loaded.created_at,
        },
        board: status.clone(),
        metrics: metrics.clone(),
        audit: audit.clone(),
        rotation: None,
    };
    let outputs = Outputs {
        metrics,
        readiness,
        status,
        audit: audit.clone(),
    };

    let mut signals = Signals { sigterm, sigint };
    match peers {
        Peers::Directory(source) => {
            let store = file_store.context("the directory source's peer store was opened above")?;
            let wiring = Wiring {
                settings: config.interface.clone(),
                source,
                lease: None,
                public_key,
                own_address: config.tunnel_address(),
                liveness: config.liveness,
                outputs,
                admin_guard,
                control,
                audit,
                rotation: rotation(store),
            };
            wiring.start(config.backend, loaded, &mut signals).await
        }
        Peers::Kubernetes { client, namespace } => {
            tracing::info!(namespace = %namespace, "reading WireGuardPeers from the Kubernetes API");
            // The watch starts at once, so a standby that takes over already knows the peers.
            let source = KubeSource::start(client.clone(), &namespace);
            let mut lock = LeaseLock::new(
                client.clone(),
                &namespace,
                &config.interface.name,
                lease::identity(),
            );
            tokio::select! {
                () = lock.acquire(&outputs.readiness) => {}
                _ = signals.sigterm.recv() => {
                    tracing::info!(signal = "SIGTERM", "stopped while waiting for the lease");
                    if let Some(audit) = &audit {
                        audit.stop("SIGTERM while waiting for the lease");
                    }
                    return Ok(());
                }
                _ = signals.sigint.recv() => {
                    tracing::info!(signal = "SIGINT", "stopped while waiting for the lease");
                    if let Some(audit) = &audit {
                        audit.stop("SIGINT while waiting for the lease");
                    }
                    return Ok(());
                }
            }
            // Read only now: a standby that waited for the lease has not seen the holder's
            // writes.
            let store = match crate::rotate::PeerStore::open_kube(client, &namespace).await {
                Ok(store) => store,
                Err(e) => {
                    lock.release().await;
                    if let Some(audit) = &audit {
                        audit.stop("the peers' rotation states could not be read");
                    }
                    return Err(e).context("cannot read the peers' rotation states");
                }
            };
            let wiring = Wiring {
                settings: config.interface.clone(),
                source,
                lease: Some(LeaseGuard::keep(lock)),
                public_key,
                own_address: config.tunnel_address(),
                liveness: config.liveness,
                outputs,
                admin_guard,
                control,
                audit,
                rotation: rotation(store),
            };
            wiring.start(config.backend, loaded, &mut signals).await
        }
    }
}

/// Closes the audit session when the interface cannot be created; returns the error.
fn stopped<E>(audit: Option<&Audit>, error: E) -> E {
    if let Some(audit) = audit {
        audit.stop("the interface could not be created");
    }
    error
}

/// What the `start` audit record says about this run.
fn start_details(config: &Config) -> serde_json::Map<String, serde_json::Value> {
    audit::details([
        ("version", env!("CARGO_PKG_VERSION").into()),
        ("cluster", config.cluster_name.clone().into()),
        ("interface", config.interface.name.clone().into()),
        ("address", config.interface.address.to_string().into()),
        (
            "backend",
            match config.backend {
                Backend::Userspace => "userspace",
                Backend::Kernel => "kernel",
            }
            .into(),
        ),
    ])
}

/// The signals that stop the gateway.
struct Signals {
    sigterm: Signal,
    sigint: Signal,
}

/// What the main loop needs besides the device.
struct Wiring<S> {
    settings: InterfaceSettings,
    source: S,
    lease: Option<LeaseGuard>,
    public_key: PublicKey,
    own_address: std::net::IpAddr,
    liveness: Liveness,
    outputs: Outputs,
    /// Removes the admin socket when the gateway stops (or fails to start).
    admin_guard: SocketGuard,
    /// The control channel, started once the device is up.
    control: crate::control::Service,
    /// Closes its session with the stop record and checkpoint.
    audit: Option<Audit>,
    /// What key rotation needs once the device is up.
    rotation: RotationSetup,
}

/// What key rotation needs once the device is up.
struct RotationSetup {
    /// Where the admin API finds the rotation service.
    slot: admin::RotationSlot,
    /// The peers' rotation states.
    store: crate::rotate::PeerStore,
    /// `[key] rotation_*`.
    config: crate::config::RotationConfig,
    /// The key store's slots, until the rotation service takes them.
    slots: Option<crate::rotate::KeySlots>,
    cluster: String,
    tunnel: ipnet::IpNet,
    control_port: u16,
    metrics: Metrics,
}

impl<S: PeerSource> Wiring<S> {
    /// Creates the device of `backend`, then serves. The key is dropped (and wiped) as soon as
    /// the device holds it.
    async fn start(
        self,
        backend: Backend,
        loaded: kms_client::LoadedKey,
        signals: &mut Signals,
    ) -> anyhow::Result<()> {
        let audit = self.audit.clone();
        match backend {
            Backend::Userspace => {
                let device = UserspaceDevice::create(&self.settings, &loaded.key).await;
                drop(loaded);
                let device = device.map_err(|e| stopped(audit.as_ref(), e))?;
                let handle = device.handle().clone();
                let mut wiring = self;
                let responder = crate::rotate::Responder::new(
                    wiring.rotation.store.clone(),
                    handle.clone(),
                    wiring.outputs.status.clone(),
                    audit.clone(),
                );
                wiring.control.rotation = Some(responder.clone());
                let engine =
                    wiring.start_rotation(crate::rotate::Plane::Native(handle), Some(responder))?;
                let served = wiring.serve(device, None, signals).await;
                engine.abort();
                served
            }
            Backend::Kernel => {
                let device = KernelDevice::create(&self.settings, &loaded.key).await;
                drop(loaded);
                let device = device.map_err(|e| stopped(audit.as_ref(), e))?;
                // The kernel knows a peer by one key: it cannot take a peer's next key, so it
                // does not serve the rotation messages; it rotates its own key by a flip.
                let (requests, inbox) = tokio::sync::mpsc::channel(4);
                let mut wiring = self;
                let engine = wiring.start_rotation(crate::rotate::Plane::Kernel(requests), None)?;
                let served = wiring.serve(device, Some(inbox), signals).await;
                engine.abort();
                served
            }
        }
    }

    /// Starts this gateway's rotation service on `plane` and hands the admin API its handle.
    fn start_rotation(
        &mut self,
        plane: crate::rotate::Plane,
        responder: Option<crate::rotate::Responder>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let slots = self
            .rotation
            .slots
            .take()
            .context("the key slots were already taken")?;
        let setup = &self.rotation;
        let (control, engine) = crate::rotate::Engine {
            cluster: setup.cluster.clone(),
            tunnel: setup.tunnel,
            control_port: setup.control_port,
            config: setup.config.clone(),
            slots,
            plane,
            store: setup.store.clone(),
            board: self.outputs.status.clone(),
            responder,
            metrics: setup.metrics.clone(),
            audit: self.audit.clone(),
            readiness: self.outputs.readiness.clone(),
        }
        .start();
        let _ = setup.slot.set(control);
        Ok(engine)
    }

    /// Runs the driver on `device` until a signal (or the loss of the lease), then removes the
    /// interface and releases the lease.
    async fn serve<D: Device>(
        mut self,
        device: D,
        mut kernel_requests: Option<tokio::sync::mpsc::Receiver<crate::rotate::KernelRequest>>,
        signals: &mut Signals,
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
        // The control channel binds the tunnel address once the interface carries it, and
        // stops with this function.
        let _control = self.control.start();
        let mut driver = Driver::new(
            device,
            self.source,
            self.public_key,
            self.own_address,
            self.liveness,
            self.outputs,
        )
        .with_peer_store(self.rotation.store.clone());
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease = self.lease.take();
        let stop = loop {
            let lost = async {
                match lease.as_mut() {
                    Some(guard) => guard.lost().await,
                    None => std::future::pending().await,
                }
            };
            let requested = async {
                match kernel_requests.as_mut() {
                    Some(inbox) => inbox.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => driver.tick(crate::clock::now()).await,
                Some(request) = requested => serve_kernel_request(driver.device_mut(), request).await,
                _ = signals.sigterm.recv() => break Stop::Signal("SIGTERM"),
                _ = signals.sigint.recv() => break Stop::Signal("SIGINT"),
                end = lost => break Stop::Lease(end),
            }
        };
        match &stop {
            Stop::Signal(signal) => tracing::info!(signal, "shutting down"),
            Stop::Lease(LeaseEnd::Lost(holder)) => {
                tracing::warn!(holder = %holder, "another gateway holds the lease now; shutting down")
            }
            Stop::Lease(LeaseEnd::SteppedDown(_)) => {
                tracing::warn!(
                    "stepping down: removing the interface before a standby may take over"
                )
            }
        }
        let device = driver.into_device();
        let name = device.name().to_owned();
        let removed = device
            .shutdown()
            .await
            .with_context(|| format!("cannot remove interface {name}"));
        if removed.is_ok() {
            tracing::info!(interface = %name, "interface removed");
        }
        // Released only once the interface is gone, so the next holder never overlaps us.
        if let (Stop::Signal(_), Some(guard)) = (&stop, lease) {
            guard.release().await;
        }
        drop(self.admin_guard);
        if let Some(audit) = &self.audit {
            audit.stop(match &stop {
                Stop::Signal(signal) => signal,
                Stop::Lease(LeaseEnd::Lost(_)) => "lease lost",
                Stop::Lease(LeaseEnd::SteppedDown(_)) => "lease not renewed in time: stepped down",
            });
        }
        removed?;
        match stop {
            Stop::Signal(_) => Ok(()),
            Stop::Lease(LeaseEnd::Lost(holder)) => bail!(
                "stopped: the lease is held by {holder} now, and two gateways must not run one key"
            ),
            Stop::Lease(LeaseEnd::SteppedDown(why)) => bail!(
                "stopped: the lease could not be renewed within {} s ({why}); a standby may take over, and two gateways must not run one key",
                lease::RENEW_DEADLINE.as_secs()
            ),
        }
    }
}

/// Performs a rotation's request on the kernel device (the main loop owns it).
async fn serve_kernel_request<D: Device>(device: &mut D, request: crate::rotate::KernelRequest) {
    match request {
        crate::rotate::KernelRequest::Flip { key, reply } => {
            let flipped = device.flip_private_key(&key).await;
            drop(key);
            let _ = reply.send(flipped.map_err(|e| format!("{:#}", anyhow::Error::from(e))));
        }
        crate::rotate::KernelRequest::Report { reply } => {
            let _ = reply.send(device.report().await.ok());
        }
    }
}

/// Why the main loop ended.
enum Stop {
    Signal(&'static str),
    Lease(LeaseEnd),
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
