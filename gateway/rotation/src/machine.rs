//! The initiator's rotation: stage → announce → commit → verify, or roll back.
//!
//! A [`Rotation`] is the persisted record of one attempt. Adapters feed it [`Event`]s (what
//! happened: the key store wrote the next key, a peer acknowledged, the data plane promoted
//! the key...) and ask it for [`Action`]s (what to do now). It never performs IO itself.
//!
//! | Phase | Actions until it moves on | Moves on when |
//! |---|---|---|
//! | `Staging` | `StoreNext` | `NextStored` → `Announcing` |
//! | `Announcing` | `StageInPlane`; `Announce` to each channel peer not acked; `PrintManual` for each manual peer not confirmed | staged, every channel peer `Acked`, every manual peer `ManualConfirmed` → `Committing` |
//! | `Committing` | `StoreCurrent`, then `PromoteInPlane` | `CurrentStored` then `Promoted` → `Verifying` |
//! | `Verifying` | `Initiate` to each peer without a handshake under the new key; once all have one, `DropPreviousInPlane` and `TellComplete` to each announced peer | dropped and all told → `Complete` |
//! | `RollingBack` | `RestoreStore`; then `DemoteInPlane` or `UnstageInPlane` as far as the plane got; then `TellAbort` to each announced peer | restored, plane back, all told → `RolledBack` |
//!
//! A rollback starts on `NextStoreFailed`, `StageFailed`, `AnnounceRefused`,
//! `CurrentStoreFailed`, `PromoteFailed`, an operator's `Abort` (only before the new key is
//! stored as current), or a missed deadline: `announce_timeout` after entering `Announcing`,
//! `verify_deadline` after entering `Verifying` while a handshake is missing. Nothing is
//! announced before the next key is stored; the commit waits for every peer; the old key
//! leaves the plane only after every peer handshook under the new one; a rollback restores the
//! key store before it touches the plane. "Announced" peers are the channel (non-manual)
//! peers of a rotation that reached `Announcing`; manual peers are told by the operator.
//!
//! # Driving loop
//!
//! Persist a new record before its first action, and persist the record again whenever it
//! changed before anything else is performed:
//!
//! 1. [`Rotation::tick`] applies a missed deadline; if it returns `true`, persist;
//! 2. [`Rotation::next_actions`];
//! 3. perform the actions but `Wait`, feeding each result back with [`Rotation::on`] (a
//!    refused event changes nothing and is only logged); once an event moved the phase, the
//!    rest of the list may be skipped;
//! 4. if the record changed, persist it and go to 1 at once; otherwise sleep until the
//!    `Wait`'s instant (or an operator's event) and go to 1. Stop on `Finished`.
//!
//! Actions are level-triggered: each stays in the list until the event that settles it
//! arrives, so a send that failed is sent again on a later pass (at least every
//! `retry_every`), and receivers take repeats idempotently. A gateway that stops mid-way
//! continues from the record and its key store ([`crate::resume`]).

mod action;
mod event;
mod phase;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use ztgw_model::key::PublicKey;

use crate::RotationId;
use crate::key_text;
use crate::schedule::PeerReadiness;

pub use action::Action;
pub use event::{Event, Refusal};
pub use phase::{Outcome, Phase, PlaneState, RollbackReason, Step, StoreState};

/// The machine's deadlines and retry pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long every peer has to acknowledge the next key (default 60 s).
    pub announce_timeout: Duration,
    /// How long every peer has to handshake under the new key after the switch (default 60 s).
    pub verify_deadline: Duration,
    /// How often unanswered sends are repeated (default 5 s).
    pub retry_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            announce_timeout: Duration::from_secs(60),
            verify_deadline: Duration::from_secs(60),
            retry_every: Duration::from_secs(5),
        }
    }
}

/// One peer taking part in a rotation, as given at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The peer's name.
    pub name: String,
    /// The peer's current public key (the announcement's `receiver_key`).
    pub public_key: PublicKey,
    /// Whether the operator handles the peer out of band (`--manual-peer`).
    pub manual: bool,
}

impl From<&PeerReadiness> for Participant {
    fn from(peer: &PeerReadiness) -> Self {
        Self {
            name: peer.name.clone(),
            public_key: peer.public_key,
            manual: peer.manual,
        }
    }
}

/// The persisted record of one rotation attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub(crate) id: RotationId,
    pub(crate) sequence: u64,
    #[serde(with = "key_text")]
    pub(crate) old_public: PublicKey,
    #[serde(with = "key_text")]
    pub(crate) next_public: PublicKey,
    pub(crate) started_at: SystemTime,
    pub(crate) phase: Phase,
    pub(crate) phase_since: SystemTime,
    pub(crate) peers: BTreeMap<String, PeerProgress>,
    pub(crate) store: StoreState,
    pub(crate) plane: PlaneState,
    pub(crate) outcome: Option<Outcome>,
}

/// One peer's progress through the rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProgress {
    /// The peer's public key when the rotation started.
    #[serde(with = "key_text")]
    pub public_key: PublicKey,
    /// Whether the peer acknowledged the next key (or, for a manual peer, the operator
    /// confirmed it).
    pub acked: bool,
    /// Whether a handshake with the peer under the new key was seen.
    pub handshake_under_new: bool,
    /// Whether the peer was told the end (complete or abort).
    pub told_end: bool,
    /// Whether the operator handles the peer out of band.
    pub manual: bool,
}

/// The body of `rotate.announce`: the next key, bound to both gateways' current keys and to
/// a sequence so that it cannot be replayed after a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceBody {
    /// The rotation.
    pub rotation_id: RotationId,
    /// The sender's rotation sequence; strictly increasing.
    pub sequence: u64,
    /// The sender's next public key.
    #[serde(with = "key_text")]
    pub next_public_key: PublicKey,
    /// The sender's current public key.
    #[serde(with = "key_text")]
    pub sender_key: PublicKey,
    /// The receiver's current public key, as the sender knows it.
    #[serde(with = "key_text")]
    pub receiver_key: PublicKey,
}

/// Why a rotation cannot be started as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The next key equals the current one.
    #[error("the next key equals the current key")]
    SameKey,
    /// Sequence 0 (sequences start at 1, and peers refuse one that does not advance).
    #[error("a rotation's sequence starts at 1")]
    ZeroSequence,
    /// Two participants share a name.
    #[error("peer {0} is listed twice")]
    DuplicatePeer(String),
}

impl Rotation {
    /// Starts a rotation in [`Phase::Staging`] at `now`. `sequence` is the gateway's last
    /// sequence plus one; `id` and `next_public` come from the caller's RNG.
    ///
    /// # Errors
    /// [`StartError`] when the keys are equal, the sequence is 0 or a peer is listed twice.
    pub fn new(
        id: RotationId,
        sequence: u64,
        old_public: PublicKey,
        next_public: PublicKey,
        participants: impl IntoIterator<Item = Participant>,
        now: SystemTime,
    ) -> Result<Self, StartError> {
        if old_public == next_public {
            return Err(StartError::SameKey);
        }
        if sequence == 0 {
            return Err(StartError::ZeroSequence);
        }
        let mut peers = BTreeMap::new();
        for p in participants {
            let progress = PeerProgress {
                public_key: p.public_key,
                acked: false,
                handshake_under_new: false,
                told_end: false,
                manual: p.manual,
            };
            if peers.insert(p.name.clone(), progress).is_some() {
                return Err(StartError::DuplicatePeer(p.name));
            }
        }
        Ok(Self {
            id,
            sequence,
            old_public,
            next_public,
            started_at: now,
            phase: Phase::Staging,
            phase_since: now,
            peers,
            store: StoreState::Unwritten,
            plane: PlaneState::OldOnly,
            outcome: None,
        })
    }

    /// Returns the rotation's id.
    pub fn id(&self) -> &RotationId {
        &self.id
    }

    /// Returns the rotation's sequence.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Returns the key being replaced.
    pub fn old_public(&self) -> &PublicKey {
        &self.old_public
    }

    /// Returns the key replacing it.
    pub fn next_public(&self) -> &PublicKey {
        &self.next_public
    }

    /// Returns when the rotation started.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Returns the current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Returns when the current phase was entered.
    pub fn phase_since(&self) -> SystemTime {
        self.phase_since
    }

    /// Returns every peer's progress, by name.
    pub fn peers(&self) -> &BTreeMap<String, PeerProgress> {
        &self.peers
    }

    /// Returns what the key store holds of this rotation.
    pub fn store(&self) -> StoreState {
        self.store
    }

    /// Returns what the data plane holds of this rotation.
    pub fn plane(&self) -> PlaneState {
        self.plane
    }

    /// Returns how the rotation ended; `None` while it runs.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Returns whether the rotation has ended (complete or rolled back).
    pub fn is_finished(&self) -> bool {
        self.phase.is_finished()
    }

    /// Returns the instant at which the current phase times out, if it has a deadline now.
    pub fn deadline(&self, timing: &Timing) -> Option<SystemTime> {
        match self.phase {
            Phase::Announcing => self.phase_since.checked_add(timing.announce_timeout),
            Phase::Verifying if !self.all_handshook() => {
                self.phase_since.checked_add(timing.verify_deadline)
            }
            _ => None,
        }
    }

    /// Returns the announcement for `peer`, or `None` for an unknown peer.
    pub fn announce_body(&self, peer: &str) -> Option<AnnounceBody> {
        self.peers.get(peer).map(|progress| AnnounceBody {
            rotation_id: self.id.clone(),
            sequence: self.sequence,
            next_public_key: self.next_public,
            sender_key: self.old_public,
            receiver_key: progress.public_key,
        })
    }

    fn all_acked(&self) -> bool {
        self.peers.values().all(|p| p.acked)
    }

    fn all_handshook(&self) -> bool {
        self.peers.values().all(|p| p.handshake_under_new)
    }

    /// Returns whether announcements may have gone out: the rotation reached `Announcing`.
    fn was_announced(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Staging
                | Phase::RollingBack {
                    from: Step::Staging,
                    ..
                }
        )
    }

    /// Returns the announced (channel) peers not yet told the end.
    fn untold(&self) -> impl Iterator<Item = &str> {
        let announced = self.was_announced();
        self.peers
            .iter()
            .filter(move |(_, p)| announced && !p.manual && !p.told_end)
            .map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests;
