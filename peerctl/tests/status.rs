//! `peerctl status` as a binary: exit codes, one-line errors, and both outputs against a
//! socket that answers as the gateway's admin API does (the running gateway is exercised in
//! `netns-tests/tests/peerctl_status.rs`).

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};

fn peerctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerctl"))
        .args(args)
        .output()
        .expect("run peerctl")
}

fn documented_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.md");
    let text = std::fs::read_to_string(path).expect("docs/admin-api.md");
    text.split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a json block")
        .to_owned()
}

/// Answers one request on `listener` with `status` and `body`; returns the request.
fn answer_once(
    listener: UnixListener,
    status: &'static str,
    body: String,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        while !request.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).expect("write");
        String::from_utf8_lossy(&request).into_owned()
    })
}

#[test]
fn missing_socket_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let out = peerctl(&["status", "--socket", &socket.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "peerctl: no gateway admin socket at {}: is the gateway running? (set --socket)\n",
            socket.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        peerctl(&["status", "--output", "yaml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        peerctl(&["status", "--url", "http://127.0.0.1:1"])
            .status
            .code(),
        Some(2),
        "--url needs --token-file"
    );
    assert_eq!(
        peerctl(&[
            "status",
            "--socket",
            "/x",
            "--url",
            "http://127.0.0.1:1",
            "--token-file",
            "/t"
        ])
        .status
        .code(),
        Some(2),
        "--socket and --url exclude each other"
    );
}

#[test]
fn table_and_json_from_a_socket_answering_the_documented_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let socket_arg = socket.to_string_lossy().into_owned();

    let server = answer_once(
        UnixListener::bind(&socket).expect("bind"),
        "200 OK",
        documented_example(),
    );
    let out = peerctl(&["status", "--socket", &socket_arg]);
    let request = server.join().expect("server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        request.starts_with("GET /v1/status HTTP/1.1\r\n"),
        "{request}"
    );
    let table = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        table.contains("lux-k8s  24.144.69.101:51820  yes        12s ago"),
        "{table}"
    );

    std::fs::remove_file(&socket).expect("remove");
    let server = answer_once(
        UnixListener::bind(&socket).expect("bind"),
        "200 OK",
        documented_example(),
    );
    let out = peerctl(&["status", "--socket", &socket_arg, "--output", "json"]);
    server.join().expect("server");
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let documented: serde_json::Value = serde_json::from_str(&documented_example()).expect("json");
    assert_eq!(
        printed, documented,
        "--output json prints the API document unchanged"
    );
}

#[test]
fn a_starting_gateway_is_explained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let server = answer_once(
        UnixListener::bind(&socket).expect("bind"),
        "503 Service Unavailable",
        "the gateway is starting: no status yet\n".to_owned(),
    );
    let out = peerctl(&["status", "--socket", &socket.to_string_lossy()]);
    server.join().expect("server");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("try again"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
