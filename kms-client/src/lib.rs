//! Key custody for the gateway: the WireGuard private key type, the secret stores it is read
//! from, and the sealed survival cache.
//!
//! This crate owns [`PrivateKey`] (zeroized, never printed) and the sources behind
//! [`KeySource`] (a file) and [`SecretStore`] (a KMS speaking the Infisical API). It never
//! builds an async runtime: network calls are `async` and run on the caller's.
#![warn(missing_docs)]

pub mod cache;
mod error;
mod file;
pub mod infisical;
mod key;
pub mod retry;
pub mod slots;
mod store;

use std::time::SystemTime;

pub use error::{Error, KeyFormatError};
pub use file::{FileKeySource, read_secret_file, sync_parent, write_private};
pub use key::{PrivateKey, PublicKeyBytes};
pub use store::{Observer, Operation, Secret, SecretStore, WriteOutcome};

/// Where a key came from, for logs, metrics and audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A local file (the embedded default).
    File,
    /// The KMS.
    Kms,
    /// The sealed survival cache, because the KMS could not be reached.
    Cache,
}

impl Origin {
    /// Returns the bounded label used in metrics (`file`, `kms`, `cache`).
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Kms => "kms",
            Origin::Cache => "cache",
        }
    }

    /// Every origin, for metrics that export one series per origin.
    pub const ALL: [Origin; 3] = [Origin::File, Origin::Kms, Origin::Cache];
}

/// A loaded key with what is known about it (never the key itself in any printable field).
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// The private key; zeroized on drop.
    pub key: PrivateKey,
    /// Where it came from.
    pub origin: Origin,
    /// The KMS version of the secret, when the source has versions.
    pub version: Option<u64>,
    /// When the key was created, as far as the source knows.
    pub created_at: Option<SystemTime>,
}

/// A source of the gateway's static private key that needs no network.
pub trait KeySource {
    /// Loads the current private key.
    ///
    /// # Errors
    /// Returns an [`Error`] naming what was wrong (the location, never the value).
    fn load(&self) -> Result<LoadedKey, Error>;
}

/// Reads the secret `name` from `store` and checks it is a WireGuard private key.
///
/// # Errors
/// Store errors, and [`Error::Malformed`] naming the secret (never its value) when it is not
/// base64 of 32 bytes.
pub async fn load_key_from_store(store: &impl SecretStore, name: &str) -> Result<LoadedKey, Error> {
    let secret = store.read(name, None).await?;
    let key = PrivateKey::from_base64(&secret.value).map_err(|reason| Error::Malformed {
        origin: format!("KMS secret {name} (version {})", secret.version),
        reason,
    })?;
    Ok(LoadedKey {
        key,
        origin: Origin::Kms,
        version: Some(secret.version),
        created_at: secret.created_at,
    })
}
