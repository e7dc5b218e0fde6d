//! What a device reports ([`DeviceReport`]), and how to read it from a `get=1` answer of the
//! WireGuard cross-platform userspace API (UAPI) text protocol.
//!
//! Keys travel as lowercase hex. This module never sees the private key: it skips
//! `private_key` lines when reading.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::key::PublicKey;
use super::peer::PeerConfig;

/// One peer as a device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// Its public key.
    pub public_key: PublicKey,
    /// Its current endpoint (configured or learned).
    pub endpoint: Option<SocketAddr>,
    /// Its allowed IPs.
    pub allowed_ips: BTreeSet<IpNet>,
    /// Persistent keepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Time of the last handshake since the Unix epoch; `None` if there was none.
    pub last_handshake: Option<Duration>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

impl PeerReport {
    /// Returns the configuration part of the report.
    pub fn config(&self) -> PeerConfig {
        PeerConfig {
            public_key: self.public_key,
            endpoint: self.endpoint,
            allowed_ips: self.allowed_ips.clone(),
            persistent_keepalive: self.persistent_keepalive,
            preshared_key: None,
        }
    }
}

/// A parsed `get=1` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    /// The UDP port the device listens on.
    pub listen_port: Option<u16>,
    /// Its peers, in the order reported.
    pub peers: Vec<PeerReport>,
}

/// Why a UAPI answer could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UapiError {
    /// The answer ended without an `errno=` line (the device may have crashed).
    #[error("the device answered without an errno line")]
    MissingErrno,
    /// The device reported an error.
    #[error("the device answered errno={0}")]
    Errno(i64),
    /// A line could not be parsed.
    #[error("unparseable UAPI line {0:?}")]
    BadLine(String),
}

/// Reads the status of a `set=1` answer.
///
/// # Errors
/// [`UapiError::Errno`] for a non-zero errno, [`UapiError::MissingErrno`] when none came.
pub fn parse_errno(answer: &str) -> Result<(), UapiError> {
    for line in answer.lines() {
        if let Some(value) = line.strip_prefix("errno=") {
            return match value.trim().parse::<i64>() {
                Ok(0) => Ok(()),
                Ok(n) => Err(UapiError::Errno(n)),
                Err(_) => Err(UapiError::BadLine(line.to_owned())),
            };
        }
    }
    Err(UapiError::MissingErrno)
}

/// Parses a `get=1` answer.
///
/// # Errors
/// A non-zero or missing errno, or a line that does not parse.
pub fn parse_get(answer: &str) -> Result<DeviceReport, UapiError> {
    let mut report = DeviceReport::default();
    let mut errno_seen = false;
    let mut current: Option<PeerReport> = None;
    let mut handshake_sec: u64 = 0;
    let mut handshake_nsec: u32 = 0;
    let finish = |peer: Option<PeerReport>, sec: u64, nsec: u32, report: &mut DeviceReport| {
        if let Some(mut peer) = peer {
            if sec != 0 || nsec != 0 {
                peer.last_handshake = Some(Duration::new(sec, nsec));
            }
            report.peers.push(peer);
        }
    };
    for line in answer.lines() {
        if line.is_empty() {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| UapiError::BadLine(redact(line)))?;
        let bad = || UapiError::BadLine(redact(line));
        match key {
            "errno" => {
                let n: i64 = value.parse().map_err(|_| bad())?;
                if n != 0 {
                    return Err(UapiError::Errno(n));
                }
                errno_seen = true;
            }
            "public_key" => {
                finish(current.take(), handshake_sec, handshake_nsec, &mut report);
                handshake_sec = 0;
                handshake_nsec = 0;
                current = Some(PeerReport {
                    public_key: PublicKey::from_hex(value).map_err(|_| bad())?,
                    endpoint: None,
                    allowed_ips: BTreeSet::new(),
                    persistent_keepalive: 0,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                });
            }
            "listen_port" if current.is_none() => {
                report.listen_port = Some(value.parse().map_err(|_| bad())?);
            }
            _ => {
                let Some(peer) = current.as_mut() else {
                    // Interface-level lines we do not need: private_key, fwmark, own_public_key.
                    continue;
                };
                match key {
                    "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad())?),
                    "allowed_ip" => {
                        peer.allowed_ips.insert(value.parse().map_err(|_| bad())?);
                    }
                    "persistent_keepalive_interval" => {
                        peer.persistent_keepalive = value.parse().map_err(|_| bad())?;
                    }
                    "last_handshake_time_sec" => {
                        handshake_sec = value.parse().map_err(|_| bad())?
                    }
                    "last_handshake_time_nsec" => {
                        handshake_nsec = value.parse().map_err(|_| bad())?;
                    }
                    "rx_bytes" => peer.rx_bytes = value.parse().map_err(|_| bad())?,
                    "tx_bytes" => peer.tx_bytes = value.parse().map_err(|_| bad())?,
                    _ => {}
                }
            }
        }
    }
    finish(current.take(), handshake_sec, handshake_nsec, &mut report);
    if !errno_seen {
        return Err(UapiError::MissingErrno);
    }
    Ok(report)
}

/// Keeps a line's key for error messages but never its value (it may be key material).
fn redact(line: &str) -> String {
    match line.split_once('=') {
        Some((key, _)) => format!("{key}=…"),
        None => "(no '=')".to_owned(),
    }
}

#[cfg(test)]
mod tests;
