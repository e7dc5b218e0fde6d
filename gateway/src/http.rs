//! `GET /healthz`, `/readyz` and `/metrics` on `[http] listen`, and the limits every HTTP
//! listener of the gateway serves under.

mod limits;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::core::health::Readiness;
use crate::metrics::Metrics;

pub use limits::{Limits, serve as serve_limited};

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Start-up checks.
    pub readiness: Arc<RwLock<Readiness>>,
    /// Metrics to render.
    pub metrics: Metrics,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves for as long as the task runs, under [`Limits::DEFAULT`].
pub async fn serve(listener: TcpListener, state: AppState) {
    serve_limited(listener, router(state), Limits::DEFAULT).await;
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = state
        .readiness
        .read()
        .map(|r| r.clone())
        .unwrap_or_default();
    let failing = readiness.failing();
    if failing.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        let body: String = failing
            .iter()
            .map(|check| format!("not ready: {check}\n"))
            .collect();
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
