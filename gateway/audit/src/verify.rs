//! The verifier: replays a file's records and checkpoints and names the first bad record.
//!
//! The rules are those of `docs/audit.md`: every line is a record in canonical form whose hash
//! matches; sequence numbers count up from 0 and each `prev` is the hash of the record before;
//! a session runs from a `start` record to a stop checkpoint (or to a `recovered` record
//! written by the next start after a crash); every checkpoint's signature verifies; no record
//! comes later than the last checkpoint's interval (plus [`CHECKPOINT_GRACE_SECS`]) allows;
//! and the file ends with a checkpoint and a newline. The one exception to "every line is a
//! record" is a torn line from a crash that the next record, a `recovered` one, names.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::canonical::canonical;
use crate::chain::{CheckpointReason, kind, record_hash, signed_message};
use crate::key::AuditPublicKey;
use crate::{CHECKPOINT_GRACE_SECS, GENESIS, MAX_LINE};

/// What a valid file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How many records (torn lines not counted).
    pub records: u64,
    /// The last checkpoint.
    pub last_checkpoint: Option<CheckpointInfo>,
    /// The ids of the keys that signed checkpoints, in order of first use.
    pub key_ids: Vec<String>,
    /// How many `recovered` records (restarts after a crash).
    pub recoveries: u64,
}

/// One checkpoint, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Its line number (from 1).
    pub line: usize,
    /// Its sequence number.
    pub seq: u64,
    /// Its time, unix seconds.
    pub time: u64,
    /// `start`, `interval` or `stop`.
    pub reason: String,
    /// The id of the key that signed it.
    pub key_id: String,
}

/// The first bad record of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {problem}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct Failure {
    /// Its line number (from 1).
    pub line: usize,
    /// Its sequence number, when the line could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The line is not the record it claims to be: not a record, not canonical, or its hash
    /// does not match its content.
    #[error("edited: {0}")]
    Edited(String),
    /// Records before it are missing (a sequence gap, a `prev` that does not match, or a
    /// session boundary without its record).
    #[error("missing: {0}")]
    Missing(String),
    /// Records are out of order.
    #[error("reordered: {0}")]
    Reordered(String),
    /// The file ends without its final checkpoint, or with a torn line.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A checkpoint's signature does not verify (or not with the given key).
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The file has no checkpoint at all.
    #[error("no checkpoint: the file has no signed checkpoint at all")]
    NoCheckpoint,
    /// Two checkpoints (or a record and the checkpoint before it) lie farther apart than the
    /// interval allows.
    #[error("gap in checkpoints: {0}")]
    CheckpointGap(String),
}

impl Problem {
    /// Returns a fixed name of the problem class.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Edited(_) => "edited",
            Self::Missing(_) => "missing",
            Self::Reordered(_) => "reordered",
            Self::Truncated(_) => "truncated",
            Self::BadSignature(_) => "bad signature",
            Self::NoCheckpoint => "no checkpoint",
            Self::CheckpointGap(_) => "gap in checkpoints",
        }
    }
}

/// A torn last line: a partial record without its newline, left by a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Its line number.
    pub line: usize,
    /// Its length in bytes.
    pub bytes: usize,
}

/// Where a writer continues an existing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The next record's sequence number.
    pub next_seq: u64,
    /// The last record's hash ([`GENESIS`] for an empty file).
    pub head: String,
    /// A torn last line, which the writer must terminate and name in a `recovered` record.
    pub torn: Option<Torn>,
    /// Whether the last session ended cleanly (or the file is empty); if not, the writer
    /// writes a `recovered` record before its `start`.
    pub clean: bool,
    /// Records after the last checkpoint (unsigned).
    pub unsigned: u64,
    /// What the file holds.
    pub summary: Summary,
}

/// Verifies a whole file, optionally pinning the key every checkpoint must be signed with.
///
/// # Errors
/// The first bad record.
pub fn verify(bytes: &[u8], pin: Option<&AuditPublicKey>) -> Result<Summary, Failure> {
    replay(bytes, pin, false).map(|r| r.summary)
}

/// Verifies a file a writer is about to continue: as [`verify`], except that it may end
/// without its final checkpoint or with a torn line (a crash), which the result reports.
///
/// # Errors
/// The first bad record.
pub fn resume(bytes: &[u8]) -> Result<Resume, Failure> {
    replay(bytes, None, true)
}

struct Line<'a> {
    number: usize,
    bytes: &'a [u8],
    terminated: bool,
}

struct Record {
    seq: u64,
    time: u64,
    kind: String,
    details: Map<String, Value>,
    prev: String,
    hash: String,
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Before the first record, or after a stop checkpoint or a `recovered` record.
    Closed,
    /// After a `start` record at this time and line.
    Open { time: u64, line: usize },
}

struct LastCheckpoint {
    line: usize,
    time: u64,
    interval: u64,
}

fn replay(bytes: &[u8], pin: Option<&AuditPublicKey>, open: bool) -> Result<Resume, Failure> {
    let lines = split(bytes);
    let mut expected: u64 = 0;
    let mut head = GENESIS.to_owned();
    let mut session = Session::Closed;
    let mut last_cp: Option<LastCheckpoint> = None;
    let mut summary = Summary {
        records: 0,
        last_checkpoint: None,
        key_ids: Vec::new(),
        recoveries: 0,
    };
    let mut unsigned_from: Option<(usize, u64)> = None;
    let mut unsigned: u64 = 0;
    let mut torn = None;
    let mut first_record: Option<(usize, u64)> = None;
    let mut index = 0;
    while let Some(line) = lines.get(index) {
        let fail = |seq: Option<u64>, problem: Problem| Failure {
            line: line.number,
            seq,
            problem,
        };
        if !line.terminated {
            if open {
                torn = Some(Torn {
                    line: line.number,
                    bytes: line.bytes.len(),
                });
                break;
            }
            return Err(fail(
                None,
                Problem::Truncated("torn last line: it does not end with a newline".to_owned()),
            ));
        }
        let next = lines.get(index + 1).map(|l| parse(l.bytes));
        if let Some(Ok(next)) = &next
            && next.kind == kind::RECOVERED
            && next.details.get("torn_line").and_then(Value::as_u64)
                == u64::try_from(line.number).ok()
        {
            if next.details.get("torn_bytes").and_then(Value::as_u64)
                != u64::try_from(line.bytes.len()).ok()
            {
                return Err(Failure {
                    line: line.number + 1,
                    seq: Some(next.seq),
                    problem: Problem::Edited(format!(
                        "torn_bytes does not match the length of line {}",
                        line.number
                    )),
                });
            }
            index += 1;
            continue;
        }
        let record = match parse(line.bytes) {
            Ok(record) => record,
            Err(reason) => return Err(fail(None, Problem::Edited(reason))),
        };
        let seq = Some(record.seq);
        if record.seq != expected {
            let problem = if record.seq < expected {
                Problem::Reordered(format!(
                    "seq {} comes after seq {}",
                    record.seq,
                    expected.saturating_sub(1)
                ))
            } else if let Some(at) = later_line_of(&lines[index + 1..], expected) {
                Problem::Reordered(format!(
                    "seq {expected} was expected here; it comes later, at line {at}"
                ))
            } else {
                Problem::Missing(format!(
                    "seq {expected} was expected here: {} record(s) before this one are missing",
                    record.seq - expected
                ))
            };
            return Err(fail(seq, problem));
        }
        if record.prev != head {
            return Err(fail(
                seq,
                Problem::Missing(
                    "prev does not match the hash of the record before: a record was removed or replaced"
                        .to_owned(),
                ),
            ));
        }
        first_record.get_or_insert((line.number, record.seq));
        match (record.kind.as_str(), session) {
            (kind::START, Session::Closed) => {
                session = Session::Open {
                    time: record.time,
                    line: line.number,
                };
                last_cp = None;
            }
            (kind::START, Session::Open { .. }) => {
                return Err(fail(
                    seq,
                    Problem::Missing(
                        "a start record inside a running session: the stop checkpoint or recovered record before it is missing"
                            .to_owned(),
                    ),
                ));
            }
            (kind::RECOVERED, _) => {
                session = Session::Closed;
                summary.recoveries += 1;
            }
            (_, Session::Closed) => {
                return Err(fail(
                    seq,
                    Problem::Missing(
                        "the start record of this session is missing (the record before closed the previous one)"
                            .to_owned(),
                    ),
                ));
            }
            (
                _,
                Session::Open {
                    time,
                    line: start_line,
                },
            ) => {
                let (since, allowed, from) = match &last_cp {
                    Some(cp) => (
                        cp.time,
                        cp.interval.saturating_add(CHECKPOINT_GRACE_SECS),
                        cp.line,
                    ),
                    None => (time, CHECKPOINT_GRACE_SECS, start_line),
                };
                let late = record.time.saturating_sub(since);
                if late > allowed {
                    return Err(fail(
                        seq,
                        Problem::CheckpointGap(format!(
                            "{late} s after line {from} without a checkpoint in between (at most {allowed} s allowed)"
                        )),
                    ));
                }
                if record.kind == kind::CHECKPOINT {
                    let checkpoint = check_signature(&record, pin).map_err(|p| fail(seq, p))?;
                    if !summary.key_ids.contains(&checkpoint.key_id) {
                        summary.key_ids.push(checkpoint.key_id.clone());
                    }
                    last_cp = Some(LastCheckpoint {
                        line: line.number,
                        time: record.time,
                        interval: checkpoint.interval,
                    });
                    if checkpoint.reason == CheckpointReason::Stop {
                        session = Session::Closed;
                    }
                    summary.last_checkpoint = Some(CheckpointInfo {
                        line: line.number,
                        seq: record.seq,
                        time: record.time,
                        reason: checkpoint.reason.as_str().to_owned(),
                        key_id: checkpoint.key_id,
                    });
                    unsigned_from = None;
                    unsigned = 0;
                }
            }
        }
        if record.kind != kind::CHECKPOINT {
            unsigned_from.get_or_insert((line.number, record.seq));
            unsigned += 1;
        }
        head.clone_from(&record.hash);
        expected += 1;
        summary.records += 1;
        index += 1;
    }
    if !open {
        if summary.last_checkpoint.is_none() {
            let (line, seq) = first_record.map_or((1, None), |(l, s)| (l, Some(s)));
            return Err(Failure {
                line,
                seq,
                problem: Problem::NoCheckpoint,
            });
        }
        if let Some((line, seq)) = unsigned_from {
            return Err(Failure {
                line,
                seq: Some(seq),
                problem: Problem::Truncated(format!(
                    "no checkpoint after this record: the file ends at line {} without one",
                    lines.len()
                )),
            });
        }
    }
    Ok(Resume {
        next_seq: expected,
        head,
        torn,
        clean: session == Session::Closed,
        unsigned,
        summary,
    })
}

/// Returns the number of the first of `lines` holding the record with sequence number `seq`.
fn later_line_of(lines: &[Line<'_>], seq: u64) -> Option<usize> {
    lines
        .iter()
        .find(|l| parse(l.bytes).is_ok_and(|r| r.seq == seq))
        .map(|l| l.number)
}

fn split(bytes: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            lines.push(Line {
                number: lines.len() + 1,
                bytes: &bytes[start..i],
                terminated: true,
            });
            start = i + 1;
        }
    }
    if start < bytes.len() {
        lines.push(Line {
            number: lines.len() + 1,
            bytes: &bytes[start..],
            terminated: false,
        });
    }
    lines
}

const FIELDS: [&str; 9] = [
    "actor", "details", "hash", "kind", "outcome", "prev", "seq", "subject", "time",
];

fn parse(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() > MAX_LINE {
        return Err(format!("the line is longer than {MAX_LINE} bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "the line is not UTF-8".to_owned())?;
    let value: Value =
        serde_json::from_str(text).map_err(|_| "the line is not a JSON record".to_owned())?;
    let Value::Object(map) = &value else {
        return Err("the line is not a JSON object".to_owned());
    };
    if map.len() != FIELDS.len() || !FIELDS.iter().all(|f| map.contains_key(*f)) {
        return Err(format!(
            "a record has exactly the fields {}",
            FIELDS.join(", ")
        ));
    }
    let whole = |name: &str| {
        map.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("{name} is not a whole number"))
    };
    let text_field = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{name} is not a string"))
    };
    let seq = whole("seq")?;
    let time = whole("time")?;
    let kind = text_field("kind")?;
    for name in ["actor", "subject", "outcome"] {
        text_field(name)?;
    }
    let prev = text_field("prev")?;
    let hash = text_field("hash")?;
    let Some(Value::Object(details)) = map.get("details") else {
        return Err("details is not an object".to_owned());
    };
    match canonical(&value) {
        Ok(form) if form == text => {}
        _ => return Err("the line is not in canonical form".to_owned()),
    }
    match record_hash(&value) {
        Ok(computed) if computed == hash => {}
        _ => return Err("the hash does not match the record's content".to_owned()),
    }
    Ok(Record {
        seq,
        time,
        kind,
        details: details.clone(),
        prev,
        hash,
        value,
    })
}

struct CheckedCheckpoint {
    reason: CheckpointReason,
    interval: u64,
    key_id: String,
}

fn check_signature(
    record: &Record,
    pin: Option<&AuditPublicKey>,
) -> Result<CheckedCheckpoint, Problem> {
    let field = |name: &str| {
        record
            .details
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Problem::BadSignature(format!("the checkpoint has no {name}")))
    };
    let reason = CheckpointReason::parse(field("reason")?)
        .ok_or_else(|| Problem::BadSignature("the checkpoint's reason is unknown".to_owned()))?;
    let interval = record
        .details
        .get("interval")
        .and_then(Value::as_u64)
        .filter(|i| *i > 0)
        .ok_or_else(|| Problem::BadSignature("the checkpoint has no interval".to_owned()))?;
    let key_id = field("key_id")?.to_owned();
    let public = AuditPublicKey::from_base64(field("public_key")?).map_err(|e| {
        Problem::BadSignature(format!("the checkpoint's public key is invalid: {e}"))
    })?;
    if public.key_id() != key_id {
        return Err(Problem::BadSignature(
            "key_id does not match public_key".to_owned(),
        ));
    }
    if let Some(pin) = pin
        && *pin != public
    {
        return Err(Problem::BadSignature(format!(
            "signed by key {key_id}, not by the given key {}",
            pin.key_id()
        )));
    }
    let signature = STANDARD
        .decode(field("signature")?)
        .map_err(|_| Problem::BadSignature("the signature is not base64".to_owned()))?;
    let message = signed_message(&record.value)
        .map_err(|_| Problem::BadSignature("the checkpoint has no canonical form".to_owned()))?;
    if !public.verifies(&message, &signature) {
        return Err(Problem::BadSignature(format!(
            "the signature does not verify with key {key_id}"
        )));
    }
    Ok(CheckedCheckpoint {
        reason,
        interval,
        key_id,
    })
}

#[cfg(test)]
mod tests;
