//! The ZT Gateway audit chain (`docs/audit.md`): hash-chained JSON-lines records, signed
//! checkpoints, and the verifier that replays a file and names its first bad record.
//!
//! Pure code: no IO and no clock. Time is an argument (unix seconds); the gateway's adapter
//! writes the lines this crate builds, and `peerctl audit verify` feeds a file's bytes to
//! [`verify`].
#![warn(missing_docs)]

mod canonical;
mod chain;
mod key;
mod verify;

pub use canonical::{CanonicalError, canonical};
pub use chain::{Chain, CheckpointReason, Sealed, kind, record_hash, signed_message};
pub use key::{AuditKey, AuditPublicKey, KeyError};
pub use verify::{CheckpointInfo, Failure, Problem, Resume, Summary, Torn, resume, verify};

/// The `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The longest line a writer produces and a verifier accepts, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;

/// How much later than its interval promised a checkpoint (or any record) may come before the
/// verifier calls it a gap in checkpoints.
pub const CHECKPOINT_GRACE_SECS: u64 = 60;

/// Prefix of the message a checkpoint signs (see [`signed_message`]).
pub const SIGNING_CONTEXT: &[u8] = b"ztgw-audit-checkpoint-v1\n";

/// Formats unix seconds as RFC 3339 UTC (`2026-01-31T12:00:00Z`), for people reading a
/// summary; records themselves hold the integer.
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let rest = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
