//! Serving a router under limits, shared by every HTTP listener of the gateway (health and
//! metrics, the admin socket, the admin TCP listener): a deadline for a request's headers, a cap
//! on their size, a cap on open connections, and a bound on a connection's age.
//!
//! Connections are driven by hyper's HTTP/1 server directly (not `axum::serve`, which offers
//! none of these knobs).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::Listener;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

/// What every connection of a listener is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a client has to send a request's complete headers, counted from the moment the
    /// connection is ready for a request (its start, or the end of the previous response). An
    /// idle keep-alive connection is closed when it runs out.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; a larger one is answered with
    /// `431 Request Header Fields Too Large` and the connection is closed.
    pub max_header_bytes: usize,
    /// Most connections served at once. Beyond it the listener stops accepting: new
    /// connections wait in the kernel's accept queue until a served one ends.
    pub max_connections: usize,
    /// Longest life of a connection. When reached, the connection is closed once its response
    /// in progress (if any) is sent, or after [`Limits::close_grace`] at the latest.
    pub max_age: Duration,
    /// How long a connection past its age may take to finish its response.
    pub close_grace: Duration,
}

impl Limits {
    /// The limits of every listener of the gateway.
    pub const DEFAULT: Self = Self {
        header_timeout: Duration::from_secs(10),
        max_header_bytes: 8 * 1024,
        max_connections: 512,
        max_age: Duration::from_secs(60),
        close_grace: Duration::from_secs(5),
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Cap of a connection's read buffer (hyper's minimum is 8 KiB): what the request head and any
/// unread body may fill.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Serves `router` on `listener` under `limits`, for as long as the task runs. Accept errors
/// (e.g. too many open files) are retried after a pause by the listener itself.
pub async fn serve<L: Listener>(mut listener: L, router: Router, limits: Limits) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(READ_BUFFER_BYTES.max(limits.max_header_bytes));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        // Waiting for a free slot before accepting keeps extra connections out of the process.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (io, _addr) = listener.accept().await;
        let connection =
            builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()));
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = tokio::time::sleep(limits.max_age) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.close_grace, connection).await;
        });
    }
}

#[cfg(test)]
mod tests;
