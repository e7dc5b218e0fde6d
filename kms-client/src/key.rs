//! The private key type: zeroized on drop, never printed, convertible to the forms devices need.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::{Zeroize, Zeroizing};

use crate::KeyFormatError;

/// A public key's raw bytes.
pub type PublicKeyBytes = [u8; 32];

/// A WireGuard (X25519) static private key. Wiped from memory on drop; `Debug` shows only the
/// public key.
#[derive(Clone)]
pub struct PrivateKey(Zeroizing<[u8; 32]>);

impl PrivateKey {
    /// Generates a new key from the operating system's random source, clamped as `wg genkey`
    /// does.
    ///
    /// # Errors
    /// Returns an error when the random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())?;
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Ok(Self(bytes))
    }

    /// Parses the base64 text form (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Returns what is wrong with the text, never the text itself.
    pub fn from_base64(text: &str) -> Result<Self, KeyFormatError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        let mut decoded = Zeroizing::new(
            STANDARD
                .decode(trimmed.as_bytes())
                .map_err(|_| KeyFormatError::Base64)?,
        );
        if decoded.len() != 32 {
            let len = decoded.len();
            decoded.zeroize();
            return Err(KeyFormatError::Length(len));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&decoded);
        Ok(Self(bytes))
    }

    /// Returns the matching public key.
    pub fn public_key(&self) -> PublicKeyBytes {
        let secret = x25519_dalek::StaticSecret::from(*self.0);
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    /// Returns the base64 text form, in a zeroizing string.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    /// Returns the lowercase hex form used by the WireGuard UAPI, in a zeroizing string.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for byte in self.0.iter() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Exposes the raw bytes to a device adapter that must hand them to a WireGuard
    /// implementation.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("public_key", &STANDARD.encode(self.public_key()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
