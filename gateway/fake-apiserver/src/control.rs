//! Test controls under `/_fake/` (never authenticated), mirroring [`crate::FakeApiServer`]'s
//! methods for tests that run the fake as a process:
//!
//! - `PUT /_fake/objects/{plural}/{namespace}/{name}` creates or replaces an object (JSON);
//! - `GET /_fake/objects/{plural}/{namespace}/{name}` returns it as stored;
//! - `DELETE /_fake/objects/{plural}/{namespace}/{name}` deletes it;
//! - `POST /_fake/watches/drop` breaks every open watch connection;
//! - `POST /_fake/watches/expire` ends every open watch with a 410 `ERROR` event;
//! - `POST /_fake/compact` forgets the history, so older versions get 410;
//! - `POST /_fake/too-old/{event|status}` chooses how a too-old watch is answered;
//! - `POST /_fake/leases/{refuse|accept}` makes Lease writes fail with a storage timeout, or
//!   succeed again;
//! - `GET /_fake/stats` returns the request counters.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::api::{Shared, failure};
use crate::state::{Cut, kind};
use crate::watch::TooOld;

pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/_fake/objects/{plural}/{ns}/{name}",
            get(get_object).put(put_object).delete(delete_object),
        )
        .route("/_fake/watches/drop", post(drop_watches))
        .route("/_fake/watches/expire", post(expire_watches))
        .route("/_fake/compact", post(compact))
        .route("/_fake/too-old/{mode}", post(too_old))
        .route("/_fake/leases/{mode}", post(lease_writes))
        .route("/_fake/stats", get(stats))
}

async fn put_object(
    State(state): State<Shared>,
    Path((plural, ns, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let Some(kind) = kind(&plural) else {
        return failure(404, "NotFound", format!("the fake serves no {plural:?}"));
    };
    let Ok(object) = serde_json::from_slice::<Value>(&body) else {
        return failure(400, "BadRequest", "the body is not JSON");
    };
    let stored = state.lock().await.put(kind, &ns, &name, object);
    axum::Json(stored).into_response()
}

async fn get_object(
    State(state): State<Shared>,
    Path((plural, ns, name)): Path<(String, String, String)>,
) -> Response {
    let Some(kind) = kind(&plural) else {
        return failure(404, "NotFound", format!("the fake serves no {plural:?}"));
    };
    let key = (kind.plural, ns, name);
    match state.lock().await.objects.get(&key) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => failure(404, "NotFound", format!("{plural} {:?} not found", key.2)),
    }
}

async fn delete_object(
    State(state): State<Shared>,
    Path((plural, ns, name)): Path<(String, String, String)>,
) -> Response {
    let Some(kind) = kind(&plural) else {
        return failure(404, "NotFound", format!("the fake serves no {plural:?}"));
    };
    match state.lock().await.delete(kind, &ns, &name) {
        Some(object) => axum::Json(object).into_response(),
        None => failure(404, "NotFound", format!("{plural} {name:?} not found")),
    }
}

async fn drop_watches(State(state): State<Shared>) -> &'static str {
    state.lock().await.cut_watches(Cut::Drop);
    "ok\n"
}

async fn expire_watches(State(state): State<Shared>) -> &'static str {
    state.lock().await.cut_watches(Cut::Expire);
    "ok\n"
}

async fn compact(State(state): State<Shared>) -> &'static str {
    state.lock().await.compact();
    "ok\n"
}

async fn too_old(State(state): State<Shared>, Path(mode): Path<String>) -> Response {
    let mode = match mode.as_str() {
        "event" => TooOld::Event,
        "status" => TooOld::Status,
        _ => return failure(400, "BadRequest", "expected event or status"),
    };
    state.lock().await.config.too_old = mode;
    "ok\n".into_response()
}

async fn lease_writes(State(state): State<Shared>, Path(mode): Path<String>) -> Response {
    let refuse = match mode.as_str() {
        "refuse" => true,
        "accept" => false,
        _ => return failure(400, "BadRequest", "expected refuse or accept"),
    };
    state.lock().await.config.refuse_lease_writes = refuse;
    "ok\n".into_response()
}

async fn stats(State(state): State<Shared>) -> Response {
    axum::Json(state.lock().await.stats.clone()).into_response()
}
