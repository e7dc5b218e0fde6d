//! The rotation id: 16 lowercase hex digits drawn by the caller from its RNG.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Identifies one rotation attempt across both gateways: 16 lowercase hex digits (64 random
/// bits), drawn by the caller from its RNG.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RotationId(String);

/// Why a string is not a rotation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a rotation id is 16 lowercase hex digits")]
pub struct IdError;

impl RotationId {
    /// Length of the id in characters.
    pub const LEN: usize = 16;

    /// Validates `text` as an id.
    ///
    /// # Errors
    /// [`IdError`] unless `text` is exactly 16 characters of `0-9a-f`.
    pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
        let text = text.into();
        let valid = text.len() == Self::LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid { Ok(Self(text)) } else { Err(IdError) }
    }

    /// Builds the id of 8 random bytes (hex, big-endian order as given).
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(format!("{:016x}", u64::from_be_bytes(bytes)))
    }

    /// Returns the id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RotationId {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, IdError> {
        Self::new(text)
    }
}

impl TryFrom<String> for RotationId {
    type Error = IdError;

    fn try_from(text: String) -> Result<Self, IdError> {
        Self::new(text)
    }
}

impl From<RotationId> for String {
    fn from(id: RotationId) -> Self {
        id.0
    }
}

impl fmt::Display for RotationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
