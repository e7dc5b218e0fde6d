//! The audit log's IO adapter (`docs/audit.md`): loads the audit key, continues the chain of an
//! existing file after verifying it, appends records, and signs checkpoints at start, every
//! `[audit] checkpoint_interval` and at clean stop. The format and the verifier live in the
//! `ztgw-audit` crate.
//!
//! A failed write never stops the tunnel: it is counted
//! (`zt_wireguard_audit_write_errors_total`), logged, and `/readyz` reports `audit_writable`
//! until a write succeeds again. A write that stopped part-way is cut back at once (those
//! bytes never were a record); if even that fails, the log is closed for the rest of the run,
//! since appending after a partial line would corrupt the chain, and the next start records
//! the torn line as `recovered`.

mod record;

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use kms_client::SecretStore as _;
use serde_json::{Map, Value};
use ztgw_audit::{AuditKey, CanonicalError, Chain, CheckpointReason, MAX_LINE, Sealed, kind};

pub use record::details;

use crate::clock;
use crate::config::{AuditConfig, AuditKeySource, AuditSink};
use crate::core::health::Readiness;
use crate::keys::Prepared;
use crate::metrics::Metrics;

/// The actor of the records the gateway writes on its own behalf.
pub const GATEWAY: &str = "gateway";

/// The audit log: cheap to clone, shared by the driver, the admin API and (later) the control
/// channel.
#[derive(Debug, Clone)]
pub struct Audit {
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
    readiness: Arc<RwLock<Readiness>>,
    interval: Duration,
}

#[derive(Debug)]
struct Inner {
    chain: Chain,
    sink: Sink,
    key: AuditKey,
    /// The last write failed.
    failing: bool,
    /// A write left a partial line: nothing more is appended in this run.
    closed: bool,
    /// The stop checkpoint was written: the session is over, later records are dropped.
    stopped: bool,
}

#[derive(Debug)]
enum Sink {
    File {
        file: File,
        path: PathBuf,
        /// Bytes known to be written.
        len: u64,
    },
    Stdout,
}

/// The audit key, loaded; where it came from, for its `key_load` record.
#[derive(Debug)]
pub struct LoadedAuditKey {
    key: AuditKey,
    source: &'static str,
    version: Option<u64>,
}

/// Loads the audit key: from its file (mode 0600), or from the KMS that `[key]` reads.
///
/// # Errors
/// The key cannot be had or is not base64 of 32 bytes (its value is never shown).
pub async fn load_key(config: &AuditConfig, prepared: &Prepared) -> anyhow::Result<LoadedAuditKey> {
    match (&config.key, prepared) {
        (AuditKeySource::File(path), _) => {
            let text = kms_client::read_secret_file(path).with_context(|| {
                format!(
                    "audit.key_path {}: cannot read the audit key (create one with `peerctl audit keygen --output {}`)",
                    path.display(),
                    path.display()
                )
            })?;
            let key = AuditKey::from_base64(&text)
                .with_context(|| format!("audit.key_path {}: not an audit key", path.display()))?;
            Ok(LoadedAuditKey {
                key,
                source: "file",
                version: None,
            })
        }
        (AuditKeySource::Kms { secret_name }, Prepared::Kms(boxed)) => {
            let (store, kms) = boxed.as_ref();
            let secret = tokio::time::timeout(kms.deadline, store.read(secret_name, None))
                .await
                .with_context(|| {
                    format!("audit key secret {secret_name}: no answer from the KMS in time")
                })?
                .with_context(|| format!("cannot read the audit key secret {secret_name}"))?;
            let key = AuditKey::from_base64(&secret.value).with_context(|| {
                format!(
                    "audit key secret {secret_name} (version {}) is not an audit key",
                    secret.version
                )
            })?;
            Ok(LoadedAuditKey {
                key,
                source: "kms",
                version: Some(secret.version),
            })
        }
        (AuditKeySource::Kms { .. }, Prepared::File(_)) => {
            bail!("audit.key_source = \"kms\" needs [key] source = \"kms\"")
        }
    }
}

impl Audit {
    /// Opens the log: verifies and continues an existing file (noting a torn line or an
    /// unclean stop in a `recovered` record), then writes the `start` record, the start
    /// checkpoint and the audit key's `key_load` record.
    ///
    /// # Errors
    /// The file cannot be created or read, is open to group or others, or does not verify
    /// (the error names its first bad record).
    pub fn open(
        config: &AuditConfig,
        loaded: LoadedAuditKey,
        start: Map<String, Value>,
        metrics: Metrics,
        readiness: Arc<RwLock<Readiness>>,
    ) -> anyhow::Result<Self> {
        let (sink, chain, recovery) = match &config.sink {
            AuditSink::Stdout => (Sink::Stdout, Chain::new(), None),
            AuditSink::File(path) => open_file(path)?,
        };
        let audit = Self {
            inner: Arc::new(Mutex::new(Inner {
                chain,
                sink,
                key: loaded.key,
                failing: false,
                closed: false,
                stopped: false,
            })),
            metrics,
            readiness,
            interval: config.checkpoint_interval,
        };
        if let Some(details) = recovery {
            audit.record(kind::RECOVERED, GATEWAY, "audit-chain", "noted", details);
        }
        audit.record(kind::START, GATEWAY, "gateway", "ok", start);
        audit.checkpoint(CheckpointReason::Start);
        let public = audit.public_key();
        audit.record(
            kind::KEY_LOAD,
            GATEWAY,
            "audit-key",
            "ok",
            record::key_load(loaded.source, loaded.version, &public.0, Some(&public.1)),
        );
        Ok(audit)
    }

    /// Appends one record at the current time: the entry point for every part of the gateway
    /// (the control channel calls it for each message accepted or refused). `actor` is who
    /// acted, `subject` what it acted on, `outcome` a short fixed word; `details` must hold no
    /// secret and no fraction. Never fails: a failed write is counted and makes the gateway
    /// not ready.
    pub fn record(
        &self,
        kind: &str,
        actor: &str,
        subject: &str,
        outcome: &str,
        details: Map<String, Value>,
    ) {
        let (actor, subject, outcome) = (
            record::bounded(actor),
            record::bounded(subject),
            record::bounded(outcome),
        );
        self.append(kind, false, |chain, _, time| {
            chain.seal(time, kind, &actor, &subject, &outcome, details)
        });
    }

    /// Writes a signed checkpoint (and syncs the file).
    pub fn checkpoint(&self, reason: CheckpointReason) {
        let interval = self.interval.as_secs().max(1);
        self.append(kind::CHECKPOINT, true, |chain, key, time| {
            chain.checkpoint(time, GATEWAY, reason, interval, key)
        });
    }

    /// Writes checkpoints every interval, for as long as the task runs.
    pub async fn run_checkpoints(self) {
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticker = tokio::time::interval_at(start, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.checkpoint(CheckpointReason::Interval);
        }
    }

    /// Writes the `stop` record and the stop checkpoint: the clean end of a session. Nothing
    /// is appended after it (a checkpoint timer firing during shutdown is ignored), so the
    /// stop checkpoint stays the last record.
    pub fn stop(&self, why: &str) {
        let mut details = Map::new();
        details.insert("reason".to_owned(), Value::from(record::bounded(why)));
        self.record(kind::STOP, GATEWAY, "gateway", "ok", details);
        self.checkpoint(CheckpointReason::Stop);
        if let Ok(mut inner) = self.inner.lock() {
            inner.stopped = true;
        }
    }

    /// Returns the audit public key (base64) and its key id.
    pub fn public_key(&self) -> (String, String) {
        self.inner.lock().map_or_else(
            |_| (String::new(), String::new()),
            |inner| {
                let public = inner.key.public();
                (public.to_base64(), public.key_id())
            },
        )
    }

    fn append(
        &self,
        kind: &str,
        sync: bool,
        build: impl FnOnce(&Chain, &AuditKey, u64) -> Result<Sealed, CanonicalError>,
    ) {
        let Ok(mut inner) = self.inner.lock() else {
            self.metrics.observe_audit_write_error();
            return;
        };
        if inner.stopped {
            tracing::debug!(kind, "audit record after the stop checkpoint not written");
            return;
        }
        if inner.closed {
            self.metrics.observe_audit_write_error();
            return;
        }
        let sealed = match build(&inner.chain, &inner.key, unix(clock::now())) {
            Ok(sealed) if sealed.line.len() <= MAX_LINE => sealed,
            Ok(_) | Err(_) => {
                self.metrics.observe_audit_write_error();
                tracing::warn!(
                    kind,
                    "audit record not written: it has no canonical form or is too long"
                );
                return;
            }
        };
        match inner.sink.write(&sealed.line, sync) {
            Ok(()) => {
                inner.chain.commit(&sealed);
                self.metrics.observe_audit_record(kind);
                if inner.failing {
                    inner.failing = false;
                    tracing::info!("the audit log is writable again");
                    self.set_unwritable(false);
                }
            }
            Err(failure) => {
                self.metrics.observe_audit_write_error();
                if !inner.failing {
                    tracing::error!(
                        path = %inner.sink.name(),
                        error = %failure.error,
                        "cannot write the audit log; the tunnel keeps running, the gateway is not ready until a write succeeds"
                    );
                }
                inner.failing = true;
                match failure.left {
                    Left::Nothing => {}
                    Left::Whole => {
                        // Only the sync failed: the record is in the file, so the chain
                        // moves on with it.
                        inner.chain.commit(&sealed);
                        self.metrics.observe_audit_record(kind);
                    }
                    Left::Undone(bytes) => tracing::error!(
                        path = %inner.sink.name(),
                        bytes,
                        "a failed audit write left part of a record behind; the file was cut back to the end of the last whole record"
                    ),
                    Left::Partial => {
                        inner.closed = true;
                        tracing::error!(
                            path = %inner.sink.name(),
                            "a failed audit write left part of a record behind that cannot be undone: no more records are appended until the gateway restarts, which records the torn line"
                        );
                    }
                }
                self.set_unwritable(true);
            }
        }
    }

    fn set_unwritable(&self, unwritable: bool) {
        if let Ok(mut readiness) = self.readiness.write() {
            readiness.audit_unwritable = unwritable;
        }
    }
}

struct WriteFailure {
    error: std::io::Error,
    left: Left,
}

/// What a failed write left in the file.
enum Left {
    /// Nothing of the record.
    Nothing,
    /// The whole line (only the sync failed).
    Whole,
    /// Part of the line, cut off again (this many bytes).
    Undone(u64),
    /// Part of the line, which could not be cut off.
    Partial,
}

impl Sink {
    fn write(&mut self, line: &str, sync: bool) -> Result<(), WriteFailure> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        match self {
            Sink::File { file, len, .. } => {
                let written = file.write_all(&bytes);
                let synced = written.and_then(|()| if sync { file.sync_data() } else { Ok(()) });
                let Err(error) = synced else {
                    *len += size;
                    return Ok(());
                };
                let now = file.metadata().map(|m| m.len());
                let left = match now {
                    Ok(now) if now == *len => Left::Nothing,
                    Ok(now) if now == *len + size => {
                        *len = now;
                        Left::Whole
                    }
                    // A write that stopped part-way is undone at once: those bytes were never
                    // a record, and the next one must start on a line of its own.
                    Ok(now) if now > *len && file.set_len(*len).is_ok() => Left::Undone(now - *len),
                    _ => Left::Partial,
                };
                Err(WriteFailure { error, left })
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)
                    .and_then(|()| out.flush())
                    .map_err(|error| WriteFailure {
                        error,
                        left: Left::Partial,
                    })
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Sink::File { path, .. } => path.display().to_string(),
            Sink::Stdout => "-".to_owned(),
        }
    }
}

/// Opens (or creates, mode 0600) the file and works out where the chain continues.
/// An opened file: its sink, where the chain continues, and the details of the `recovered`
/// record to write first, if any.
type Opened = (Sink, Chain, Option<Map<String, Value>>);

fn open_file(path: &Path) -> anyhow::Result<Opened> {
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("audit.path {shown}: cannot create its directory"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("audit.path {shown}: cannot open"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("audit.path {shown}: cannot read its metadata"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "audit.path {shown} has mode {mode:o}: it must be readable by its owner only (chmod 600)"
        );
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("audit.path {shown}: cannot read"))?;
    let resume = ztgw_audit::resume(&bytes).map_err(|failure| {
        anyhow::anyhow!(
            "audit.path {shown} does not verify ({failure}); it is not continued: move it aside \
             (keep it as evidence) and start again"
        )
    })?;
    let mut len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let recovery = if let Some(torn) = resume.torn {
        tracing::warn!(
            path = %shown,
            line = torn.line,
            bytes = torn.bytes,
            "the audit log ends with a torn line from an unclean stop; it is kept, ended, and noted in a recovered record"
        );
        file.write_all(b"\n")
            .with_context(|| format!("audit.path {shown}: cannot end the torn line"))?;
        len += 1;
        Some(record::recovered(
            "torn last line",
            resume.unsigned,
            Some((torn.line, torn.bytes)),
        ))
    } else if !resume.clean {
        tracing::warn!(path = %shown, unsigned = resume.unsigned, "the audit log's last session has no stop checkpoint (unclean stop); noted in a recovered record");
        Some(record::recovered("unclean stop", resume.unsigned, None))
    } else {
        None
    };
    let chain = Chain::resume(resume.next_seq, resume.head);
    Ok((
        Sink::File {
            file,
            path: path.to_owned(),
            len,
        },
        chain,
        recovery,
    ))
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
