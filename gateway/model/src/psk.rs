//! Preshared keys: the optional symmetric secret WireGuard mixes into a peer's handshake, and
//! what a source read behind a `presharedKeySecretRef`.
//!
//! Both types wipe their bytes on drop, compare without early exit, and never show their
//! value in `Debug` output or error messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// A WireGuard preshared key (32 bytes).
#[derive(Clone)]
pub struct PresharedKey(Zeroizing<[u8; 32]>);

/// Why a stored value is not a preshared key. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    /// Not text.
    #[error("is not text; expected base64 of 32 bytes, as `wg genpsk` prints it")]
    NotText,
    /// Not standard base64.
    #[error("is not valid base64; expected base64 of 32 bytes, as `wg genpsk` prints it")]
    Base64,
    /// Wrong decoded length.
    #[error("decodes to {0} bytes; a preshared key has 32")]
    Length(usize),
}

impl PresharedKey {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses the base64 text form as `wg genpsk` prints it (surrounding whitespace ignored),
    /// as stored in a Secret.
    ///
    /// # Errors
    /// Returns what is wrong with the value, never the value itself.
    pub fn from_base64(stored: &[u8]) -> Result<Self, PskError> {
        let text = std::str::from_utf8(stored).map_err(|_| PskError::NotText)?;
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim().as_bytes())
                .map_err(|_| PskError::Base64)?,
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        if decoded.len() != bytes.len() {
            return Err(PskError::Length(decoded.len()));
        }
        bytes.copy_from_slice(&decoded);
        Ok(Self(bytes))
    }

    /// Returns the raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the lowercase hex form used by the UAPI, in a buffer wiped on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = Zeroizing::new(String::with_capacity(64));
        for byte in self.0.iter() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        equal_in_constant_time(self.0.as_slice(), other.0.as_slice())
    }
}

impl Eq for PresharedKey {}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

/// What a source read behind `spec.presharedKeySecretRef`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// The bytes stored under the referenced key.
    Found {
        /// Names the Secret and key for messages, e.g. `Secret "x" key "psk"`.
        secret: String,
        /// The stored bytes, wiped on drop.
        value: Zeroizing<Vec<u8>>,
    },
    /// The value could not be read; why, worded for the operator.
    Unavailable(String),
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Found { secret, .. } => f
                .debug_struct("Found")
                .field("secret", secret)
                .field("value", &"<redacted>")
                .finish(),
            SecretValue::Unavailable(why) => f.debug_tuple("Unavailable").field(why).finish(),
        }
    }
}

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
