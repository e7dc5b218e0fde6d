//! The audit key: an Ed25519 signing key held in zeroizing memory, and its public half.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Why a key text was refused (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64.
    #[error("not base64")]
    NotBase64,
    /// Not 32 bytes.
    #[error("expected 32 bytes, found {0}")]
    Length(usize),
    /// Not a valid Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
}

/// The Ed25519 key that signs checkpoints. The seed is wiped on drop and never printed.
pub struct AuditKey {
    signing: SigningKey,
}

impl AuditKey {
    /// Generates a key from the system random source.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())?;
        Ok(Self::from_seed(&seed))
    }

    /// Builds the key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// Parses base64 of the 32-byte seed (surrounding whitespace ignored), as the key file
    /// and the KMS secret hold it.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong, never the value.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| KeyError::NotBase64)?,
        );
        let mut seed = Zeroizing::new([0u8; 32]);
        if bytes.len() != seed.len() {
            return Err(KeyError::Length(bytes.len()));
        }
        seed.copy_from_slice(&bytes);
        Ok(Self::from_seed(&seed))
    }

    /// Returns base64 of the seed, in a zeroizing string (for the key file).
    pub fn to_base64(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.signing.to_bytes());
        Zeroizing::new(STANDARD.encode(seed.as_ref()))
    }

    /// Returns the public key.
    pub fn public(&self) -> AuditPublicKey {
        AuditPublicKey {
            verifying: self.signing.verifying_key(),
        }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("key_id", &self.public().key_id())
            .finish_non_exhaustive()
    }
}

/// The public half of an audit key: what verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPublicKey {
    verifying: VerifyingKey,
}

impl AuditPublicKey {
    /// Parses base64 of the 32-byte public key.
    ///
    /// # Errors
    /// [`KeyError`] naming what is wrong.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let verifying = VerifyingKey::from_bytes(&array).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self { verifying })
    }

    /// Returns base64 of the 32-byte public key.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.verifying.as_bytes())
    }

    /// Returns the key id: the first 16 hex digits of SHA-256 over the 32 public key bytes.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.verifying.as_bytes());
        hex(&digest[..8])
    }

    /// Returns whether `signature` is a valid signature of `message` by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.verifying.verify(message, &signature).is_ok()
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_base64_and_signs() {
        let key = AuditKey::generate().expect("random");
        let again = AuditKey::from_base64(&key.to_base64()).expect("parse");
        assert_eq!(key.public(), again.public());
        let signature = key.sign(b"message");
        assert!(key.public().verifies(b"message", &signature));
        assert!(!key.public().verifies(b"massage", &signature));
        let public = AuditPublicKey::from_base64(&key.public().to_base64()).expect("public");
        assert_eq!(public.key_id().len(), 16);
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let key = AuditKey::from_seed(&[7u8; 32]);
        let seed = key.to_base64();
        let debug = format!("{key:?}");
        assert!(!debug.contains(seed.as_str()), "{debug}");
        assert!(debug.contains(&key.public().key_id()));
    }

    #[test]
    fn bad_texts_are_refused_without_echo() {
        assert_eq!(
            AuditKey::from_base64("c2hvcnQ=").err(),
            Some(KeyError::Length(5))
        );
        assert_eq!(AuditKey::from_base64("!!").err(), Some(KeyError::NotBase64));
    }
}
