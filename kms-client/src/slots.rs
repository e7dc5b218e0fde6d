//! Key slots for static-key rotation with the `file` key source: beside the key file
//! `<key>`, the staged next key `<key>.next`, the previous key kept for rollback
//! `<key>.previous`, and the rotation record `<key>.rotation.json` (no secret in it: public
//! keys, phases and times, in a form the caller owns).
//!
//! Every file is written atomically with mode 0600 and synced, and so is its directory: a
//! crash leaves each file either as it was or as it was meant to become. The steps are ordered
//! so that the running key is always in the key file or, during a commit, in both the key
//! file and `<key>.previous`:
//!
//! | step | files after it |
//! |---|---|
//! | [`FileKeySlots::write_next`] | key = old, next = new |
//! | [`FileKeySlots::commit`] | previous = old (written first), then key = new (the next file renamed over it) |
//! | [`FileKeySlots::restore_previous`] | key = old (from previous); previous and next removed |
//! | [`FileKeySlots::discard_next`] | next removed |
//!
//! A crash inside `commit` between its two steps leaves key = old, next = new and
//! previous = old: the record says which step the rotation was at, and both keys are on disk.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

mod kms;

use crate::file::{sync_parent, write_private};
use crate::{Error, FileKeySource, KeySource as _, LoadedKey, PrivateKey, read_secret_file};
pub use kms::{DISCARDED, KmsKeySlots, KmsSlots};

/// The largest rotation record read back; a larger file is refused as damaged.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// What the slots hold.
#[derive(Debug)]
pub struct Slots {
    /// The running key, from the key file.
    pub current: LoadedKey,
    /// The staged next key, if any.
    pub next: Option<PrivateKey>,
    /// The previous key kept for rollback, if any.
    pub previous: Option<PrivateKey>,
    /// The rotation record, if any, as written.
    pub record: Option<String>,
}

/// The key file and the files beside it.
#[derive(Debug, Clone)]
pub struct FileKeySlots {
    key: PathBuf,
}

impl FileKeySlots {
    /// Slots beside the key file `key`; nothing is read or written until asked.
    pub fn new(key: impl Into<PathBuf>) -> Self {
        Self { key: key.into() }
    }

    /// Returns the key file's path.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// Returns the path of the staged next key.
    pub fn next_path(&self) -> PathBuf {
        self.beside(".next")
    }

    /// Returns the path of the previous key.
    pub fn previous_path(&self) -> PathBuf {
        self.beside(".previous")
    }

    /// Returns the path of the rotation record.
    pub fn record_path(&self) -> PathBuf {
        self.beside(".rotation.json")
    }

    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self
            .key
            .file_name()
            .map(ToOwned::to_owned)
            .unwrap_or_default();
        name.push(suffix);
        self.key.with_file_name(name)
    }

    /// Reads every slot. The key file must exist (as for [`FileKeySource`]); the others may
    /// be absent. Each key file must be 0600 and hold a valid key.
    ///
    /// # Errors
    /// The first file that is unreadable, too open, malformed or (the record) too large.
    pub fn read(&self) -> Result<Slots, Error> {
        let current = FileKeySource::new(&self.key).load()?;
        let next = read_optional_key(&self.next_path())?;
        let previous = read_optional_key(&self.previous_path())?;
        let record = read_record(&self.record_path())?;
        Ok(Slots {
            current,
            next,
            previous,
            record,
        })
    }

    /// Stores `key` as the staged next key, replacing any.
    ///
    /// # Errors
    /// The IO error, naming the file.
    pub fn write_next(&self, key: &PrivateKey) -> Result<(), Error> {
        let path = self.next_path();
        write_private(&path, key.to_base64().as_bytes()).map_err(|e| unwritable(&path, e))
    }

    /// Removes the staged next key, if any.
    ///
    /// # Errors
    /// The IO error, naming the file.
    pub fn discard_next(&self) -> Result<(), Error> {
        remove(&self.next_path())
    }

    /// Makes the staged next key current: the running key is first written to
    /// `<key>.previous`, then the next file is renamed over the key file. The key file's
    /// modification time becomes the next key's (when it was staged).
    ///
    /// # Errors
    /// No next key is staged, or an IO error, naming the file. A failure before the rename
    /// leaves the key file as it was.
    pub fn commit(&self) -> Result<(), Error> {
        let next_path = self.next_path();
        // The staged key must be there and valid before anything is touched.
        read_optional_key(&next_path)?.ok_or_else(|| Error::NotFound {
            path: next_path.clone(),
        })?;
        let current = read_secret_file(&self.key)?;
        let previous_path = self.previous_path();
        write_private(&previous_path, current.as_bytes())
            .map_err(|e| unwritable(&previous_path, e))?;
        fs::rename(&next_path, &self.key).map_err(|e| unwritable(&self.key, e))?;
        sync_parent(&self.key).map_err(|e| unwritable(&self.key, e))
    }

    /// Rolls a commit back: the previous key becomes the key file again, and the previous and
    /// next files are removed.
    ///
    /// # Errors
    /// No previous key, or an IO error, naming the file.
    pub fn restore_previous(&self) -> Result<(), Error> {
        let previous_path = self.previous_path();
        let previous = read_optional_key(&previous_path)?.ok_or_else(|| Error::NotFound {
            path: previous_path.clone(),
        })?;
        write_private(&self.key, previous.to_base64().as_bytes())
            .map_err(|e| unwritable(&self.key, e))?;
        remove(&self.next_path())?;
        remove(&previous_path)
    }

    /// Removes the previous key (a rotation that completed no longer needs it for rollback).
    ///
    /// # Errors
    /// The IO error, naming the file.
    pub fn discard_previous(&self) -> Result<(), Error> {
        remove(&self.previous_path())
    }

    /// Writes the rotation record, replacing any.
    ///
    /// # Errors
    /// The record is over [`MAX_RECORD_BYTES`], or an IO error, naming the file.
    pub fn write_record(&self, record: &str) -> Result<(), Error> {
        let path = self.record_path();
        if record.len() as u64 > MAX_RECORD_BYTES {
            return Err(unwritable(
                &path,
                std::io::Error::new(ErrorKind::InvalidInput, "the record is too large"),
            ));
        }
        write_private(&path, record.as_bytes()).map_err(|e| unwritable(&path, e))
    }
}

fn read_optional_key(path: &Path) -> Result<Option<PrivateKey>, Error> {
    match FileKeySource::new(path).load() {
        Ok(loaded) => Ok(Some(loaded.key)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_record(path: &Path) -> Result<Option<String>, Error> {
    let unreadable = |source| Error::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
    };
    if meta.len() > MAX_RECORD_BYTES {
        return Err(unreadable(std::io::Error::new(
            ErrorKind::InvalidData,
            "the record is too large",
        )));
    }
    fs::read_to_string(path).map(Some).map_err(unreadable)
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path).map_err(|e| unwritable(path, e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(unwritable(path, e)),
    }
}

fn unwritable(path: &Path, source: std::io::Error) -> Error {
    Error::Unwritable {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests;
