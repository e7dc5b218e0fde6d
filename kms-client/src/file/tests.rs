use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use super::*;

const SAMPLE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

fn key_file(contents: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("private.key");
    fs::write(&path, contents).expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    (dir, path)
}

#[test]
fn loads_a_0600_key_with_trailing_newline() {
    let (_dir, path) = key_file(&format!("{SAMPLE}\n"), 0o600);
    let loaded = FileKeySource::new(&path).load().expect("loads");
    assert_eq!(loaded.key.to_base64().as_str(), SAMPLE);
    assert_eq!(loaded.origin, Origin::File);
}

#[test]
fn refuses_a_group_readable_key_and_names_the_mode() {
    let (_dir, path) = key_file(SAMPLE, 0o644);
    let err = FileKeySource::new(&path).load().expect_err("refused");
    assert_eq!(err.kind(), "insecure_mode");
    let msg = err.to_string();
    assert!(msg.contains("0644"), "{msg}");
    assert!(msg.contains("0600"), "{msg}");
    assert!(!msg.contains(SAMPLE));
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.key");
    let err = FileKeySource::new(&path).load().expect_err("missing");
    assert_eq!(err.kind(), "not_found");
    assert!(err.to_string().contains("absent.key"));
}

#[test]
fn malformed_key_error_never_contains_the_contents() {
    let secretish = "c2VjcmV0LXZhbHVlLXRoYXQtaXMtdG9vLWxvbmctZm9yLWEta2V5";
    let (_dir, path) = key_file(secretish, 0o600);
    let err = FileKeySource::new(&path).load().expect_err("malformed");
    assert_eq!(err.kind(), "malformed");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(secretish), "{shown}");
}
