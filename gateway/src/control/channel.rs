//! Each peer's channel state, as the hello client sees it: a pure state machine, time an
//! argument.
//!
//! - `none`: the declaration has no tunnel address (no host allowed IP inside the tunnel
//!   network), so the peer has no channel; it is never contacted.
//! - `unknown`: not decided yet (no hello answered, fewer failures than the retry bound).
//! - `up`: the last hello was answered.
//! - `plain`: the peer speaks WireGuard (the tunnel is up) but nothing answers on its control
//!   port (connection refused, or no answer): a plain WireGuard peer.
//! - `down`: the hellos failed while the tunnel was down, or the peer's channel refused us or
//!   answered something that is not a hello of that peer.
//!
//! A failure is retried [`Settings::retries`] times, [`Settings::retry_delay`] apart, before
//! the state changes; after a decision the next hello is due one [`Settings::interval`] later,
//! or as soon as the tunnel comes up when the peer was not `up`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::auth::{ChannelAddress, PeerView, channel_address};
use super::envelope::Hello;
use crate::status::{ChannelState, ChannelStatus, unix_seconds};

/// How often and how persistently peers are greeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Between two rounds of hellos to one peer.
    pub interval: Duration,
    /// Between two attempts of one round.
    pub retry_delay: Duration,
    /// Attempts of one round before its failure decides the state (at least 1).
    pub retries: u32,
}

/// One applied peer, as the driver last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInput {
    /// Its declaration.
    pub view: PeerView,
    /// Whether its tunnel is up (a recent handshake).
    pub connected: bool,
}

/// A hello to send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The peer's declaration name (the key to report the result under).
    pub name: String,
    /// Its cluster, which the answer's `from` must equal.
    pub cluster: String,
    /// Its tunnel address.
    pub address: IpAddr,
}

/// Why a hello got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused: the host is there, nothing listens on the port.
    Refused,
    /// No connection or no answer within the timeouts.
    NoAnswer,
    /// The peer's channel answered with this HTTP status instead of a hello.
    Rejected(u16),
    /// The answer was not a valid hello from that peer.
    BadAnswer,
    /// The peer refused the message with this fixed word (`409`).
    Declined(&'static str),
}

impl Failure {
    /// Worded for the status; built from our classification only, nothing the peer sent
    /// beyond a status code.
    fn detail(self, connected: bool) -> String {
        match self {
            Self::Refused if connected => "tunnel up, control port closed".to_owned(),
            Self::NoAnswer if connected => "tunnel up, no answer on the control port".to_owned(),
            Self::Refused => "control port closed, tunnel down".to_owned(),
            Self::NoAnswer => "no answer, tunnel down".to_owned(),
            Self::Rejected(status) => format!("the peer's channel answered HTTP {status}"),
            Self::Declined(word) => format!("the peer's channel refused the message: {word}"),
            Self::BadAnswer => "the peer's answer was not a valid hello".to_owned(),
        }
    }
}

/// Every peer's channel.
#[derive(Debug, Clone)]
pub struct Channels {
    settings: Settings,
    peers: BTreeMap<String, Peer>,
}

#[derive(Debug, Clone)]
struct Peer {
    cluster: String,
    address: ChannelAddress,
    connected: bool,
    state: ChannelState,
    detail: Option<String>,
    hello: Option<Hello>,
    last_contact: Option<SystemTime>,
    failures: u32,
    in_flight: bool,
    next_attempt: Option<SystemTime>,
}

impl Channels {
    /// No peers yet.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            peers: BTreeMap::new(),
        }
    }

    /// Takes the latest applied peers (forgetting the others) and returns the hellos due at
    /// `now`. Each returned attempt must be answered by [`Channels::answered`] or
    /// [`Channels::failed`]; no peer has two attempts in flight.
    pub fn poll(&mut self, now: SystemTime, peers: &[PeerInput], tunnel: IpNet) -> Vec<Attempt> {
        self.peers
            .retain(|name, _| peers.iter().any(|p| &p.view.name == name));
        let mut due = Vec::new();
        for input in peers {
            let address = channel_address(&input.view.allowed_ips, tunnel);
            let peer = self
                .peers
                .entry(input.view.name.clone())
                .or_insert_with(|| Peer::new(&input.view.cluster, address, now));
            if peer.address != address || peer.cluster != input.view.cluster {
                *peer = Peer::new(&input.view.cluster, address, now);
            }
            let came_up = input.connected && !peer.connected;
            peer.connected = input.connected;
            let ChannelAddress::At(ip) = address else {
                peer.state = ChannelState::None;
                peer.detail = Some(
                    match address {
                        ChannelAddress::Ambiguous => {
                            "several allowed IPs are host addresses in the tunnel network"
                        }
                        _ => "no allowed IP is a host address in the tunnel network",
                    }
                    .to_owned(),
                );
                continue;
            };
            if came_up && peer.state != ChannelState::Up && peer.failures == 0 {
                peer.next_attempt = Some(now);
            }
            if !peer.in_flight && peer.next_attempt.is_some_and(|at| at <= now) {
                peer.in_flight = true;
                due.push(Attempt {
                    name: input.view.name.clone(),
                    cluster: peer.cluster.clone(),
                    address: ip,
                });
            }
        }
        due
    }

    /// Records that `name` answered `hello` at `now`.
    pub fn answered(&mut self, name: &str, now: SystemTime, hello: Hello) {
        let interval = self.settings.interval;
        if let Some(peer) = self.peers.get_mut(name) {
            peer.in_flight = false;
            peer.failures = 0;
            peer.state = ChannelState::Up;
            peer.detail = None;
            peer.hello = Some(hello);
            peer.last_contact = Some(now);
            peer.next_attempt = now.checked_add(interval);
        }
    }

    /// Records that the hello to `name` failed at `now`.
    pub fn failed(&mut self, name: &str, now: SystemTime, failure: Failure) {
        let settings = self.settings;
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        peer.in_flight = false;
        peer.failures = peer.failures.saturating_add(1);
        if peer.failures < settings.retries.max(1) {
            peer.next_attempt = now.checked_add(settings.retry_delay);
            return;
        }
        peer.failures = 0;
        peer.state = match failure {
            Failure::Refused | Failure::NoAnswer if peer.connected => ChannelState::Plain,
            _ => ChannelState::Down,
        };
        peer.detail = Some(failure.detail(peer.connected));
        peer.next_attempt = now.checked_add(settings.interval);
    }

    /// Every peer's channel for the status document, in name order.
    pub fn statuses(&self) -> Vec<ChannelStatus> {
        self.peers
            .iter()
            .map(|(name, peer)| ChannelStatus {
                peer: name.clone(),
                cluster: peer.cluster.clone(),
                state: peer.state,
                address: match peer.address {
                    ChannelAddress::At(ip) => Some(ip.to_string()),
                    _ => None,
                },
                capabilities: peer
                    .hello
                    .as_ref()
                    .map(|h| h.capabilities.clone())
                    .unwrap_or_default(),
                public_key: peer.hello.as_ref().map(|h| h.public_key.clone()),
                key_age_seconds: peer.hello.as_ref().and_then(|h| h.key_age_seconds),
                version: peer.hello.as_ref().map(|h| h.version.clone()),
                last_contact_unix: peer.last_contact.map(unix_seconds),
                detail: peer.detail.clone(),
            })
            .collect()
    }
}

impl Peer {
    fn new(cluster: &str, address: ChannelAddress, now: SystemTime) -> Self {
        Self {
            cluster: cluster.to_owned(),
            address,
            connected: false,
            state: ChannelState::Unknown,
            detail: None,
            hello: None,
            last_contact: None,
            failures: 0,
            in_flight: false,
            next_attempt: Some(now),
        }
    }
}

#[cfg(test)]
mod tests;
