//! Who may speak on the control channel: pure decisions over the peer snapshot.
//!
//! A request is accepted only from a peer gateway's own tunnel address: the one allowed IP of
//! that peer that is a host prefix (`/32` or `/128`) inside the local tunnel network
//! (`[interface] address`). WireGuard's cryptokey routing has authenticated that source: the
//! packet was decrypted with the peer's session, and the gateway routes replies to that
//! address back through the tunnel (see `docs/control-channel.md`). The envelope's `from`
//! must then equal that peer's declared cluster.

use std::net::IpAddr;

use ipnet::IpNet;

/// What the decisions need to know about one applied peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    /// `metadata.name` of its declaration.
    pub name: String,
    /// `spec.cluster`.
    pub cluster: String,
    /// Its allowed IPs as declared (unparsable entries are ignored).
    pub allowed_ips: Vec<String>,
}

/// A peer's control-channel address, or why it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelAddress {
    /// Its own tunnel address.
    At(IpAddr),
    /// No allowed IP of the peer is a host address inside the tunnel network.
    None,
    /// More than one is: which one is the gateway is not known, so none is trusted.
    Ambiguous,
}

/// Returns `peer`'s control-channel address in the tunnel network `tunnel` (our own
/// `[interface] address`, with its prefix).
pub fn channel_address(allowed_ips: &[String], tunnel: IpNet) -> ChannelAddress {
    let network = tunnel.trunc();
    let mut found = None;
    for text in allowed_ips {
        let Ok(net) = text.parse::<IpNet>() else {
            continue;
        };
        let addr = net.addr();
        let host = net.prefix_len() == net.max_prefix_len();
        if host && network.contains(&addr) && addr != tunnel.addr() {
            if found.is_some_and(|seen| seen != addr) {
                return ChannelAddress::Ambiguous;
            }
            found = Some(addr);
        }
    }
    found.map_or(ChannelAddress::None, ChannelAddress::At)
}

/// Why a request is refused (403). Written in logs and audit records; never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source lies in a peer's allowed IPs but is not its tunnel address: a pod (or
    /// other host) behind that peer.
    BehindPeer,
    /// The source is no peer's tunnel address and lies behind no peer.
    NotAPeer,
    /// `from` is not the cluster of the peer whose tunnel address sent it.
    WrongSender,
}

impl Refusal {
    /// A fixed word for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BehindPeer => "source_behind_peer",
            Self::NotAPeer => "source_not_a_peer",
            Self::WrongSender => "from_not_the_sender",
        }
    }
}

/// Returns the peer whose tunnel address is `source`, or why there is none.
///
/// # Errors
/// [`Refusal::BehindPeer`] or [`Refusal::NotAPeer`].
pub fn identify(source: IpAddr, peers: &[PeerView], tunnel: IpNet) -> Result<&PeerView, Refusal> {
    let source = source.to_canonical();
    let mut owners = peers
        .iter()
        .filter(|peer| channel_address(&peer.allowed_ips, tunnel) == ChannelAddress::At(source));
    // Two declarations holding one address are never applied together; if they were, neither
    // would be trusted.
    if let (Some(peer), None) = (owners.next(), owners.next()) {
        return Ok(peer);
    }
    let behind = peers.iter().any(|peer| {
        peer.allowed_ips
            .iter()
            .filter_map(|text| text.parse::<IpNet>().ok())
            .any(|net| net.contains(&source))
    });
    Err(if behind {
        Refusal::BehindPeer
    } else {
        Refusal::NotAPeer
    })
}

/// The whole decision: accepts a message from `source` claiming to come from cluster `from`
/// only when `source` is a peer's tunnel address and `from` is that peer's cluster.
///
/// # Errors
/// The [`Refusal`].
pub fn authenticate<'p>(
    source: IpAddr,
    from: &str,
    peers: &'p [PeerView],
    tunnel: IpNet,
) -> Result<&'p PeerView, Refusal> {
    let peer = identify(source, peers, tunnel)?;
    if peer.cluster == from {
        Ok(peer)
    } else {
        Err(Refusal::WrongSender)
    }
}

#[cfg(test)]
mod tests;
