//! A peer's side of a rotation: checking `rotate.announce`, `rotate.complete` and
//! `rotate.abort` from a peer gateway.
//!
//! For each peer, a [`PeerRotationState`] is kept durably (in the peer's `WireGuardPeer`
//! status): the peer's active key, the next key it announced (while its rotation is pending),
//! that rotation's id, and the last sequence taken. The `ack` is sent only after the new
//! state is stored. While a rotation is pending, handshakes from either key are accepted
//! ([`accepted_keys`]); `complete` makes the next key the active one, `abort` discards it.
//!
//! An announcement is refused when it is not bound to the keys both sides hold now, when its
//! sequence does not advance (a replay, of an aborted rotation too), when it announces the
//! active key, or while another rotation of that peer is pending. The same announcement
//! repeated is taken again (its ack may have been lost), as is the same end repeated. A
//! refusal is a fixed word ([`AnnounceRefusal::as_str`]) and never repeats the input.

use serde::{Deserialize, Serialize};
use ztgw_model::key::PublicKey;

use crate::RotationId;
use crate::key_text;
use crate::machine::AnnounceBody;

/// What a gateway holds, durably, of one peer's rotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRotationState {
    #[serde(with = "key_text")]
    active_public_key: PublicKey,
    #[serde(with = "key_text::option", default)]
    next_public_key: Option<PublicKey>,
    #[serde(default)]
    rotation_id: Option<RotationId>,
    #[serde(default)]
    last_sequence: u64,
    #[serde(default)]
    ended: Option<Ended>,
    /// The keys the peer rotated away from, oldest first, at most [`MAX_RETIRED_KEYS`]: a
    /// declaration still naming one of them means the peer as it runs now.
    #[serde(with = "key_text::list", default)]
    retired: Vec<PublicKey>,
}

/// How many retired keys of a peer are remembered. A declaration left behind by more
/// rotations than that is taken as naming a new key.
pub const MAX_RETIRED_KEYS: usize = 8;

/// The last rotation of the peer that ended, so that a repeated end is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The rotation.
    pub rotation_id: RotationId,
    /// How it ended.
    pub end: End,
}

/// How a peer's rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// `rotate.complete`: the next key became the active one.
    Completed,
    /// `rotate.abort`: the next key was discarded.
    Aborted,
}

/// The answer to an accepted announcement (`rotate.ack`), sent once the new state is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The rotation.
    pub rotation_id: RotationId,
    /// Its sequence.
    pub sequence: u64,
    /// The next key recorded.
    #[serde(with = "key_text")]
    pub next_public_key: PublicKey,
}

/// Why an announcement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceRefusal {
    /// `sender_key` is not the peer's active key.
    #[error("the sender key is not the peer's current key")]
    SenderKey,
    /// `receiver_key` is not our current key.
    #[error("the receiver key is not this gateway's current key")]
    ReceiverKey,
    /// The sequence does not advance past the last one taken.
    #[error("the sequence does not advance")]
    StaleSequence,
    /// The pending rotation's id announced with another key or sequence.
    #[error("the rotation was announced before with another key or sequence")]
    Conflict,
    /// Another rotation of the peer is pending.
    #[error("another rotation of this peer is pending")]
    OtherPending,
    /// The next key is the peer's active key.
    #[error("the next key is the peer's current key")]
    NextIsActive,
}

/// Why a `rotate.complete` or `rotate.abort` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EndRefusal {
    /// No pending or just-ended rotation of the peer has that id.
    #[error("no rotation of this peer has that id")]
    UnknownRotation,
    /// The rotation already ended the other way.
    #[error("the rotation already ended the other way")]
    EndedOtherwise,
}

impl PeerRotationState {
    /// Starts the view of a peer whose key is `active_public_key`, with nothing pending.
    pub fn new(active_public_key: PublicKey) -> Self {
        Self {
            active_public_key,
            next_public_key: None,
            rotation_id: None,
            last_sequence: 0,
            ended: None,
            retired: Vec::new(),
        }
    }

    /// The view of the same peer now declared with a key it never rotated to
    /// ([`Declared::New`]): nothing pending and no retired keys, but the last sequence and
    /// the last end stay, so an announcement taken before cannot be replayed.
    pub fn rebase(&self, active_public_key: PublicKey) -> Self {
        Self {
            active_public_key,
            next_public_key: None,
            rotation_id: None,
            last_sequence: self.last_sequence,
            ended: self.ended.clone(),
            retired: Vec::new(),
        }
    }

    /// Returns the keys the peer rotated away from, oldest first.
    pub fn retired_keys(&self) -> &[PublicKey] {
        &self.retired
    }

    /// Returns the peer's active key.
    pub fn active_public_key(&self) -> &PublicKey {
        &self.active_public_key
    }

    /// Returns the key the peer announced, while its rotation is pending.
    pub fn next_public_key(&self) -> Option<&PublicKey> {
        self.pending().map(|(_, key)| key)
    }

    /// Returns the pending rotation's id.
    pub fn rotation_id(&self) -> Option<&RotationId> {
        self.pending().map(|(id, _)| id)
    }

    /// Returns the last sequence taken from the peer (0 before any).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Returns the last rotation of the peer that ended.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Returns the pending rotation, present only when both its id and its key are.
    fn pending(&self) -> Option<(&RotationId, &PublicKey)> {
        self.rotation_id.as_ref().zip(self.next_public_key.as_ref())
    }

    fn end(&self, rotation_id: &RotationId, end: End) -> Result<Self, EndRefusal> {
        if let Some(ended) = &self.ended
            && ended.rotation_id == *rotation_id
        {
            return if ended.end == end {
                Ok(self.clone())
            } else {
                Err(EndRefusal::EndedOtherwise)
            };
        }
        let (_, next) = self
            .pending()
            .filter(|(id, _)| *id == rotation_id)
            .ok_or(EndRefusal::UnknownRotation)?;
        let mut retired = self.retired.clone();
        let active_public_key = match end {
            End::Completed => {
                retired.retain(|k| k != next && *k != self.active_public_key);
                retired.push(self.active_public_key);
                if retired.len() > MAX_RETIRED_KEYS {
                    retired.drain(..retired.len() - MAX_RETIRED_KEYS);
                }
                *next
            }
            End::Aborted => self.active_public_key,
        };
        Ok(Self {
            active_public_key,
            next_public_key: None,
            rotation_id: None,
            last_sequence: self.last_sequence,
            ended: Some(Ended {
                rotation_id: rotation_id.clone(),
                end,
            }),
            retired,
        })
    }
}

impl AnnounceRefusal {
    /// Returns the refusal's fixed word, sent back to the announcing peer.
    pub fn as_str(&self) -> &'static str {
        match self {
            AnnounceRefusal::SenderKey => "sender_key",
            AnnounceRefusal::ReceiverKey => "receiver_key",
            AnnounceRefusal::StaleSequence => "stale_sequence",
            AnnounceRefusal::Conflict => "conflict",
            AnnounceRefusal::OtherPending => "other_rotation_pending",
            AnnounceRefusal::NextIsActive => "next_is_active",
        }
    }
}

impl EndRefusal {
    /// Returns the refusal's fixed word.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndRefusal::UnknownRotation => "unknown_rotation",
            EndRefusal::EndedOtherwise => "ended_otherwise",
        }
    }
}

impl Ack {
    /// Returns whether the ack answers `body` (same rotation, sequence and next key).
    pub fn confirms(&self, body: &AnnounceBody) -> bool {
        self.rotation_id == body.rotation_id
            && self.sequence == body.sequence
            && self.next_public_key == body.next_public_key
    }
}

/// Checks a peer's `rotate.announce` against what we hold of that peer and our own current
/// key. Returns the state to store before answering, and the ack to answer with.
///
/// # Errors
/// [`AnnounceRefusal`], checked in the order of its variants (after the keys, a repeat of
/// the pending announcement is taken); nothing is to be stored then.
pub fn on_announce(
    state: &PeerRotationState,
    body: &AnnounceBody,
    our_current_key: &PublicKey,
) -> Result<(PeerRotationState, Ack), AnnounceRefusal> {
    if body.sender_key != state.active_public_key {
        return Err(AnnounceRefusal::SenderKey);
    }
    if body.receiver_key != *our_current_key {
        return Err(AnnounceRefusal::ReceiverKey);
    }
    let ack = Ack {
        rotation_id: body.rotation_id.clone(),
        sequence: body.sequence,
        next_public_key: body.next_public_key,
    };
    if let Some((id, next)) = state.pending()
        && *id == body.rotation_id
    {
        let repeat = *next == body.next_public_key && state.last_sequence == body.sequence;
        return if repeat {
            Ok((state.clone(), ack))
        } else {
            Err(AnnounceRefusal::Conflict)
        };
    }
    if body.sequence <= state.last_sequence {
        return Err(AnnounceRefusal::StaleSequence);
    }
    if state.pending().is_some() {
        return Err(AnnounceRefusal::OtherPending);
    }
    if body.next_public_key == state.active_public_key {
        return Err(AnnounceRefusal::NextIsActive);
    }
    let next = PeerRotationState {
        active_public_key: state.active_public_key,
        next_public_key: Some(body.next_public_key),
        rotation_id: Some(body.rotation_id.clone()),
        last_sequence: body.sequence,
        ended: state.ended.clone(),
        retired: state.retired.clone(),
    };
    Ok((next, ack))
}

/// Applies a peer's `rotate.complete`: its next key becomes the active one. The same
/// complete repeated returns the state unchanged.
///
/// # Errors
/// [`EndRefusal::UnknownRotation`] when no pending rotation has that id,
/// [`EndRefusal::EndedOtherwise`] when it was aborted.
pub fn on_complete(
    state: &PeerRotationState,
    rotation_id: &RotationId,
) -> Result<PeerRotationState, EndRefusal> {
    state.end(rotation_id, End::Completed)
}

/// Applies a peer's `rotate.abort`: its next key is discarded; the sequence stays, so the
/// aborted announcement cannot be replayed. The same abort repeated returns the state
/// unchanged.
///
/// # Errors
/// [`EndRefusal::UnknownRotation`] when no pending rotation has that id,
/// [`EndRefusal::EndedOtherwise`] when it was completed.
pub fn on_abort(
    state: &PeerRotationState,
    rotation_id: &RotationId,
) -> Result<PeerRotationState, EndRefusal> {
    state.end(rotation_id, End::Aborted)
}

/// Returns the keys whose handshakes are accepted for the peer: its active key, and its next
/// key while a rotation is pending.
pub fn accepted_keys(state: &PeerRotationState) -> (PublicKey, Option<PublicKey>) {
    (state.active_public_key, state.next_public_key().copied())
}

/// What a declaration naming `declared` means for a peer whose rotations are `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// The declaration names the peer's active key: nothing to reconcile.
    Current,
    /// The declaration names a key the peer rotated away from: the peer runs under `active`
    /// now, and the declaration is to be updated to it (the gateway never rewrites it).
    Outdated {
        /// The key the peer runs under.
        active: PublicKey,
    },
    /// The declaration names a key the peer never held: an operator's new key, which wins;
    /// what was known of the peer's rotations no longer applies.
    New,
}

impl Declared {
    /// The key the device is to run the peer under.
    pub fn running_key(self, declared: PublicKey) -> PublicKey {
        match self {
            Declared::Outdated { active } => active,
            Declared::Current | Declared::New => declared,
        }
    }
}

/// Classifies a declaration naming `declared` against what is known of the peer's rotations.
pub fn declared(state: &PeerRotationState, declared: &PublicKey) -> Declared {
    if *declared == state.active_public_key {
        Declared::Current
    } else if state.retired.contains(declared) {
        Declared::Outdated {
            active: state.active_public_key,
        }
    } else {
        Declared::New
    }
}

#[cfg(test)]
mod tests;
