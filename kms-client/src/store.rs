//! The secret-store abstraction: read a secret by name (optionally a version), write a new
//! version, and say which version and when it was created. Backends: Infisical-compatible
//! (the Hanzo KMS contract); Vault KV v2 fits the same shape (versions, CAS writes).

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use zeroize::Zeroizing;

use crate::Error;

/// A secret value with its metadata. `Debug` never shows the value.
pub struct Secret {
    /// The secret's name.
    pub name: String,
    /// The value, trimmed of surrounding whitespace.
    pub value: Zeroizing<String>,
    /// The store's version number of this value.
    pub version: u64,
    /// When this version was written, if the store says.
    pub created_at: Option<SystemTime>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// What happened to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The new value is stored as this version.
    Applied {
        /// The new version.
        version: u64,
    },
    /// A change-approval policy holds the write: it is NOT applied.
    PendingApproval,
}

/// The kinds of request a store makes, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Machine-identity login.
    Login,
    /// Access-token renewal.
    Renew,
    /// Secret read.
    Read,
    /// Secret write.
    Write,
}

impl Operation {
    /// Returns the bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Login => "login",
            Operation::Renew => "renew",
            Operation::Read => "read",
            Operation::Write => "write",
        }
    }
}

/// Called once per HTTP request with its operation and whether it succeeded.
pub type Observer = Arc<dyn Fn(Operation, bool) + Send + Sync>;

/// A versioned secret store.
#[allow(async_fn_in_trait)]
pub trait SecretStore {
    /// Reads the current value of `name`, or the given `version`.
    ///
    /// # Errors
    /// [`Error`] naming the secret and what failed, never the value.
    async fn read(&self, name: &str, version: Option<u64>) -> Result<Secret, Error>;

    /// Writes `value` as a new version of `name` (creating it if needed).
    ///
    /// # Errors
    /// [`Error`] naming the secret and what failed, never the value.
    async fn write(&self, name: &str, value: &str) -> Result<WriteOutcome, Error>;
}
