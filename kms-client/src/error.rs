//! The crate's one error type. Messages name the location of a secret, never its value.

use std::path::PathBuf;

/// What went wrong while loading a key or talking to a KMS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file does not exist.
    #[error("{} does not exist", path.display())]
    NotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// A secret file can be read by group or others.
    #[error("{} has mode {mode:04o}; it must be 0600 (readable by its owner only): run `chmod 600 {}`", path.display(), path.display())]
    InsecureMode {
        /// The configured path.
        path: PathBuf,
        /// The permission bits found.
        mode: u32,
    },
    /// A file exists but could not be read.
    #[error("{} cannot be read", path.display())]
    Unreadable {
        /// The configured path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (a rotation's key slot or record).
    #[error("{} cannot be written", path.display())]
    Unwritable {
        /// The file.
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
    /// The KMS could not be reached (connect error, timeout, truncated answer), after retries.
    #[error("KMS at {url} unreachable ({operation}, {attempts} attempts)")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The operation.
        operation: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The KMS answered with an error status that is not one of the specific cases below.
    #[error("KMS {operation} failed with HTTP {status}: {message}")]
    Status {
        /// The operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The KMS's error message.
        message: String,
    },
    /// The machine identity was rejected (HTTP 401, or 403 `TokenError` after a fresh login).
    #[error(
        "KMS rejected the machine identity (HTTP {status}: {message}); check key.client_id_file and key.client_secret_file"
    )]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The KMS's error message.
        message: String,
    },
    /// The identity may not read or write the secret (HTTP 403 `PermissionDenied`).
    #[error("KMS denied access to secret {secret} (HTTP 403: {message})")]
    Denied {
        /// The secret name.
        secret: String,
        /// The KMS's error message.
        message: String,
    },
    /// The secret does not exist where it was looked for.
    #[error("secret {secret} not found in {project}/{environment}{path}")]
    SecretNotFound {
        /// The secret name.
        secret: String,
        /// The project id.
        project: String,
        /// The environment slug.
        environment: String,
        /// The secret path.
        path: String,
    },
    /// The KMS answered something that does not have the documented shape.
    #[error("KMS {operation} answer is malformed: {what}")]
    MalformedResponse {
        /// The operation.
        operation: &'static str,
        /// What was missing or wrong (never a secret value).
        what: String,
    },
    /// A change-approval policy holds a write: it is not applied.
    #[error(
        "KMS holds the write to secret {secret} for approval: it is not applied (approve it, or exempt the gateway's identity from the policy)"
    )]
    PendingApproval {
        /// The secret name.
        secret: String,
    },
    /// The client could not be set up (bad URL, CA bundle, credentials file).
    #[error("KMS client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Returns a short, bounded label for metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::InsecureMode { .. } => "insecure_mode",
            Error::Unreadable { .. } => "unreadable",
            Error::Unwritable { .. } => "unwritable",
            Error::Malformed { .. } => "malformed",
            Error::Unreachable { .. } => "unreachable",
            Error::Status { .. } => "status",
            Error::Unauthorized { .. } => "unauthorized",
            Error::Denied { .. } => "denied",
            Error::SecretNotFound { .. } => "secret_not_found",
            Error::MalformedResponse { .. } => "malformed_response",
            Error::PendingApproval { .. } => "pending_approval",
            Error::Config(_) => "config",
        }
    }

    /// Returns whether trying the same thing later can succeed (the KMS was unreachable or
    /// overloaded), as opposed to a answer that will not change by itself.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
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
