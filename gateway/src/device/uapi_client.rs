//! The standard UAPI socket of an interface, as a client sees it: where it lies, and whether
//! a live process answers on it ([`super::ownership`] asks before it removes a stale one).
//! The gateway drives its own device through the typed handle
//! ([`super::native::handle`]), not over a socket.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Returns the standard socket path for an interface.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{interface}.sock"))
}

/// Returns whether a live process answers on the socket (a refused or missing socket is not
/// live).
pub fn is_live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}
