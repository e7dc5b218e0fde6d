//! Crash recovery: what a gateway that starts with an unfinished rotation does.
//!
//! The key store is the authority on which key the gateway runs; the persisted record says
//! how far the rotation got. At start the data plane holds only the store's current key, so
//! a resumed rotation's plane is that key alone. Before the commit, a rotation is rolled
//! back (announcements may have been lost; the peers still accept the old key). After the
//! commit (the store's current key is the rotation's next key), it re-enters verification
//! with a fresh deadline. Anything else is an inconsistency the operator must look at: it is
//! never guessed.
//!
//! | Record | Store: current | Store: next / previous | Result |
//! |---|---|---|---|
//! | none, or finished | any | no next | [`Resume::Nothing`] |
//! | none, or finished | any | a next key | [`Inconsistency::LeftoverNext`] |
//! | unfinished | neither old nor next | any | [`Inconsistency::UnknownCurrent`] |
//! | unfinished | any | next is another key | [`Inconsistency::UnknownNext`] |
//! | `Staging`, `Announcing` | new key | any | [`Inconsistency::EarlyCommit`] |
//! | `Staging` … `Verifying` | old key | any | [`Resume::RollBack`], reason `interrupted` |
//! | `Committing`, `Verifying` | new key | previous is the old key | [`Resume::Verify`], fresh deadline |
//! | `RollingBack` | old key | any | [`Resume::RollBack`], same reason |
//! | `Committing`, `Verifying`, `RollingBack` | new key | previous is not the old key | [`Inconsistency::PreviousMissing`] |
//! | `RollingBack` | new key | previous is the old key | [`Resume::RollBack`], same reason |
//!
//! `Verifying` with the old key current happens when the gateway stopped after restoring the
//! store in a rollback it had not recorded yet. In every rolled-back case the store part of
//! the rollback is skipped only when the store already holds the old key and no next key.

use std::time::SystemTime;

use ztgw_model::key::PublicKey;

use crate::machine::{Phase, PlaneState, RollbackReason, Rotation, StoreState};

/// What the key store holds at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredState {
    /// The current key.
    pub current: PublicKey,
    /// When the current key was created, if the store says.
    pub current_created: Option<SystemTime>,
    /// The next key, if one is stored.
    pub next: Option<PublicKey>,
    /// The previous key, if one is kept.
    pub previous: Option<PublicKey>,
    /// The last persisted rotation record.
    pub record: Option<Rotation>,
}

/// What to do about the stored rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No rotation to continue.
    Nothing,
    /// Roll the rotation back (or finish rolling it back), with this record.
    RollBack(Rotation),
    /// Wait again for the handshakes under the committed key, with this record.
    Verify(Rotation),
}

/// Why the stored state cannot be resumed safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Inconsistency {
    /// A next key is stored but no rotation is under way.
    #[error("the key store holds a next key but no rotation is under way")]
    LeftoverNext,
    /// The current key is neither of the rotation's keys.
    #[error("the key store's current key is neither the rotation's old key nor its next key")]
    UnknownCurrent,
    /// The next key is not the rotation's.
    #[error("the key store's next key is not the rotation's next key")]
    UnknownNext,
    /// The new key is current although the record never reached the commit.
    #[error(
        "the key store holds the new key as current, but the rotation never reached its commit"
    )]
    EarlyCommit,
    /// The new key is current and the old one is not kept as previous.
    #[error(
        "the new key is current but the key store does not keep the old key as previous, so \
         the rotation could not be rolled back"
    )]
    PreviousMissing,
}

impl Resume {
    /// Returns the rotation to continue with, if any.
    pub fn rotation(&self) -> Option<&Rotation> {
        match self {
            Resume::Nothing => None,
            Resume::RollBack(rotation) | Resume::Verify(rotation) => Some(rotation),
        }
    }
}

impl Inconsistency {
    /// Returns a fixed word for the inconsistency (for metrics and logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Inconsistency::LeftoverNext => "leftover_next",
            Inconsistency::UnknownCurrent => "unknown_current",
            Inconsistency::UnknownNext => "unknown_next",
            Inconsistency::EarlyCommit => "early_commit",
            Inconsistency::PreviousMissing => "previous_missing",
        }
    }
}

/// Decides, at start (`now`), how to continue from what the key store holds (see the
/// module's table).
///
/// # Errors
/// [`Inconsistency`] when the store and the record disagree in a way no crash explains.
pub fn resume(stored: &StoredState, now: SystemTime) -> Result<Resume, Inconsistency> {
    let Some(record) = stored.record.as_ref().filter(|r| !r.is_finished()) else {
        return match stored.next {
            Some(_) => Err(Inconsistency::LeftoverNext),
            None => Ok(Resume::Nothing),
        };
    };
    let committed = if stored.current == record.old_public {
        false
    } else if stored.current == record.next_public {
        true
    } else {
        return Err(Inconsistency::UnknownCurrent);
    };
    if stored.next.is_some_and(|next| next != record.next_public) {
        return Err(Inconsistency::UnknownNext);
    }
    if committed {
        if matches!(record.phase, Phase::Staging | Phase::Announcing) {
            return Err(Inconsistency::EarlyCommit);
        }
        if stored.previous != Some(record.old_public) {
            return Err(Inconsistency::PreviousMissing);
        }
    }
    let mut rotation = record.clone();
    match record.phase {
        Phase::Committing | Phase::Verifying if committed => {
            rotation.store = StoreState::Committed;
            rotation.plane = PlaneState::NewOnly;
            rotation.phase = Phase::Verifying;
            rotation.phase_since = now;
            rotation.advance(now);
            Ok(Resume::Verify(rotation))
        }
        Phase::RollingBack { .. } => {
            restart_rollback(&mut rotation, stored, committed, now);
            Ok(Resume::RollBack(rotation))
        }
        _ => {
            rotation.roll_back(RollbackReason::Interrupted, now);
            restart_rollback(&mut rotation, stored, committed, now);
            Ok(Resume::RollBack(rotation))
        }
    }
}

/// Sets a rolling-back record's store and plane to what they hold after a restart, and
/// finishes it when nothing is left to do.
fn restart_rollback(
    rotation: &mut Rotation,
    stored: &StoredState,
    committed: bool,
    now: SystemTime,
) {
    rotation.store = match (committed, stored.next) {
        (true, _) => StoreState::Committed,
        (false, Some(_)) => StoreState::NextStored,
        (false, None) => StoreState::Restored,
    };
    rotation.plane = if committed {
        PlaneState::NewOnly
    } else {
        PlaneState::OldOnly
    };
    rotation.phase_since = now;
    rotation.advance(now);
}

#[cfg(test)]
mod tests;
