//! Userspace WireGuard implementations configured with `wg` and `ip`: `wireguard-go`, the
//! reference peer for interop tests and for checking the harness itself without our gateway
//! (Debian's 2022 build from the `PATH`, and today's, built by `scripts/go-tools.sh`), and
//! `boringtun-cli`, which the benchmark also measures. [`WgUserspace::observe_offloads`] shows,
//! from the kernel's side, whether a device uses TUN and UDP offloads.

use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tempfile::TempDir;

use crate::capture::Capture;
use crate::gateway::socket_path;
use crate::peer::PeerSpec;
use crate::process::Proc;
use crate::topology::{Cluster, LISTEN_PORT, TUNNEL_PREFIX};
use crate::uapi::{WgDump, wg_dump};
use crate::wait::eventually;
use crate::wire::{DATA, split_datagram};

/// Where `scripts/go-tools.sh` links today's wireguard-go, relative to the workspace.
pub const WIREGUARD_GO_CURRENT: &str = "target/go-tools/bin/wireguard-go-current";

/// The variable that overrides where today's wireguard-go is found.
pub const WIREGUARD_GO_CURRENT_VAR: &str = "ZTGW_WIREGUARD_GO_CURRENT_BIN";

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

    /// Today's wireguard-go (with its TUN and UDP offloads), as `scripts/go-tools.sh` builds
    /// it: `$ZTGW_WIREGUARD_GO_CURRENT_BIN`, else `<workspace>/target/go-tools/bin/
    /// wireguard-go-current`; kept in the foreground like [`WgProgram::wireguard_go`].
    ///
    /// # Errors
    /// Fails, saying to run `scripts/go-tools.sh`, when the binary is not there.
    pub fn wireguard_go_current() -> Result<Self> {
        let path = match std::env::var_os(WIREGUARD_GO_CURRENT_VAR) {
            Some(path) => PathBuf::from(path),
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(WIREGUARD_GO_CURRENT),
        };
        if !path.is_file() {
            bail!(
                "today's wireguard-go is not built ({} is missing): run scripts/go-tools.sh",
                path.display()
            );
        }
        Ok(Self {
            name: "wireguard-go-current".to_owned(),
            argv: vec![path.to_string_lossy().into_owned()],
            envs: vec![("WG_PROCESS_FOREGROUND".to_owned(), "1".to_owned())],
        })
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

    /// Returns the program it runs (the first word of its command line).
    pub fn path(&self) -> Option<&str> {
        self.argv.first().map(String::as_str)
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
        Self::start_with_psk(program, cluster, peers, None)
    }

    /// As [`WgUserspace::start_with`], with `psk` (base64) as the preshared key of every peer
    /// when given. The key goes to `wg` in a file readable by root only.
    ///
    /// # Errors
    /// As [`WgUserspace::start_with`].
    pub fn start_with_psk(
        program: &WgProgram,
        cluster: &'c Cluster,
        peers: &[PeerSpec],
        psk: Option<&str>,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ztgw-wg-{}-", cluster.name))
            .tempdir()
            .context("failed to create a key directory")?;
        let key_path = dir.path().join("private.key");
        write_secret(&key_path, cluster.key.to_base64().as_str())
            .context("failed to write the private key")?;
        let psk_path = match psk {
            Some(psk) => {
                let path = dir.path().join("preshared.key");
                write_secret(&path, psk).context("failed to write the preshared key")?;
                Some(path)
            }
            None => None,
        };
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
        device.configure(&key_path, psk_path.as_deref(), peers)?;
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

    /// Runs `load`, which must carry bulk TCP through this device in both directions, while
    /// watching the device from the kernel's side, and returns what that shows of its offloads
    /// (see [`Offloads`]): the TUN's flags (`ip -d link`), the WireGuard datagrams on the
    /// gateway's underlay interface (a packet socket sees GSO super-packets whole), and the UDP
    /// datagrams the namespace's sockets took in (`/proc/net/snmp`).
    ///
    /// # Errors
    /// Fails when `load` fails or the device cannot be observed.
    pub fn observe_offloads(&self, load: impl FnOnce() -> Result<()>) -> Result<Offloads> {
        let gw = &self.cluster.gw;
        let link = gw.ip(&["-d", "link", "show", "dev", &self.cluster.iface])?;
        let tun_vnet_hdr = parse_vnet_hdr(&link)
            .with_context(|| format!("no TUN details in `ip -d link`: {link}"))?;
        let capture = Capture::start(gw, "eth0", LISTEN_PORT)?;
        let before = udp_taken_in(&gw.run(&["cat", "/proc/net/snmp"])?)?;
        let loaded = load();
        let after = udp_taken_in(&gw.run(&["cat", "/proc/net/snmp"])?)?;
        let datagrams = capture.stop()?;
        loaded?;
        let me = self.cluster.underlay_ip();
        let mut offloads = Offloads {
            tun_vnet_hdr,
            datagrams_taken_in: after.saturating_sub(before),
            ..Offloads::default()
        };
        for datagram in &datagrams {
            let Ok(messages) = split_datagram(&datagram.payload) else {
                continue;
            };
            if *datagram.from.ip() == me {
                offloads.datagrams_sent += 1;
                if messages.len() > 1 {
                    offloads.super_datagrams_sent += 1;
                }
            } else if *datagram.to.ip() == me {
                offloads.data_messages_received += messages
                    .iter()
                    .filter(|message| message.kind == DATA)
                    .count() as u64;
            }
        }
        Ok(offloads)
    }
}

/// What the kernel shows of a userspace device's offloads during bulk traffic both ways
/// ([`WgUserspace::observe_offloads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// The TUN was opened with `IFF_VNET_HDR` (`vnet_hdr on`): the device reads and writes
    /// TCP super-packets with their offload header. wireguard-go opens it so only once its
    /// `TUNSETOFFLOAD` (checksum and TSO) succeeded, and fails otherwise.
    pub tun_vnet_hdr: bool,
    /// WireGuard datagrams the device sent on the underlay.
    pub datagrams_sent: u64,
    /// Of those, datagrams carrying several messages: UDP GSO super-packets.
    pub super_datagrams_sent: u64,
    /// WireGuard data messages that arrived for the device on the underlay.
    pub data_messages_received: u64,
    /// UDP datagrams the namespace's sockets took in meanwhile, received or dropped
    /// (`InDatagrams + InErrors`). A socket without UDP GRO gets every segment of a
    /// super-packet as its own datagram; with it, the super-packet as one.
    pub datagrams_taken_in: u64,
}

impl Offloads {
    /// Whether the device sent UDP GSO super-packets.
    pub fn udp_gso(&self) -> bool {
        self.super_datagrams_sent > 0
    }

    /// Whether the device's socket took in coalesced datagrams (UDP GRO): fewer datagrams
    /// than data messages arrived.
    pub fn udp_gro(&self) -> bool {
        self.data_messages_received > 0 && self.datagrams_taken_in < self.data_messages_received
    }

    /// Fails, with the figures, unless the TUN offloads, UDP GSO and UDP GRO are all on.
    ///
    /// # Errors
    /// When any of them is off.
    pub fn check(&self) -> Result<()> {
        let mut missing = Vec::new();
        if !self.tun_vnet_hdr {
            missing.push("TUN offloads (no IFF_VNET_HDR)");
        }
        if !self.udp_gso() {
            missing.push("UDP GSO (no super-packet sent)");
        }
        if !self.udp_gro() {
            missing.push("UDP GRO (a datagram per message taken in)");
        }
        if missing.is_empty() {
            Ok(())
        } else {
            bail!("offloads off: {} ({self})", missing.join(", "))
        }
    }
}

impl std::fmt::Display for Offloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TUN vnet_hdr {}; {} of {} datagrams sent were super-packets; {} datagrams taken in \
             for {} data messages received",
            if self.tun_vnet_hdr { "on" } else { "off" },
            self.super_datagrams_sent,
            self.datagrams_sent,
            self.datagrams_taken_in,
            self.data_messages_received,
        )
    }
}

/// Reads whether a TUN device has `IFF_VNET_HDR` from `ip -d link show` output
/// (`tun type tun pi off vnet_hdr on ...`); `None` when the output shows no TUN details.
pub fn parse_vnet_hdr(ip_details: &str) -> Option<bool> {
    let mut words = ip_details.split_whitespace();
    words.find(|word| *word == "vnet_hdr")?;
    match words.next()? {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Reads `InDatagrams + InErrors` of the `Udp:` lines of `/proc/net/snmp`.
///
/// # Errors
/// When the lines or the fields are missing.
pub fn udp_taken_in(snmp: &str) -> Result<u64> {
    let mut udp = snmp
        .lines()
        .filter_map(|line| line.strip_prefix("Udp:"))
        .map(str::split_whitespace);
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp: lines in /proc/net/snmp");
    };
    let fields: Vec<(&str, &str)> = names.zip(values).collect();
    let field = |name: &str| -> Result<u64> {
        fields
            .iter()
            .find(|(key, _)| *key == name)
            .with_context(|| format!("no Udp {name} in /proc/net/snmp"))?
            .1
            .parse()
            .with_context(|| format!("bad Udp {name} in /proc/net/snmp"))
    };
    Ok(field("InDatagrams")? + field("InErrors")?)
}

/// Writes `text` to a new file that only its owner can read.
fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

impl WgUserspace<'_> {
    fn configure(
        &mut self,
        key_path: &Path,
        psk_path: Option<&Path>,
        peers: &[PeerSpec],
    ) -> Result<()> {
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
            if let Some(path) = psk_path {
                set.extend([
                    "preshared-key".to_owned(),
                    path.to_string_lossy().into_owned(),
                ]);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_is_read_from_ip_link_details() {
        let on = "7: wg0: <POINTOPOINT,UP> mtu 1420 qdisc fq_codel\n    link/none  promiscuity 0\n    tun type tun pi off vnet_hdr on multi_queue off numtxqueues 1";
        assert_eq!(parse_vnet_hdr(on), Some(true));
        assert_eq!(
            parse_vnet_hdr(&on.replace("vnet_hdr on", "vnet_hdr off")),
            Some(false)
        );
        assert_eq!(parse_vnet_hdr("3: eth0: <UP> mtu 1500\n    veth"), None);
    }

    #[test]
    fn udp_datagrams_taken_in_add_errors() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams\nUdp: 383 4 7 284\nUdpLite: InDatagrams NoPorts\nUdpLite: 0 0\n";
        assert_eq!(udp_taken_in(snmp).expect("parsed"), 390);
        assert!(udp_taken_in("Ip: 1\n").is_err());
        assert!(udp_taken_in("Udp: InDatagrams\nUdp: many\n").is_err());
    }

    #[test]
    fn offloads_are_judged_from_the_figures() {
        let on = Offloads {
            tun_vnet_hdr: true,
            datagrams_sent: 100,
            super_datagrams_sent: 40,
            data_messages_received: 900,
            datagrams_taken_in: 120,
        };
        assert!(on.check().is_ok());
        let no_gro = Offloads {
            datagrams_taken_in: 905,
            ..on
        };
        let error = format!("{:#}", no_gro.check().expect_err("no GRO"));
        assert!(error.contains("UDP GRO"), "{error}");
        assert!(!error.contains("UDP GSO"), "{error}");
        let off = Offloads {
            tun_vnet_hdr: false,
            super_datagrams_sent: 0,
            data_messages_received: 0,
            ..on
        };
        let error = format!("{:#}", off.check().expect_err("all off"));
        for name in ["TUN offloads", "UDP GSO", "UDP GRO"] {
            assert!(error.contains(name), "{error}");
        }
    }
}
