//! Public keys: the identity of a WireGuard peer.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A WireGuard public key (32 bytes). Displays as base64, the form operators write.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

/// Why a string is not a public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not valid standard base64.
    #[error("is not valid base64 (expected 44 characters as printed by `wg pubkey`)")]
    Base64,
    /// Wrong decoded length.
    #[error("decodes to {0} bytes; a WireGuard key has 32")]
    Length(usize),
    /// Not 64 lowercase hex digits.
    #[error("is not 64 hex digits")]
    Hex,
}

impl PublicKey {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the base64 form.
    ///
    /// # Errors
    /// Returns why the text is not a key.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim().as_bytes())
            .map_err(|_| KeyError::Base64)?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        Ok(Self(array))
    }

    /// Parses the lowercase hex form used by the UAPI.
    ///
    /// # Errors
    /// Returns [`KeyError::Hex`] unless the text is exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let raw = text.as_bytes();
        if raw.len() != 64 {
            return Err(KeyError::Hex);
        }
        let mut out = [0u8; 32];
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(KeyError::Hex)?;
            let lo = hex_value(pair[1]).ok_or(KeyError::Hex)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    /// Returns the base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Returns the lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

#[cfg(test)]
mod tests;
