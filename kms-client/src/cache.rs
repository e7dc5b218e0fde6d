//! The survival cache: an AEAD-sealed copy of the private key, so a gateway can restart while
//! the KMS is unreachable. Off by default (the KMS contract says secrets are not cached on
//! disk); an operator who enables it trades that for availability, bounded by `not_after`.
//!
//! The copy is sealed with ChaCha20-Poly1305 under a key-encryption key (KEK) read from a
//! separate file (a separately mounted Secret). Everything but the key is authenticated data:
//! moving `not_after` forward breaks the seal. A KEK fingerprint in the clear tells "sealed
//! with another KEK" apart from "tampered". Sealing and opening are pure functions of their
//! inputs, `now` included; only [`write`] and [`read`] touch files.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, LoadedKey, Origin, PrivateKey, read_secret_file};

const FORMAT: &str = "zt-gateway-key-cache/1";

/// Where the cache lives and how long a copy stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The sealed file.
    pub path: PathBuf,
    /// The file holding the base64 32-byte key-encryption key (mode 0600).
    pub kek_file: PathBuf,
    /// How long after sealing a copy may be used.
    pub max_age: Duration,
}

/// A key-encryption key. Wiped on drop; never printed.
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id() {
            Ok(id) => write!(f, "Kek({id})"),
            Err(_) => f.write_str("Kek(<no id>)"),
        }
    }
}

impl Kek {
    /// Wraps raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads a base64 KEK from a 0600 file.
    ///
    /// # Errors
    /// File errors, or a value that is not base64 of 32 bytes.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let text = read_secret_file(path)?;
        let key = PrivateKey::from_base64(&text).map_err(|reason| Error::Malformed {
            origin: format!("key-encryption key {}", path.display()),
            reason,
        })?;
        Ok(Self(Zeroizing::new(*key.expose_bytes())))
    }

    /// A fingerprint that identifies the KEK without revealing it: the tag of an empty
    /// message sealed under it with a fixed nonce and label.
    ///
    /// # Errors
    /// [`CacheError::Seal`] when the cipher refuses (it never should for an empty message).
    pub fn id(&self) -> Result<String, CacheError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(self.0.as_ref()));
        let tag = cipher
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &[],
                    aad: b"zt-gateway kek id",
                },
            )
            .map_err(|_| {
                CacheError::Seal("the key-encryption key fingerprint cannot be computed")
            })?;
        Ok(tag.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }
}

/// Why the cache cannot be used. Each says which, so an operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// No cache file.
    #[error("no survival cache at {}", path.display())]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The copy is past its `not_after`.
    #[error("the survival cache expired at {} (its not_after)", humantime::format_rfc3339_seconds(*not_after))]
    Expired {
        /// When it expired.
        not_after: SystemTime,
    },
    /// Sealed under a different key-encryption key.
    #[error(
        "the survival cache was sealed with another key-encryption key (kek id {found}, configured {expected})"
    )]
    WrongKek {
        /// The fingerprint in the file.
        found: String,
        /// The configured KEK's fingerprint.
        expected: String,
    },
    /// The seal does not verify: the file was changed.
    #[error("the survival cache failed authentication: it was modified")]
    Tampered,
    /// Not a cache file.
    #[error("the survival cache is not readable: {0}")]
    Malformed(String),
    /// The KEK could not be read.
    #[error("cannot read the key-encryption key")]
    Kek(#[source] Error),
    /// The copy could not be sealed: nothing was written, the previous file is untouched.
    #[error("cannot seal the survival cache: {0}")]
    Seal(&'static str),
    /// File IO failed.
    #[error("survival cache {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    format: String,
    kek_id: String,
    not_after: u64,
    kms_version: Option<u64>,
    created_at: Option<u64>,
    nonce: String,
    ciphertext: String,
}

impl Sealed {
    fn aad(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.format,
            self.kek_id,
            self.not_after,
            self.kms_version
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
            self.created_at
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        )
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The time `secs` seconds after the epoch, if it can be represented.
fn from_unix(secs: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Seals `key` under `kek`, usable until `not_after`. `nonce` must be fresh for this KEK.
///
/// # Errors
/// [`CacheError::Seal`] when encryption or serialisation fails: a broken copy is never
/// returned.
pub fn seal(
    key: &LoadedKey,
    kek: &Kek,
    not_after: SystemTime,
    nonce: [u8; 12],
) -> Result<String, CacheError> {
    let mut sealed = Sealed {
        format: FORMAT.to_owned(),
        kek_id: kek.id()?,
        not_after: unix(not_after),
        kms_version: key.version,
        created_at: key.created_at.map(unix),
        nonce: STANDARD.encode(nonce),
        ciphertext: String::new(),
    };
    let aad = sealed.aad();
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.0.as_ref()));
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: key.key.expose_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CacheError::Seal("encryption failed"))?;
    sealed.ciphertext = STANDARD.encode(ciphertext);
    serde_json::to_string_pretty(&sealed).map_err(|_| CacheError::Seal("serialisation failed"))
}

/// Opens a sealed copy at `now`.
///
/// # Errors
/// [`CacheError::WrongKek`], [`CacheError::Tampered`], [`CacheError::Expired`] or
/// [`CacheError::Malformed`].
pub fn unseal(text: &str, kek: &Kek, now: SystemTime) -> Result<LoadedKey, CacheError> {
    let sealed: Sealed =
        serde_json::from_str(text).map_err(|e| CacheError::Malformed(e.to_string()))?;
    if sealed.format != FORMAT {
        return Err(CacheError::Malformed(format!(
            "unknown format {:?}",
            sealed.format
        )));
    }
    let expected = kek.id()?;
    if sealed.kek_id != expected {
        return Err(CacheError::WrongKek {
            found: sealed.kek_id,
            expected,
        });
    }
    let nonce = STANDARD
        .decode(&sealed.nonce)
        .map_err(|_| CacheError::Tampered)?;
    let ciphertext = STANDARD
        .decode(&sealed.ciphertext)
        .map_err(|_| CacheError::Tampered)?;
    if nonce.len() != 12 {
        return Err(CacheError::Tampered);
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(kek.0.as_ref()));
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: sealed.aad().as_bytes(),
                },
            )
            .map_err(|_| CacheError::Tampered)?,
    );
    let not_after = from_unix(sealed.not_after).ok_or(CacheError::Tampered)?;
    if now >= not_after {
        return Err(CacheError::Expired { not_after });
    }
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CacheError::Tampered)?;
    let key = PrivateKey::from_base64(&STANDARD.encode(bytes)).map_err(|_| CacheError::Tampered)?;
    Ok(LoadedKey {
        key,
        origin: Origin::Cache,
        version: sealed.kms_version,
        created_at: sealed.created_at.and_then(from_unix),
    })
}

/// Seals `key` and writes it atomically to the cache file (mode 0600), valid for
/// `config.max_age` from `now`.
///
/// The copy is sealed completely before any file is touched, and written to a temporary file
/// that replaces the cache only once it is on disk: a failure at any step leaves the previous
/// cache file as it was.
///
/// # Errors
/// KEK, sealing or file errors.
pub fn write(config: &CacheConfig, key: &LoadedKey, now: SystemTime) -> Result<(), CacheError> {
    let kek = Kek::read(&config.kek_file).map_err(CacheError::Kek)?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| CacheError::Io {
        path: config.path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let not_after = now.checked_add(config.max_age).ok_or(CacheError::Seal(
        "not_after (now + max_age) is out of range",
    ))?;
    let text = seal(key, &kek, not_after, nonce)?;
    let io = |source| CacheError::Io {
        path: config.path.clone(),
        source,
    };
    crate::file::write_private(&config.path, text.as_bytes()).map_err(io)
}

/// Reads and opens the cache at `now`.
///
/// # Errors
/// See [`CacheError`].
pub fn read(config: &CacheConfig, now: SystemTime) -> Result<LoadedKey, CacheError> {
    let text = match fs::read_to_string(&config.path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CacheError::Missing {
                path: config.path.clone(),
            });
        }
        Err(source) => {
            return Err(CacheError::Io {
                path: config.path.clone(),
                source,
            });
        }
    };
    let kek = Kek::read(&config.kek_file).map_err(CacheError::Kek)?;
    unseal(&text, &kek, now)
}

#[cfg(test)]
mod tests;
