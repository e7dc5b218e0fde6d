//! The directory source: every `*.yaml` / `*.yml` file in one directory (hidden entries, such
//! as the `..data` links of a mounted ConfigMap, are skipped), read fresh on every call.
//!
//! Only regular files are read. A symbolic link is followed only when its target lies inside
//! the directory (as a mounted ConfigMap's links do); a link that leads out of it (say, to the
//! private key) and an entry that is not a regular file (a directory, a FIFO, a device) are
//! reported as unreadable, with a reason that says nothing of what they point to.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use super::document::parse_file;
use crate::core::validate::Declaration;

/// Files larger than this are rejected unread.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

const NOT_REGULAR: &str = "is not a regular file; skipped";

/// Reads declarations from a directory.
#[derive(Debug, Clone)]
pub struct DirectorySource {
    path: PathBuf,
}

/// The directory itself cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot list peers.path {}", path.display())]
pub struct ListError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl DirectorySource {
    /// Creates a source for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Returns the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every peer file, sorted by file name. A file that cannot be read becomes an
    /// unreadable declaration; only a directory that cannot be listed is an error.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn scan(&self) -> Result<Vec<Declaration>, ListError> {
        let list_error = |source| ListError {
            path: self.path.clone(),
            source,
        };
        let root = fs::canonicalize(&self.path).map_err(list_error)?;
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .map_err(list_error)?
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| {
                !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
            })
            .collect();
        names.sort();
        let mut declarations = Vec::new();
        for name in names {
            let path = self.path.join(&name);
            match read_entry(&root, &path) {
                Ok(text) => declarations.extend(parse_file(&name, &text)),
                Err(reason) => declarations.push(Declaration::Unreadable {
                    origin: name,
                    reason,
                }),
            }
        }
        Ok(declarations)
    }
}

/// Returns the text of the directory entry `path`, or why it is not read. `root` is the
/// directory, canonical. A symbolic link is followed only to a target inside `root`; what is
/// finally opened must be a regular file (checked on the open descriptor, so an entry swapped
/// in between is caught too).
fn read_entry(root: &Path, path: &Path) -> Result<String, String> {
    let cannot = |e: std::io::Error| format!("cannot read: {}", e.kind());
    let link = fs::symlink_metadata(path).map_err(cannot)?;
    let target = if link.file_type().is_symlink() {
        let target = fs::canonicalize(path)
            .map_err(|_| "is a symbolic link that does not resolve; skipped".to_owned())?;
        if !target.starts_with(root) {
            return Err(
                "is a symbolic link to a file outside peers.path; skipped (only links within the directory are followed)"
                    .to_owned(),
            );
        }
        target
    } else {
        path.to_owned()
    };
    // Nothing but a regular file is even opened (opening a device can have effects).
    if !fs::symlink_metadata(&target).map_err(cannot)?.is_file() {
        return Err(NOT_REGULAR.to_owned());
    }
    // No blocking on a FIFO, and no link swapped in for the last component.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOFOLLOW).bits())
        .open(&target)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(NOT_REGULAR.to_owned());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes; the limit is {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("file is over the limit of {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "unparseable YAML: the file is not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests;
