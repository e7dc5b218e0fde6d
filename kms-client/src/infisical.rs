//! The Infisical API backend (the Hanzo KMS contract, HIP-0027): Universal Auth machine
//! identity, token renewal, secrets by name and version over `/api/v3` or `/api/v4`.
//!
//! Transient failures (connect errors, timeouts, 429, 5xx) are retried with capped
//! exponential backoff and jitter, honouring `Retry-After`. A rejected token (401, or 403
//! `TokenError` as Infisical answers for an expired one) leads to one fresh login, then the
//! request is tried again once.

mod http;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::retry::RetryPolicy;
use crate::store::{Observer, Operation, Secret, SecretStore, WriteOutcome};
use crate::{Error, file::read_secret_file};

/// Which secrets API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `/api/v3/secrets/raw/{name}?workspaceId=…` (deprecated upstream, still served).
    V3,
    /// `/api/v4/secrets/{name}?projectId=…`.
    V4,
}

/// How to reach the KMS and which secrets to address.
#[derive(Debug, Clone)]
pub struct InfisicalConfig {
    /// Base URL, e.g. `https://kms.hanzo.ai`. Plain `http` is accepted for loopback only.
    pub url: String,
    /// Secrets API version.
    pub api: ApiVersion,
    /// Project (workspace) id.
    pub project_id: String,
    /// Environment slug, e.g. `prod`.
    pub environment: String,
    /// Secret path, e.g. `/zt-gateway`.
    pub secret_path: String,
    /// File holding the Universal Auth client id (mounted from a Kubernetes Secret).
    pub client_id_file: PathBuf,
    /// File holding the Universal Auth client secret.
    pub client_secret_file: PathBuf,
    /// Extra PEM CA bundle trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Timeout of each HTTP request.
    pub request_timeout: Duration,
    /// Retry policy for transient failures.
    pub retry: RetryPolicy,
}

/// An Infisical-API secret store.
pub struct InfisicalStore {
    config: InfisicalConfig,
    http: reqwest::Client,
    client_id: Zeroizing<String>,
    client_secret: Zeroizing<String>,
    token: Mutex<Option<Token>>,
    observer: Option<Observer>,
}

impl std::fmt::Debug for InfisicalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfisicalStore")
            .field("url", &self.config.url)
            .field("project_id", &self.config.project_id)
            .field("environment", &self.config.environment)
            .field("secret_path", &self.config.secret_path)
            .finish_non_exhaustive()
    }
}

struct Token {
    value: Zeroizing<String>,
    renew_at: Instant,
    expires_at: Instant,
}

impl InfisicalStore {
    /// Builds the client: reads the credential files (mode 0600), sets up TLS.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or CA bundle; file errors for the credentials.
    pub fn new(config: InfisicalConfig) -> Result<Self, Error> {
        let client_id = read_secret_file(&config.client_id_file)?;
        let client_secret = read_secret_file(&config.client_secret_file)?;
        let http = http::client(&config)?;
        Ok(Self {
            config,
            http,
            client_id,
            client_secret,
            token: Mutex::new(None),
            observer: None,
        })
    }

    /// Calls `observer` once per HTTP request (for metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Returns the configuration.
    pub fn config(&self) -> &InfisicalConfig {
        &self.config
    }

    fn observe(&self, operation: Operation, ok: bool) {
        if let Some(observer) = &self.observer {
            observer(operation, ok);
        }
    }

    /// Returns a valid access token: the cached one, a renewed one, or a fresh login.
    async fn token(&self) -> Result<Zeroizing<String>, Error> {
        let mut guard = self.token.lock().await;
        let now = Instant::now();
        if let Some(token) = guard.as_ref() {
            if now < token.renew_at {
                return Ok(token.value.clone());
            }
            if now < token.expires_at {
                match self.renew(&token.value).await {
                    Ok(renewed) => {
                        let value = renewed.value.clone();
                        *guard = Some(renewed);
                        return Ok(value);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "KMS token renewal failed; logging in again");
                    }
                }
            }
        }
        let fresh = self.login().await?;
        let value = fresh.value.clone();
        *guard = Some(fresh);
        Ok(value)
    }

    /// Makes the cached token due for renewal (tests of the renewal path).
    #[cfg(test)]
    pub(crate) async fn make_token_due(&self) {
        if let Some(token) = self.token.lock().await.as_mut() {
            token.renew_at = Instant::now();
        }
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    async fn login(&self) -> Result<Token, Error> {
        let body = wire::LoginRequest {
            client_id: &self.client_id,
            client_secret: &self.client_secret,
        };
        let url = format!("{}/api/v1/auth/universal-auth/login", self.config.url);
        let answer = self
            .send(Operation::Login, None, || self.http.post(&url).json(&body))
            .await?;
        wire::token_from(Operation::Login, &answer)
    }

    async fn renew(&self, current: &str) -> Result<Token, Error> {
        let body = wire::RenewRequest {
            access_token: current,
        };
        let url = format!("{}/api/v1/auth/token/renew", self.config.url);
        let answer = self
            .send(Operation::Renew, None, || self.http.post(&url).json(&body))
            .await?;
        wire::token_from(Operation::Renew, &answer)
    }

    /// Sends an authenticated request; after a rejected token, logs in again once.
    async fn authed(
        &self,
        operation: Operation,
        secret: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut fresh_login_done = false;
        loop {
            let token = self.token().await?;
            match self.send(operation, Some(secret), || build(&token)).await {
                Err(Error::Unauthorized { .. }) if !fresh_login_done => {
                    tracing::warn!(
                        operation = operation.as_str(),
                        "KMS rejected the access token; logging in again"
                    );
                    self.forget_token().await;
                    fresh_login_done = true;
                }
                other => return other,
            }
        }
    }

    fn secret_url(&self, name: &str, version: Option<u64>) -> Result<reqwest::Url, Error> {
        let c = &self.config;
        let (path, project_key) = match c.api {
            ApiVersion::V3 => (format!("/api/v3/secrets/raw/{name}"), "workspaceId"),
            ApiVersion::V4 => (format!("/api/v4/secrets/{name}"), "projectId"),
        };
        let mut url = reqwest::Url::parse(&format!("{}{path}", c.url))
            .map_err(|e| Error::Config(format!("key.url {:?}: {e}", c.url)))?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(project_key, &c.project_id);
            query.append_pair("environment", &c.environment);
            query.append_pair("secretPath", &c.secret_path);
            if let Some(version) = version {
                query.append_pair("version", &version.to_string());
            }
        }
        Ok(url)
    }

    fn write_body<'a>(&'a self, value: &'a str) -> wire::WriteRequest<'a> {
        let c = &self.config;
        let (workspace_id, project_id) = match c.api {
            ApiVersion::V3 => (Some(c.project_id.as_str()), None),
            ApiVersion::V4 => (None, Some(c.project_id.as_str())),
        };
        wire::WriteRequest {
            workspace_id,
            project_id,
            environment: &c.environment,
            secret_path: &c.secret_path,
            secret_value: value,
            kind: "shared",
        }
    }

    fn not_found(&self, secret: &str) -> Error {
        Error::SecretNotFound {
            secret: secret.to_owned(),
            project: self.config.project_id.clone(),
            environment: self.config.environment.clone(),
            path: self.config.secret_path.clone(),
        }
    }
}

impl SecretStore for InfisicalStore {
    async fn read(&self, name: &str, version: Option<u64>) -> Result<Secret, Error> {
        let url = self.secret_url(name, version)?;
        let answer = self
            .authed(Operation::Read, name, |token| {
                self.http.get(url.clone()).bearer_auth(token)
            })
            .await
            .map_err(|e| match e {
                Error::Status { status: 404, .. } => self.not_found(name),
                other => other,
            })?;
        wire::secret_from(name, &answer)
    }

    async fn write(&self, name: &str, value: &str) -> Result<WriteOutcome, Error> {
        let url = self.secret_url(name, None)?;
        let body = self.write_body(value);
        let bare = {
            let mut u = url.clone();
            u.set_query(None);
            u
        };
        let updated = self
            .authed(Operation::Write, name, |token| {
                self.http.patch(bare.clone()).bearer_auth(token).json(&body)
            })
            .await;
        let answer = match updated {
            Err(Error::Status { status: 404, .. }) => {
                self.authed(Operation::Write, name, |token| {
                    self.http.post(bare.clone()).bearer_auth(token).json(&body)
                })
                .await?
            }
            other => other?,
        };
        wire::write_outcome(name, &answer)
    }
}

#[cfg(test)]
pub(crate) mod tests;
