//! Configuration errors: one line naming the key, the value and what is expected.

/// A configuration problem, worded as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {reason}")]
    Read {
        /// The path.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The file is not valid TOML or has an unknown key.
    #[error("configuration file {path}: {reason}")]
    Syntax {
        /// The path.
        path: String,
        /// What is wrong, with the line number.
        reason: String,
    },
    /// A key has an invalid value.
    #[error("{key} = {value}: {expected}")]
    Value {
        /// `section.key`.
        key: String,
        /// The value as written.
        value: String,
        /// What is expected.
        expected: String,
    },
}

pub(super) fn bad(key: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Value {
        key: key.to_owned(),
        value: format!("{:?}", value.to_string()),
        expected: expected.to_owned(),
    }
}
