//! Key slots in the KMS, for static-key rotation with `[key] source = "kms"`: the running key
//! is the configured secret `<name>`; the staged next key is the secret `<name>-next`; the
//! previous key is the version of `<name>` before the current one (the KMS keeps every
//! version, so a commit is one write and a rollback writes the old key back as a newer
//! version); the rotation record is `<name>-rotation`.
//!
//! A discarded next key is overwritten with [`DISCARDED`], not deleted: the store's API is
//! read and write, and an overwritten value no longer holds a private key. A write held for
//! approval by a change policy is not applied and is an error here: a rotation cannot go on
//! with a key the KMS does not serve yet.
//!
//! | step | secrets after it |
//! |---|---|
//! | [`KmsKeySlots::write_next`] | `<name>` = old (version n), `<name>-next` = new |
//! | [`KmsKeySlots::commit`] | `<name>` = new (version n+1, version n = old), `<name>-next` discarded |
//! | [`KmsKeySlots::restore`] | `<name>` = old again (version n+2), `<name>-next` discarded |

use zeroize::Zeroizing;

use crate::{Error, LoadedKey, Origin, PrivateKey, SecretStore, WriteOutcome};

/// What a discarded next key is overwritten with.
pub const DISCARDED: &str = "discarded";

/// The largest rotation record accepted from the KMS.
pub const MAX_RECORD_BYTES: usize = super::MAX_RECORD_BYTES as usize;

/// What the KMS slots hold.
#[derive(Debug)]
pub struct KmsSlots {
    /// The running key, with its version and creation time.
    pub current: LoadedKey,
    /// The staged next key, if any.
    pub next: Option<PrivateKey>,
    /// The version of the running secret before the current one, if any.
    pub previous: Option<PrivateKey>,
    /// The rotation record, if any.
    pub record: Option<String>,
}

/// The secrets of one gateway's key in a [`SecretStore`].
#[derive(Debug)]
pub struct KmsKeySlots<'s, S> {
    store: &'s S,
    name: String,
}

impl<'s, S: SecretStore> KmsKeySlots<'s, S> {
    /// Slots of the secret `name` (the configured `secret_name`) in `store`.
    pub fn new(store: &'s S, name: impl Into<String>) -> Self {
        Self {
            store,
            name: name.into(),
        }
    }

    /// The name of the staged next key's secret.
    pub fn next_name(&self) -> String {
        format!("{}-next", self.name)
    }

    /// The name of the rotation record's secret.
    pub fn record_name(&self) -> String {
        format!("{}-rotation", self.name)
    }

    /// Reads every slot. The running secret must exist and hold a key; the next key and
    /// the record may be absent; a next secret holding [`DISCARDED`] counts as absent.
    ///
    /// # Errors
    /// Store errors, and [`Error::Malformed`] naming the secret (never its value).
    pub async fn read(&self) -> Result<KmsSlots, Error> {
        let secret = self.store.read(&self.name, None).await?;
        let current = LoadedKey {
            key: parse(&self.name, secret.version, &secret.value)?,
            origin: Origin::Kms,
            version: Some(secret.version),
            created_at: secret.created_at,
        };
        let previous = match secret.version.checked_sub(1).filter(|v| *v >= 1) {
            Some(version) => {
                let old = self.store.read(&self.name, Some(version)).await?;
                Some(parse(&self.name, old.version, &old.value)?)
            }
            None => None,
        };
        let next = match self.optional(&self.next_name()).await? {
            Some((_, value)) if value.as_str() == DISCARDED => None,
            Some((version, value)) => Some(parse(&self.next_name(), version, &value)?),
            None => None,
        };
        let record = match self.optional(&self.record_name()).await? {
            Some((version, value)) => {
                if value.len() > MAX_RECORD_BYTES {
                    return Err(Error::MalformedResponse {
                        operation: "read",
                        what: format!(
                            "secret {} (version {version}) is over {MAX_RECORD_BYTES} bytes",
                            self.record_name()
                        ),
                    });
                }
                Some(value.to_string())
            }
            None => None,
        };
        Ok(KmsSlots {
            current,
            next,
            previous,
            record,
        })
    }

    /// Stores `key` as the staged next key.
    ///
    /// # Errors
    /// Store errors; [`Error::PendingApproval`] when a change policy holds the write.
    pub async fn write_next(&self, key: &PrivateKey) -> Result<(), Error> {
        self.write(&self.next_name(), key.to_base64().as_str())
            .await
            .map(drop)
    }

    /// Overwrites the staged next key with [`DISCARDED`]; nothing to do when there is none.
    ///
    /// # Errors
    /// Store errors; [`Error::PendingApproval`].
    pub async fn discard_next(&self) -> Result<(), Error> {
        match self.optional(&self.next_name()).await? {
            Some((_, value)) if value.as_str() != DISCARDED => {
                self.write(&self.next_name(), DISCARDED).await.map(drop)
            }
            _ => Ok(()),
        }
    }

    /// Makes `next` the running key: written as a new version of the running secret (the
    /// old key stays as the version before), then the next secret is discarded. Returns the
    /// new version.
    ///
    /// # Errors
    /// Store errors; [`Error::PendingApproval`]. When the first write fails the running key
    /// is unchanged.
    pub async fn commit(&self, next: &PrivateKey) -> Result<u64, Error> {
        let version = self.write(&self.name, next.to_base64().as_str()).await?;
        self.discard_next().await?;
        Ok(version)
    }

    /// Rolls a commit back: `old` is written back as the newest version of the running
    /// secret, and the next secret is discarded. Returns the new version.
    ///
    /// # Errors
    /// Store errors; [`Error::PendingApproval`].
    pub async fn restore(&self, old: &PrivateKey) -> Result<u64, Error> {
        let version = self.write(&self.name, old.to_base64().as_str()).await?;
        self.discard_next().await?;
        Ok(version)
    }

    /// Writes the rotation record.
    ///
    /// # Errors
    /// Store errors; [`Error::PendingApproval`]; a record over [`MAX_RECORD_BYTES`].
    pub async fn write_record(&self, record: &str) -> Result<(), Error> {
        if record.len() > MAX_RECORD_BYTES {
            return Err(Error::Config(format!(
                "the rotation record is {} bytes, over the {MAX_RECORD_BYTES} allowed",
                record.len()
            )));
        }
        self.write(&self.record_name(), record).await.map(drop)
    }

    async fn write(&self, name: &str, value: &str) -> Result<u64, Error> {
        match self.store.write(name, value).await? {
            WriteOutcome::Applied { version } => Ok(version),
            WriteOutcome::PendingApproval => Err(Error::PendingApproval {
                secret: name.to_owned(),
            }),
        }
    }

    async fn optional(&self, name: &str) -> Result<Option<(u64, Zeroizing<String>)>, Error> {
        match self.store.read(name, None).await {
            Ok(secret) => Ok(Some((secret.version, secret.value))),
            Err(Error::SecretNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn parse(name: &str, version: u64, value: &str) -> Result<PrivateKey, Error> {
    PrivateKey::from_base64(value).map_err(|reason| Error::Malformed {
        origin: format!("KMS secret {name} (version {version})"),
        reason,
    })
}

#[cfg(test)]
mod tests;
