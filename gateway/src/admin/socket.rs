//! The admin unix socket's life: created with mode 0600 before any client can see it, a stale
//! socket of a crashed run replaced, a live one or a foreign file never touched, and removed at
//! shutdown.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::Error;
use crate::device::uapi_server::bind_private;

/// Removes the socket on drop, if the file at the path is still the one we created (same
/// device and inode: best effort, since a freed inode number can be reused).
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.inode);
        if ours && let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the admin socket");
        }
    }
}

/// Binds the admin socket at `path`.
///
/// Creates the parent directory (mode 0750) when missing. A socket left by a crashed run
/// (nobody answers on it) is removed; a live one, or a file that is not a socket, is an error.
/// The socket is bound under a temporary name, set to mode 0600 and then renamed into place,
/// so no client ever finds it with looser permissions. Must run inside a tokio runtime.
///
/// # Errors
/// [`Error::Dir`], [`Error::InUse`], [`Error::NotSocket`] or [`Error::Socket`].
pub fn bind_socket(path: &Path) -> Result<(UnixListener, SocketGuard), Error> {
    let shown = path.display().to_string();
    let socket_error = |what: &'static str| {
        let path = shown.clone();
        move |source| Error::Socket { path, what, source }
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path.file_name().is_none() {
        return Err(Error::NotSocket {
            path: shown.clone(),
        });
    }
    if !parent.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)
            .map_err(|source| Error::Dir {
                path: parent.display().to_string(),
                source,
            })?;
    }
    remove_stale(path)?;

    let listener = bind_private(path).map_err(socket_error("bind it"))?;
    let meta = fs::symlink_metadata(path).map_err(socket_error("read it back"))?;
    let guard = SocketGuard {
        path: path.to_owned(),
        inode: (meta.dev(), meta.ino()),
    };
    listener
        .set_nonblocking(true)
        .map_err(socket_error("make it non-blocking"))?;
    let listener = UnixListener::from_std(listener).map_err(socket_error("register it"))?;
    Ok((listener, guard))
}

/// Removes a socket nobody answers on; refuses a live socket or any other kind of file.
fn remove_stale(path: &Path) -> Result<(), Error> {
    let shown = path.display().to_string();
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Socket {
                path: shown,
                what: "inspect it",
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotSocket { path: shown });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::InUse { path: shown }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(path = %shown, "removing the stale admin socket of a previous run");
            fs::remove_file(path).map_err(|source| Error::Socket {
                path: shown,
                what: "remove the stale socket",
                source,
            })
        }
        Err(source) => Err(Error::Socket {
            path: shown,
            what: "check whether a process answers on it",
            source,
        }),
    }
}
