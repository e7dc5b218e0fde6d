//! The Infisical backend against the fake KMS (test code that follows the published API).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kms_fake::{FakeConfig, FakeKms, Fault};

use super::*;
use crate::{Error, load_key_from_store};

pub(crate) const KEY: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const CLIENT_SECRET: &str = "client-secret-value-0123456789";

/// A fake KMS holding `wg-key` = [`KEY`], and a client configuration for it.
pub(crate) struct Rig {
    pub(crate) fake: FakeKms,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: InfisicalConfig,
}

pub(crate) async fn rig() -> Rig {
    let fake = FakeKms::start(
        "127.0.0.1:0".parse().expect("addr"),
        fake_config(&format!("{KEY}\n")),
    )
    .await
    .expect("fake kms");
    let dir = tempfile::tempdir().expect("tempdir");
    let id_file = dir.path().join("client-id");
    let secret_file = dir.path().join("client-secret");
    for (path, value) in [(&id_file, "gateway-a"), (&secret_file, CLIENT_SECRET)] {
        std::fs::write(path, format!("{value}\n")).expect("write");
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
    let config = InfisicalConfig {
        url: fake.url(),
        api: ApiVersion::V4,
        project_id: "proj".to_owned(),
        environment: "prod".to_owned(),
        secret_path: "/zt".to_owned(),
        client_id_file: id_file,
        client_secret_file: secret_file,
        ca_file: None,
        request_timeout: Duration::from_millis(800),
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(20),
            cap: Duration::from_secs(2),
        },
    };
    Rig { fake, dir, config }
}

/// The fake's identity and the gateway key secret `proj/prod/zt/wg-key` = `value`.
fn fake_config(value: &str) -> FakeConfig {
    FakeConfig {
        client_id: "gateway-a".to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        token_ttl: Duration::from_secs(3600),
        secrets: vec![(
            "proj".to_owned(),
            "prod".to_owned(),
            "/zt".to_owned(),
            "wg-key".to_owned(),
            value.to_owned(),
        )],
    }
}

pub(crate) fn store(config: &InfisicalConfig) -> InfisicalStore {
    InfisicalStore::new(config.clone()).expect("store")
}

#[tokio::test]
async fn reads_the_key_with_version_and_time_over_v4() {
    let rig = rig().await;
    let loaded = load_key_from_store(&store(&rig.config), "wg-key")
        .await
        .expect("loaded");
    assert_eq!(loaded.key.to_base64().as_str(), KEY);
    assert_eq!(loaded.version, Some(1));
    assert!(loaded.created_at.is_some());
    assert_eq!(rig.fake.stats().await.logins, 1);
}

#[tokio::test]
async fn reads_a_given_version_over_v3() {
    let mut rig = rig().await;
    rig.config.api = ApiVersion::V3;
    let store = store(&rig.config);
    assert_eq!(
        store.write("wg-key", "second").await.expect("write"),
        WriteOutcome::Applied { version: 2 }
    );
    assert_eq!(
        store
            .read("wg-key", None)
            .await
            .expect("read")
            .value
            .as_str(),
        "second"
    );
    let first = store.read("wg-key", Some(1)).await.expect("read v1");
    assert_eq!(first.value.as_str(), KEY);
    assert_eq!(first.version, 1);
}

#[tokio::test]
async fn missing_secret_names_project_environment_and_path() {
    let rig = rig().await;
    let err = store(&rig.config)
        .read("absent", None)
        .await
        .expect_err("404");
    assert_eq!(err.to_string(), "secret absent not found in proj/prod/zt");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn expired_token_mid_run_means_one_fresh_login() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("first read");
    rig.fake.expire_tokens().await;
    store.read("wg-key", None).await.expect("read after expiry");
    let stats = rig.fake.stats().await;
    assert_eq!(stats.logins, 2);
    assert_eq!(stats.token_rejections, 1);
}

#[tokio::test]
async fn token_is_renewed_when_due() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("first read");
    store.make_token_due().await;
    store
        .read("wg-key", None)
        .await
        .expect("read after renewal");
    let stats = rig.fake.stats().await;
    assert_eq!((stats.logins, stats.renews), (1, 1));
}

#[tokio::test]
async fn failed_renewal_falls_back_to_login() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("first read");
    store.make_token_due().await;
    rig.fake.expire_tokens().await;
    store
        .read("wg-key", None)
        .await
        .expect("read after re-login");
    let stats = rig.fake.stats().await;
    assert_eq!((stats.logins, stats.renews), (2, 0));
}

#[tokio::test]
async fn server_errors_are_retried_and_observed() {
    let rig = rig().await;
    let failures = std::sync::Arc::new(AtomicU32::new(0));
    let seen = failures.clone();
    let store = store(&rig.config).with_observer(std::sync::Arc::new(move |_, ok| {
        if !ok {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    }));
    rig.fake
        .inject([
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            Fault::Status {
                status: 500,
                retry_after: None,
            },
        ])
        .await;
    store
        .read("wg-key", None)
        .await
        .expect("read after retries");
    assert_eq!(failures.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let rig = rig().await;
    rig.fake
        .inject([Fault::Status {
            status: 429,
            retry_after: Some(1),
        }])
        .await;
    let started = tokio::time::Instant::now();
    store(&rig.config)
        .read("wg-key", None)
        .await
        .expect("read after 429");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn persistent_server_errors_give_up_as_transient() {
    let rig = rig().await;
    rig.fake
        .inject(
            [Fault::Status {
                status: 500,
                retry_after: None,
            }; 4],
        )
        .await;
    let err = store(&rig.config)
        .read("wg-key", None)
        .await
        .expect_err("gives up");
    assert!(matches!(err, Error::Status { status: 500, .. }), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn slow_answer_times_out_and_is_retried() {
    let rig = rig().await;
    rig.fake.inject([Fault::DelayMs(2_000)]).await;
    store(&rig.config)
        .read("wg-key", None)
        .await
        .expect("read after a timeout");
}

#[tokio::test]
async fn truncated_body_is_retried() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("login first");
    rig.fake.inject([Fault::Truncate]).await;
    let secret = store
        .read("wg-key", None)
        .await
        .expect("read after a truncated answer");
    assert_eq!(secret.value.as_str(), KEY);
}

#[tokio::test]
async fn unreachable_kms_is_transient() {
    let mut rig = rig().await;
    rig.config.url = "http://127.0.0.1:9".to_owned();
    let err = store(&rig.config)
        .read("wg-key", None)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, Error::Unreachable { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_not_retried() {
    let rig = rig().await;
    std::fs::write(&rig.config.client_secret_file, "wrong").expect("write");
    let err = store(&rig.config)
        .read("wg-key", None)
        .await
        .expect_err("401");
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("client_secret_file"));
}

#[tokio::test]
async fn permission_denied_names_the_secret() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("login first");
    rig.fake
        .inject([Fault::Status {
            status: 403,
            retry_after: None,
        }])
        .await;
    let err = store.read("wg-key", None).await.expect_err("403");
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(err.to_string().contains("wg-key"));
}

#[tokio::test]
async fn malformed_answers_are_typed_errors() {
    let rig = rig().await;
    let store = store(&rig.config);
    store.read("wg-key", None).await.expect("login first");
    for body in [
        "not json {",
        "{\"secret\": {\"version\": 3}}",
        "{\"secret\": {\"secretValue\": \"x\"}}",
        "{\"secret\": {\"secretValueHidden\": true, \"version\": 1}}",
    ] {
        rig.fake.inject([Fault::Body { status: 200, body }]).await;
        let err = store.read("wg-key", None).await.expect_err(body);
        assert!(
            matches!(err, Error::MalformedResponse { .. }),
            "{body}: {err}"
        );
    }
}

#[tokio::test]
async fn a_value_that_is_not_a_key_is_rejected_without_echoing_it() {
    let rig = rig().await;
    let store = store(&rig.config);
    store
        .write("wg-key", "correct horse battery staple")
        .await
        .expect("write");
    let err = load_key_from_store(&store, "wg-key")
        .await
        .expect_err("not a key");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("wg-key") && shown.contains("version 2"),
        "{shown}"
    );
    assert!(!shown.contains("horse"), "{shown}");
}

#[tokio::test]
async fn writes_bump_versions_create_when_missing_and_respect_approval() {
    let rig = rig().await;
    let store = store(&rig.config);
    assert_eq!(
        store.write("wg-key-next", "v1").await.expect("create"),
        WriteOutcome::Applied { version: 1 }
    );
    assert_eq!(
        store.write("wg-key-next", " v2 \n").await.expect("update"),
        WriteOutcome::Applied { version: 2 }
    );
    assert_eq!(
        rig.fake.current("proj", "prod", "/zt", "wg-key-next").await,
        Some((2, "v2\n".to_owned()))
    );
    rig.fake.require_approval(true).await;
    assert_eq!(
        store.write("wg-key-next", "v3").await.expect("held"),
        WriteOutcome::PendingApproval
    );
    assert_eq!(
        rig.fake.current("proj", "prod", "/zt", "wg-key-next").await,
        Some((2, "v2\n".to_owned()))
    );
}

#[tokio::test]
async fn nothing_printable_holds_credentials_or_values() {
    let rig = rig().await;
    let store = store(&rig.config);
    let secret = store.read("wg-key", None).await.expect("read");
    let shown = format!("{store:?} {secret:?}");
    assert!(!shown.contains(CLIENT_SECRET));
    assert!(!shown.contains(KEY));
    assert!(!shown.contains("fake-token"));
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let mut rig = rig().await;
    rig.config.url = "http://kms.example.com".to_owned();
    let err = InfisicalStore::new(rig.config.clone()).expect_err("refused");
    assert!(err.to_string().contains("use https"), "{err}");
}

#[tokio::test]
async fn credential_files_must_be_private() {
    let rig = rig().await;
    std::fs::set_permissions(
        &rig.config.client_secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let err = InfisicalStore::new(rig.config.clone()).expect_err("refused");
    assert_eq!(err.kind(), "insecure_mode");
}

/// A CA and a server certificate for `localhost` signed by it, as PEM.
fn test_pki() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server cert");
    (ca_cert.pem(), server_cert.pem(), server_key.serialize_pem())
}

/// The fake serving HTTPS for `localhost`; `ca_file` is written into the rig's directory
/// from `ca_text` (the test CA's PEM when `None`), or left unset when `trust` is false.
async fn tls_rig(trust: bool, ca_text: Option<&str>) -> (Rig, FakeKms) {
    let (ca, cert, key) = test_pki();
    let mut rig = rig().await;
    let config = fake_config(KEY);
    let tls = FakeKms::start_tls("127.0.0.1:0".parse().expect("addr"), config, &cert, &key)
        .await
        .expect("tls fake");
    rig.config.url = format!("https://localhost:{}", tls.addr.port());
    rig.config.retry.max_attempts = 1;
    if trust {
        let ca_file = rig.dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_text.unwrap_or(&ca)).expect("write ca");
        rig.config.ca_file = Some(ca_file);
    }
    (rig, tls)
}

#[tokio::test]
async fn https_with_the_extra_ca_bundle_is_trusted() {
    let (rig, _tls) = tls_rig(true, None).await;
    let loaded = load_key_from_store(&store(&rig.config), "wg-key")
        .await
        .expect("read over https");
    assert_eq!(loaded.key.to_base64().as_str(), KEY);
}

#[tokio::test]
async fn https_with_an_unknown_ca_is_refused() {
    let (rig, _tls) = tls_rig(false, None).await;
    let err = store(&rig.config)
        .read("wg-key", None)
        .await
        .expect_err("untrusted");
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_ca_file_without_certificates_is_a_configuration_error() {
    let (rig, _tls) = tls_rig(true, Some("not a certificate\n")).await;
    let err = InfisicalStore::new(rig.config.clone()).expect_err("no certs");
    assert!(err.to_string().contains("key.ca_file"), "{err}");
}

/// How a test server frames an oversized answer.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length: 1 MiB`.
    Length,
    /// `Transfer-Encoding: chunked`, no length.
    Chunked,
    /// No length, no chunking: the body ends when the connection closes.
    UntilClose,
}

/// A server that answers every request with 200 and a body announced or meant as 1 MiB, of
/// which it sends 128 KiB and then holds the connection open: a client that read the whole
/// body would wait until its timeout.
async fn oversized_server(framing: Framing) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let head = match framing {
                    Framing::Length => {
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n"
                    }
                    Framing::Chunked => {
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                    }
                    Framing::UntilClose => {
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                    }
                };
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b' '; 8 * 1024];
                for _ in 0..16 {
                    let sent = match framing {
                        Framing::Chunked => {
                            let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                            chunk.extend_from_slice(&piece);
                            chunk.extend_from_slice(b"\r\n");
                            conn.write_all(&chunk).await
                        }
                        Framing::Length | Framing::UntilClose => conn.write_all(&piece).await,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_oversized_answer_is_malformed_and_not_read_to_the_end() {
    for framing in [Framing::Length, Framing::Chunked, Framing::UntilClose] {
        let mut rig = rig().await;
        rig.config.url = oversized_server(framing).await;
        rig.config.request_timeout = Duration::from_secs(5);
        // Waiting for the whole body would take until the 5 s request timeout.
        let err = tokio::time::timeout(
            Duration::from_secs(4),
            store(&rig.config).read("wg-key", None),
        )
        .await
        .unwrap_or_else(|_| panic!("{framing:?}: the body was waited for"))
        .expect_err("oversized");
        assert!(
            matches!(err, Error::MalformedResponse { .. }),
            "{framing:?}: {err}"
        );
        assert!(!err.is_transient(), "{framing:?}");
    }
}

#[test]
fn a_huge_token_lifetime_is_capped_not_a_panic() {
    let token = wire::token_from(
        Operation::Login,
        br#"{"accessToken": "t", "expiresIn": 18446744073709551615}"#,
    )
    .expect("token");
    let now = Instant::now();
    assert!(token.expires_at <= now + Duration::from_secs(24 * 3600));
    assert!(token.renew_at < token.expires_at);
}
