//! Building records: the chain's state (next sequence number and head hash), sealing a record
//! or a signed checkpoint into its line, and committing it once written.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::canonical::{CanonicalError, canonical};
use crate::key::{AuditKey, hex};
use crate::{GENESIS, SIGNING_CONTEXT};

/// The record kinds the gateway writes.
pub mod kind {
    /// The gateway started (opens a session).
    pub const START: &str = "start";
    /// The gateway stopped cleanly (followed by the stop checkpoint).
    pub const STOP: &str = "stop";
    /// A key was loaded (source, id, version, public key; never the key).
    pub const KEY_LOAD: &str = "key_load";
    /// A peer change applied, refused by the device, or a declaration rejected.
    pub const PEER_CHANGE: &str = "peer_change";
    /// An admin API call.
    pub const ADMIN_CALL: &str = "admin_call";
    /// A control-channel message accepted or refused.
    pub const CONTROL_MESSAGE: &str = "control_message";
    /// A signed checkpoint.
    pub const CHECKPOINT: &str = "checkpoint";
    /// The previous run ended without its stop checkpoint, or left a torn last line.
    pub const RECOVERED: &str = "recovered";
    /// A step of this gateway's key rotation (stage, announce, commit, verify, rollback, end).
    pub const KEY_ROTATION: &str = "key_rotation";
    /// A peer's rotation message taken or refused (`rotate.announce`, `rotate.complete`,
    /// `rotate.abort`).
    pub const PEER_ROTATION: &str = "peer_rotation";
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointReason {
    /// At start, after the start record.
    Start,
    /// Every interval while running.
    Interval,
    /// At clean stop: the last record of a session.
    Stop,
}

impl CheckpointReason {
    /// Returns the value of the checkpoint's `details.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Interval => "interval",
            Self::Stop => "stop",
        }
    }

    /// Parses `details.reason`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "start" => Some(Self::Start),
            "interval" => Some(Self::Interval),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }
}

/// The chain's state: the sequence number and `prev` of the next record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    next_seq: u64,
    head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

/// A record sealed into its line, not yet part of the chain until [`Chain::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The line, without its newline.
    pub line: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// Its kind.
    pub kind: String,
}

impl Chain {
    /// A new chain: the first record has sequence number 0 and `prev` [`GENESIS`].
    pub fn new() -> Self {
        Self {
            next_seq: 0,
            head: GENESIS.to_owned(),
        }
    }

    /// Continues a chain whose last record had sequence number `next_seq - 1` and hash `head`.
    pub fn resume(next_seq: u64, head: String) -> Self {
        Self { next_seq, head }
    }

    /// Returns the next record's sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Returns the hash of the last record ([`GENESIS`] before the first).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Seals the next record. `time` is unix seconds; `details` must hold integers only.
    ///
    /// # Errors
    /// [`CanonicalError`] when `details` holds a non-integer number.
    pub fn seal(
        &self,
        time: u64,
        kind: &str,
        actor: &str,
        subject: &str,
        outcome: &str,
        details: Map<String, Value>,
    ) -> Result<Sealed, CanonicalError> {
        let mut record = json!({
            "seq": self.next_seq,
            "time": time,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "outcome": outcome,
            "details": Value::Object(details),
            "prev": self.head,
        });
        let hash = record_hash(&record)?;
        if let Value::Object(map) = &mut record {
            map.insert("hash".to_owned(), Value::String(hash.clone()));
        }
        Ok(Sealed {
            line: canonical(&record)?,
            seq: self.next_seq,
            hash,
            kind: kind.to_owned(),
        })
    }

    /// Seals the next record as a checkpoint signed by `key`, promising the next checkpoint
    /// within `interval_secs` (plus [`crate::CHECKPOINT_GRACE_SECS`]).
    ///
    /// # Errors
    /// Never in practice (a checkpoint holds no fractions); kept for one error path.
    pub fn checkpoint(
        &self,
        time: u64,
        actor: &str,
        reason: CheckpointReason,
        interval_secs: u64,
        key: &AuditKey,
    ) -> Result<Sealed, CanonicalError> {
        let public = key.public();
        let mut details = Map::new();
        details.insert("interval".to_owned(), Value::from(interval_secs));
        details.insert("key_id".to_owned(), Value::from(public.key_id()));
        details.insert("public_key".to_owned(), Value::from(public.to_base64()));
        details.insert("reason".to_owned(), Value::from(reason.as_str()));
        let unsigned = json!({
            "seq": self.next_seq,
            "time": time,
            "kind": kind::CHECKPOINT,
            "actor": actor,
            "subject": "audit-chain",
            "outcome": "signed",
            "details": Value::Object(details.clone()),
            "prev": self.head,
        });
        let message = signed_message(&unsigned)?;
        let signature = key.sign(&message);
        details.insert(
            "signature".to_owned(),
            Value::from(STANDARD.encode(signature)),
        );
        self.seal(
            time,
            kind::CHECKPOINT,
            actor,
            "audit-chain",
            "signed",
            details,
        )
    }

    /// Makes `sealed` the head, once its line is written.
    pub fn commit(&mut self, sealed: &Sealed) {
        self.next_seq = sealed.seq.saturating_add(1);
        self.head.clone_from(&sealed.hash);
    }
}

/// Returns a record's hash: lowercase hex SHA-256 of the canonical form of the record without
/// its `hash` member.
///
/// # Errors
/// [`CanonicalError`] when the record holds a non-integer number.
pub fn record_hash(record: &Value) -> Result<String, CanonicalError> {
    let mut record = record.clone();
    if let Value::Object(map) = &mut record {
        map.remove("hash");
    }
    Ok(hex(&Sha256::digest(canonical(&record)?.as_bytes())))
}

/// Returns the message a checkpoint signs: [`SIGNING_CONTEXT`] followed by the canonical form
/// of the checkpoint record without `hash` and without `details.signature`.
///
/// # Errors
/// [`CanonicalError`] when the record holds a non-integer number.
pub fn signed_message(record: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut record = record.clone();
    if let Value::Object(map) = &mut record {
        map.remove("hash");
        if let Some(Value::Object(details)) = map.get_mut("details") {
            details.remove("signature");
        }
    }
    let mut message = SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(canonical(&record)?.as_bytes());
    Ok(message)
}
