//! Reading a WireGuard device's state with `wg show <iface> dump`, which works against any
//! UAPI socket: our gateway's and wireguard-go's alike.

use anyhow::{Context as _, Result, bail};

use crate::netns::Netns;

/// The parsed output of `wg show <iface> dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgDump {
    /// The interface's public key, base64.
    pub public_key: String,
    /// The UDP listen port.
    pub listen_port: u16,
    /// One entry per peer.
    pub peers: Vec<WgPeer>,
}

/// One peer line of `wg show <iface> dump`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    /// The peer's public key, base64.
    pub public_key: String,
    /// The current endpoint, `None` when `(none)`.
    pub endpoint: Option<String>,
    /// Allowed IPs as CIDRs.
    pub allowed_ips: Vec<String>,
    /// Seconds since the epoch of the latest handshake, 0 for never.
    pub latest_handshake: u64,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// Persistent keepalive interval in seconds, `None` when off.
    pub persistent_keepalive: Option<u16>,
}

impl WgDump {
    /// Returns the peer with this public key.
    pub fn peer(&self, public_key: &str) -> Option<&WgPeer> {
        self.peers.iter().find(|peer| peer.public_key == public_key)
    }

    /// Parses `wg show <iface> dump` output.
    ///
    /// # Errors
    /// Fails when a line does not have the documented tab-separated fields.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().context("empty dump")?.split('\t').collect();
        let [_private, public_key, listen_port, _fwmark] = header[..] else {
            bail!("bad interface line {header:?}");
        };
        let peers = lines
            .filter(|line| !line.is_empty())
            .map(parse_peer)
            .collect::<Result<_>>()?;
        Ok(Self {
            public_key: public_key.to_owned(),
            listen_port: listen_port.parse().context("bad listen port")?,
            peers,
        })
    }
}

/// Runs `wg show <iface> dump` inside `ns` and parses it.
///
/// # Errors
/// Fails when `wg` fails (e.g. no such device or no UAPI socket) or prints something else.
pub fn wg_dump(ns: &Netns, iface: &str) -> Result<WgDump> {
    let text = ns.run(&["wg", "show", iface, "dump"])?;
    WgDump::parse(&text).with_context(|| format!("bad `wg show {iface} dump` output:\n{text}"))
}

fn parse_peer(line: &str) -> Result<WgPeer> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [
        public_key,
        _psk,
        endpoint,
        allowed_ips,
        handshake,
        rx,
        tx,
        keepalive,
    ] = fields[..]
    else {
        bail!("bad peer line {line:?}");
    };
    Ok(WgPeer {
        public_key: public_key.to_owned(),
        endpoint: (endpoint != "(none)").then(|| endpoint.to_owned()),
        allowed_ips: match allowed_ips {
            "(none)" | "" => Vec::new(),
            list => list.split(',').map(ToOwned::to_owned).collect(),
        },
        latest_handshake: handshake.parse().context("bad latest handshake")?,
        rx_bytes: rx.parse().context("bad rx bytes")?,
        tx_bytes: tx.parse().context("bad tx bytes")?,
        persistent_keepalive: match keepalive {
            "off" => None,
            seconds => Some(seconds.parse().context("bad keepalive")?),
        },
    })
}

#[cfg(test)]
mod tests;
