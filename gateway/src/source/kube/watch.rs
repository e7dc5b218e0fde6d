//! The watch that keeps the reflector store current.
//!
//! kube's watcher lists, then watches from the list's resource version, and lists again when
//! the server says the version is too old (a 410 `ERROR` event). When the server refuses to
//! *start* a watch with 410 instead, the watcher would retry the same version forever, so this
//! task starts a new watcher, which lists again. Either way the store's writer buffers a
//! relist and swaps it in only when it is complete.

use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::{self, Event, watcher};

/// First pause after a failed request; doubled up to [`MAX_BACKOFF`], reset by success.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until aborted, feeding `writer`.
pub(super) async fn run(api: Api<DynamicObject>, mut writer: Writer<DynamicObject>) {
    let mut backoff = INITIAL_BACKOFF;
    let mut last_error: Option<String> = None;
    let mut lists: u64 = 0;
    let mut relisting = 0usize;
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    backoff = INITIAL_BACKOFF;
                    if last_error.take().is_some() {
                        tracing::info!("watching WireGuardPeers again");
                    }
                    match &event {
                        Event::Init => relisting = 0,
                        Event::InitApply(_) => relisting += 1,
                        Event::InitDone => {
                            lists += 1;
                            if lists == 1 {
                                tracing::info!(resources = relisting, "WireGuardPeers listed");
                            } else {
                                tracing::info!(
                                    resources = relisting,
                                    "WireGuardPeers listed again"
                                );
                            }
                        }
                        Event::Apply(_) | Event::Delete(_) => {}
                    }
                    writer.apply_watcher_event(&event);
                }
                Err(watcher::Error::WatchStartFailed(kube::Error::Api(status)))
                    if status.code == 410 =>
                {
                    tracing::info!("watch resource version expired (410 Gone); listing again");
                    break;
                }
                Err(e) if is_expired(&e) => {
                    // The watcher has already reset itself to list again.
                    tracing::info!("watch resource version expired (410 Gone); listing again");
                }
                Err(e) => {
                    let message = e.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::warn!(error = %message, "cannot watch WireGuardPeers; retrying");
                    } else {
                        tracing::debug!(error = %message, "watch still failing");
                    }
                    last_error = Some(message);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn is_expired(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}
