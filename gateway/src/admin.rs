//! The admin API that `peerctl` talks to (`docs/admin-api.md`): `GET /v1/status` on a unix
//! socket (`[http] admin_socket`, mode 0600), and optionally over TCP (`[http] admin_listen`)
//! where every request must carry the bearer token of `[http] admin_token_file`.
//!
//! The handlers only read the snapshot the driver publishes; they never touch the device.
//! The token is never logged, printed or echoed.

pub mod refusals;
mod rotation;
mod socket;
mod token;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, UnixListener};

pub use socket::{SocketGuard, bind_socket};
pub use token::Token;

use serde_json::{Map, Value};
use ztgw_audit::kind;

use crate::audit::{Audit, details};
use crate::http::{Limits, serve_limited};
use crate::status::StatusBoard;
use refusals::Refusals;

/// Why the admin API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket's directory could not be created.
    #[error("http.admin_socket: cannot create directory {path}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another live process answers on the socket.
    #[error(
        "http.admin_socket {path} is in use by a running process (is another gateway running?)"
    )]
    InUse {
        /// The socket path.
        path: String,
    },
    /// Something other than a socket sits at the path.
    #[error(
        "http.admin_socket {path} exists and is not a socket; remove it or choose another path"
    )]
    NotSocket {
        /// The path.
        path: String,
    },
    /// Binding, setting permissions or moving the socket into place failed.
    #[error("http.admin_socket {path}: cannot {what}")]
    Socket {
        /// The socket path.
        path: String,
        /// What failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file is missing, unreadable, too open or empty.
    #[error("http.admin_token_file {path}: {reason}")]
    Token {
        /// The token file.
        path: String,
        /// What is wrong (never the token).
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct AdminState {
    status: StatusBoard,
    /// Required on TCP; `None` on the unix socket, where file permissions decide.
    token: Option<Arc<Token>>,
    /// Refused requests, logged at most once per [`refusals::LOG_EVERY`].
    refusals: Arc<Mutex<Refusals>>,
    /// The audit log: each call is a record (refusals as often as they are logged).
    audit: Option<Audit>,
    /// The audit actor: `admin:unix` or `admin:tcp`.
    actor: &'static str,
    /// The rotation service, once the device is up and can rotate.
    rotation: RotationSlot,
}

/// Where the rotation service's handle appears once the device is up (it never does on a
/// backend that cannot rotate).
pub type RotationSlot = Arc<std::sync::OnceLock<crate::rotate::Control>>;

/// Builds the admin router. With a token (TCP), every request must present it. Each call is
/// recorded in `audit`, when given.
pub fn router(status: StatusBoard, token: Option<Token>, audit: Option<Audit>) -> Router {
    router_with(status, token, audit, RotationSlot::default())
}

/// [`router`] with the rotation commands (`POST /v1/rotation/{plan,start,abort}`).
pub fn router_with(
    status: StatusBoard,
    token: Option<Token>,
    audit: Option<Audit>,
    rotation: RotationSlot,
) -> Router {
    let actor = if token.is_some() {
        "admin:tcp"
    } else {
        "admin:unix"
    };
    let state = AdminState {
        status,
        token: token.map(Arc::new),
        refusals: Arc::new(Mutex::new(Refusals::new(refusals::LOG_EVERY))),
        audit,
        actor,
        rotation,
    };
    Router::new()
        .route("/v1/status", get(status_handler))
        .route("/v1/rotation/plan", post(rotation::plan))
        .route("/v1/rotation/start", post(rotation::start))
        .route("/v1/rotation/abort", post(rotation::abort))
        .with_state(state)
}

/// Serves the admin API on the unix socket for as long as the task runs, under `limits`.
pub async fn serve_unix(
    listener: UnixListener,
    status: StatusBoard,
    audit: Option<Audit>,
    rotation: RotationSlot,
    limits: Limits,
) {
    serve_limited(listener, router_with(status, None, audit, rotation), limits).await;
}

/// Serves the admin API on TCP, behind `token`, for as long as the task runs, under `limits`.
pub async fn serve_tcp(
    listener: TcpListener,
    status: StatusBoard,
    token: Token,
    audit: Option<Audit>,
    rotation: RotationSlot,
    limits: Limits,
) {
    serve_limited(
        listener,
        router_with(status, Some(token), audit, rotation),
        limits,
    )
    .await;
}

const STATUS_CALL: &str = "GET /v1/status";

async fn status_handler(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_unauthorized(&state, &headers, STATUS_CALL) {
        return refused;
    }
    let answered = |outcome: &str| {
        if let Some(audit) = &state.audit {
            audit.record(
                kind::ADMIN_CALL,
                state.actor,
                STATUS_CALL,
                outcome,
                Map::new(),
            );
        }
    };
    let Some(status) = state.status.latest() else {
        answered("unavailable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is starting: no status yet\n",
        )
            .into_response();
    };
    match serde_json::to_string_pretty(&status) {
        Ok(mut body) => {
            answered("ok");
            body.push('\n');
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            answered("failed");
            tracing::warn!(error = %e, "cannot encode the admin status");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode status\n").into_response()
        }
    }
}

/// The `401` answer when the TCP API is called without the bearer token (audited and logged
/// at a bounded rate, nothing of the request repeated); `None` when the call may go on.
fn refuse_unauthorized(state: &AdminState, headers: &HeaderMap, call: &str) -> Option<Response> {
    if let Some(token) = &state.token
        && !token.is_presented_in(headers.get(header::AUTHORIZATION))
    {
        let logged = state
            .refusals
            .lock()
            .map(|mut refusals| refusals.record(crate::clock::monotonic()));
        // Nothing of the request (its token, headers or address) goes into the line.
        if let Ok(Some(suppressed)) = logged {
            if let Some(audit) = &state.audit {
                audit.record(
                    kind::ADMIN_CALL,
                    state.actor,
                    call,
                    "refused",
                    details([
                        ("reason", Value::from("no valid bearer token")),
                        ("suppressed", Value::from(suppressed)),
                    ]),
                );
            }
            tracing::warn!(
                suppressed,
                "admin API request without a valid bearer token refused \
                 (suppressed: refusals since the previous such line that were not logged)"
            );
        }
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token is required\n",
            )
                .into_response(),
        );
    }
    None
}

#[cfg(test)]
mod tests;
