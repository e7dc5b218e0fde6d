//! The key store's slots as the rotation loop uses them: the key file and the files beside
//! it (`[key] source = "file"`), or the KMS secrets (`source = "kms"`). Both keep the
//! running key readable at every step (`kms_client::slots`).

use std::time::Duration;

use anyhow::Result;
use kms_client::infisical::InfisicalStore;
use kms_client::slots::{FileKeySlots, KmsKeySlots};
use kms_client::{LoadedKey, PrivateKey};

/// The most one KMS call of the rotation may take (each is retried on the next pass).
const KMS_CALL: Duration = Duration::from_secs(30);

/// Where this gateway's keys and rotation record live.
#[derive(Debug)]
pub enum KeySlots {
    /// Beside the key file.
    File(FileKeySlots),
    /// In the KMS, beside the secret `name`.
    Kms {
        /// The KMS client.
        store: Box<InfisicalStore>,
        /// `key.secret_name`.
        name: String,
    },
}

/// What the slots hold.
#[derive(Debug)]
pub struct Held {
    /// The running key.
    pub current: LoadedKey,
    /// The staged next key.
    pub next: Option<PrivateKey>,
    /// The previous key, kept for rollback.
    pub previous: Option<PrivateKey>,
    /// The rotation record, as written.
    pub record: Option<String>,
}

impl KeySlots {
    /// Where the slots are, for messages.
    pub fn describe(&self) -> String {
        match self {
            KeySlots::File(slots) => format!("beside {}", slots.key_path().display()),
            KeySlots::Kms { name, .. } => format!("in the KMS beside secret {name}"),
        }
    }

    fn kms<'s>(store: &'s InfisicalStore, name: &str) -> KmsKeySlots<'s, InfisicalStore> {
        KmsKeySlots::new(store, name)
    }

    /// Reads every slot.
    ///
    /// # Errors
    /// The store's error (never a key's value).
    pub async fn read(&self) -> Result<Held> {
        match self {
            KeySlots::File(slots) => {
                let held = slots.read()?;
                Ok(Held {
                    current: held.current,
                    next: held.next,
                    previous: held.previous,
                    record: held.record,
                })
            }
            KeySlots::Kms { store, name } => {
                let held = bounded(Self::kms(store, name).read()).await?;
                Ok(Held {
                    current: held.current,
                    next: held.next,
                    previous: held.previous,
                    record: held.record,
                })
            }
        }
    }

    /// Stores `key` as the next key.
    ///
    /// # Errors
    /// The store's error.
    pub async fn write_next(&self, key: &PrivateKey) -> Result<()> {
        match self {
            KeySlots::File(slots) => Ok(slots.write_next(key)?),
            KeySlots::Kms { store, name } => bounded(Self::kms(store, name).write_next(key)).await,
        }
    }

    /// Makes the next key (`next`) current, the old one previous.
    ///
    /// # Errors
    /// The store's error; the running key is unchanged when the first write failed.
    pub async fn commit(&self, next: &PrivateKey) -> Result<()> {
        match self {
            KeySlots::File(slots) => Ok(slots.commit()?),
            KeySlots::Kms { store, name } => {
                bounded(Self::kms(store, name).commit(next)).await.map(drop)
            }
        }
    }

    /// Discards the next key (a rollback before the commit).
    ///
    /// # Errors
    /// The store's error.
    pub async fn discard_next(&self) -> Result<()> {
        match self {
            KeySlots::File(slots) => Ok(slots.discard_next()?),
            KeySlots::Kms { store, name } => bounded(Self::kms(store, name).discard_next()).await,
        }
    }

    /// Makes the previous key current again (a rollback after the commit).
    ///
    /// # Errors
    /// The store's error; a KMS without a previous version.
    pub async fn restore_previous(&self) -> Result<()> {
        match self {
            KeySlots::File(slots) => Ok(slots.restore_previous()?),
            KeySlots::Kms { store, name } => {
                let slots = Self::kms(store, name);
                let held = bounded(slots.read()).await?;
                let Some(old) = held.previous else {
                    anyhow::bail!("secret {name} has no version before the current one to restore");
                };
                bounded(slots.restore(&old)).await.map(drop)
            }
        }
    }

    /// Writes the rotation record.
    ///
    /// # Errors
    /// The store's error.
    pub async fn write_record(&self, record: &str) -> Result<()> {
        match self {
            KeySlots::File(slots) => Ok(slots.write_record(record)?),
            KeySlots::Kms { store, name } => {
                bounded(Self::kms(store, name).write_record(record)).await
            }
        }
    }
}

/// Bounds one KMS call in time.
async fn bounded<T>(call: impl Future<Output = Result<T, kms_client::Error>>) -> Result<T> {
    match tokio::time::timeout(KMS_CALL, call).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("the KMS did not answer within {} s", KMS_CALL.as_secs()),
    }
}
