//! peerctl keygen/pubkey against the reference `wg` tool, when it is installed.

use std::io::Write as _;
use std::process::{Command, Stdio};

fn peerctl(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn peerctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn wg(args: &[&str], stdin: &str) -> Option<String> {
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(stdin.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn keygen_prints_one_base64_key() {
    let out = peerctl(&["keygen"], "");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(text.len(), 45, "{text:?}");
    assert!(text.ends_with("=\n"));
}

#[test]
fn pubkey_matches_wg_pubkey() {
    let private = String::from_utf8(peerctl(&["keygen"], "").stdout).expect("utf8");
    let ours = String::from_utf8(peerctl(&["pubkey"], &private).stdout).expect("utf8");
    match wg(&["pubkey"], &private) {
        Some(theirs) => assert_eq!(ours, theirs),
        None => eprintln!("wg not installed: compared against the wg(8) example only"),
    }
}

#[test]
fn pubkey_of_the_wg_man_page_example() {
    let out = peerctl(
        &["pubkey"],
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    );
    assert_eq!(
        String::from_utf8(out.stdout).expect("utf8"),
        "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\n"
    );
}

#[test]
fn wg_genkey_output_is_accepted() {
    let Some(private) = wg(&["genkey"], "") else {
        eprintln!("wg not installed: skipped");
        return;
    };
    let ours = peerctl(&["pubkey"], &private);
    assert!(ours.status.success());
    assert_eq!(
        Some(String::from_utf8(ours.stdout).expect("utf8")),
        wg(&["pubkey"], &private)
    );
}

#[test]
fn bad_key_is_one_line_exit_1_without_echoing_input() {
    let out = peerctl(&["pubkey"], "c2VjcmV0LXZhbHVl\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).expect("utf8");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("c2VjcmV0LXZhbHVl"));
}

#[test]
fn keygen_output_file_is_0600_and_never_overwritten() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("private.key");
    let path_str = path.to_str().expect("utf8 path");
    assert!(
        peerctl(&["keygen", "--output", path_str], "")
            .status
            .success()
    );
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = peerctl(&["keygen", "--output", path_str], "");
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn unknown_subcommand_is_usage_error_2() {
    assert_eq!(peerctl(&["frobnicate"], "").status.code(), Some(2));
}
