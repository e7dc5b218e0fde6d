#![allow(
    clippy::result_large_err,
    reason = "handlers return ready-made error responses; size does not matter in a test server"
)]
//! The HTTP routes of the fake, with the status codes and bodies of the Infisical API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::state::{Fault, State as FakeState, Version, normalize_path, now, transform_value};

type Shared = Arc<Mutex<FakeState>>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/api/v1/auth/universal-auth/login", post(login))
        .route("/api/v1/auth/token/renew", post(renew))
        .route(
            "/api/v3/secrets/raw/{name}",
            get(read_v3).post(create_v3).patch(update_v3),
        )
        .route(
            "/api/v4/secrets/{name}",
            get(read_v4).post(create_v4).patch(update_v4),
        )
        .route("/_fake/expire-tokens", post(expire_tokens))
        .route("/_fake/stats", get(stats))
        .layer(middleware::from_fn_with_state(state.clone(), apply_faults))
        .with_state(state)
}

fn error(status: u16, kind: &str, message: impl Into<Value>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "reqId": "req-fake",
        "statusCode": status,
        "message": message.into(),
        "error": kind,
    });
    (code, Json(body)).into_response()
}

async fn apply_faults(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_fake/") {
        return next.run(request).await;
    }
    let fault = state.lock().await.faults.pop_front();
    match fault {
        None => next.run(request).await,
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let kind = match status {
                403 => "PermissionDenied",
                429 => "RateLimitError",
                500 => "InternalServerError",
                502 => "BadGateway",
                503 => "ServiceUnavailable",
                504 => "GatewayTimeoutError",
                _ => "Error",
            };
            let mut response = error(status, kind, "injected fault");
            if let Some(seconds) = retry_after
                && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Some(Fault::Body { status, body }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Fault::DelayMs(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        Some(Fault::Truncate) => {
            let response = next.run(request).await;
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let cut = bytes.slice(..bytes.len() / 2);
            // Announce the full length, send half: the client sees the connection end early.
            if let Ok(value) = HeaderValue::from_str(&bytes.len().to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, value);
            }
            Response::from_parts(parts, Body::from(cut))
        }
    }
}

async fn login(State(state): State<Shared>, body: Option<Json<Value>>) -> Response {
    let Some(Json(body)) = body else {
        return error(
            422,
            "ValidationFailure",
            json!([{"message": "Expected object"}]),
        );
    };
    let (Some(id), Some(secret)) = (body["clientId"].as_str(), body["clientSecret"].as_str())
    else {
        return error(
            422,
            "ValidationFailure",
            json!([{"message": "clientId and clientSecret are required"}]),
        );
    };
    let mut state = state.lock().await;
    if id != state.config.client_id || secret != state.config.client_secret {
        return error(401, "UnauthorizedError", "Invalid credentials");
    }
    state.stats.logins += 1;
    let token = state.issue_token();
    let ttl = state.config.token_ttl.as_secs();
    Json(json!({"accessToken": token, "expiresIn": ttl, "accessTokenMaxTTL": 2_592_000, "tokenType": "Bearer"})).into_response()
}

async fn renew(State(state): State<Shared>, body: Option<Json<Value>>) -> Response {
    let token = body.and_then(|Json(b)| b["accessToken"].as_str().map(str::to_owned));
    let Some(token) = token else {
        return error(
            422,
            "ValidationFailure",
            json!([{"message": "accessToken is required"}]),
        );
    };
    let mut state = state.lock().await;
    let ttl = state.config.token_ttl;
    let valid = state
        .tokens
        .get(&token)
        .is_some_and(|t| t.expires_at > now());
    if !valid {
        // Infisical deletes a token it refuses to renew: the client must log in again.
        state.tokens.remove(&token);
        return error(
            401,
            "UnauthorizedError",
            "Failed to renew MI access token due to TTL expiration",
        );
    }
    if let Some(info) = state.tokens.get_mut(&token) {
        info.expires_at = now() + ttl;
    }
    state.stats.renews += 1;
    Json(json!({"accessToken": token, "expiresIn": ttl.as_secs(), "accessTokenMaxTTL": 2_592_000, "tokenType": "Bearer"})).into_response()
}

fn authenticate(state: &mut FakeState, headers: &HeaderMap) -> Result<(), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        state.stats.token_rejections += 1;
        return Err(error(
            401,
            "UnauthorizedError",
            "Missing Authorization header",
        ));
    };
    match state.tokens.get(token) {
        Some(info) if info.expires_at > now() => Ok(()),
        Some(_) => {
            state.stats.token_rejections += 1;
            Err(error(
                403,
                "TokenError",
                "Your token has expired. Please re-authenticate.",
            ))
        }
        None => {
            state.stats.token_rejections += 1;
            Err(error(
                403,
                "TokenError",
                "The provided access token is malformed or invalid.",
            ))
        }
    }
}

#[derive(Clone, Copy)]
enum Api {
    V3,
    V4,
}

impl Api {
    fn project_key(self) -> &'static str {
        match self {
            Api::V3 => "workspaceId",
            Api::V4 => "projectId",
        }
    }
}

fn locate(
    api: Api,
    fields: &HashMap<String, String>,
) -> Result<(String, String, String), Response> {
    let project = fields
        .get(api.project_key())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            let message = match api {
                Api::V3 => "You must provide workspaceSlug or workspaceId",
                Api::V4 => "projectId is required",
            };
            error(400, "BadRequestError", message)
        })?;
    let env = fields
        .get("environment")
        .filter(|e| !e.is_empty())
        .ok_or_else(|| error(400, "BadRequestError", "Missing environment"))?;
    let path = normalize_path(fields.get("secretPath").map_or("/", String::as_str));
    Ok((project.clone(), env.clone(), path))
}

fn secret_json(
    state: &mut FakeState,
    project: &str,
    env: &str,
    path: &str,
    name: &str,
    number: u64,
    version: &Version,
) -> Value {
    let id = state.next_id();
    let time = humantime::format_rfc3339_millis(version.created_at).to_string();
    json!({
        "id": id, "_id": id, "workspace": project, "environment": env,
        "version": number, "type": "shared", "secretKey": name,
        "secretValue": version.value, "secretComment": "",
        "createdAt": time, "updatedAt": time,
        "secretValueHidden": false, "secretPath": path, "tags": [], "secretMetadata": []
    })
}

async fn read(
    api: Api,
    state: Shared,
    name: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().await;
    if let Err(response) = authenticate(&mut state, &headers) {
        return response;
    }
    let (project, env, path) = match locate(api, &query) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let key = (project.clone(), env.clone(), path.clone(), name.clone());
    let wanted = query.get("version").and_then(|v| v.parse::<u64>().ok());
    let Some(versions) = state.secrets.get(&key) else {
        return error(
            404,
            "NotFoundError",
            format!(
                "Secret with name '{name}' not found at path '{path}' in environment with slug '{env}'"
            ),
        );
    };
    let number = wanted.unwrap_or(versions.len() as u64);
    let Some(version) = number
        .checked_sub(1)
        .and_then(|i| versions.get(usize::try_from(i).ok()?))
    else {
        return error(
            404,
            "NotFoundError",
            format!("Secret version {number} of '{name}' not found"),
        );
    };
    let version = Version {
        value: version.value.clone(),
        created_at: version.created_at,
    };
    state.stats.reads += 1;
    let secret = secret_json(&mut state, &project, &env, &path, &name, number, &version);
    Json(json!({ "secret": secret })).into_response()
}

async fn write(
    api: Api,
    create: bool,
    state: Shared,
    name: String,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let mut state = state.lock().await;
    if let Err(response) = authenticate(&mut state, &headers) {
        return response;
    }
    let Some(Json(body)) = body else {
        return error(
            422,
            "ValidationFailure",
            json!([{"message": "Expected object"}]),
        );
    };
    let fields: HashMap<String, String> = body
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let (project, env, path) = match locate(api, &fields) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(value) = fields.get("secretValue") else {
        return error(
            422,
            "ValidationFailure",
            json!([{"message": "secretValue is required"}]),
        );
    };
    let key = (project.clone(), env.clone(), path.clone(), name.clone());
    let exists = state.secrets.contains_key(&key);
    if create && exists {
        return error(400, "BadRequestError", "Secret already exist");
    }
    if !create && !exists {
        return error(
            404,
            "NotFoundError",
            format!("Secret with name '{name}' not found"),
        );
    }
    if state.approval_required {
        let id = state.next_id();
        return Json(json!({"approval": {"id": id, "status": "open", "secretKey": name}}))
            .into_response();
    }
    let version = Version {
        value: transform_value(value),
        created_at: now(),
    };
    let copy = Version {
        value: version.value.clone(),
        created_at: version.created_at,
    };
    let versions = state.secrets.entry(key).or_default();
    versions.push(version);
    let number = versions.len() as u64;
    state.stats.writes += 1;
    let secret = secret_json(&mut state, &project, &env, &path, &name, number, &copy);
    Json(json!({ "secret": secret })).into_response()
}

async fn read_v3(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    read(Api::V3, s, name, q, h).await
}

async fn read_v4(
    State(s): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    read(Api::V4, s, name, q, h).await
}

async fn create_v3(
    State(s): State<Shared>,
    Path(name): Path<String>,
    h: HeaderMap,
    b: Option<Json<Value>>,
) -> Response {
    write(Api::V3, true, s, name, h, b).await
}

async fn update_v3(
    State(s): State<Shared>,
    Path(name): Path<String>,
    h: HeaderMap,
    b: Option<Json<Value>>,
) -> Response {
    write(Api::V3, false, s, name, h, b).await
}

async fn create_v4(
    State(s): State<Shared>,
    Path(name): Path<String>,
    h: HeaderMap,
    b: Option<Json<Value>>,
) -> Response {
    write(Api::V4, true, s, name, h, b).await
}

async fn update_v4(
    State(s): State<Shared>,
    Path(name): Path<String>,
    h: HeaderMap,
    b: Option<Json<Value>>,
) -> Response {
    write(Api::V4, false, s, name, h, b).await
}

async fn expire_tokens(State(state): State<Shared>) -> Response {
    state.lock().await.expire_tokens();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(state): State<Shared>) -> Response {
    Json(state.lock().await.stats).into_response()
}
