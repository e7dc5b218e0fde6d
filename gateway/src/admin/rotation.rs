//! `POST /v1/rotation/plan`, `/v1/rotation/start` and `/v1/rotation/abort`: the operator's
//! rotation commands (`peerctl rotate`). The body is `{"manual_peers": ["name", ...]}` (or
//! empty), at most 4 KiB and 32 names; answers are JSON, errors one line of our words.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ztgw_audit::kind;

use super::{AdminState, refuse_unauthorized};
use crate::audit::details;

/// The largest request body.
const MAX_BODY: usize = 4 * 1024;

/// The most `--manual-peer` names.
const MAX_MANUAL: usize = 32;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    manual_peers: Vec<String>,
}

/// The answer of `start`.
#[derive(Debug, Serialize)]
struct Started {
    rotation_id: String,
}

fn error(code: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(mut body) => {
            body.push('\n');
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the answer",
        ),
    }
}

/// Parses the body; the error is ours, never the body's content.
fn parse(body: &Bytes) -> Result<Vec<String>, &'static str> {
    if body.len() > MAX_BODY {
        return Err("the request body is larger than 4 KiB");
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let request: Request = serde_json::from_slice(body)
        .map_err(|_| "the request body is not {\"manual_peers\": [names]}")?;
    if request.manual_peers.len() > MAX_MANUAL {
        return Err("at most 32 manual peers");
    }
    let valid = |name: &String| {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    };
    if !request.manual_peers.iter().all(valid) {
        return Err("a manual peer name is not a resource name");
    }
    Ok(request.manual_peers)
}

/// Checks the token and the body, finds the rotation service, and audits the call.
fn prepare(
    state: &AdminState,
    headers: &HeaderMap,
    body: &Bytes,
    call: &'static str,
) -> Result<(crate::rotate::Control, Vec<String>), Box<Response>> {
    if let Some(refused) = refuse_unauthorized(state, headers, call) {
        return Err(Box::new(refused));
    }
    let audit = |outcome: &str| {
        if let Some(audit) = &state.audit {
            audit.record(kind::ADMIN_CALL, state.actor, call, outcome, details([]));
        }
    };
    let manual = match parse(body) {
        Ok(manual) => manual,
        Err(why) => {
            audit("malformed");
            return Err(Box::new(error(StatusCode::BAD_REQUEST, why)));
        }
    };
    let Some(control) = state.rotation.get().cloned() else {
        audit("unavailable");
        let why = state
            .status
            .latest()
            .and_then(|s| s.rotation)
            .and_then(|r| r.detail)
            .unwrap_or_else(|| {
                "this gateway cannot rotate its key (it is starting, or its backend or key source does not support rotation: see peerctl status)".to_owned()
            });
        return Err(Box::new(error(StatusCode::SERVICE_UNAVAILABLE, &why)));
    };
    if let Some(audit) = &state.audit {
        audit.record(
            kind::ADMIN_CALL,
            state.actor,
            call,
            "ok",
            details([(
                "manual_peers",
                Value::from(
                    manual
                        .iter()
                        .map(|m| Value::from(m.as_str()))
                        .collect::<Vec<_>>(),
                ),
            )]),
        );
    }
    Ok((control, manual))
}

pub(super) async fn plan(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (control, manual) = match prepare(&state, &headers, &body, "POST /v1/rotation/plan") {
        Ok(prepared) => prepared,
        Err(response) => return *response,
    };
    match control.plan(manual).await {
        Ok(plan) => json(&plan),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
    }
}

pub(super) async fn start(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (control, manual) = match prepare(&state, &headers, &body, "POST /v1/rotation/start") {
        Ok(prepared) => prepared,
        Err(response) => return *response,
    };
    match control.start(manual).await {
        Ok(rotation_id) => json(&Started { rotation_id }),
        Err(why) => error(StatusCode::CONFLICT, &why),
    }
}

pub(super) async fn abort(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (control, _) = match prepare(&state, &headers, &body, "POST /v1/rotation/abort") {
        Ok(prepared) => prepared,
        Err(response) => return *response,
    };
    match control.abort().await {
        Ok(()) => json(&serde_json::json!({ "aborted": true })),
        Err(why) => error(StatusCode::CONFLICT, &why),
    }
}
