//! The `file` key source: a base64 key in a file readable by its owner only.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Error, KeySource, LoadedKey, Origin, PrivateKey};

/// Reads the key from a file that must not be accessible to group or others (mode 0600 or
/// stricter), as `wg genkey` output is kept.
#[derive(Debug, Clone)]
pub struct FileKeySource {
    path: PathBuf,
}

impl FileKeySource {
    /// Creates a source for `path`; nothing is read until [`KeySource::load`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Returns the configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl KeySource for FileKeySource {
    fn load(&self) -> Result<LoadedKey, Error> {
        let path = &self.path;
        let meta = fs::metadata(path).map_err(|source| match source.kind() {
            ErrorKind::NotFound => Error::NotFound { path: path.clone() },
            _ => Error::Unreadable {
                path: path.clone(),
                source,
            },
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(Error::InsecureMode {
                path: path.clone(),
                mode,
            });
        }
        let text =
            Zeroizing::new(
                fs::read_to_string(path).map_err(|source| Error::Unreadable {
                    path: path.clone(),
                    source,
                })?,
            );
        let key = PrivateKey::from_base64(&text).map_err(|reason| Error::Malformed {
            origin: format!("key file {}", path.display()),
            reason,
        })?;
        Ok(LoadedKey {
            key,
            origin: Origin::File,
            version: None,
        })
    }
}

#[cfg(test)]
mod tests;
