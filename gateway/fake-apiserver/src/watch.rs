//! Watches: newline-delimited JSON events (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`,
//! `ERROR`) over a chunked response, from a resource version on.
//!
//! A watch from a version the history no longer holds is answered, as configured, with an
//! `ERROR` event carrying a 410 `Expired` Status (what the API server's watch cache does) or
//! with HTTP 410. Without a version (or with `0`) the current objects come first as `ADDED`.
//! A watch ends after `timeoutSeconds`, when the test cuts it, or, with a 410 `ERROR`, when it
//! falls too far behind.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::api::{Shared, failure, status_body};
use crate::state::{Change, Cut, Kind};

/// How the fake answers a watch from a version that is too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooOld {
    /// HTTP 200, then one `ERROR` event with a 410 Status (the watch cache's answer).
    Event,
    /// HTTP 410 with a Status body.
    Status,
}

/// Longest watch when the client does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub(crate) async fn serve(
    shared: Shared,
    kind: Kind,
    namespace: String,
    query: &BTreeMap<String, String>,
) -> Response {
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v != 0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let mut state = shared.lock().await;
    state.stats.watches += 1;
    let mut backlog: VecDeque<Value> = VecDeque::new();
    match from {
        Some(from) if from < state.floor => {
            state.stats.expired += 1;
            let message = format!("too old resource version: {from} ({})", state.floor);
            return match state.config.too_old {
                TooOld::Status => failure(410, "Expired", message),
                TooOld::Event => {
                    let line = event_line("ERROR", &status_body(410, "Expired", message));
                    ([(header::CONTENT_TYPE, "application/json")], line).into_response()
                }
            };
        }
        Some(from) => backlog.extend(
            state
                .history
                .iter()
                .filter(|c| c.rv > from && matches(c, kind, &namespace))
                .map(|c| event(c)),
        ),
        None => backlog.extend(
            state
                .objects
                .iter()
                .filter(|((plural, ns, _), _)| *plural == kind.plural && *ns == namespace)
                .map(|(_, object)| json!({"type": "ADDED", "object": object})),
        ),
    }
    let watcher = Watcher {
        shared: shared.clone(),
        kind,
        namespace,
        backlog,
        changes: state.changes.subscribe(),
        cut: state.cut.subscribe(),
        deadline: Instant::now() + timeout,
        bookmark_every: bookmarks.then_some(state.config.bookmark_interval),
        next_bookmark: Instant::now() + state.config.bookmark_interval,
        done: false,
    };
    drop(state);
    let body = Body::from_stream(stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

struct Watcher {
    shared: Shared,
    kind: Kind,
    namespace: String,
    backlog: VecDeque<Value>,
    changes: broadcast::Receiver<Arc<Change>>,
    cut: watch::Receiver<(u64, Cut)>,
    deadline: Instant,
    bookmark_every: Option<Duration>,
    next_bookmark: Instant,
    done: bool,
}

impl Watcher {
    /// Returns the next line to send, an error that breaks the connection, or `None` at the
    /// end of the watch.
    async fn next(&mut self) -> Option<Result<String, std::io::Error>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.backlog.pop_front() {
                return Some(Ok(line(&event)));
            }
            let bookmark_at = self
                .bookmark_every
                .map_or(self.deadline, |_| self.next_bookmark.min(self.deadline));
            tokio::select! {
                received = self.changes.recv() => match received {
                    Ok(change) if matches(&change, self.kind, &self.namespace) => {
                        return Some(Ok(line(&event(&change))));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.done = true;
                        self.shared.lock().await.stats.expired += 1;
                        let status = status_body(410, "Expired", "the watch fell too far behind");
                        return Some(Ok(event_line("ERROR", &status)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.cut.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let how = self.cut.borrow_and_update().1;
                    match how {
                        Cut::None => {}
                        Cut::Drop => {
                            self.done = true;
                            return Some(Err(std::io::Error::other("watch connection dropped by the test")));
                        }
                        Cut::Expire => {
                            self.done = true;
                            self.shared.lock().await.stats.expired += 1;
                            let status = status_body(410, "Expired", "too old resource version");
                            return Some(Ok(event_line("ERROR", &status)));
                        }
                    }
                }
                () = tokio::time::sleep_until(bookmark_at) => {
                    if Instant::now() >= self.deadline {
                        return None;
                    }
                    self.next_bookmark = Instant::now() + self.bookmark_every.unwrap_or(DEFAULT_TIMEOUT);
                    // The current version is safe to announce only once every change up to it
                    // has been delivered.
                    let state = self.shared.lock().await;
                    if self.changes.is_empty() {
                        let bookmark = json!({
                            "apiVersion": self.kind.api_version,
                            "kind": self.kind.kind,
                            "metadata": {"resourceVersion": state.rv.to_string()},
                        });
                        return Some(Ok(event_line("BOOKMARK", &bookmark)));
                    }
                }
            }
        }
    }
}

fn matches(change: &Change, kind: Kind, namespace: &str) -> bool {
    change.key.0 == kind.plural && change.key.1 == namespace
}

fn event(change: &Change) -> Value {
    json!({"type": change.event, "object": change.object})
}

fn event_line(kind: &str, object: &Value) -> String {
    line(&json!({"type": kind, "object": object}))
}

fn line(event: &Value) -> String {
    let mut text = event.to_string();
    text.push('\n');
    text
}
