//! The public UAPI socket `/var/run/wireguard/<name>.sock` (mode 0600: a `get` answer holds
//! the private key), so `wg show` and `wg set` work against the userspace device.
//!
//! Requests are relayed to the device over its private channel, one at a time.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::uapi_client::{Channel, set_request};

// Negative, as wireguard-go answers and `wg` expects.
const EPROTO: i32 = -71;
/// Longest request accepted from a client (lines × bytes), far above any real configuration.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
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
    pub fn start(path: &Path, channel: Arc<Channel>) -> std::io::Result<Self> {
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
                        let channel = channel.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_client(stream, channel).await {
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

async fn serve_client(stream: UnixStream, channel: Arc<Channel>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(request) = tokio::time::timeout(CLIENT_TIMEOUT, read_request(&mut reader))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow"))??
        else {
            return Ok(());
        };
        let answer = answer(request, channel.clone()).await;
        write.write_all(answer.as_bytes()).await?;
    }
}

/// Reads one request: its lines up to the blank line that ends it. `None` at end of stream.
/// A request longer than [`MAX_REQUEST_BYTES`] is an error as soon as the limit is crossed,
/// even inside one line: no more than the limit is ever buffered.
async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<zeroize::Zeroizing<Vec<String>>>> {
    let mut lines = zeroize::Zeroizing::new(Vec::new());
    let mut total = 0usize;
    loop {
        let mut line = zeroize::Zeroizing::new(String::new());
        let left = MAX_REQUEST_BYTES.saturating_sub(total);
        let limit = u64::try_from(left).unwrap_or(u64::MAX).saturating_add(1);
        let read = (&mut *reader).take(limit).read_line(&mut line).await?;
        if read == 0 {
            return Ok(if lines.is_empty() { None } else { Some(lines) });
        }
        total += read;
        if total > MAX_REQUEST_BYTES {
            let count = OVERSIZED.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                limit = MAX_REQUEST_BYTES,
                dropped_total = count,
                "UAPI client dropped: request too large"
            );
            return Err(std::io::Error::other("request too large"));
        }
        let line = line.trim_end_matches('\n').to_owned();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            return Ok(Some(lines));
        }
        lines.push(line);
        // `get=1` is complete with its first line; clients still send the blank line, which
        // the loop above skips at the start of the next request.
        if lines.len() == 1 && lines[0] == "get=1" {
            return Ok(Some(lines));
        }
    }
}

async fn answer(request: zeroize::Zeroizing<Vec<String>>, channel: Arc<Channel>) -> String {
    let result = tokio::task::spawn_blocking(move || -> Result<String, i32> {
        match request.first().map(String::as_str) {
            Some("get=1") => channel
                .exchange_raw(b"get=1\n")
                .map(|a| a.to_string())
                .map_err(|_| EPROTO),
            Some("set=1") => {
                let body: String = request[1..].iter().map(|l| format!("{l}\n")).collect();
                let body = zeroize::Zeroizing::new(body);
                channel
                    .exchange_raw(set_request(&body).as_bytes())
                    .map(|a| a.to_string())
                    .map_err(|_| EPROTO)
            }
            _ => Err(EPROTO),
        }
    })
    .await;
    match result {
        Ok(Ok(answer)) => answer,
        Ok(Err(errno)) => format!("errno={errno}\n\n"),
        Err(_) => format!("errno={EPROTO}\n\n"),
    }
}

#[cfg(test)]
mod tests;
