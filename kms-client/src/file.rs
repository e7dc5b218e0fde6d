//! The `file` key source: a base64 key in a file readable by its owner only, and the same
//! check for other small secret files (KMS credentials, the cache's key-encryption key).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::{Error, KeyFormatError, KeySource, LoadedKey, Origin, PrivateKey};

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
        let (text, meta) = read_private(path)?;
        let key = PrivateKey::from_base64(&text).map_err(|reason| Error::Malformed {
            origin: format!("key file {}", path.display()),
            reason,
        })?;
        Ok(LoadedKey {
            key,
            origin: Origin::File,
            version: None,
            // A key file carries no creation record; its last change is the best estimate.
            created_at: meta.modified().ok(),
        })
    }
}

/// Reads a small secret file (a credential, a key-encryption key) that must be mode 0600 or
/// stricter; returns its trimmed contents.
///
/// # Errors
/// Missing, unreadable, group/other-accessible or empty files.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, Error> {
    let (text, _) = read_private(path)?;
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        return Err(Error::Malformed {
            origin: path.display().to_string(),
            reason: KeyFormatError::Empty,
        });
    }
    Ok(trimmed)
}

fn read_private(path: &Path) -> Result<(Zeroizing<String>, fs::Metadata), Error> {
    let meta = fs::metadata(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => Error::NotFound {
            path: path.to_owned(),
        },
        _ => Error::Unreadable {
            path: path.to_owned(),
            source,
        },
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureMode {
            path: path.to_owned(),
            mode,
        });
    }
    let text = Zeroizing::new(
        fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_owned(),
            source,
        })?,
    );
    Ok((text, meta))
}

/// Writes `bytes` to `path` as a file readable by its owner only (0600), atomically: a
/// temporary file `<name>.tmp` beside it is written and synced, renamed over `path`, and the
/// directory synced, so a crash leaves either the old file or the new one, never a mix. The
/// temporary file is removed when a step fails.
///
/// # Errors
/// The IO error of the step that failed; `path` must name a file in an existing directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // `<name>.tmp` next to the target: never the target itself, whatever its name ends with.
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "the path names no file",
        ));
    };
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so a rename or removal in it survives a crash.
///
/// # Errors
/// The IO error of opening or syncing the directory.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests;
