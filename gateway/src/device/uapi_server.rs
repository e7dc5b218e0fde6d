//! The public UAPI socket `/var/run/wireguard/<name>.sock` (mode 0600: a `get` answer holds
//! the private key), so `wg show` and `wg set` work against the userspace device.
//!
//! Requests are answered in-process through the device's handle
//! ([`DeviceHandle::uapi`]). A request and its answer may carry `private_key=` or
//! `preshared_key=`: both stay in zeroizing buffers from the socket to the socket. The
//! request is read straight from the socket (no intermediate buffered reader) into a
//! [`RequestBuffer`], which wipes what it drops and never grows by reallocation; the device
//! parses its lines in place and writes the answer into a wiped buffer too.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::native::handle::DeviceHandle;

// Negative, as wireguard-go answers and `wg` expects.
const EPROTO: i32 = -71;
/// Longest request accepted from a client (lines × bytes), far above any real configuration.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4096;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients dropped because a request exceeded [`MAX_REQUEST_BYTES`].
static OVERSIZED: AtomicU64 = AtomicU64::new(0);

/// A running socket server; dropping it stops accepting and removes the socket file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket this server bound, so it removes only its own.
    inode: (u64, u64),
    task: JoinHandle<()>,
}

impl Server {
    /// Binds the socket with mode 0600 ([`bind_private`]) and starts serving. The caller has
    /// removed a stale socket; anything still at `path` is an error.
    ///
    /// # Errors
    /// When the directory or socket cannot be created.
    pub fn start(path: &Path, device: DeviceHandle) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let listener = bind_private(path)?;
        let meta = std::fs::symlink_metadata(path)?;
        let inode = (meta.dev(), meta.ino());
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let device = device.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_client(stream, device).await {
                                tracing::debug!(error = %e, "UAPI client connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "UAPI socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self {
            path: path.to_owned(),
            inode,
            task,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a unix socket at `path` that has mode 0600 from the moment it appears there: it is
/// bound in a fresh directory of mode 0700 next to `path`, set to 0600, and renamed into
/// place. Whatever the process umask, no client can find it with a looser mode. Refuses
/// (`AlreadyExists`) when something lies at `path`.
///
/// # Errors
/// When the directory, the socket or the rename fails.
pub fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Named after the socket, so two sockets bound in one directory never share it.
    let private = parent.join(format!(".{name}.{}.bind", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let temporary = private.join("s");
        let listener = std::os::unix::net::UnixListener::bind(&temporary)?;
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
        match std::fs::symlink_metadata(path) {
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "something lies at the socket path",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&temporary, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

async fn serve_client(stream: UnixStream, device: DeviceHandle) -> std::io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let mut buffer = RequestBuffer::default();
    loop {
        let Some(request) = tokio::time::timeout(CLIENT_TIMEOUT, buffer.next_request(&mut read))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow"))??
        else {
            return Ok(());
        };
        let answer = answer(request, device.clone()).await;
        write.write_all(answer.as_bytes()).await?;
    }
}

/// What a client sent and was not yet answered, in a buffer wiped on drop. It never grows
/// by reallocation (which would leave a copy of a key in freed memory): a larger buffer is
/// allocated, the bytes copied, and the old one wiped as it drops.
#[derive(Default)]
pub(crate) struct RequestBuffer {
    pending: Zeroizing<Vec<u8>>,
    /// How many times the buffer moved to a larger one.
    grown: usize,
}

impl RequestBuffer {
    /// Reads one request: its lines up to the blank line that ends it (`get=1` is complete
    /// with its first line). `None` at end of stream. A request longer than
    /// [`MAX_REQUEST_BYTES`] is an error as soon as the limit is crossed, even inside one
    /// line: no more than the limit (and one read) is ever buffered.
    pub(crate) async fn next_request<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
        let mut chunk = Zeroizing::new([0u8; READ_CHUNK]);
        loop {
            if let Some(request) = self.take_request() {
                return Ok(Some(request));
            }
            if self.pending.len() > MAX_REQUEST_BYTES {
                let count = OVERSIZED.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    limit = MAX_REQUEST_BYTES,
                    dropped_total = count,
                    "UAPI client dropped: request too large"
                );
                return Err(std::io::Error::other("request too large"));
            }
            let read = reader.read(chunk.as_mut()).await?;
            if read == 0 {
                // A request cut short by the end of the stream is still answered.
                let rest = self.pending.iter().position(|b| *b != b'\n');
                let request = rest.map(|start| Zeroizing::new(self.pending[start..].to_vec()));
                self.pending.clear();
                return Ok(request);
            }
            self.push(&chunk[..read]);
        }
    }

    /// Appends bytes, moving to a larger buffer first if they do not fit.
    fn push(&mut self, bytes: &[u8]) {
        let needed = self.pending.len().saturating_add(bytes.len());
        if needed > self.pending.capacity() {
            let capacity = needed
                .max(self.pending.capacity().saturating_mul(2))
                .max(READ_CHUNK);
            let mut larger = Zeroizing::new(Vec::with_capacity(capacity));
            larger.extend_from_slice(&self.pending);
            self.pending = larger;
            self.grown += 1;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Takes the first complete request out of the buffer, skipping blank lines before it
    /// (clients send one after `get=1`).
    fn take_request(&mut self) -> Option<Zeroizing<Vec<u8>>> {
        let start = self.pending.iter().position(|b| *b != b'\n')?;
        let body = &self.pending[start..];
        let end = if body.starts_with(b"get=1\n") {
            start + b"get=1\n".len()
        } else {
            start + body.windows(2).position(|w| w == b"\n\n")? + 2
        };
        let request = Zeroizing::new(self.pending[start..end].to_vec());
        // Moves the rest to the front within the same buffer; the bytes left past the end
        // are wiped with it.
        self.pending.drain(..end);
        Some(request)
    }
}

async fn answer(request: Zeroizing<Vec<u8>>, device: DeviceHandle) -> Zeroizing<String> {
    let result = tokio::task::spawn_blocking(move || match std::str::from_utf8(&request) {
        Ok(text) => device.uapi(text),
        Err(_) => Zeroizing::new(format!("errno={}\n\n", super::native::uapi::EINVAL)),
    })
    .await;
    result.unwrap_or_else(|_| Zeroizing::new(format!("errno={EPROTO}\n\n")))
}

#[cfg(test)]
mod tests;
