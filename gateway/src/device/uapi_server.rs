//! The public UAPI socket `/var/run/wireguard/<name>.sock` (mode 0600: a `get` answer holds
//! the private key), so `wg show` and `wg set` work against the userspace device.
//!
//! Requests are relayed to the device over its private channel, one at a time.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::uapi_client::{Channel, set_request};

// Negative, as wireguard-go answers and `wg` expects.
const EPROTO: i32 = -71;
/// Longest request accepted from a client (lines × bytes), far above any real configuration.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running socket server; dropping it stops accepting and removes the socket file.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds the socket (replacing a stale file) and starts serving.
    ///
    /// # Errors
    /// When the directory or socket cannot be created.
    pub fn start(path: &Path, channel: Arc<Channel>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
            task,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
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
async fn read_request(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> std::io::Result<Option<zeroize::Zeroizing<Vec<String>>>> {
    let mut lines = zeroize::Zeroizing::new(Vec::new());
    let mut total = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(if lines.is_empty() { None } else { Some(lines) });
        }
        total += line.len();
        if total > MAX_REQUEST_BYTES {
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
