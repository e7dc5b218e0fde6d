//! Where a rotation stands: its phase, why it rolled back, how it ended, and what the key
//! store and the data plane hold of it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a rotation stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The next key is generated, not yet stored.
    Staging,
    /// The next key is stored as *next*; peers are being told.
    Announcing,
    /// Every peer acknowledged; the new key is being stored as current and switched to.
    Committing,
    /// Switched; waiting for a handshake with every peer under the new key, then dropping the
    /// old key and telling peers the rotation is complete.
    Verifying,
    /// Done: the new key is current everywhere.
    Complete,
    /// Undoing the attempt.
    RollingBack {
        /// The phase the rollback started from.
        from: Step,
        /// Why.
        reason: RollbackReason,
    },
    /// Undone: the old key is current again and peers were told.
    RolledBack,
}

/// A forward phase, as the origin of a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// [`Phase::Staging`].
    Staging,
    /// [`Phase::Announcing`].
    Announcing,
    /// [`Phase::Committing`].
    Committing,
    /// [`Phase::Verifying`].
    Verifying,
}

/// Why a rotation rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackReason {
    /// The key store did not take the next key.
    NextStoreFailed,
    /// The data plane did not take the next key.
    StageFailed,
    /// A peer did not acknowledge within `announce_timeout`.
    AnnounceTimeout,
    /// A peer refused the announcement.
    AnnounceRefused {
        /// The peer.
        peer: String,
    },
    /// The key store did not take the new key as current.
    CurrentStoreFailed,
    /// The data plane did not switch to the new key.
    PromoteFailed,
    /// A peer did not handshake under the new key within `verify_deadline`.
    VerifyTimeout,
    /// The operator aborted (`--abort`).
    Aborted {
        /// The operator's reason.
        reason: String,
    },
    /// The gateway restarted before the commit was stored.
    Interrupted,
}

/// How a finished rotation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// The new key is current.
    Completed,
    /// The old key is current again.
    RolledBack {
        /// The phase the rollback started from.
        from: Step,
        /// Why.
        reason: RollbackReason,
    },
}

/// What the key store holds of this rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// Nothing written yet.
    Unwritten,
    /// The new key is stored as *next*.
    NextStored,
    /// The new key is stored as current, the old one as previous.
    Committed,
    /// Rolled back: the old key is current and no next key is stored.
    Restored,
}

/// What the data plane holds of this rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaneState {
    /// The old key only.
    OldOnly,
    /// The old key current, the new one staged.
    Staged,
    /// The new key current, the old one still answering.
    Promoted,
    /// The new key only (the old one dropped, or the plane restarted on the new key).
    NewOnly,
}

impl Phase {
    /// Returns the phase's name in the persisted form.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Staging => "staging",
            Phase::Announcing => "announcing",
            Phase::Committing => "committing",
            Phase::Verifying => "verifying",
            Phase::Complete => "complete",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::RolledBack => "rolled_back",
        }
    }

    /// Returns whether the phase is final.
    pub fn is_finished(&self) -> bool {
        matches!(self, Phase::Complete | Phase::RolledBack)
    }

    /// Returns the forward phase as a [`Step`], or `None` for the others.
    pub fn step(&self) -> Option<Step> {
        match self {
            Phase::Staging => Some(Step::Staging),
            Phase::Announcing => Some(Step::Announcing),
            Phase::Committing => Some(Step::Committing),
            Phase::Verifying => Some(Step::Verifying),
            _ => None,
        }
    }
}

impl RollbackReason {
    /// Returns a fixed word for the reason (for metrics and audit records).
    pub fn as_str(&self) -> &'static str {
        match self {
            RollbackReason::NextStoreFailed => "next_store_failed",
            RollbackReason::StageFailed => "stage_failed",
            RollbackReason::AnnounceTimeout => "announce_timeout",
            RollbackReason::AnnounceRefused { .. } => "announce_refused",
            RollbackReason::CurrentStoreFailed => "current_store_failed",
            RollbackReason::PromoteFailed => "promote_failed",
            RollbackReason::VerifyTimeout => "verify_timeout",
            RollbackReason::Aborted { .. } => "aborted",
            RollbackReason::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackReason::NextStoreFailed => {
                f.write_str("the key store did not take the next key")
            }
            RollbackReason::StageFailed => f.write_str("the data plane did not take the next key"),
            RollbackReason::AnnounceTimeout => {
                f.write_str("a peer did not acknowledge the next key in time")
            }
            RollbackReason::AnnounceRefused { peer } => {
                write!(f, "peer {peer} refused the announcement")
            }
            RollbackReason::CurrentStoreFailed => {
                f.write_str("the key store did not take the new key as current")
            }
            RollbackReason::PromoteFailed => f.write_str("the data plane did not switch keys"),
            RollbackReason::VerifyTimeout => {
                f.write_str("a peer did not handshake under the new key in time")
            }
            RollbackReason::Aborted { reason } => write!(f, "aborted by the operator: {reason}"),
            RollbackReason::Interrupted => f.write_str("the gateway restarted before the commit"),
        }
    }
}
