//! `wireguard-go` configured with `wg` and `ip`, as the reference WireGuard peer for interop
//! tests and for checking the harness itself without our gateway.

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

/// A `wireguard-go` device in a cluster's gateway namespace, killed on drop.
#[derive(Debug)]
pub struct WgGo<'c> {
    cluster: &'c Cluster,
    proc: Proc,
    _dir: TempDir,
}

impl<'c> WgGo<'c> {
    /// Starts `wireguard-go <cluster.iface>` in the cluster's gateway namespace and configures
    /// it like our gateway would be: the cluster's key, port 51820, `peers`, the tunnel
    /// address, MTU 1420, and a route for every allowed IP outside the tunnel network.
    ///
    /// # Errors
    /// Fails when `wireguard-go` does not come up or any `wg`/`ip` command fails.
    pub fn start(cluster: &'c Cluster, peers: &[PeerSpec]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ztgw-wggo-{}-", cluster.name))
            .tempdir()
            .context("failed to create a key directory")?;
        let key_path = dir.path().join("private.key");
        std::fs::write(&key_path, cluster.key.to_base64().as_str())
            .context("failed to write the private key")?;
        let proc = cluster.gw.spawn(
            &["wireguard-go", &cluster.iface],
            &[("WG_PROCESS_FOREGROUND", "1")],
        )?;
        // From here on, dropping `device` on an error also kills it and removes its socket.
        let mut device = Self {
            cluster,
            proc,
            _dir: dir,
        };
        device.configure(&key_path, peers)?;
        Ok(device)
    }

    /// Returns the device state (`wg show <iface> dump`).
    ///
    /// # Errors
    /// Fails when `wg` cannot read the device.
    pub fn dump(&self) -> Result<WgDump> {
        wg_dump(&self.cluster.gw, &self.cluster.iface)
    }

    /// Returns what `wireguard-go` has logged so far.
    pub fn log(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }
}

impl WgGo<'_> {
    fn configure(&mut self, key_path: &Path, peers: &[PeerSpec]) -> Result<()> {
        let (gw, iface) = (&self.cluster.gw, self.cluster.iface.as_str());
        let socket = socket_path(iface);
        let proc = &mut self.proc;
        eventually(Duration::from_secs(5), || {
            if let Some(status) = proc.try_status()? {
                bail!("wireguard-go exited ({status}): {}", proc.stderr());
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

impl Drop for WgGo<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- wireguard-go {} ({}) log -----\n{}----- end -----",
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
