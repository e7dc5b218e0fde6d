//! The reconcile decision: which operations move a device from what it holds to what is
//! declared.

use std::collections::{BTreeMap, BTreeSet};

use super::key::PublicKey;
use super::peer::{PeerConfig, PeerId};

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

/// Declared peers by identity: what the declarations want, or what the device holds for them.
pub type PeerMap = BTreeMap<PeerId, PeerConfig>;

/// What the device holds, as the plan sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// For each declaration the device runs a peer for, that peer: what it was last given.
    pub declared: PeerMap,
    /// Device peers no declaration was applied to (added by hand, say), by public key.
    pub undeclared: BTreeMap<PublicKey, PeerConfig>,
}

impl Observed {
    /// Sorts the device's peers: those `applied` names (by their key) are declared, the
    /// others undeclared. An applied peer the device no longer holds is left out.
    pub fn new(applied: &PeerMap, device: &BTreeMap<PublicKey, PeerConfig>) -> Self {
        let declared: PeerMap = applied
            .iter()
            .filter(|(_, config)| device.contains_key(&config.public_key))
            .map(|(id, config)| (id.clone(), config.clone()))
            .collect();
        let held: BTreeSet<PublicKey> = declared.values().map(|c| c.public_key).collect();
        let undeclared = device
            .iter()
            .filter(|(key, _)| !held.contains(key))
            .map(|(key, config)| (*key, config.clone()))
            .collect();
        Self {
            declared,
            undeclared,
        }
    }

    /// Lets each desired peer the device runs under no declaration yet, but under its key
    /// (added by hand before it was declared), be that declaration's peer from now on, so
    /// it is updated in place rather than removed and added. Returns the peers adopted.
    pub fn adopt(&mut self, desired: &PeerMap) -> PeerMap {
        let mut adopted = PeerMap::new();
        for (id, want) in desired {
            if self.declared.contains_key(id) {
                continue;
            }
            if let Some(have) = self.undeclared.remove(&want.public_key) {
                self.declared.insert(id.clone(), have.clone());
                adopted.insert(id.clone(), have);
            }
        }
        adopted
    }

    /// Returns every peer the device holds, declared or not, by key.
    pub fn by_key(&self) -> BTreeMap<PublicKey, PeerConfig> {
        let declared = self.declared.values().map(|c| (c.public_key, c.clone()));
        let undeclared = self.undeclared.iter().map(|(k, c)| (*k, c.clone()));
        declared.chain(undeclared).collect()
    }
}

/// One operation and the declaration it is for (`None`: a device peer nobody declares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The declaration the operation serves.
    pub peer: Option<PeerId>,
    /// What the device does.
    pub op: Op,
}

/// Computes the operations that make the device match `desired`.
///
/// A declared peer is matched with what the device holds for the same declaration; when its
/// key changed, it gets [`Op::ReplaceKey`] (its routes stay), not a removal and an addition.
/// Removals come first (so a key or an allowed IP moving between peers is freed before it is
/// claimed: device peers nobody declares by key, then declarations by identity), then key
/// replacements, then upserts, each ordered by identity. A
/// desired peer without an endpoint (passive) matches an observed peer whatever endpoint it
/// has learned by roaming.
///
/// When a peer takes a key that another peer's replacement gives up in the same plan (two
/// peers swapping keys, or a chain), no order of replacements is safe: that peer is removed
/// and added instead.
pub fn plan(desired: &PeerMap, observed: &Observed) -> Vec<Change> {
    let mut removals: Vec<Change> = observed
        .undeclared
        .keys()
        .map(|key| Change {
            peer: None,
            op: Op::RemovePeer(*key),
        })
        .collect();
    removals.extend(
        observed
            .declared
            .iter()
            .filter(|(id, _)| !desired.contains_key(*id))
            .map(|(id, have)| Change {
                peer: Some(id.clone()),
                op: Op::RemovePeer(have.public_key),
            }),
    );
    let mut replacements = Vec::new();
    let mut upserts = Vec::new();
    for (id, want) in desired {
        match observed.declared.get(id) {
            Some(have) if have.public_key != want.public_key => replacements.push(Change {
                peer: Some(id.clone()),
                op: Op::ReplaceKey {
                    old: have.public_key,
                    config: want.clone(),
                },
            }),
            Some(have) if matches(want, have) => {}
            _ => upserts.push(Change {
                peer: Some(id.clone()),
                op: Op::UpsertPeer(want.clone()),
            }),
        }
    }
    let given_up: BTreeSet<PublicKey> = replacements.iter().map(|c| c.op.device_key()).collect();
    let (unsafe_replacements, replacements): (Vec<Change>, Vec<Change>) = replacements
        .into_iter()
        .partition(|c| matches!(&c.op, Op::ReplaceKey { config, .. } if given_up.contains(&config.public_key)));
    for change in unsafe_replacements {
        if let Op::ReplaceKey { old, config } = change.op {
            removals.push(Change {
                peer: change.peer.clone(),
                op: Op::RemovePeer(old),
            });
            upserts.push(Change {
                peer: change.peer,
                op: Op::UpsertPeer(config),
            });
        }
    }
    upserts.sort_by(|a, b| a.peer.cmp(&b.peer));
    removals.extend(replacements);
    removals.extend(upserts);
    removals
}

fn matches(want: &PeerConfig, have: &PeerConfig) -> bool {
    let endpoint_ok = want.endpoint.is_none() || want.endpoint == have.endpoint;
    endpoint_ok
        && want.allowed_ips == have.allowed_ips
        && want.persistent_keepalive == have.persistent_keepalive
        && want.preshared_key == have.preshared_key
}

/// Returns `observed` after `changes` have been applied, as a device that applied them
/// would report it.
pub fn apply(observed: &Observed, changes: &[Change]) -> Observed {
    let mut next = observed.clone();
    for change in changes {
        match (&change.op, &change.peer) {
            (Op::RemovePeer(key), None) => {
                next.undeclared.remove(key);
            }
            (Op::RemovePeer(_), Some(id)) => {
                next.declared.remove(id);
            }
            (Op::UpsertPeer(config) | Op::ReplaceKey { config, .. }, Some(id)) => {
                next.declared.insert(id.clone(), config.clone());
            }
            (Op::UpsertPeer(config) | Op::ReplaceKey { config, .. }, None) => {
                next.undeclared.insert(config.public_key, config.clone());
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
