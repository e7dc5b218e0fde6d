//! The crate's one error type. Messages name the location of a secret, never its value.

use std::path::PathBuf;

/// What went wrong while loading a key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file does not exist.
    #[error("key file {} does not exist", path.display())]
    NotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// The key file can be read by group or others.
    #[error("key file {} has mode {mode:04o}; it must be 0600 (readable by its owner only): run `chmod 600 {}`", path.display(), path.display())]
    InsecureMode {
        /// The configured path.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// The key file exists but could not be read.
    #[error("key file {} cannot be read", path.display())]
    Unreadable {
        /// The configured path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The key is not a base64 WireGuard key of 32 bytes.
    #[error("{origin}: {reason}")]
    Malformed {
        /// Where the key came from (a path or a secret name).
        origin: String,
        /// What was wrong with it, never the value.
        reason: KeyFormatError,
    },
}

impl Error {
    /// Returns a short, bounded label for metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::InsecureMode { .. } => "insecure_mode",
            Error::Unreadable { .. } => "unreadable",
            Error::Malformed { .. } => "malformed",
        }
    }
}

/// Why a string is not a WireGuard key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Not valid standard base64.
    #[error("not valid base64 (expected 44 characters as written by `wg genkey`)")]
    Base64,
    /// Decoded to the wrong number of bytes.
    #[error("decodes to {0} bytes; a WireGuard key has 32")]
    Length(usize),
    /// Empty input.
    #[error("is empty")]
    Empty,
}
