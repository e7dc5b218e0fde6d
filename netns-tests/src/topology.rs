//! The standard test topology: N clusters, each a gateway namespace and a pod namespace,
//! with the gateways joined by one bridged underlay.
//!
//! ```text
//!            ul (bridge br0)
//!           /       |       \
//!   gw a eth0   gw b eth0   gw c eth0      192.0.2.<i>/24
//!   gw a pod0   gw b pod0   gw c pod0      10.<i>.0.1/24, ip_forward=1
//!   pod a eth0  pod b eth0  pod c eth0     10.<i>.0.2/24, default via 10.<i>.0.1
//! ```
//!
//! Cluster `i` (1-based, named `a`, `b`, `c`, ...) advertises `10.<i>.0.0/16` and owns tunnel
//! address `10.10.0.<i>/24`. Its WireGuard interface name is unique on the whole machine,
//! because UAPI sockets in `/var/run/wireguard` are shared by all namespaces.

use std::net::Ipv4Addr;

use anyhow::{Context as _, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;

use crate::netns::{Netns, next_id, veth};
use crate::peer::PeerSpec;

/// Prefix length of the tunnel network `10.10.0.0/24`.
pub const TUNNEL_PREFIX: u8 = 24;

/// The UDP port every gateway listens on (each in its own namespace).
pub const LISTEN_PORT: u16 = 51820;

/// A set of clusters joined by an underlay bridge. Dropping it deletes every namespace.
#[derive(Debug)]
pub struct Topology {
    /// The clusters, `clusters[0]` being `a` (index 1).
    pub clusters: Vec<Cluster>,
    /// The namespace holding the underlay bridge `br0`.
    pub underlay: Netns,
}

impl Topology {
    /// Builds `n` clusters (1 to 26) on one underlay, with fresh keys and unique interface
    /// names.
    ///
    /// # Errors
    /// Fails when a namespace, link, address or route cannot be created.
    pub fn clusters(n: u8) -> Result<Self> {
        ensure!((1..=26).contains(&n), "between 1 and 26 clusters, not {n}");
        let underlay = Netns::new("ul")?;
        underlay.ip(&["link", "add", "br0", "type", "bridge"])?;
        underlay.ip(&["link", "set", "br0", "up"])?;
        let clusters = (1..=n)
            .map(|index| Cluster::new(&underlay, index))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { clusters, underlay })
    }
}

/// One cluster: its gateway and pod namespaces, key, and addresses.
#[derive(Debug)]
pub struct Cluster {
    /// 1-based index; it appears in every address of the cluster.
    pub index: u8,
    /// The cluster name: `a`, `b`, `c`, ...
    pub name: String,
    /// The gateway's namespace (`eth0` on the underlay, `pod0` towards the pod).
    pub gw: Netns,
    /// The pod's namespace (`eth0`, default route via the gateway).
    pub pod: Netns,
    /// The WireGuard interface name for this cluster's gateway, unique on the machine.
    pub iface: String,
    /// The gateway's WireGuard private key.
    pub key: PrivateKey,
}

impl Cluster {
    fn new(underlay: &Netns, index: u8) -> Result<Self> {
        let name = char::from(b'a' + index - 1).to_string();
        let gw = Netns::new(&format!("gw{name}"))?;
        let pod = Netns::new(&format!("pod{name}"))?;
        let port = format!("ul{name}");
        veth(underlay, &port, &gw, "eth0")?;
        underlay.ip(&["link", "set", &port, "master", "br0", "up"])?;
        gw.ip(&["addr", "add", &format!("192.0.2.{index}/24"), "dev", "eth0"])?;
        gw.ip(&["link", "set", "eth0", "up"])?;

        veth(&gw, "pod0", &pod, "eth0")?;
        gw.ip(&["addr", "add", &format!("10.{index}.0.1/24"), "dev", "pod0"])?;
        gw.ip(&["link", "set", "pod0", "up"])?;
        pod.ip(&["addr", "add", &format!("10.{index}.0.2/24"), "dev", "eth0"])?;
        pod.ip(&["link", "set", "eth0", "up"])?;
        pod.ip(&["route", "add", "default", "via", &format!("10.{index}.0.1")])?;
        gw.sysctl("net.ipv4.ip_forward", "1")?;

        let iface = unique_iface(&name);
        let key = PrivateKey::generate().context("failed to generate a key")?;
        Ok(Self {
            index,
            name,
            gw,
            pod,
            iface,
            key,
        })
    }

    /// Returns the gateway's underlay address, `192.0.2.<i>`.
    pub fn underlay_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, self.index)
    }

    /// Returns the gateway's WireGuard endpoint, `192.0.2.<i>:51820`.
    pub fn endpoint(&self) -> String {
        format!("{}:{LISTEN_PORT}", self.underlay_ip())
    }

    /// Returns the pod's address, `10.<i>.0.2`.
    pub fn pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.index, 0, 2)
    }

    /// Returns the CIDR the cluster advertises, `10.<i>.0.0/16`.
    pub fn pod_cidr(&self) -> String {
        format!("10.{}.0.0/16", self.index)
    }

    /// Returns the gateway's tunnel address, `10.10.0.<i>`.
    pub fn tunnel_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 10, 0, self.index)
    }

    /// Returns the gateway's tunnel interface address, `10.10.0.<i>/24`.
    pub fn tunnel_address(&self) -> String {
        format!("{}/{TUNNEL_PREFIX}", self.tunnel_ip())
    }

    /// Returns the gateway's public key, base64.
    pub fn public_key(&self) -> String {
        STANDARD.encode(self.key.public_key())
    }

    /// Returns how other gateways describe this cluster: its key and endpoint, its tunnel
    /// address `/32` and pod CIDR, keepalive 25 s.
    pub fn peer(&self) -> PeerSpec {
        PeerSpec {
            name: self.name.clone(),
            cluster: self.name.clone(),
            public_key: self.public_key(),
            endpoint: Some(self.endpoint()),
            allowed_ips: vec![format!("{}/32", self.tunnel_ip()), self.pod_cidr()],
            persistent_keepalive: Some(25),
        }
    }

    /// Adds a second underlay address to the gateway's `eth0` (e.g. `192.0.2.103/24`).
    ///
    /// # Errors
    /// Fails when `ip addr add` fails.
    pub fn add_underlay_address(&self, ip: Ipv4Addr) -> Result<()> {
        self.gw
            .ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .map(drop)
    }
}

/// Returns a WireGuard interface name unique on this machine: `zt<pid><letter><counter>`, at
/// most 15 bytes (the kernel's limit).
pub fn unique_iface(letter: &str) -> String {
    let name = format!("zt{}{letter}{}", std::process::id(), next_id());
    debug_assert!(name.len() <= 15, "interface name {name} too long");
    name
}
