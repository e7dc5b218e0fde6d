//! What adapters report to a rotation, and how it moves.

use std::time::SystemTime;

use super::{Outcome, Phase, PlaneState, RollbackReason, Rotation, StoreState, Timing};
use super::{PeerProgress, Step};

/// Something that happened, reported by an adapter (or the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key store holds the new key as *next*.
    NextStored,
    /// The key store did not take the next key.
    NextStoreFailed,
    /// The data plane holds the new key as staged.
    Staged,
    /// The data plane did not take the new key.
    StageFailed,
    /// A channel peer acknowledged the next key (it recorded it durably).
    Acked {
        /// The peer.
        peer: String,
    },
    /// The operator confirmed a manual peer was given the next key.
    ManualConfirmed {
        /// The peer.
        peer: String,
    },
    /// A channel peer refused the announcement.
    AnnounceRefused {
        /// The peer.
        peer: String,
    },
    /// The key store holds the new key as current and the old one as previous.
    CurrentStored,
    /// The key store did not take the new key as current.
    CurrentStoreFailed,
    /// The data plane made the new key current (the old one still answers).
    Promoted,
    /// The data plane did not switch.
    PromoteFailed,
    /// A handshake with the peer under the new key was seen.
    HandshakeUnderNew {
        /// The peer.
        peer: String,
    },
    /// The data plane forgot the old key.
    PreviousDropped,
    /// The peer took `rotate.complete` or `rotate.abort`.
    EndTold {
        /// The peer.
        peer: String,
    },
    /// The key store is restored: the old key current, no next key.
    RolledBackStored,
    /// The data plane has the old key current again and no longer holds the new one.
    Demoted,
    /// The data plane no longer holds the staged key.
    Unstaged,
    /// The operator aborts (`--abort`); allowed until the new key is stored as current.
    Abort {
        /// The operator's reason.
        reason: String,
    },
}

/// Why an event was refused. A refused event changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The rotation is complete or rolled back.
    #[error("the rotation has already ended")]
    Finished,
    /// An abort after the new key was stored as current.
    #[error(
        "the new key is committed: the rotation can no longer be aborted; it completes, or \
         rolls back if a peer does not handshake under the new key by the verify deadline"
    )]
    Committed,
    /// An abort during a rollback.
    #[error("the rotation is already rolling back")]
    RollingBack,
    /// The event does not fit where the rotation stands.
    #[error("event {event} does not fit the rotation's phase {phase}")]
    OutOfPhase {
        /// The event's name.
        event: &'static str,
        /// The phase's name.
        phase: &'static str,
    },
    /// The peer does not take part in the rotation.
    #[error("the peer is not part of this rotation")]
    UnknownPeer,
    /// A channel event for a manual peer.
    #[error("the peer is handled out of band: the operator confirms it")]
    ManualPeer,
    /// An operator confirmation for a channel peer.
    #[error("the peer is not handled out of band: it acknowledges over the control channel")]
    NotManual,
}

impl Event {
    /// Returns the event's name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::NextStored => "next_stored",
            Event::NextStoreFailed => "next_store_failed",
            Event::Staged => "staged",
            Event::StageFailed => "stage_failed",
            Event::Acked { .. } => "acked",
            Event::ManualConfirmed { .. } => "manual_confirmed",
            Event::AnnounceRefused { .. } => "announce_refused",
            Event::CurrentStored => "current_stored",
            Event::CurrentStoreFailed => "current_store_failed",
            Event::Promoted => "promoted",
            Event::PromoteFailed => "promote_failed",
            Event::HandshakeUnderNew { .. } => "handshake_under_new",
            Event::PreviousDropped => "previous_dropped",
            Event::EndTold { .. } => "end_told",
            Event::RolledBackStored => "rolled_back_stored",
            Event::Demoted => "demoted",
            Event::Unstaged => "unstaged",
            Event::Abort { .. } => "abort",
        }
    }
}

impl Refusal {
    /// Returns a fixed word for the refusal (for metrics and logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Refusal::Finished => "finished",
            Refusal::Committed => "committed",
            Refusal::RollingBack => "rolling_back",
            Refusal::OutOfPhase { .. } => "out_of_phase",
            Refusal::UnknownPeer => "unknown_peer",
            Refusal::ManualPeer => "manual_peer",
            Refusal::NotManual => "not_manual",
        }
    }
}

impl Rotation {
    /// Applies `event`, which happened at `now`. A repeated event that already took effect is
    /// accepted and changes nothing.
    ///
    /// # Errors
    /// [`Refusal`] when the event does not fit where the rotation stands; nothing changes.
    pub fn on(&mut self, event: Event, now: SystemTime) -> Result<(), Refusal> {
        if self.phase.is_finished() {
            return Err(Refusal::Finished);
        }
        let out_of_phase = Refusal::OutOfPhase {
            event: event.name(),
            phase: self.phase.name(),
        };
        let fits = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(out_of_phase.clone())
            }
        };
        let phase = self.phase.clone();
        let (store, plane) = (self.store, self.plane);
        match event {
            Event::NextStored => {
                fits(phase == Phase::Staging)?;
                self.store = StoreState::NextStored;
                self.enter(Phase::Announcing, now);
            }
            Event::NextStoreFailed => {
                fits(phase == Phase::Staging)?;
                self.roll_back(RollbackReason::NextStoreFailed, now);
            }
            Event::Staged => {
                fits(
                    phase == Phase::Announcing
                        && matches!(plane, PlaneState::OldOnly | PlaneState::Staged),
                )?;
                self.plane = PlaneState::Staged;
            }
            Event::StageFailed => {
                fits(phase == Phase::Announcing && plane == PlaneState::OldOnly)?;
                self.roll_back(RollbackReason::StageFailed, now);
            }
            Event::Acked { peer } => {
                fits(phase == Phase::Announcing)?;
                self.channel_peer(&peer)?.acked = true;
            }
            Event::ManualConfirmed { peer } => {
                fits(phase == Phase::Announcing)?;
                let progress = self.peers.get_mut(&peer).ok_or(Refusal::UnknownPeer)?;
                if !progress.manual {
                    return Err(Refusal::NotManual);
                }
                progress.acked = true;
            }
            Event::AnnounceRefused { peer } => {
                fits(phase == Phase::Announcing)?;
                self.channel_peer(&peer)?;
                self.roll_back(RollbackReason::AnnounceRefused { peer }, now);
            }
            Event::CurrentStored => {
                let stored = matches!(store, StoreState::NextStored | StoreState::Committed);
                fits(phase == Phase::Committing && stored)?;
                self.store = StoreState::Committed;
            }
            Event::CurrentStoreFailed => {
                fits(phase == Phase::Committing && store == StoreState::NextStored)?;
                self.roll_back(RollbackReason::CurrentStoreFailed, now);
            }
            Event::Promoted | Event::PromoteFailed => {
                let ready = store == StoreState::Committed && plane == PlaneState::Staged;
                fits(phase == Phase::Committing && ready)?;
                if event == Event::Promoted {
                    self.plane = PlaneState::Promoted;
                    self.enter(Phase::Verifying, now);
                } else {
                    self.roll_back(RollbackReason::PromoteFailed, now);
                }
            }
            Event::HandshakeUnderNew { peer } => {
                fits(phase == Phase::Verifying)?;
                let progress = self.peers.get_mut(&peer).ok_or(Refusal::UnknownPeer)?;
                progress.handshake_under_new = true;
            }
            Event::PreviousDropped => {
                let held = matches!(plane, PlaneState::Promoted | PlaneState::NewOnly);
                fits(phase == Phase::Verifying && self.all_handshook() && held)?;
                self.plane = PlaneState::NewOnly;
            }
            Event::EndTold { peer } => {
                fits(self.is_telling_end())?;
                self.channel_peer(&peer)?.told_end = true;
            }
            Event::RolledBackStored => {
                fits(matches!(phase, Phase::RollingBack { .. }))?;
                self.store = StoreState::Restored;
            }
            Event::Demoted | Event::Unstaged => {
                let restored =
                    matches!(phase, Phase::RollingBack { .. }) && store == StoreState::Restored;
                let expected = match event {
                    Event::Demoted => matches!(plane, PlaneState::Promoted | PlaneState::NewOnly),
                    _ => plane == PlaneState::Staged,
                };
                fits(restored && (expected || plane == PlaneState::OldOnly))?;
                self.plane = PlaneState::OldOnly;
            }
            Event::Abort { reason } => match phase {
                Phase::Staging | Phase::Announcing => {
                    self.roll_back(RollbackReason::Aborted { reason }, now);
                }
                Phase::Committing if store == StoreState::NextStored => {
                    self.roll_back(RollbackReason::Aborted { reason }, now);
                }
                Phase::Committing | Phase::Verifying => return Err(Refusal::Committed),
                Phase::RollingBack { .. } => return Err(Refusal::RollingBack),
                Phase::Complete | Phase::RolledBack => return Err(Refusal::Finished),
            },
        }
        self.advance(now);
        Ok(())
    }

    /// Applies a missed deadline at `now` (a rollback) and any move that is already due.
    /// Returns whether the record changed.
    pub fn tick(&mut self, now: SystemTime, timing: &Timing) -> bool {
        let missed = self
            .deadline(timing)
            .is_some_and(|deadline| now >= deadline);
        if missed {
            let reason = match self.phase {
                Phase::Announcing => RollbackReason::AnnounceTimeout,
                _ => RollbackReason::VerifyTimeout,
            };
            self.roll_back(reason, now);
        }
        self.advance(now) || missed
    }

    /// Moves to the next phase when the current one's work is done. Returns whether it moved.
    pub(crate) fn advance(&mut self, now: SystemTime) -> bool {
        let mut moved = false;
        loop {
            let next = match &self.phase {
                Phase::Announcing if self.plane == PlaneState::Staged && self.all_acked() => {
                    Phase::Committing
                }
                Phase::Verifying
                    if self.all_handshook()
                        && self.plane == PlaneState::NewOnly
                        && self.untold().next().is_none() =>
                {
                    self.outcome = Some(Outcome::Completed);
                    Phase::Complete
                }
                Phase::RollingBack { from, reason }
                    if self.store == StoreState::Restored
                        && self.plane == PlaneState::OldOnly
                        && self.untold().next().is_none() =>
                {
                    self.outcome = Some(Outcome::RolledBack {
                        from: *from,
                        reason: reason.clone(),
                    });
                    Phase::RolledBack
                }
                _ => return moved,
            };
            self.enter(next, now);
            moved = true;
        }
    }

    /// Returns whether peers are being told the end: every handshake is in (complete), or a
    /// rollback restored the store and the plane (abort).
    fn is_telling_end(&self) -> bool {
        match self.phase {
            Phase::Verifying => self.all_handshook(),
            Phase::RollingBack { .. } => {
                self.store == StoreState::Restored && self.plane == PlaneState::OldOnly
            }
            _ => false,
        }
    }

    /// Returns the channel (non-manual) peer named `peer`.
    fn channel_peer(&mut self, peer: &str) -> Result<&mut PeerProgress, Refusal> {
        let progress = self.peers.get_mut(peer).ok_or(Refusal::UnknownPeer)?;
        if progress.manual {
            return Err(Refusal::ManualPeer);
        }
        Ok(progress)
    }

    /// Starts rolling back from the current forward phase.
    pub(crate) fn roll_back(&mut self, reason: RollbackReason, now: SystemTime) {
        let from = self.phase.step().unwrap_or(Step::Staging);
        self.enter(Phase::RollingBack { from, reason }, now);
    }

    fn enter(&mut self, phase: Phase, now: SystemTime) {
        self.phase = phase;
        self.phase_since = now;
    }
}
