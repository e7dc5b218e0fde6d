//! Test doubles for the adapters (only with `cfg(test)` or the `testing` feature).
//!
//! [`FakeDevice`] stands in for a WireGuard device: it holds peers in memory, records every
//! operation it is asked to apply, reports handshakes, counters and drop counts a test sets,
//! and can be told to refuse operations on a peer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kms_client::PrivateKey;

use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::core::uapi::{DeviceReport, PeerReport};
use crate::device::{Device, DropReason, Error};

/// An in-memory device. Clones share state, so a test keeps one while the driver owns another.
#[derive(Debug, Clone, Default)]
pub struct FakeDevice {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    peers: BTreeMap<PublicKey, PeerConfig>,
    stats: BTreeMap<PublicKey, Stats>,
    log: Vec<Op>,
    refused: BTreeSet<PublicKey>,
    dropped: Vec<(DropReason, u64)>,
    underlay: BTreeSet<IpAddr>,
}

/// What the device reports about a peer's tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Time of the last handshake since the Unix epoch.
    pub last_handshake: Option<Duration>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

impl FakeDevice {
    /// Creates an empty device.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns every operation applied so far, in order (refused ones included).
    pub fn log(&self) -> Vec<Op> {
        self.lock().log.clone()
    }

    /// Returns the peers the device holds.
    pub fn peers(&self) -> BTreeMap<PublicKey, PeerConfig> {
        self.lock().peers.clone()
    }

    /// Sets what the device reports about `key`'s tunnel.
    pub fn set_stats(&self, key: PublicKey, stats: Stats) {
        self.lock().stats.insert(key, stats);
    }

    /// Sets the drop counts the device reports.
    pub fn set_dropped_packets(&self, dropped: Vec<(DropReason, u64)>) {
        self.lock().dropped = dropped;
    }

    /// Sets the host addresses the device reports as the underlay (none by default).
    pub fn set_underlay(&self, addresses: BTreeSet<IpAddr>) {
        self.lock().underlay = addresses;
    }

    /// Makes every later operation on `key` fail (or succeed again with `false`).
    pub fn refuse(&self, key: PublicKey, refused: bool) {
        let mut state = self.lock();
        if refused {
            state.refused.insert(key);
        } else {
            state.refused.remove(&key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has failed already.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Device for FakeDevice {
    fn name(&self) -> &str {
        "fake0"
    }

    async fn report(&mut self) -> Result<DeviceReport, Error> {
        let state = self.lock();
        let peers = state
            .peers
            .values()
            .map(|config| {
                let stats = state
                    .stats
                    .get(&config.public_key)
                    .copied()
                    .unwrap_or_default();
                PeerReport {
                    public_key: config.public_key,
                    endpoint: config.endpoint,
                    allowed_ips: config.allowed_ips.clone(),
                    persistent_keepalive: config.persistent_keepalive,
                    last_handshake: stats.last_handshake,
                    rx_bytes: stats.rx_bytes,
                    tx_bytes: stats.tx_bytes,
                }
            })
            .collect();
        Ok(DeviceReport {
            listen_port: Some(51820),
            peers,
        })
    }

    fn dropped_packets(&self) -> Vec<(DropReason, u64)> {
        self.lock().dropped.clone()
    }

    fn underlay_addresses(&self) -> std::io::Result<BTreeSet<IpAddr>> {
        Ok(self.lock().underlay.clone())
    }

    async fn apply(&mut self, op: &Op, _previous: Option<&PeerConfig>) -> Result<(), Error> {
        let mut state = self.lock();
        state.log.push(op.clone());
        let key = op.device_key();
        if state.refused.contains(&key) {
            return Err(Error::Kernel {
                name: "fake0".to_owned(),
                reason: format!("refused operation on {key}"),
            });
        }
        match op {
            Op::RemovePeer(key) => {
                state.peers.remove(key);
                state.stats.remove(key);
            }
            Op::UpsertPeer(config) => {
                state.peers.insert(config.public_key, config.clone());
            }
            Op::ReplaceKey { old, config } => {
                state.peers.remove(old);
                state.stats.remove(old);
                state.peers.insert(config.public_key, config.clone());
            }
        }
        Ok(())
    }

    async fn stage_key(&mut self, _key: &PrivateKey) -> Result<(), Error> {
        Err(unsupported("staging a second private key"))
    }

    async fn promote_key(&mut self) -> Result<(), Error> {
        Err(unsupported("promoting a staged private key"))
    }

    async fn drop_previous_key(&mut self) -> Result<(), Error> {
        Err(unsupported("dropping a previous private key"))
    }

    async fn accept_peer_next_key(
        &mut self,
        _current: &PublicKey,
        _next: &PublicKey,
    ) -> Result<(), Error> {
        Err(unsupported("accepting a peer's next key"))
    }

    async fn complete_peer_key(&mut self, _next: &PublicKey) -> Result<(), Error> {
        Err(unsupported("completing a peer's key rotation"))
    }

    async fn forget_peer_next_key(&mut self, _current: &PublicKey) -> Result<(), Error> {
        Err(unsupported("forgetting a peer's next key"))
    }

    async fn shutdown(self) -> Result<(), Error> {
        Ok(())
    }
}

/// The fake holds no keys: rotation steps, its own and its peers', are unsupported.
fn unsupported(what: &'static str) -> Error {
    Error::Unsupported {
        name: "fake0".to_owned(),
        what,
    }
}

/// Serializes the tests that capture log lines with a subscriber of their own. Tracing keeps
/// each callsite's interest and the maximum level in statics shared by every thread of the
/// test process, so two such tests running at once can hide each other's events; each holds
/// this for as long as its subscriber is installed.
pub fn log_capture_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
