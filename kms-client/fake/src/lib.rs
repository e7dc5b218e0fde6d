//! A fake KMS for tests: an HTTP server that follows the published Infisical API (Universal
//! Auth login and token renewal, secrets by name and version on `/api/v3` and `/api/v4`,
//! writes with version bumps and the approval case, the `{reqId,statusCode,message,error}`
//! error body, 403 `TokenError` for an expired token), plus test controls under `/_fake/` to
//! inject 429/5xx answers, slow answers and truncated bodies.
//!
//! No Infisical or Hanzo KMS server can run on the machines the tests run on; this stands in
//! for it and lives in test code only.

mod api;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use state::{Fault, Stats};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// What the fake serves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The one machine identity it accepts.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// Secrets to preload: (project, environment, path, name, value).
    pub secrets: Vec<(String, String, String, String, String)>,
}

/// A running fake.
pub struct FakeKms {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<state::State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKms {
    /// Binds `listen` and serves on the current runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(listen: SocketAddr, config: FakeConfig) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state::State::new(config)));
        let app = api::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Binds `listen` and serves HTTPS with the given PEM certificate chain and key.
    ///
    /// # Errors
    /// When the address cannot be bound or the certificate is unusable.
    pub async fn start_tls(
        listen: SocketAddr,
        config: FakeConfig,
        cert_pem: &str,
        key_pem: &str,
    ) -> anyhow::Result<Self> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let listener = std::net::TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(state::State::new(config)));
        let app = api::router(state.clone());
        let server = axum_server::tls_rustls::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
        )?;
        let task = tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        Ok(Self { addr, state, task })
    }

    /// Returns the base URL, `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues faults for the next requests (controls excluded), in order.
    pub async fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().await.faults.extend(faults);
    }

    /// Makes every issued token expired.
    pub async fn expire_tokens(&self) {
        self.state.lock().await.expire_tokens();
    }

    /// Requires approval for writes (they answer `{"approval": …}` and change nothing).
    pub async fn require_approval(&self, required: bool) {
        self.state.lock().await.approval_required = required;
    }

    /// Returns request counters.
    pub async fn stats(&self) -> Stats {
        self.state.lock().await.stats
    }

    /// Returns the current version and value of a secret.
    pub async fn current(
        &self,
        project: &str,
        env: &str,
        path: &str,
        name: &str,
    ) -> Option<(u64, String)> {
        self.state.lock().await.current(project, env, path, name)
    }
}

impl std::fmt::Debug for FakeKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKms")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeKms {
    fn drop(&mut self) {
        self.task.abort();
    }
}
