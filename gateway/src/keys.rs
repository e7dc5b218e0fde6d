//! Key loading at start-up over `kms-client`: from a file, or from the KMS with retries up to
//! a deadline and the optional survival cache. Fails closed: without a valid key the gateway
//! does not start, and it never starts with a placeholder.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use kms_client::infisical::InfisicalStore;
use kms_client::retry::{RetryPolicy, jitter};
use kms_client::{FileKeySource, KeySource as _, LoadedKey, cache, load_key_from_store};

use crate::clock;
use crate::config::{KeyConfig, KmsConfig};
use crate::metrics::Metrics;

/// Pause between start-up attempts while the KMS is unreachable.
const START_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base: Duration::from_millis(500),
    cap: Duration::from_secs(5),
};

/// Makes the process non-dumpable (`PR_SET_DUMPABLE` 0): a crash writes no core file, which
/// would hold the private key, and processes of the same user can neither attach to it nor
/// read its memory through `/proc`. Called first thing at start-up, before the key exists.
///
/// # Errors
/// When the kernel refuses; the gateway then does not start.
pub fn forbid_core_dumps() -> anyhow::Result<()> {
    nix::sys::prctl::set_dumpable(false)
        .context("cannot make the process non-dumpable (prctl PR_SET_DUMPABLE)")
}

/// Prepares the key source without loading the key: credential files and TLS set-up are
/// checked here, so a configuration mistake stops start-up before anything is created.
///
/// # Errors
/// When the KMS client cannot be set up.
pub fn prepare(config: &KeyConfig, metrics: &Metrics) -> anyhow::Result<Prepared> {
    match config {
        KeyConfig::File { path } => Ok(Prepared::File(FileKeySource::new(path))),
        KeyConfig::Kms(kms) => {
            let observed = metrics.clone();
            let store = InfisicalStore::new(kms.store.clone())
                .context("cannot set up the KMS client")?
                .with_observer(Arc::new(move |operation, ok| {
                    observed.observe_kms(operation, ok)
                }));
            Ok(Prepared::Kms(Box::new((store, (**kms).clone()))))
        }
    }
}

/// A key source ready to load.
#[derive(Debug)]
pub enum Prepared {
    /// A key file.
    File(FileKeySource),
    /// The KMS and its settings.
    Kms(Box<(InfisicalStore, KmsConfig)>),
}

/// Loads the key.
///
/// # Errors
/// The key cannot be had: file errors, KMS errors that will not go away by waiting, or an
/// unreachable KMS past the deadline without a usable survival cache.
pub async fn load(prepared: &Prepared) -> anyhow::Result<LoadedKey> {
    match prepared {
        Prepared::File(source) => source.load().context("cannot load the private key"),
        Prepared::Kms(boxed) => {
            let (store, config) = boxed.as_ref();
            load_from_kms(store, config).await
        }
    }
}

async fn load_from_kms(store: &InfisicalStore, config: &KmsConfig) -> anyhow::Result<LoadedKey> {
    let deadline = tokio::time::Instant::now()
        .checked_add(config.deadline)
        .context("key.deadline is too far in the future")?;
    let url = &config.store.url;
    let mut attempt = 0u32;
    let last_error = loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let outcome =
            tokio::time::timeout(remaining, load_key_from_store(store, &config.secret_name)).await;
        let error = match outcome {
            Ok(Ok(key)) => {
                if let Some(cache_config) = &config.cache {
                    match cache::write(cache_config, &key, clock::now()) {
                        Ok(()) => {
                            tracing::info!(path = %cache_config.path.display(), "survival cache refreshed")
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "cannot write the survival cache")
                        }
                    }
                }
                return Ok(key);
            }
            Ok(Err(e)) if e.is_transient() => anyhow::Error::from(e),
            Ok(Err(e)) => {
                return Err(anyhow::Error::from(e)).context(format!(
                    "cannot load the private key from secret {} of the KMS at {url}",
                    config.secret_name
                ));
            }
            Err(_) => anyhow::anyhow!("no answer before the deadline"),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break error;
        }
        let pause = START_RETRY.delay(attempt, None, jitter()).min(remaining);
        tracing::warn!(error = %format!("{error:#}"), retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX), "KMS unreachable at start-up; not ready, retrying");
        tokio::time::sleep(pause).await;
    };
    let deadline_text = humantime::format_duration(config.deadline);
    let Some(cache_config) = &config.cache else {
        bail!(
            "KMS at {url} unreachable for {deadline_text} (key.deadline) and no survival cache is configured: {last_error:#}"
        );
    };
    match cache::read(cache_config, clock::now()) {
        Ok(key) => {
            tracing::warn!(
                path = %cache_config.path.display(),
                "KMS at {url} unreachable for {deadline_text}; starting from the survival cache"
            );
            Ok(key)
        }
        Err(e) => bail!(
            "KMS at {url} unreachable for {deadline_text} (key.deadline) and the survival cache cannot be used: {:#}",
            anyhow::Error::from(e)
        ),
    }
}

#[cfg(test)]
mod tests;
