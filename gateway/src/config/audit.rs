//! The `[audit]` section (`docs/audit.md`). The audit log is on when the section is present
//! (even empty) or an `audit.*` override is given, and off otherwise.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{ConfigError, bad};
use super::non_empty_path;

/// Default `audit.path`.
pub const DEFAULT_PATH: &str = "/var/lib/zt-gateway/audit.jsonl";
/// Default `audit.key_path`.
pub const DEFAULT_KEY_PATH: &str = "/etc/zt-gateway/audit.key";
/// Default `audit.checkpoint_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Where records go.
    pub sink: AuditSink,
    /// Where the checkpoint signing key comes from.
    pub key: AuditKeySource,
    /// How often a checkpoint is written while running.
    pub checkpoint_interval: Duration,
}

/// `audit.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    /// A file, continued across restarts.
    File(PathBuf),
    /// Standard output (`-`); a new chain each run.
    Stdout,
}

/// `audit.key_source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditKeySource {
    /// `audit.key_path`: base64 of the 32-byte Ed25519 seed, mode 0600.
    File(PathBuf),
    /// `audit.key_secret_name`: a secret of the KMS that `[key]` reads.
    Kms {
        /// The secret's name.
        secret_name: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    path: Option<String>,
    key_source: Option<String>,
    key_path: Option<String>,
    key_secret_name: Option<String>,
    checkpoint_interval: Option<String>,
}

pub(super) fn validate(raw: RawAudit, key_from_kms: bool) -> Result<AuditConfig, ConfigError> {
    let sink = match raw.path.as_deref() {
        Some("-") => AuditSink::Stdout,
        _ => AuditSink::File(non_empty_path("audit.path", raw.path, DEFAULT_PATH)?),
    };
    let key = match raw.key_source.as_deref().unwrap_or("file") {
        "file" => {
            if let Some(name) = raw.key_secret_name {
                return Err(bad(
                    "audit.key_secret_name",
                    name,
                    "only applies to audit.key_source = \"kms\"",
                ));
            }
            AuditKeySource::File(non_empty_path(
                "audit.key_path",
                raw.key_path,
                DEFAULT_KEY_PATH,
            )?)
        }
        "kms" => {
            if let Some(path) = raw.key_path {
                return Err(bad(
                    "audit.key_path",
                    path,
                    "only applies to audit.key_source = \"file\"",
                ));
            }
            if !key_from_kms {
                return Err(bad(
                    "audit.key_source",
                    "kms",
                    "needs [key] source = \"kms\": the audit key is read from the same KMS",
                ));
            }
            let secret_name = raw
                .key_secret_name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| {
                    bad(
                        "audit.key_secret_name",
                        "",
                        "is required with audit.key_source = \"kms\": the secret holding the audit key",
                    )
                })?;
            AuditKeySource::Kms { secret_name }
        }
        other => {
            return Err(bad(
                "audit.key_source",
                other,
                "expected \"file\" or \"kms\"",
            ));
        }
    };
    let checkpoint_interval = match raw.checkpoint_interval {
        None => DEFAULT_INTERVAL,
        Some(text) => humantime::parse_duration(&text)
            .ok()
            .filter(|d| d.as_secs() >= 1 && *d <= MAX_INTERVAL)
            .ok_or_else(|| {
                bad(
                    "audit.checkpoint_interval",
                    &text,
                    "expected a duration from 1s to 24h, such as 5m",
                )
            })?,
    };
    Ok(AuditConfig {
        sink,
        key,
        checkpoint_interval,
    })
}
