use std::time::Duration;

use kms_client::infisical::{ApiVersion, InfisicalConfig};

use super::*;

fn unreachable_kms(dir: &std::path::Path, deadline: Duration) -> Prepared {
    use std::os::unix::fs::PermissionsExt as _;
    let id_file = dir.join("client-id");
    let secret_file = dir.join("client-secret");
    for path in [&id_file, &secret_file] {
        std::fs::write(path, "value\n").expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let store = InfisicalConfig {
        url: "http://127.0.0.1:9".to_owned(),
        api: ApiVersion::V4,
        project_id: "p".to_owned(),
        environment: "prod".to_owned(),
        secret_path: "/".to_owned(),
        client_id_file: id_file,
        client_secret_file: secret_file,
        ca_file: None,
        request_timeout: Duration::from_millis(200),
        retry: RetryPolicy::default(),
    };
    let config = KeyConfig::Kms(Box::new(KmsConfig {
        store,
        secret_name: "wg-key".to_owned(),
        deadline,
        cache: None,
    }));
    prepare(&config, &Metrics::new().expect("metrics")).expect("prepared")
}

#[tokio::test]
async fn a_deadline_beyond_the_clock_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prepared = unreachable_kms(dir.path(), Duration::MAX);
    let err = load(&prepared).await.expect_err("refused");
    assert!(err.to_string().contains("key.deadline"), "{err:#}");
}

#[test]
fn core_dumps_are_forbidden_in_process() {
    forbid_core_dumps().expect("prctl");
    assert!(!nix::sys::prctl::get_dumpable().expect("prctl"));
}
