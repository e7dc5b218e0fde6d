//! HTTP transport: the TLS client and one request with retries and error classification.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use zeroize::Zeroizing;

use super::{InfisicalConfig, InfisicalStore, wire};
use crate::Error;
use crate::retry::jitter;
use crate::store::Operation;

/// The largest answer body read from the KMS. The documented answers are a few hundred
/// bytes; anything past this is refused as malformed without reading the rest.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Builds the HTTP client: system roots plus the optional CA bundle, ring crypto, timeouts.
/// Plain `http` is refused unless the host is a loopback address (local tests, a sidecar).
pub(super) fn client(config: &InfisicalConfig) -> Result<reqwest::Client, Error> {
    let url = reqwest::Url::parse(&config.url)
        .map_err(|e| Error::Config(format!("key.url {:?} is not a URL: {e}", config.url)))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {
            tracing::warn!(url = %config.url, "KMS URL is plain http on a loopback address");
        }
        other => {
            return Err(Error::Config(format!(
                "key.url {:?}: scheme {other} is not allowed; use https (plain http only for loopback)",
                config.url
            )));
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca_file) = &config.ca_file {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| Error::Config(format!("key.ca_file {}: {e}", ca_file.display())))?;
        let mut added = 0;
        for cert in certs {
            let cert =
                cert.map_err(|e| Error::Config(format!("key.ca_file {}: {e}", ca_file.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::Config(format!("key.ca_file {}: {e}", ca_file.display())))?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::Config(format!(
                "key.ca_file {} holds no PEM certificate",
                ca_file.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(format!("HTTP client set-up: {e}")))
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

impl InfisicalStore {
    /// Sends one request, retrying transient failures; returns the body of a 2xx answer.
    pub(super) async fn send(
        &self,
        operation: Operation,
        secret: Option<&str>,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let policy = self.config.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= policy.max_attempts;
            let unreachable = |source| Error::Unreachable {
                url: self.config.url.clone(),
                operation: operation.as_str(),
                attempts: attempt,
                source,
            };
            let response = match build().send().await {
                Ok(response) => response,
                Err(e) => {
                    self.observe(operation, false);
                    if last {
                        return Err(unreachable(e));
                    }
                    self.pause(operation, attempt, None, &e.to_string()).await;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = match read_body(response).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => {
                    self.observe(operation, false);
                    return Err(Error::MalformedResponse {
                        operation: operation.as_str(),
                        what: format!("the answer is larger than {} KiB", MAX_BODY / 1024),
                    });
                }
                Err(BodyError::Transport(e)) => {
                    // A body cut short is a transport failure, worth another attempt.
                    self.observe(operation, false);
                    if last {
                        return Err(unreachable(e));
                    }
                    self.pause(operation, attempt, None, &e.to_string()).await;
                    continue;
                }
            };
            if (200..300).contains(&status) {
                self.observe(operation, true);
                return Ok(body);
            }
            self.observe(operation, false);
            let (kind, message) = wire::error_body(&body);
            if (status == 429 || status >= 500) && !last {
                self.pause(
                    operation,
                    attempt,
                    retry_after,
                    &format!("HTTP {status}: {message}"),
                )
                .await;
                continue;
            }
            return Err(classify(operation, secret, status, &kind, message));
        }
    }

    async fn pause(
        &self,
        operation: Operation,
        attempt: u32,
        retry_after: Option<Duration>,
        why: &str,
    ) {
        let delay = self.config.retry.delay(attempt, retry_after, jitter());
        tracing::warn!(
            operation = operation.as_str(),
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            error = why,
            "KMS request failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

enum BodyError {
    /// Past [`MAX_BODY`] (announced or read).
    TooLarge,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// Reads the body chunk by chunk into one buffer allocated up front (so a secret in it is
/// never left behind by a reallocation), and stops as soon as it would pass [`MAX_BODY`],
/// whatever `Content-Length` says or does not say.
async fn read_body(mut response: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Zeroizing::new(Vec::with_capacity(MAX_BODY));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if chunk.len() > MAX_BODY - body.len() {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn classify(
    operation: Operation,
    secret: Option<&str>,
    status: u16,
    kind: &str,
    message: String,
) -> Error {
    match (status, kind) {
        (401, _) | (403, "TokenError") => Error::Unauthorized { status, message },
        (403, _) => Error::Denied {
            secret: secret.unwrap_or("-").to_owned(),
            message,
        },
        _ => Error::Status {
            operation: operation.as_str(),
            status,
            message,
        },
    }
}
