//! The Kubernetes API routes the gateway uses, with the API server's status codes and
//! `Status` bodies: list, watch, get, apply and delete of `WireGuardPeer`s, server-side apply
//! on their status subresource, get of Secrets, and get, create and replace of Leases.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::state::{Key, Kind, LEASES, PEERS, SECRETS, State as FakeState};
use crate::{control, watch};

pub(crate) type Shared = Arc<Mutex<FakeState>>;

pub(crate) fn router(state: Shared) -> Router {
    let peers = "/apis/zt.hanzo.ai/v1alpha1/namespaces/{ns}/wireguardpeers";
    let leases = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases";
    Router::new()
        .route(peers, get(list_or_watch_peers))
        .route(
            &format!("{peers}/{{name}}"),
            get(get_peer).patch(apply_peer).delete(delete_peer),
        )
        .route(
            &format!("{peers}/{{name}}/status"),
            patch(patch_peer_status),
        )
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(get_secret))
        .route(leases, axum::routing::post(create_lease))
        .route(
            &format!("{leases}/{{name}}"),
            get(get_lease).put(replace_lease),
        )
        .merge(control::router())
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// An error answer: a `Status` object, as the API server sends it.
pub(crate) fn failure(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(status_body(code, reason, message))).into_response()
}

/// A `Status` object with `status: Failure`.
pub(crate) fn status_body(code: u16, reason: &str, message: impl Into<String>) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message.into(),
        "reason": reason,
        "code": code,
    })
}

fn not_found(kind: Kind, name: &str) -> Response {
    failure(
        404,
        "NotFound",
        format!("{}.{} {name:?} not found", kind.plural, group(kind)),
    )
}

fn group(kind: Kind) -> &'static str {
    kind.api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group)
}

async fn authenticate(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/_fake/") {
        return next.run(request).await;
    }
    let token = state.lock().await.config.token.clone();
    if let Some(token) = token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return failure(401, "Unauthorized", "Unauthorized");
        }
    }
    next.run(request).await
}

async fn list_or_watch_peers(
    State(state): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch::serve(state, PEERS, ns, &query).await;
    }
    let mut state = state.lock().await;
    state.stats.lists += 1;
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // A continue token is "<list resourceVersion>/<last name>"; one older than the history
    // has expired, as on a real server.
    let (after, list_rv) = match query.get("continue").filter(|c| !c.is_empty()) {
        None => (None, state.rv),
        Some(token) => {
            let Some((rv, name)) = token
                .split_once('/')
                .and_then(|(rv, name)| Some((rv.parse::<u64>().ok()?, name.to_owned())))
            else {
                return failure(400, "BadRequest", "invalid continue token");
            };
            if rv < state.floor {
                state.stats.expired += 1;
                return failure(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                );
            }
            (Some(name), rv)
        }
    };
    let items: Vec<&Value> = state
        .objects
        .iter()
        .filter(|((plural, namespace, name), _)| {
            *plural == PEERS.plural
                && *namespace == ns
                && after.as_ref().is_none_or(|a| name.as_str() > a.as_str())
        })
        .map(|(_, object)| object)
        .collect();
    let more = items.len() > limit;
    let page: Vec<&Value> = items.into_iter().take(limit).collect();
    let continue_token = match (more, page.last()) {
        (true, Some(last)) => format!(
            "{list_rv}/{}",
            last["metadata"]["name"].as_str().unwrap_or_default()
        ),
        _ => String::new(),
    };
    let body = json!({
        "apiVersion": PEERS.api_version,
        "kind": format!("{}List", PEERS.kind),
        "metadata": {
            "resourceVersion": list_rv.to_string(),
            "continue": continue_token,
        },
        "items": page,
    });
    axum::Json(body).into_response()
}

async fn get_peer(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    get_object(&state, PEERS, ns, name).await
}

async fn get_secret(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    state.lock().await.stats.secret_reads += 1;
    get_object(&state, SECRETS, ns, name).await
}

async fn get_lease(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    state.lock().await.stats.lease_reads += 1;
    get_object(&state, LEASES, ns, name).await
}

async fn get_object(state: &Shared, kind: Kind, ns: String, name: String) -> Response {
    let key: Key = (kind.plural, ns, name);
    match state.lock().await.objects.get(&key) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => not_found(kind, &key.2),
    }
}

/// Server-side apply of a whole `WireGuardPeer` (what `peerctl peer add --apply` sends):
/// creates it or replaces its spec, keeping the status; one field manager is enough here.
async fn apply_peer(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (applied, _manager) = match read_apply(&headers, &query, &body, &name) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let Some(spec) = applied.get("spec").cloned() else {
        return failure(
            422,
            "Invalid",
            format!("{name:?} is invalid: spec is required"),
        );
    };
    let stored = state
        .lock()
        .await
        .put(PEERS, &ns, &name, json!({ "spec": spec }));
    (StatusCode::OK, axum::Json(stored)).into_response()
}

/// Checks an apply request as the API server does: its content type, a field manager, a body
/// (the gateway and peerctl send JSON, which is YAML) naming apiVersion, kind and `name`.
/// Returns the body and the field manager.
fn read_apply(
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    body: &[u8],
    name: &str,
) -> Result<(Value, String), Box<Response>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/apply-patch+yaml") {
        return Err(Box::new(failure(
            415,
            "UnsupportedMediaType",
            format!("the fake accepts only application/apply-patch+yaml, not {content_type:?}"),
        )));
    }
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(Box::new(failure(
            400,
            "BadRequest",
            "PATCH with apply requires fieldManager",
        )));
    };
    let Ok(applied) = serde_json::from_slice::<Value>(body) else {
        return Err(Box::new(failure(
            400,
            "BadRequest",
            "the fake reads apply bodies written as JSON",
        )));
    };
    if applied.get("apiVersion").and_then(Value::as_str) != Some(PEERS.api_version)
        || applied.get("kind").and_then(Value::as_str) != Some(PEERS.kind)
    {
        return Err(Box::new(failure(
            422,
            "Invalid",
            format!(
                "{}.{} {name:?} is invalid: apply needs apiVersion {} and kind {}",
                PEERS.plural,
                group(PEERS),
                PEERS.api_version,
                PEERS.kind
            ),
        )));
    }
    if let Some(given) = applied["metadata"]["name"].as_str()
        && given != name
    {
        return Err(Box::new(failure(
            422,
            "Invalid",
            format!("metadata.name {given:?} does not match {name:?}"),
        )));
    }
    Ok((applied, manager.clone()))
}

/// Deletes a `WireGuardPeer`, answering with the object as it was deleted.
async fn delete_peer(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match state.lock().await.delete(PEERS, &ns, &name) {
        Some(object) => (StatusCode::OK, axum::Json(object)).into_response(),
        None => not_found(PEERS, &name),
    }
}

/// Server-side apply on the status subresource: the body must name apiVersion and kind;
/// the fields the manager applied before and omits now are removed; another manager's
/// fields conflict (409) unless `force=true`; a no-op apply changes nothing.
async fn patch_peer_status(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (applied, manager) = match read_apply(&headers, &query, &body, &name) {
        Ok(read) => read,
        Err(response) => return *response,
    };
    let manager = &manager;
    let force = query.get("force").is_some_and(|f| f == "true");
    let mut state = state.lock().await;
    *state.stats.status_patches.entry(name.clone()).or_default() += 1;
    let key: Key = (PEERS.plural, ns, name.clone());
    let Some(current) = state.objects.get(&key).cloned() else {
        return not_found(PEERS, &name);
    };
    if let Some(expected) = applied["metadata"]["resourceVersion"].as_str()
        && current["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        return failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                PEERS.plural,
                group(PEERS)
            ),
        );
    }
    let fields: BTreeMap<String, Value> = applied["status"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let owners = state.status_owners.get(&key).cloned().unwrap_or_default();
    let conflicts: Vec<String> = fields
        .keys()
        .filter(|f| owners.get(*f).is_some_and(|owner| owner != manager))
        .map(|f| format!(".status.{f}"))
        .collect();
    if !conflicts.is_empty() && !force {
        return failure(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict(s): {}",
                conflicts.len(),
                conflicts.join(", ")
            ),
        );
    }
    let mut status = current["status"].as_object().cloned().unwrap_or_default();
    let mut next_owners = owners.clone();
    for (field, owner) in &owners {
        if owner == manager && !fields.contains_key(field) {
            status.remove(field);
            next_owners.remove(field);
        }
    }
    for (field, value) in fields {
        status.insert(field.clone(), value);
        next_owners.insert(field, manager.clone());
    }
    state.status_owners.insert(key.clone(), next_owners);
    if current["status"].as_object() == Some(&status)
        || (status.is_empty() && current.get("status").is_none())
    {
        return axum::Json(current).into_response();
    }
    let mut object = current;
    object["status"] = Value::Object(status);
    let stored = state.store(key, object);
    axum::Json(stored).into_response()
}

async fn create_lease(
    State(state): State<Shared>,
    Path(ns): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(&body) else {
        return failure(400, "BadRequest", "the body is not JSON");
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return failure(422, "Invalid", "metadata.name: Required value");
    };
    let mut state = state.lock().await;
    if state.config.refuse_lease_writes {
        return storage_timeout();
    }
    let key: Key = (LEASES.plural, ns.clone(), name.clone());
    if state.objects.contains_key(&key) {
        state.stats.lease_conflicts += 1;
        return failure(
            409,
            "AlreadyExists",
            format!("leases.coordination.k8s.io {name:?} already exists"),
        );
    }
    state.stats.lease_writes += 1;
    let created = state.put(LEASES, &ns, &name, object);
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

/// What the API server answers when its storage does not answer in time.
fn storage_timeout() -> Response {
    failure(500, "InternalError", "etcdserver: request timed out")
}

/// `PUT` with optimistic concurrency: a `metadata.resourceVersion` that is not the current
/// one is a 409 Conflict.
async fn replace_lease(
    State(state): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(&body) else {
        return failure(400, "BadRequest", "the body is not JSON");
    };
    if object["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return failure(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
    }
    let mut state = state.lock().await;
    if state.config.refuse_lease_writes {
        return storage_timeout();
    }
    let key: Key = (LEASES.plural, ns.clone(), name.clone());
    let Some(current) = state.objects.get(&key) else {
        return not_found(LEASES, &name);
    };
    if let Some(expected) = object["metadata"]["resourceVersion"].as_str()
        && current["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        state.stats.lease_conflicts += 1;
        return failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io {name:?}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    state.stats.lease_writes += 1;
    let replaced = state.put(LEASES, &ns, &name, object);
    axum::Json(replaced).into_response()
}
