//! A blocking HTTP/1.1 GET to the gateway's admin API, over its unix socket or over TCP with
//! a bearer token. Connection failures become one line that says what to do next.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

/// How long one request may take to connect, send or answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read; a status document is a few KiB per peer.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;

/// Where the admin API is.
pub enum Target {
    /// The unix socket.
    Socket(PathBuf),
    /// A TCP listener, with its bearer token.
    Tcp {
        /// `host:port` of `http://host:port`.
        authority: String,
        /// The token, trimmed.
        token: Zeroizing<String>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(path) => f.debug_tuple("Socket").field(path).finish(),
            Target::Tcp { authority, .. } => f
                .debug_struct("Tcp")
                .field("authority", authority)
                .finish_non_exhaustive(),
        }
    }
}

/// Why the admin API could not be asked; each is one line saying what to do next.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No socket at the path.
    #[error("no gateway admin socket at {0}: is the gateway running? (set --socket)")]
    NoSocket(String),
    /// Not allowed to connect.
    #[error(
        "permission denied on the gateway admin socket {0}: run peerctl as root or as the gateway's user"
    )]
    Denied(String),
    /// A socket file, but nobody listening.
    #[error(
        "nothing answers on the gateway admin socket {0}: the gateway is not running (its next start replaces the stale socket)"
    )]
    Refused(String),
    /// Any other connection failure.
    #[error("cannot reach the gateway admin API at {target}: {reason}")]
    Unreachable {
        /// The socket path or URL.
        target: String,
        /// The OS error.
        reason: String,
    },
    /// The `--url` is not `http://host:port`.
    #[error("--url {0} is not of the form http://HOST:PORT")]
    BadUrl(String),
    /// The token file cannot be used.
    #[error("--token-file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong (never its content).
        reason: String,
    },
    /// The gateway refused the token.
    #[error("the gateway refused the bearer token (HTTP 401): check --token-file")]
    Unauthorized,
    /// The gateway has not finished its first pass.
    #[error("the gateway is starting and has no status yet: try again in a second")]
    Starting,
    /// Any other answer.
    #[error("the gateway answered HTTP {code}: {message}")]
    Status {
        /// The HTTP status code.
        code: u16,
        /// The first line of its body.
        message: String,
    },
    /// Not an HTTP answer.
    #[error("the gateway admin API sent an answer that is not HTTP ({0})")]
    Malformed(String),
}

impl Target {
    /// Builds a TCP target from `--url` and `--token-file`.
    ///
    /// # Errors
    /// A malformed URL, or a token file that cannot be read or is empty.
    pub fn tcp(url: &str, token_file: &Path) -> Result<Self, ClientError> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|rest| !rest.is_empty() && !rest.contains('/') && rest.contains(':'))
            .ok_or_else(|| ClientError::BadUrl(url.to_owned()))?;
        let token_error = |reason: String| ClientError::TokenFile {
            path: token_file.display().to_string(),
            reason,
        };
        let text = Zeroizing::new(
            std::fs::read_to_string(token_file).map_err(|e| token_error(e.to_string()))?,
        );
        let token = Zeroizing::new(text.trim().to_owned());
        if token.is_empty() {
            return Err(token_error("is empty".to_owned()));
        }
        Ok(Target::Tcp {
            authority: authority.to_owned(),
            token,
        })
    }

    /// Sends `GET path` and returns the body of a 200 answer.
    ///
    /// # Errors
    /// A [`ClientError`] for every failure, connection and HTTP alike.
    pub fn get(&self, path: &str) -> Result<String, ClientError> {
        let (code, body) = self.call("GET", path, None)?;
        match code {
            200 => Ok(body),
            401 => Err(ClientError::Unauthorized),
            503 => Err(ClientError::Starting),
            code => Err(ClientError::Status {
                code,
                message: body.lines().next().unwrap_or("").to_owned(),
            }),
        }
    }

    /// Sends `POST path` with the JSON `body` and returns the answer's status and body; a
    /// `401` is [`ClientError::Unauthorized`].
    ///
    /// # Errors
    /// A [`ClientError`] for a failed connection or a `401`.
    pub fn post(&self, path: &str, body: &str) -> Result<(u16, String), ClientError> {
        let (code, body) = self.call("POST", path, Some(body))?;
        if code == 401 {
            return Err(ClientError::Unauthorized);
        }
        Ok((code, body))
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), ClientError> {
        let raw = match self {
            Target::Socket(socket) => {
                let stream = UnixStream::connect(socket)
                    .map_err(|e| connect_error(&socket.display().to_string(), &e))?;
                // A failure to set a timeout only loses the timeout, not the request.
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                let _ = stream.set_write_timeout(Some(TIMEOUT));
                exchange(stream, "localhost", (method, path, body), None)
            }
            Target::Tcp { authority, token } => {
                let stream = connect_tcp(authority)?;
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                let _ = stream.set_write_timeout(Some(TIMEOUT));
                exchange(stream, authority, (method, path, body), Some(token))
            }
        }
        .map_err(|e| ClientError::Unreachable {
            target: self.describe(),
            reason: e.to_string(),
        })?;
        parse_response(&raw)
    }

    fn describe(&self) -> String {
        match self {
            Target::Socket(path) => path.display().to_string(),
            Target::Tcp { authority, .. } => format!("http://{authority}"),
        }
    }
}

/// Maps a failure to connect to the socket at `path` to what the operator should do.
pub fn connect_error(path: &str, error: &io::Error) -> ClientError {
    match error.kind() {
        ErrorKind::NotFound => ClientError::NoSocket(path.to_owned()),
        ErrorKind::PermissionDenied => ClientError::Denied(path.to_owned()),
        ErrorKind::ConnectionRefused => ClientError::Refused(path.to_owned()),
        _ => ClientError::Unreachable {
            target: path.to_owned(),
            reason: error.to_string(),
        },
    }
}

fn connect_tcp(authority: &str) -> Result<TcpStream, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        target: format!("http://{authority}"),
        reason,
    };
    let addrs = authority
        .to_socket_addrs()
        .map_err(|e| unreachable(e.to_string()))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(unreachable(
        last.map_or_else(|| "no address".to_owned(), |e| e.to_string()),
    ))
}

fn exchange(
    mut stream: impl Read + Write,
    host: &str,
    (method, path, body): (&str, &str, Option<&str>),
    token: Option<&Zeroizing<String>>,
) -> io::Result<Vec<u8>> {
    let mut request = Zeroizing::new(format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n"
    ));
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    if let Some(token) = token {
        request.push_str("Authorization: Bearer ");
        request.push_str(token);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    if let Some(body) = body {
        request.push_str(body);
    }
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    Ok(raw)
}

/// Splits an HTTP/1.x answer into status code and body (chunked bodies decoded).
///
/// # Errors
/// [`ClientError::Malformed`] when it is not an HTTP answer.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), ClientError> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Malformed("no end of headers".to_owned()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| ClientError::Malformed(format!("status line {status_line:?}")))?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| ClientError::Malformed("bad chunked body".to_owned()))?
    } else {
        body.to_vec()
    };
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        let after = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix(b"\r\n")?;
    }
}
