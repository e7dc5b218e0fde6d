//! The directory source: every `*.yaml` / `*.yml` file in one directory (hidden entries, such
//! as the `..data` links of a mounted ConfigMap, are skipped), read fresh on every call.

use std::fs;
use std::path::{Path, PathBuf};

use super::document::parse_file;
use crate::core::validate::Declaration;

/// Files larger than this are rejected unread.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

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
            match read_small(&path) {
                Ok(Some(text)) => declarations.extend(parse_file(&name, &text)),
                Ok(None) => {}
                Err(reason) => declarations.push(Declaration::Unreadable {
                    origin: name,
                    reason,
                }),
            }
        }
        Ok(declarations)
    }
}

/// Returns the file's text, `None` for something that is not a regular file (a directory
/// named `x.yaml`), or why it cannot be used.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "file is {} bytes; the limit is {MAX_FILE_BYTES}",
            meta.len()
        ));
    }
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| "unparseable YAML: the file is not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests;
