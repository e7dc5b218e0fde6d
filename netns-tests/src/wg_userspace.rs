//! Userspace WireGuard implementations configured with `wg` and `ip`: `wireguard-go`, the
//! reference peer for interop tests and for checking the harness itself without our gateway,
//! and `boringtun-cli`, which the benchmark also measures.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tempfile::TempDir;

use crate::gateway::socket_path;
use crate::peer::PeerSpec;
use crate::process::Proc;
use crate::topology::{Cluster, LISTEN_PORT, TUNNEL_PREFIX};
use crate::uapi::{WgDump, wg_dump};
use crate::wait::eventually;

/// How to run one userspace WireGuard implementation in the foreground: its command line
/// before the interface name, and its environment. It must create the UAPI socket
/// `/var/run/wireguard/<iface>.sock` that `wg` talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgProgram {
    name: String,
    argv: Vec<String>,
    envs: Vec<(String, String)>,
}

impl WgProgram {
    /// `wireguard-go <iface>` from the `PATH`, kept in the foreground by
    /// `WG_PROCESS_FOREGROUND=1`.
    pub fn wireguard_go() -> Self {
        Self {
            name: "wireguard-go".to_owned(),
            argv: vec!["wireguard-go".to_owned()],
            envs: vec![("WG_PROCESS_FOREGROUND".to_owned(), "1".to_owned())],
        }
    }

    /// `<path> --foreground --disable-drop-privileges <iface>`: boringtun's command-line
    /// device, with its default thread count.
    pub fn boringtun_cli(path: &Path) -> Self {
        Self {
            name: "boringtun-cli".to_owned(),
            argv: vec![
                path.to_string_lossy().into_owned(),
                "--foreground".to_owned(),
                "--disable-drop-privileges".to_owned(),
            ],
            envs: Vec::new(),
        }
    }

    /// Returns this program with `key=value` added to its environment (e.g. wireguard-go's
    /// `LOG_LEVEL=verbose`).
    #[must_use]
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Returns the implementation's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A userspace WireGuard device (see [`WgProgram`]) in a cluster's gateway namespace, killed
/// on drop.
#[derive(Debug)]
pub struct WgUserspace<'c> {
    cluster: &'c Cluster,
    program: WgProgram,
    proc: Proc,
    _dir: TempDir,
}

impl<'c> WgUserspace<'c> {
    /// Starts `wireguard-go` for the cluster; see [`WgUserspace::start_with`].
    ///
    /// # Errors
    /// As [`WgUserspace::start_with`].
    pub fn start(cluster: &'c Cluster, peers: &[PeerSpec]) -> Result<Self> {
        Self::start_with(&WgProgram::wireguard_go(), cluster, peers)
    }

    /// Starts `program` on `<cluster.iface>` in the cluster's gateway namespace and configures
    /// it like our gateway would be: the cluster's key, port 51820, `peers`, the tunnel
    /// address, MTU 1420, and a route for every allowed IP outside the tunnel network.
    ///
    /// # Errors
    /// Fails when the program does not come up or any `wg`/`ip` command fails.
    pub fn start_with(
        program: &WgProgram,
        cluster: &'c Cluster,
        peers: &[PeerSpec],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ztgw-wg-{}-", cluster.name))
            .tempdir()
            .context("failed to create a key directory")?;
        let key_path = dir.path().join("private.key");
        std::fs::write(&key_path, cluster.key.to_base64().as_str())
            .context("failed to write the private key")?;
        let mut argv: Vec<&str> = program.argv.iter().map(String::as_str).collect();
        argv.push(&cluster.iface);
        let envs: Vec<(&str, &str)> = program
            .envs
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let proc = cluster.gw.spawn(&argv, &envs)?;
        // From here on, dropping `device` on an error also kills it and removes its socket.
        let mut device = Self {
            cluster,
            program: program.clone(),
            proc,
            _dir: dir,
        };
        device.configure(&key_path, peers)?;
        Ok(device)
    }

    /// Returns the process id of the device.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Returns the device state (`wg show <iface> dump`).
    ///
    /// # Errors
    /// Fails when `wg` cannot read the device.
    pub fn dump(&self) -> Result<WgDump> {
        wg_dump(&self.cluster.gw, &self.cluster.iface)
    }

    /// Returns what the device has logged so far.
    pub fn log(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }
}

impl WgUserspace<'_> {
    fn configure(&mut self, key_path: &Path, peers: &[PeerSpec]) -> Result<()> {
        let (gw, iface) = (&self.cluster.gw, self.cluster.iface.as_str());
        let socket = socket_path(iface);
        let proc = &mut self.proc;
        eventually(Duration::from_secs(5), || {
            if let Some(status) = proc.try_status()? {
                bail!("{} exited ({status}): {}", self.program.name, proc.stderr());
            }
            if !socket.exists() {
                bail!("{} does not exist yet", socket.display());
            }
            Ok(())
        })?;

        let mut set = vec![
            "wg".to_owned(),
            "set".to_owned(),
            iface.to_owned(),
            "private-key".to_owned(),
            key_path.to_string_lossy().into_owned(),
            "listen-port".to_owned(),
            LISTEN_PORT.to_string(),
        ];
        for peer in peers {
            set.extend(["peer".to_owned(), peer.public_key.clone()]);
            if let Some(endpoint) = &peer.endpoint {
                set.extend(["endpoint".to_owned(), endpoint.clone()]);
            }
            set.extend(["allowed-ips".to_owned(), peer.allowed_ips.join(",")]);
            if let Some(keepalive) = peer.persistent_keepalive {
                set.extend(["persistent-keepalive".to_owned(), keepalive.to_string()]);
            }
        }
        let set: Vec<&str> = set.iter().map(String::as_str).collect();
        gw.run(&set)?;

        gw.ip(&["addr", "add", &self.cluster.tunnel_address(), "dev", iface])?;
        gw.ip(&["link", "set", iface, "mtu", "1420", "up"])?;
        let tunnel = (self.cluster.tunnel_ip(), TUNNEL_PREFIX);
        for cidr in peers.iter().flat_map(|peer| &peer.allowed_ips) {
            if !is_within(cidr, tunnel)? {
                gw.ip(&["route", "add", cidr, "dev", iface])?;
            }
        }
        Ok(())
    }
}

impl Drop for WgUserspace<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} {} ({}) log -----\n{}----- end -----",
                self.program.name,
                self.cluster.name,
                self.cluster.iface,
                self.log()
            );
        }
        self.proc.kill();
        let _ = std::fs::remove_file(socket_path(&self.cluster.iface));
    }
}

/// Returns whether IPv4 `cidr` lies inside the network `net/prefix`.
fn is_within(cidr: &str, (net, prefix): (Ipv4Addr, u8)) -> Result<bool> {
    let (addr, len) = cidr
        .split_once('/')
        .with_context(|| format!("{cidr} is not a CIDR"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("bad address in {cidr}"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("bad prefix in {cidr}"))?;
    let mask = |bits: u8| u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    Ok(len >= prefix && (u32::from(addr) & mask(prefix)) == (u32::from(net) & mask(prefix)))
}
