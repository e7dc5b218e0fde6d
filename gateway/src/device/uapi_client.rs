//! The in-process UAPI channel to the userspace device ([`super::native`]): a socket pair,
//! one request at a time, bounded by a timeout, buffers wiped after use (a `get` answer
//! carries the private key). The device answers on the far end of the pair; the gateway
//! serves the public socket itself ([`super::uapi_server`]).
//!
//! An exchange that fails in any way (a timeout, an answer too large, a broken pipe) discards
//! the pair: what the device may still send belongs to that request, so the next request
//! goes over a new pair, handed to the device through [`Channel::new`]'s receiver, and never
//! reads a previous answer.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::core::uapi::{self, DeviceReport, UapiError};

const TIMEOUT: Duration = Duration::from_secs(3);
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// UAPI channel failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The exchange with the device failed.
    #[error("device channel")]
    Io(#[source] std::io::Error),
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

/// Returns whether a live process answers on the socket (a refused or missing socket is not
/// live).
pub fn is_live(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// Our side of the device's UAPI channel: the current socket pair, if any, and where the
/// device's ends of new pairs go.
#[derive(Debug)]
pub struct Channel {
    state: Mutex<State>,
    timeout: Duration,
    max_answer: usize,
}

#[derive(Debug)]
struct State {
    stream: Option<UnixStream>,
    device: Sender<UnixStream>,
}

impl Channel {
    /// Creates the channel. The device serves the streams the receiver yields, one after
    /// the other: a new one arrives whenever the previous pair was discarded.
    pub fn new() -> (Self, Receiver<UnixStream>) {
        Self::with_limits(TIMEOUT, MAX_ANSWER)
    }

    fn with_limits(timeout: Duration, max_answer: usize) -> (Self, Receiver<UnixStream>) {
        let (device, streams) = std::sync::mpsc::channel();
        let channel = Self {
            state: Mutex::new(State {
                stream: None,
                device,
            }),
            timeout,
            max_answer,
        };
        (channel, streams)
    }

    /// Sends `get=1` and parses the answer.
    ///
    /// # Errors
    /// IO failures and device errors.
    pub fn get(&self) -> Result<DeviceReport, Error> {
        let answer = self.exchange_raw(b"get=1\n")?;
        Ok(uapi::parse_get(&answer)?)
    }

    /// Sends one `set=1` transaction whose body is `body` (lines ending in `\n`).
    ///
    /// # Errors
    /// IO failures and a missing or non-zero errno.
    pub fn set(&self, body: &str) -> Result<(), Error> {
        let answer = self.exchange_raw(set_request(body).as_bytes())?;
        Ok(uapi::parse_errno(&answer)?)
    }

    /// Sends a complete request (`get=1\n`, or `set=1\n…\n\n`) and returns the raw answer,
    /// which ends with `errno=N\n\n`.
    ///
    /// # Errors
    /// IO failures; the answer is not interpreted.
    pub fn exchange_raw(&self, request: &[u8]) -> Result<Zeroizing<String>, Error> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::Io(std::io::Error::other("device channel lock poisoned")))?;
        let result = self.exchange_on(&mut state, request);
        if result.is_err() {
            // Whatever the device still sends answers this request: no later one may read it.
            state.stream = None;
        }
        result
    }

    fn exchange_on(&self, state: &mut State, request: &[u8]) -> Result<Zeroizing<String>, Error> {
        let stream = match &mut state.stream {
            Some(stream) => stream,
            none => {
                let (ours, theirs) = UnixStream::pair().map_err(Error::Io)?;
                ours.set_read_timeout(Some(self.timeout))
                    .map_err(Error::Io)?;
                ours.set_write_timeout(Some(self.timeout))
                    .map_err(Error::Io)?;
                state.device.send(theirs).map_err(|_| {
                    Error::Io(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the device stopped serving its UAPI channel",
                    ))
                })?;
                none.insert(ours)
            }
        };
        stream.write_all(request).map_err(Error::Io)?;
        let mut raw = Zeroizing::new(Vec::new());
        let mut buf = Zeroizing::new([0u8; 4096]);
        loop {
            let n = stream.read(buf.as_mut()).map_err(Error::Io)?;
            if n == 0 {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the device closed its UAPI channel",
                )));
            }
            raw.extend_from_slice(&buf[..n]);
            if raw.len() > self.max_answer {
                return Err(Error::Io(std::io::Error::other("device answer too large")));
            }
            if is_complete(&raw) {
                break;
            }
        }
        Ok(Zeroizing::new(String::from_utf8_lossy(&raw).into_owned()))
    }
}

/// Builds a `set=1` request around a body.
pub fn set_request(body: &str) -> Zeroizing<String> {
    let mut request = Zeroizing::new(String::with_capacity(body.len() + 8));
    request.push_str("set=1\n");
    request.push_str(body);
    request.push('\n');
    request
}

/// An answer is complete once its `errno=N` line is followed by the blank line.
fn is_complete(raw: &[u8]) -> bool {
    raw.ends_with(b"\n\n")
        && raw
            .split(|b| *b == b'\n')
            .any(|line| line.starts_with(b"errno="))
}

#[cfg(test)]
mod tests;
