//! Key custody for the gateway: the WireGuard private key type and the sources it is read from.
//!
//! This crate owns [`PrivateKey`], a zeroizing holder that never prints its value, and the
//! key sources behind [`KeySource`]. It performs blocking file IO only and never builds an
//! async runtime; network backends (the KMS) arrive behind the same trait.
#![warn(missing_docs)]

mod error;
mod file;
mod key;

pub use error::Error;
pub use file::FileKeySource;
pub use key::{PrivateKey, PublicKeyBytes};

/// Where a key came from, for logs, metrics and audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A local file (the embedded default).
    File,
}

impl Origin {
    /// Returns the bounded label used in metrics (`file`).
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
        }
    }
}

/// A loaded key with what is known about it (never the key itself in any printable field).
#[derive(Debug)]
pub struct LoadedKey {
    /// The private key; zeroized on drop.
    pub key: PrivateKey,
    /// Where it came from.
    pub origin: Origin,
    /// A version label when the source has versions (a KMS), `None` for a file.
    pub version: Option<String>,
}

/// A source of the gateway's static private key.
pub trait KeySource {
    /// Loads the current private key.
    ///
    /// # Errors
    /// Returns an [`Error`] naming what was wrong (the location, never the value).
    fn load(&self) -> Result<LoadedKey, Error>;
}
