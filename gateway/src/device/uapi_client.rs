//! A client for the WireGuard UAPI unix socket: one request per connection, bounded by a
//! timeout, buffers wiped after use (a `get` answer carries the private key).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::core::uapi::{self, DeviceReport, UapiError};

const TIMEOUT: Duration = Duration::from_secs(3);
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// UAPI client failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be reached or the exchange failed.
    #[error("socket {}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The device answered with an error or garbage.
    #[error("device answer")]
    Answer(#[from] UapiError),
}

impl Error {
    /// Returns the errno the device answered, if it answered one.
    pub fn errno(&self) -> Option<i64> {
        match self {
            Error::Answer(UapiError::Errno(n)) => Some(*n),
            _ => None,
        }
    }
}

/// Returns the standard socket path for an interface.
pub fn socket_path(interface: &str) -> PathBuf {
    Path::new("/var/run/wireguard").join(format!("{interface}.sock"))
}

/// Sends `get=1` and parses the answer.
///
/// # Errors
/// IO failures and device errors.
pub fn get(path: &Path) -> Result<DeviceReport, Error> {
    let answer = exchange(path, b"get=1\n\n")?;
    Ok(uapi::parse_get(&answer)?)
}

/// Sends one `set=1` transaction whose body is `body` (lines ending in `\n`).
///
/// # Errors
/// IO failures and a missing or non-zero errno.
pub fn set(path: &Path, body: &str) -> Result<(), Error> {
    let mut request = Zeroizing::new(String::with_capacity(body.len() + 8));
    request.push_str("set=1\n");
    request.push_str(body);
    request.push('\n');
    let answer = exchange(path, request.as_bytes())?;
    Ok(uapi::parse_errno(&answer)?)
}

fn exchange(path: &Path, request: &[u8]) -> Result<Zeroizing<String>, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(request).map_err(io)?;
    let mut answer = Zeroizing::new(String::new());
    // The device keeps the connection open after answering; stop at the blank line that ends
    // every answer.
    let mut buf = Zeroizing::new([0u8; 4096]);
    let mut raw = Zeroizing::new(Vec::new());
    loop {
        let n = stream.read(buf.as_mut()).map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.ends_with(b"\n\n") && raw.windows(6).any(|w| w == b"errno=") {
            break;
        }
        if raw.len() as u64 > MAX_ANSWER {
            return Err(io(std::io::Error::other("answer too large")));
        }
    }
    answer.push_str(&String::from_utf8_lossy(&raw));
    Ok(answer)
}

/// Returns whether a live process answers on the socket (a refused or missing socket is not
/// live).
pub fn is_live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}
