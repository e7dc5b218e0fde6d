//! The channel's listener: bound on the tunnel address once the interface has it, re-bound
//! when the address goes away and comes back; every connection served by hyper's HTTP/1
//! server under [`LIMITS`], a per-source connection cap, a body size limit and a body
//! deadline. Each request is authenticated by [`super::auth`] and concluded by
//! [`Recorder::conclude`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as ResponseBody;
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;

use super::Identity;
use super::auth::{self, PeerView};
use super::envelope::{self, Body, Hello, MAX_BODY_BYTES, Rejection};
use super::outcome::{Outcome, Recorder, Verdict};
use crate::http::Limits;
use crate::status::StatusBoard;

/// The path every message is posted to.
pub const PATH: &str = "/v1/control";

/// The listener's limits: a short header deadline, small heads, few connections.
pub const LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(5),
    max_header_bytes: 8 * 1024,
    max_connections: 64,
    max_age: Duration::from_secs(30),
    close_grace: Duration::from_secs(5),
};

/// Most connections open at once from one source address.
pub const PER_SOURCE_CONNECTIONS: usize = 4;

/// How long a client has to send a request's whole body once its head is read.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the bound address is checked to still be ours.
const ADDRESS_CHECK: Duration = Duration::from_secs(2);

/// What every request handler shares.
#[derive(Debug)]
pub struct Server {
    /// This gateway.
    pub identity: Identity,
    /// The tunnel network and our address in it.
    pub tunnel: IpNet,
    /// Where the applied peers are read.
    pub board: StatusBoard,
    /// Where outcomes are concluded.
    pub recorder: Recorder,
    /// What answers the peers' rotation messages; `None` when this gateway cannot take a
    /// peer's next key (the kernel backend), and then it does not announce them.
    pub rotation: Option<crate::rotate::Responder>,
    open: Mutex<BTreeMap<IpAddr, usize>>,
}

impl Server {
    /// The same server answering the peers' rotation messages with `responder`.
    #[must_use]
    pub fn with_rotation(mut self, responder: Option<crate::rotate::Responder>) -> Self {
        self.rotation = responder;
        self
    }

    /// A server for `identity` on the tunnel network `tunnel`.
    pub fn new(identity: Identity, tunnel: IpNet, board: StatusBoard, recorder: Recorder) -> Self {
        Self {
            identity,
            tunnel,
            board,
            recorder,
            rotation: None,
            open: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Serves the channel on `port` of the tunnel address for as long as the task runs.
pub async fn serve(server: Arc<Server>, port: u16) {
    let addr = SocketAddr::new(server.tunnel.addr(), port);
    loop {
        let listener = bind_when_present(addr).await;
        tracing::info!(%addr, "control channel listening");
        tokio::select! {
            () = serve_listener(&listener, server.clone()) => {}
            () = address_gone(addr.ip()) => {
                tracing::warn!(%addr, "the tunnel address is gone; the control channel waits for it");
            }
        }
    }
}

/// Binds `addr`, waiting for the interface to carry the address.
async fn bind_when_present(addr: SocketAddr) -> TcpListener {
    let mut warned = false;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(%addr, error = %e, "cannot bind the control channel; retrying");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Returns once `ip` is no longer an address of this host.
async fn address_gone(ip: IpAddr) {
    loop {
        tokio::time::sleep(ADDRESS_CHECK).await;
        if let Err(e) = UdpSocket::bind(SocketAddr::new(ip, 0)).await
            && e.kind() == std::io::ErrorKind::AddrNotAvailable
        {
            return;
        }
    }
}

/// Serves the channel on a bound `listener` until it fails.
pub async fn serve_listener(listener: &TcpListener, server: Arc<Server>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(LIMITS.header_timeout)
        .max_header_size(LIMITS.max_header_bytes)
        .max_buf_size(16 * 1024)
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(LIMITS.max_connections));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = remote.ip().to_canonical();
        let Some(claim) = Claim::take(&server, source) else {
            server.recorder.conclude(&Outcome {
                kind: None,
                verdict: Verdict::Busy,
                source,
                peer: None,
                reason: "too_many_connections",
            });
            continue;
        };
        let handler = server.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = handler.clone();
            async move { Ok::<_, Infallible>(handle(&server, source, request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let server = server.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _claim = claim;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = tokio::time::sleep(LIMITS.max_age) => {
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(LIMITS.close_grace, connection).await.unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                let (verdict, reason) = if e.is_timeout() {
                    (Verdict::Timeout, "header_timeout")
                } else if e.is_parse_too_large() {
                    (Verdict::TooLarge, "header_too_large")
                } else if e.is_parse() {
                    (Verdict::Malformed, "bad_request_head")
                } else {
                    // The client went away or reset: nothing to conclude.
                    return;
                };
                server.recorder.conclude(&Outcome {
                    kind: None,
                    verdict,
                    source,
                    peer: None,
                    reason,
                });
            }
        });
    }
}

/// One connection counted against its source's cap; released on drop.
struct Claim {
    server: Arc<Server>,
    source: IpAddr,
}

impl Claim {
    fn take(server: &Arc<Server>, source: IpAddr) -> Option<Self> {
        let mut open = server.open.lock().ok()?;
        let count = open.entry(source).or_insert(0);
        if *count >= PER_SOURCE_CONNECTIONS {
            return None;
        }
        *count += 1;
        Some(Self {
            server: server.clone(),
            source,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut open) = self.server.open.lock()
            && let Some(count) = open.get_mut(&self.source)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Answers one request and concludes its outcome.
async fn handle(
    server: &Server,
    source: IpAddr,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let (outcome, response) = decide(server, source, request).await;
    server.recorder.conclude(&outcome);
    response
}

async fn decide(
    server: &Server,
    source: IpAddr,
    request: Request<Incoming>,
) -> (Outcome, Response<ResponseBody>) {
    let mut outcome = Outcome {
        kind: None,
        verdict: Verdict::Refused,
        source,
        peer: None,
        reason: "",
    };
    let peers = peer_views(&server.board);
    // Who is asking is known before anything of the request is read.
    if let Err(refusal) = auth::identify(source, &peers, server.tunnel) {
        outcome.reason = refusal.as_str();
        return (outcome, error(StatusCode::FORBIDDEN, "forbidden"));
    }
    outcome.verdict = Verdict::Malformed;
    if request.uri().path() != PATH {
        outcome.reason = "unknown_path";
        return (outcome, error(StatusCode::NOT_FOUND, "not_found"));
    }
    if request.method() != Method::POST {
        outcome.reason = "method_not_post";
        return (
            outcome,
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        );
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        outcome.verdict = Verdict::TooLarge;
        outcome.reason = "body_too_large";
        return (outcome, error(StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    }
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read_body(request.into_body())).await {
        Err(_) => {
            outcome.verdict = Verdict::Timeout;
            outcome.reason = "body_timeout";
            return (outcome, error(StatusCode::REQUEST_TIMEOUT, "timeout"));
        }
        Ok(Err(BodyError::TooLarge)) => {
            outcome.verdict = Verdict::TooLarge;
            outcome.reason = "body_too_large";
            return (outcome, error(StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
        }
        Ok(Err(BodyError::Broken)) => {
            outcome.reason = "body_broken";
            return (outcome, error(StatusCode::BAD_REQUEST, "malformed"));
        }
        Ok(Ok(bytes)) => bytes,
    };
    let raw = match envelope::parse_envelope(&bytes) {
        Ok(raw) => raw,
        Err(rejection) => {
            outcome.reason = rejection.code();
            return (outcome, error(StatusCode::BAD_REQUEST, rejection.code()));
        }
    };
    outcome.kind = raw.known_type();
    let peer = match auth::authenticate(source, &raw.from, &peers, server.tunnel) {
        Ok(peer) => peer,
        Err(refusal) => {
            outcome.verdict = Verdict::Refused;
            outcome.reason = refusal.as_str();
            return (outcome, error(StatusCode::FORBIDDEN, "forbidden"));
        }
    };
    outcome.peer = Some(peer.name.clone());
    let message = match raw.interpret() {
        Ok(message) => message,
        Err(rejection) => {
            if rejection != Rejection::Malformed {
                outcome.verdict = Verdict::Unsupported;
            }
            outcome.reason = rejection.code();
            return (outcome, error(StatusCode::BAD_REQUEST, rejection.code()));
        }
    };
    let answer = match message.body {
        Body::Hello(_) => Body::Hello(our_hello(
            &server.identity,
            &server.board,
            server.rotation.is_some(),
        )),
        Body::RotateAck(_) => {
            // An answer, never a request.
            outcome.reason = "not_a_request";
            return (outcome, error(StatusCode::BAD_REQUEST, "malformed"));
        }
        Body::RotateAnnounce(_) | Body::RotateComplete(_) | Body::RotateAbort(_)
            if server.rotation.is_none() =>
        {
            outcome.verdict = Verdict::Unsupported;
            outcome.reason = "unknown_type";
            return (outcome, error(StatusCode::BAD_REQUEST, "unknown_type"));
        }
        Body::RotateAnnounce(body) => {
            let Some(responder) = &server.rotation else {
                return (outcome, error(StatusCode::BAD_REQUEST, "unknown_type"));
            };
            match responder.announce(&peer.name, &body).await {
                Ok(ack) => Body::RotateAck(ack),
                Err(word) => return refused(outcome, word),
            }
        }
        Body::RotateComplete(end) | Body::RotateAbort(end) => {
            let Some(responder) = &server.rotation else {
                return (outcome, error(StatusCode::BAD_REQUEST, "unknown_type"));
            };
            let complete = outcome.kind == Some(envelope::MessageType::RotateComplete);
            let taken = if complete {
                responder.complete(&peer.name, &end.rotation_id).await
            } else {
                responder.abort(&peer.name, &end.rotation_id).await
            };
            match taken {
                Ok(()) if complete => Body::RotateComplete(end),
                Ok(()) => Body::RotateAbort(end),
                Err(word) => return refused(outcome, word),
            }
        }
    };
    match envelope::encode(&server.identity.cluster, &message.id, &answer) {
        Ok(body) => {
            outcome.verdict = Verdict::Accepted;
            outcome.reason = "answered";
            (outcome, json(StatusCode::OK, body))
        }
        Err(_) => {
            outcome.verdict = Verdict::Malformed;
            outcome.reason = "cannot_encode";
            (
                outcome,
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            )
        }
    }
}

/// A message understood and refused with a fixed word: `409`, counted `refused`.
fn refused(mut outcome: Outcome, word: &'static str) -> (Outcome, Response<ResponseBody>) {
    outcome.verdict = Verdict::Refused;
    outcome.reason = word;
    (outcome, error(StatusCode::CONFLICT, word))
}

/// The hello this gateway sends and answers with, as of now: the key it runs now (from the
/// board, which a rotation updates), and the rotation messages when it takes them.
pub fn our_hello(identity: &Identity, board: &StatusBoard, rotation: bool) -> Hello {
    let now = crate::clock::now();
    let running = board.identity();
    let mut capabilities: Vec<String> = envelope::CAPABILITIES.map(str::to_owned).to_vec();
    if rotation {
        capabilities.extend(envelope::ROTATION_CAPABILITIES.map(str::to_owned));
    }
    Hello {
        cluster: identity.cluster.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capabilities,
        public_key: running.public_key,
        key_age_seconds: running
            .key_created
            .map(|at| now.duration_since(at).map_or(0, |age| age.as_secs())),
    }
}

/// The applied peers of the latest snapshot (none before the first one).
pub fn peer_views(board: &StatusBoard) -> Vec<PeerView> {
    board
        .latest()
        .map(|status| {
            status
                .peers
                .into_iter()
                .map(|peer| PeerView {
                    name: peer.name,
                    cluster: peer.cluster,
                    allowed_ips: peer.allowed_ips,
                })
                .collect()
        })
        .unwrap_or_default()
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads at most [`MAX_BODY_BYTES`]; stops at the first byte beyond.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > MAX_BODY_BYTES {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn error(status: StatusCode, code: &str) -> Response<ResponseBody> {
    json(status, envelope::error_body(code))
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
