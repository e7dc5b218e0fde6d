//! Peer up/down transitions: which peers came up or went down since the last observation,
//! so that the log says so once, at the change, and stays quiet while nothing changes.
//!
//! A peer is up or down by the health rule ([`Liveness`], [`super::health::is_peer_up`]), the
//! same one the metrics and the admin status read. A peer seen for the first time while down
//! (at start-up, or just declared) was never up: it is recorded as down without a transition,
//! so start-up does not report every peer that has not answered yet as "down". A peer seen for
//! the first time while up is reported as up. A peer no longer observed (removed, or no
//! longer accepted) leaves the state, and is reported as up again when it comes back up.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::health::{Liveness, PeerActivity};
use super::peer::PeerId;

/// One applied, declared peer as the device reports it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The peer's declaration, which identifies it from one observation to the next (across
    /// a change of its key).
    pub id: PeerId,
    /// The peer's name as the operator declared it.
    pub name: String,
    /// What the health rule needs.
    pub activity: PeerActivity,
}

/// Whether each observed peer was up at the last observation, by declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStates(BTreeMap<PeerId, bool>);

impl PeerStates {
    /// Returns whether the peer was up at the last observation; `None` if it was not observed.
    pub fn is_up(&self, id: &PeerId) -> Option<bool> {
        self.0.get(id).copied()
    }

    /// Returns how many peers the state holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns whether the state holds no peer.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A peer that came up or went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The peer's name as the operator declared it.
    pub name: String,
    /// `true` when it came up, `false` when it went down.
    pub up: bool,
}

/// Judges every observed peer at `now` and returns the new states and the transitions from
/// `previous`, in the order of `current`.
pub fn observe(
    previous: &PeerStates,
    current: &[Observation],
    liveness: &Liveness,
    now: SystemTime,
) -> (PeerStates, Vec<Transition>) {
    let mut states = BTreeMap::new();
    let mut transitions = Vec::new();
    for peer in current {
        let up = liveness.is_up(&peer.activity, now);
        let changed = match previous.is_up(&peer.id) {
            Some(was_up) => was_up != up,
            None => up,
        };
        if changed {
            transitions.push(Transition {
                name: peer.name.clone(),
                up,
            });
        }
        states.insert(peer.id.clone(), up);
    }
    (PeerStates(states), transitions)
}

#[cfg(test)]
mod tests;
