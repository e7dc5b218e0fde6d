//! The reconcile decision: which operations move a device from what it holds to what is
//! declared.

use std::collections::BTreeMap;

use super::key::PublicKey;
use super::peer::PeerConfig;

/// One change that moves the device toward the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Remove the peer and its routes.
    RemovePeer(PublicKey),
    /// Add the peer, or change it to this configuration.
    UpsertPeer(PeerConfig),
    /// A declared peer's public key changed (it rotated): the peer under `old` takes
    /// `config.public_key`, keeping its allowed IPs, endpoint and routes throughout (a new
    /// handshake follows; there is no window without a route).
    ReplaceKey {
        /// The key the device holds now.
        old: PublicKey,
        /// The peer's configuration under its new key.
        config: PeerConfig,
    },
}

impl Op {
    /// Returns the public key the device holds for this peer before the operation.
    pub fn device_key(&self) -> PublicKey {
        match self {
            Op::RemovePeer(key) | Op::ReplaceKey { old: key, .. } => *key,
            Op::UpsertPeer(config) => config.public_key,
        }
    }
}

/// Peers by public key.
pub type PeerMap = BTreeMap<PublicKey, PeerConfig>;

/// Computes the operations that make `observed` match `desired`.
///
/// Removals come first (so an allowed IP moving between peers is freed before it is claimed),
/// then upserts, each ordered by public key. A desired peer without an endpoint (passive)
/// matches an observed peer whatever endpoint it has learned by roaming.
pub fn plan(desired: &PeerMap, observed: &PeerMap) -> Vec<Op> {
    let mut ops: Vec<Op> = observed
        .keys()
        .filter(|key| !desired.contains_key(key))
        .map(|key| Op::RemovePeer(*key))
        .collect();
    ops.extend(
        desired
            .values()
            .filter(|want| {
                !observed
                    .get(&want.public_key)
                    .is_some_and(|have| matches(want, have))
            })
            .cloned()
            .map(Op::UpsertPeer),
    );
    ops
}

fn matches(want: &PeerConfig, have: &PeerConfig) -> bool {
    let endpoint_ok = want.endpoint.is_none() || want.endpoint == have.endpoint;
    endpoint_ok
        && want.allowed_ips == have.allowed_ips
        && want.persistent_keepalive == have.persistent_keepalive
        && want.preshared_key == have.preshared_key
}

/// Returns `observed` after `ops` have been applied, as a device that applied them would
/// report it.
pub fn apply(observed: &PeerMap, ops: &[Op]) -> PeerMap {
    let mut next = observed.clone();
    for op in ops {
        match op {
            Op::RemovePeer(key) => {
                next.remove(key);
            }
            Op::UpsertPeer(config) => {
                next.insert(config.public_key, config.clone());
            }
            Op::ReplaceKey { old, config } => {
                next.remove(old);
                next.insert(config.public_key, config.clone());
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
