//! Launching our `gateway` binary in a cluster's gateway namespace, with a config directory of
//! its own, and talking to it: peer files, HTTP endpoints, logs, signals.

mod config;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::Signal;
use tempfile::TempDir;

pub use config::GatewayConfig;

use crate::binary::gateway_bin;
use crate::http::http_get;
use crate::netns::Netns;
use crate::peer::PeerSpec;
use crate::process::Proc;
use crate::topology::{Cluster, LISTEN_PORT};
use crate::uapi::{WgDump, wg_dump};
use crate::wait::eventually;

/// Where the gateway listens for HTTP inside its namespace, unless a test changes it.
pub const HTTP_LISTEN: &str = "127.0.0.1:8055";

/// How long [`Gateway::launch`] waits for `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A gateway's config directory, prepared but not started: `private.key` (mode 0600),
/// `peers/`, and a [`GatewayConfig`] that the test may still change.
#[derive(Debug)]
pub struct GatewaySetup<'c> {
    cluster: &'c Cluster,
    netns: &'c Netns,
    dir: TempDir,
    /// The config that [`GatewaySetup::start`] writes to `gateway.toml`.
    pub config: GatewayConfig,
    /// Command-line arguments after `--config`, e.g. hidden test flags.
    pub extra_args: Vec<String>,
    /// The gateway binary to start instead of [`gateway_bin`] (e.g. an earlier build).
    pub binary: Option<std::path::PathBuf>,
}

impl<'c> GatewaySetup<'c> {
    /// Prepares the config directory for `cluster`'s gateway, with the cluster's key and
    /// interface name, the standard addresses, and an empty peers directory.
    ///
    /// # Errors
    /// Fails when the directory or key file cannot be written.
    pub fn new(cluster: &'c Cluster) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ztgw-config-{}-", cluster.name))
            .tempdir()
            .context("failed to create a config directory")?;
        let key_path = dir.path().join("private.key");
        let mut key_file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .context("failed to create private.key")?;
        writeln!(key_file, "{}", cluster.key.to_base64().as_str())
            .context("failed to write private.key")?;
        let peers_path = dir.path().join("peers");
        std::fs::create_dir(&peers_path).context("failed to create peers/")?;
        let config = GatewayConfig {
            iface: cluster.iface.clone(),
            listen_port: LISTEN_PORT,
            address: cluster.tunnel_address(),
            mtu: 1420,
            backend: "userspace".to_owned(),
            cluster: cluster.name.clone(),
            key_path,
            peers_path,
            http_listen: HTTP_LISTEN.to_owned(),
            admin_socket: dir.path().join("admin.sock"),
            key_toml: None,
            admin_listen: None,
            admin_token_file: None,
            peers_toml: None,
            peer_state_path: true,
            audit_toml: None,
        };
        Ok(Self {
            cluster,
            netns: &cluster.gw,
            dir,
            config,
            extra_args: Vec::new(),
            binary: None,
        })
    }

    /// Turns the audit log on: `audit.jsonl` in the config directory, signed by a new key in
    /// `audit.key` (mode 0600), with checkpoints every `interval` (e.g. `"2s"`). Returns the
    /// setup and the audit public key (base64).
    ///
    /// # Errors
    /// Fails when the key cannot be generated or written.
    pub fn with_audit(mut self, interval: &str) -> Result<(Self, String)> {
        let key = ztgw_audit::AuditKey::generate().context("random source failed")?;
        let key_path = self.dir.path().join("audit.key");
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .context("failed to create audit.key")?;
        writeln!(file, "{}", key.to_base64().as_str()).context("failed to write audit.key")?;
        let path = self.dir.path().join("audit.jsonl");
        self.config.audit_toml = Some(format!(
            "path = {}\nkey_path = {}\ncheckpoint_interval = {}",
            serde_json::Value::from(path.to_string_lossy()),
            serde_json::Value::from(key_path.to_string_lossy()),
            serde_json::Value::from(interval),
        ));
        Ok((self, key.public().to_base64()))
    }

    /// Selects the data plane (`interface.backend`: "userspace", "native", "kernel").
    #[must_use]
    pub fn backend(mut self, backend: &str) -> Self {
        backend.clone_into(&mut self.config.backend);
        self
    }

    /// Runs the gateway in `netns` instead of the cluster's gateway namespace (a second
    /// gateway with the same interface, key and lease, whose UDP port is free there).
    #[must_use]
    pub fn run_in(mut self, netns: &'c Netns) -> Self {
        self.netns = netns;
        self
    }

    /// Returns the config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `peers/<cluster name>.yaml` for each cluster, as [`Cluster::peer`] describes it.
    ///
    /// # Errors
    /// Fails when a file cannot be written.
    pub fn with_peers(self, peers: &[&Cluster]) -> Result<Self> {
        for peer in peers {
            write_peer_file(
                &self.config.peers_path,
                &format!("{}.yaml", peer.name),
                &peer.peer().to_yaml(),
            )?;
        }
        Ok(self)
    }

    /// Writes (or replaces, atomically) `peers/<stem>.yaml` with one document.
    ///
    /// # Errors
    /// Fails when the file cannot be written.
    pub fn write_peer(&self, stem: &str, spec: &PeerSpec) -> Result<()> {
        write_peer_file(
            &self.config.peers_path,
            &format!("{stem}.yaml"),
            &spec.to_yaml(),
        )
    }

    /// Writes (or replaces, atomically) `peers/<stem>.yaml` with several documents.
    ///
    /// # Errors
    /// Fails when the file cannot be written.
    pub fn write_peers(&self, stem: &str, specs: &[PeerSpec]) -> Result<()> {
        write_peer_file(
            &self.config.peers_path,
            &format!("{stem}.yaml"),
            &PeerSpec::to_yaml_documents(specs),
        )
    }

    /// Writes `gateway.toml` and starts the gateway in the cluster's gateway namespace. It does
    /// not wait for readiness (see [`Gateway::wait_ready`]).
    ///
    /// # Errors
    /// Fails when the gateway binary is missing or cannot be started.
    pub fn start(self) -> Result<Gateway<'c>> {
        let bin = match self.binary.clone() {
            Some(bin) => bin,
            None => gateway_bin()?,
        };
        let config_path = self.dir.path().join("gateway.toml");
        std::fs::write(&config_path, self.config.to_toml())
            .context("failed to write gateway.toml")?;
        let bin = bin.to_string_lossy();
        let config_arg = config_path.to_string_lossy();
        let mut argv = vec![bin.as_ref(), "--config", config_arg.as_ref()];
        argv.extend(self.extra_args.iter().map(String::as_str));
        let proc = self.netns.spawn(
            &argv,
            &[
                ("RUST_LOG", "info"),
                ("ZTGW_LOG", "info"),
                ("NO_COLOR", "1"),
            ],
        )?;
        Ok(Gateway {
            cluster: self.cluster,
            netns: self.netns,
            dir: self.dir,
            config: self.config,
            proc,
        })
    }
}

/// A running (or exited) gateway process. On drop it is killed, its leftover UAPI socket is
/// removed, and, if the test is failing, its log is printed.
#[derive(Debug)]
pub struct Gateway<'c> {
    cluster: &'c Cluster,
    netns: &'c Netns,
    dir: TempDir,
    config: GatewayConfig,
    proc: Proc,
}

impl<'g> Gateway<'g> {
    /// Prepares a gateway for `cluster`; shorthand for [`GatewaySetup::new`].
    ///
    /// # Errors
    /// See [`GatewaySetup::new`].
    pub fn setup(cluster: &Cluster) -> Result<GatewaySetup<'_>> {
        GatewaySetup::new(cluster)
    }

    /// Starts `cluster`'s gateway with a peer file for each of `peers` and waits (up to
    /// [`READY_TIMEOUT`]) until it is ready.
    ///
    /// # Errors
    /// Fails when it cannot be started or does not become ready (the error holds its log).
    pub fn launch<'c>(cluster: &'c Cluster, peers: &[&Cluster]) -> Result<Gateway<'c>> {
        let mut gateway = GatewaySetup::new(cluster)?.with_peers(peers)?.start()?;
        gateway.wait_ready(READY_TIMEOUT)?;
        Ok(gateway)
    }

    /// Like [`Gateway::launch`], with the data plane chosen (see [`GatewaySetup::backend`]).
    ///
    /// # Errors
    /// As [`Gateway::launch`].
    pub fn launch_with<'c>(
        cluster: &'c Cluster,
        peers: &[&Cluster],
        backend: &str,
    ) -> Result<Gateway<'c>> {
        let mut gateway = GatewaySetup::new(cluster)?
            .backend(backend)
            .with_peers(peers)?
            .start()?;
        gateway.wait_ready(READY_TIMEOUT)?;
        Ok(gateway)
    }

    /// Kills the process (if it still runs) and returns its setup with `extra_args`, to
    /// start the gateway again from the same directory: key files, peers and state.
    ///
    /// # Errors
    /// Fails when a placeholder directory cannot be created.
    pub fn into_setup(mut self, extra_args: Vec<String>) -> Result<GatewaySetup<'g>> {
        self.proc.kill();
        let _ = std::fs::remove_file(self.socket_path());
        let placeholder = tempfile::Builder::new()
            .prefix("ztgw-placeholder-")
            .tempdir()
            .context("failed to create a placeholder directory")?;
        let dir = std::mem::replace(&mut self.dir, placeholder);
        Ok(GatewaySetup {
            cluster: self.cluster,
            netns: self.netns,
            dir,
            config: self.config.clone(),
            extra_args,
            binary: None,
        })
    }

    /// Returns the gateway's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Returns the config the gateway was started with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Returns the config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the WireGuard interface name.
    pub fn iface(&self) -> &str {
        &self.config.iface
    }

    /// Returns the UAPI socket path, `/var/run/wireguard/<iface>.sock`.
    pub fn socket_path(&self) -> PathBuf {
        socket_path(&self.config.iface)
    }

    /// Writes (or replaces, atomically) `peers/<stem>.yaml` with one document.
    ///
    /// # Errors
    /// Fails when the file cannot be written.
    pub fn write_peer(&self, stem: &str, spec: &PeerSpec) -> Result<()> {
        self.write_peer_file(&format!("{stem}.yaml"), &spec.to_yaml())
    }

    /// Writes (or replaces, atomically) `peers/<stem>.yaml` with several documents.
    ///
    /// # Errors
    /// Fails when the file cannot be written.
    pub fn write_peers(&self, stem: &str, specs: &[PeerSpec]) -> Result<()> {
        self.write_peer_file(&format!("{stem}.yaml"), &PeerSpec::to_yaml_documents(specs))
    }

    /// Writes (or replaces, atomically) `peers/<file_name>` with arbitrary text.
    ///
    /// # Errors
    /// Fails when the file cannot be written.
    pub fn write_peer_file(&self, file_name: &str, text: &str) -> Result<()> {
        write_peer_file(&self.config.peers_path, file_name, text)
    }

    /// Removes `peers/<file_name>`.
    ///
    /// # Errors
    /// Fails when the file cannot be removed.
    pub fn remove_peer_file(&self, file_name: &str) -> Result<()> {
        let path = self.config.peers_path.join(file_name);
        std::fs::remove_file(&path).with_context(|| format!("failed to remove {}", path.display()))
    }

    /// Waits until `GET /readyz` answers 200.
    ///
    /// # Errors
    /// Fails when the gateway exits, or is not ready within `timeout` (with its log).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let outcome = eventually(timeout, || {
            if let Some(status) = self.proc.try_status()? {
                return Ok(Some(status));
            }
            let (code, body) = self.http("/readyz")?;
            if code != 200 {
                bail!("/readyz answered {code}: {body}");
            }
            Ok(None)
        });
        match outcome {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "gateway {} exited ({status}) before it was ready; log:\n{}",
                self.cluster.name,
                self.log()
            ),
            Err(error) => Err(error.context(format!(
                "gateway {} not ready; log:\n{}",
                self.cluster.name,
                self.log()
            ))),
        }
    }

    /// Sends `GET <path>` to the gateway's HTTP listener.
    ///
    /// # Errors
    /// Fails when the request fails (not on a non-200 status).
    pub fn http(&self, path: &str) -> Result<(u16, String)> {
        http_get(self.netns, &self.config.http_listen, path)
    }

    /// Returns the `/metrics` text.
    ///
    /// # Errors
    /// Fails when the request fails or does not answer 200.
    pub fn metrics(&self) -> Result<String> {
        let (code, body) = self.http("/metrics")?;
        if code != 200 {
            bail!("/metrics answered {code}: {body}");
        }
        Ok(body)
    }

    /// Returns the device state through its UAPI socket (`wg show <iface> dump`).
    ///
    /// # Errors
    /// Fails when `wg` cannot read the device.
    pub fn dump(&self) -> Result<WgDump> {
        wg_dump(self.netns, &self.config.iface)
    }

    /// Returns everything the gateway has logged so far (stderr, then any stdout).
    pub fn log(&self) -> String {
        let mut log = self.proc.stderr();
        let stdout = self.proc.stdout();
        if !stdout.is_empty() {
            log.push_str("--- stdout ---\n");
            log.push_str(&stdout);
        }
        log
    }

    /// Returns only what the gateway wrote to stderr.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Sends a signal to the gateway.
    ///
    /// # Errors
    /// Fails when the signal cannot be delivered.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        self.proc.signal(signal)
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    ///
    /// # Errors
    /// Fails when it has not exited within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the gateway to exit by itself.
    ///
    /// # Errors
    /// Fails when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.wait_timeout(timeout)
    }
}

impl Drop for Gateway<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- gateway {} ({}) log -----\n{}----- end of gateway {} log -----",
                self.cluster.name,
                self.config.iface,
                self.log(),
                self.cluster.name
            );
        }
        self.proc.kill();
        // A killed gateway cannot remove its socket, and the directory outlives namespaces.
        let _ = std::fs::remove_file(self.socket_path());
    }
}

/// Returns the UAPI socket path of an interface.
pub(crate) fn socket_path(iface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{iface}.sock"))
}

/// Writes a peer file atomically: a temporary name that is not `*.yaml`, then a rename, so the
/// gateway never reads half a file.
fn write_peer_file(peers: &Path, file_name: &str, text: &str) -> Result<()> {
    let path = peers.join(file_name);
    let temporary = peers.join(format!(".{file_name}.tmp"));
    std::fs::write(&temporary, text)
        .with_context(|| format!("failed to write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("failed to rename to {}", path.display()))
}
