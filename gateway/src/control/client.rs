//! The hello client: one request to a peer's channel through the tunnel, with a connect
//! deadline, a response deadline and a bounded answer. HTTP/1.1 with `Connection: close`,
//! written by hand: the request is ours and tiny, and the answer is read up to a bound and
//! parsed by [`super::envelope`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

use super::channel::Failure;
use super::envelope::{self, Body, Hello, MAX_BODY_BYTES};
use super::server::PATH;

/// How long a connection may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the answer may take once connected.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read (head and body).
const MAX_ANSWER_BYTES: usize = MAX_BODY_BYTES + 8 * 1024;

/// One hello exchange.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// Our tunnel address: the source of the connection, which the peer authenticates.
    pub local: IpAddr,
    /// The peer's tunnel address and control port.
    pub remote: SocketAddr,
    /// Our cluster name.
    pub from: &'a str,
    /// The request id.
    pub id: &'a str,
    /// Our hello.
    pub hello: &'a Hello,
    /// The peer's declared cluster, which its answer must come from.
    pub expected: &'a str,
}

/// One request to a peer's channel.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// Our tunnel address: the source of the connection, which the peer authenticates.
    pub local: IpAddr,
    /// The peer's tunnel address and control port.
    pub remote: SocketAddr,
    /// Our cluster name.
    pub from: &'a str,
    /// The request id.
    pub id: &'a str,
    /// The peer's declared cluster, which its answer must come from.
    pub expected: &'a str,
}

/// Sends our hello and returns the peer's.
///
/// # Errors
/// The [`Failure`], classified for the channel state machine.
pub async fn hello(exchange: &Exchange<'_>) -> Result<Hello, Failure> {
    let target = Target {
        local: exchange.local,
        remote: exchange.remote,
        from: exchange.from,
        id: exchange.id,
        expected: exchange.expected,
    };
    match request(&target, &Body::Hello(exchange.hello.clone())).await? {
        Body::Hello(hello) => Ok(hello),
        _ => Err(Failure::BadAnswer),
    }
}

/// Sends one message and returns the body of the peer's answer (checked to come from the
/// expected cluster and to answer this request id; its type is the caller's to check).
///
/// # Errors
/// The [`Failure`]: a refusal with one of the known fixed words is [`Failure::Declined`].
pub async fn request(target: &Target<'_>, body: &Body) -> Result<Body, Failure> {
    let body = envelope::encode(target.from, target.id, body).map_err(|_| Failure::BadAnswer)?;
    let exchange = target;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connect(exchange))
        .await
        .map_err(|_| Failure::NoAnswer)?
        .map_err(io_failure)?;
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        exchange.remote,
        body.len()
    );
    let exchanged = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut answer = Vec::new();
        (&mut stream)
            .take(u64::try_from(MAX_ANSWER_BYTES + 1).unwrap_or(u64::MAX))
            .read_to_end(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(RESPONSE_TIMEOUT, exchanged)
        .await
        .map_err(|_| Failure::NoAnswer)?
        .map_err(io_failure)?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(Failure::BadAnswer);
    }
    parse_answer(&answer, exchange.expected, exchange.id)
}

/// A refused connection means nothing listens there (a plain WireGuard peer); any other
/// error, no answer.
fn io_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        Failure::Refused
    } else {
        Failure::NoAnswer
    }
}

async fn connect(exchange: &Target<'_>) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match exchange.remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(exchange.local, 0))?;
    socket.connect(exchange.remote).await
}

/// Parses an HTTP/1.1 answer: a `200` whose body is a valid message from `expected`
/// answering request `id`.
///
/// # Errors
/// [`Failure::Declined`] for a `409` naming a known refusal, [`Failure::Rejected`] for
/// another status, [`Failure::BadAnswer`] for anything else wrong.
pub fn parse_answer(answer: &[u8], expected: &str, id: &str) -> Result<Body, Failure> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(Failure::BadAnswer)?;
    let (head, body) = (&answer[..split], &answer[split + 4..]);
    let status_line = head
        .split(|b| *b == b'\r')
        .next()
        .and_then(|line| std::str::from_utf8(line).ok())
        .ok_or(Failure::BadAnswer)?;
    let mut parts = status_line.split(' ');
    let (Some(protocol), Some(code)) = (parts.next(), parts.next()) else {
        return Err(Failure::BadAnswer);
    };
    if !protocol.starts_with("HTTP/1.") {
        return Err(Failure::BadAnswer);
    }
    let code: u16 = code.parse().map_err(|_| Failure::BadAnswer)?;
    if code == 409
        && let Some(word) = refusal_word(body)
    {
        return Err(Failure::Declined(word));
    }
    if code != 200 {
        return Err(Failure::Rejected(code));
    }
    let message = envelope::parse_envelope(body)
        .and_then(envelope::RawEnvelope::interpret)
        .map_err(|_| Failure::BadAnswer)?;
    if message.from != expected || message.id != id {
        return Err(Failure::BadAnswer);
    }
    Ok(message.body)
}

/// The refusal words a peer may answer with (`docs/control-channel.md`); anything else in a
/// `409` is not taken (and never repeated).
pub const REFUSAL_WORDS: [&str; 9] = [
    "sender_key",
    "receiver_key",
    "conflict",
    "stale_sequence",
    "other_rotation_pending",
    "next_is_active",
    "unknown_rotation",
    "ended_otherwise",
    "unavailable",
];

/// Returns the known refusal word of an error body `{"error":"<word>"}`.
fn refusal_word(body: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    REFUSAL_WORDS.into_iter().find(|w| *w == parsed.error)
}
