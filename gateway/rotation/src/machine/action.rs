//! What a rotation asks its adapters to do now.

use std::time::SystemTime;

use super::{AnnounceBody, Phase, PlaneState, Rotation, StoreState, Timing};

/// One thing an adapter must do now. Each stays in [`Rotation::next_actions`] until the
/// event that settles it is fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the new key to the key store as *next*. Settled by `NextStored` or
    /// `NextStoreFailed`.
    StoreNext,
    /// Stage the new key in the data plane. Settled by `Staged` or `StageFailed`.
    StageInPlane,
    /// Send `rotate.announce` to a channel peer. Settled by `Acked` or `AnnounceRefused`.
    Announce {
        /// The peer.
        peer: String,
        /// The body to send.
        body: AnnounceBody,
    },
    /// Show the operator the `wg set` line for a manual peer. Settled by `ManualConfirmed`.
    PrintManual {
        /// The peer.
        peer: String,
    },
    /// Write the new key to the key store as current, keeping the old one as previous and
    /// clearing *next*. Settled by `CurrentStored` or `CurrentStoreFailed`.
    StoreCurrent,
    /// Make the staged key current in the data plane. Settled by `Promoted` or
    /// `PromoteFailed`.
    PromoteInPlane,
    /// Start a handshake with the peer under the new key. Settled by `HandshakeUnderNew`.
    Initiate {
        /// The peer.
        peer: String,
    },
    /// Forget the old key in the data plane. Settled by `PreviousDropped`.
    DropPreviousInPlane,
    /// Send `rotate.complete` to the peer. Settled by `EndTold`.
    TellComplete {
        /// The peer.
        peer: String,
    },
    /// Send `rotate.abort` to the peer. Settled by `EndTold`.
    TellAbort {
        /// The peer.
        peer: String,
    },
    /// Restore the key store: the old key current, no next key. Settled by
    /// `RolledBackStored`.
    RestoreStore,
    /// Make the old key current again in the data plane and forget the new one. Settled by
    /// `Demoted`.
    DemoteInPlane,
    /// Withdraw the staged key from the data plane. Settled by `Unstaged`.
    UnstageInPlane,
    /// Call again at this instant at the latest (the next retry, or a deadline).
    Wait {
        /// When.
        until: SystemTime,
    },
    /// The rotation has ended; stop driving it.
    Finished,
}

impl Rotation {
    /// Returns what the adapters must do at `now`, a missed deadline included (the rollback's
    /// first actions), without changing the record: the same record and `now` give the same
    /// actions. Every list but `[Finished]` ends with a [`Action::Wait`].
    pub fn next_actions(&self, now: SystemTime, timing: &Timing) -> Vec<Action> {
        let mut view = self.clone();
        view.tick(now, timing);
        view.actions_at(now, timing)
    }

    fn actions_at(&self, now: SystemTime, timing: &Timing) -> Vec<Action> {
        let mut actions = match &self.phase {
            Phase::Complete | Phase::RolledBack => return vec![Action::Finished],
            Phase::Staging => vec![Action::StoreNext],
            Phase::Announcing => self.announcing(),
            Phase::Committing => match (self.store, self.plane) {
                (StoreState::NextStored, _) => vec![Action::StoreCurrent],
                (StoreState::Committed, PlaneState::Staged) => vec![Action::PromoteInPlane],
                _ => Vec::new(),
            },
            Phase::Verifying => self.verifying(),
            Phase::RollingBack { .. } => self.rolling_back(),
        };
        let retry = now.checked_add(timing.retry_every).unwrap_or(now);
        let until = self
            .deadline(timing)
            .map_or(retry, |deadline| deadline.min(retry));
        actions.push(Action::Wait { until });
        actions
    }

    fn announcing(&self) -> Vec<Action> {
        let stage = (self.plane == PlaneState::OldOnly).then_some(Action::StageInPlane);
        let peers = self.peers.iter().filter(|(_, p)| !p.acked);
        let tell = peers.filter_map(|(name, progress)| {
            let peer = name.clone();
            if progress.manual {
                Some(Action::PrintManual { peer })
            } else {
                let body = self.announce_body(name)?;
                Some(Action::Announce { peer, body })
            }
        });
        stage.into_iter().chain(tell).collect()
    }

    fn verifying(&self) -> Vec<Action> {
        if !self.all_handshook() {
            return self
                .peers
                .iter()
                .filter(|(_, p)| !p.handshake_under_new)
                .map(|(name, _)| Action::Initiate { peer: name.clone() })
                .collect();
        }
        let drop = (self.plane == PlaneState::Promoted).then_some(Action::DropPreviousInPlane);
        let tell = self.untold().map(|peer| Action::TellComplete {
            peer: peer.to_owned(),
        });
        drop.into_iter().chain(tell).collect()
    }

    fn rolling_back(&self) -> Vec<Action> {
        if self.store != StoreState::Restored {
            // Every rollback restores the store: a failed write may have left a next key, and
            // after the commit the store must hold the old key before the plane goes back.
            return vec![Action::RestoreStore];
        }
        match self.plane {
            PlaneState::Promoted | PlaneState::NewOnly => vec![Action::DemoteInPlane],
            PlaneState::Staged => vec![Action::UnstageInPlane],
            PlaneState::OldOnly => self
                .untold()
                .map(|peer| Action::TellAbort {
                    peer: peer.to_owned(),
                })
                .collect(),
        }
    }
}
