use std::io::ErrorKind;
use std::path::Path;

use super::client::{ClientError, Target, connect_error, parse_response};
use super::model;
use super::render::{self, WIDTH};

/// The first JSON block of docs/admin-api.md: the document the gateway writes.
fn documented_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/admin-api.md");
    let text = std::fs::read_to_string(path).expect("docs/admin-api.md");
    text.split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a json block")
        .to_owned()
}

const EXPECTED_TABLE: &str = "\
interface wg0 of cluster hanzo-k8s (gateway 0.1.0, userspace backend)
  public key  HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=
  key age     unknown
  listening   UDP 51820, tunnel address 10.10.0.1/24

CLUSTER  ENDPOINT             CONNECTED  HANDSHAKE  RX       TX
lux-k8s  24.144.69.101:51820  yes        12s ago    1.2 MiB  3.4 KiB
zoo-k8s  -                    no         never      0 B      0 B

CLUSTER  PUBLIC KEY                                    ALLOWED IPS
lux-k8s  xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=  10.10.0.2/32
                                                       10.244.0.0/16
zoo-k8s  TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=  10.10.0.3/32

CLUSTER  CHANNEL  CAPABILITIES  LAST CONTACT
lux-k8s  up       hello         10s ago
zoo-k8s  down     -             never

1 declaration rejected (not applied; see the gateway log):
  bad.yaml (bad-k8s): spec.allowedIPs 10.10.0.0/24 overlaps the local tunnel
    address 10.10.0.1 of this gateway
";

#[test]
fn documented_example_renders_as_an_80_column_table() {
    let status = model::parse(&documented_example()).expect("parse");
    let table = render::table(&status);
    assert_eq!(table, EXPECTED_TABLE);
    for line in table.lines() {
        assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
    }
}

#[test]
fn readme_shows_this_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    assert!(
        readme.contains(&format!("# peerctl status\n{EXPECTED_TABLE}```")),
        "README's peerctl status example differs from the real output"
    );
}

#[test]
fn unknown_fields_are_ignored_and_other_schemas_refused() {
    let mut doc: serde_json::Value = serde_json::from_str(&documented_example()).expect("json");
    doc["a_later_field"] = serde_json::json!({"x": 1});
    model::parse(&doc.to_string()).expect("unknown fields are fine");
    doc["schema"] = serde_json::json!(2);
    let err = model::parse(&doc.to_string()).expect_err("schema 2");
    assert!(err.to_string().contains("schema 2"), "{err}");
    let err = model::parse("<html>").expect_err("not json");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn sizes_use_binary_units() {
    assert_eq!(render::bytes(0), "0 B");
    assert_eq!(render::bytes(1023), "1023 B");
    assert_eq!(render::bytes(1536), "1.5 KiB");
    assert_eq!(render::bytes(12 * 1024 * 1024), "12 MiB");
    assert_eq!(
        render::bytes(3 * 1024 * 1024 * 1024 + (200 << 20)),
        "3.2 GiB"
    );
}

#[test]
fn durations_read_as_people_say_them() {
    assert_eq!(render::duration(12), "12s");
    assert_eq!(render::duration(59), "59s");
    assert_eq!(render::duration(180), "3m");
    assert_eq!(render::duration(7200), "2h");
    assert_eq!(render::duration(90 * 86_400), "90d");
}

#[test]
fn connection_failures_say_what_to_do() {
    let at = "/run/zt-gateway/admin.sock";
    let err = |kind| connect_error(at, &std::io::Error::from(kind)).to_string();
    assert_eq!(
        err(ErrorKind::NotFound),
        "no gateway admin socket at /run/zt-gateway/admin.sock: is the gateway running? (set --socket)"
    );
    assert!(
        err(ErrorKind::PermissionDenied).starts_with(
            "permission denied on the gateway admin socket /run/zt-gateway/admin.sock"
        ),
    );
    assert!(err(ErrorKind::ConnectionRefused).starts_with("nothing answers"));
}

#[test]
fn missing_and_stale_sockets_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.sock");
    let target = Target::Socket(path.clone());
    assert_eq!(
        target.get("/v1/status"),
        Err(ClientError::NoSocket(path.display().to_string()))
    );
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert_eq!(
        target.get("/v1/status"),
        Err(ClientError::Refused(path.display().to_string()))
    );
}

#[test]
fn answers_with_length_or_chunks_are_read() {
    let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
    assert_eq!(parse_response(plain), Ok((200, "{}".to_owned())));
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n";
    assert_eq!(parse_response(chunked), Ok((200, "{\"a\":1}".to_owned())));
    assert!(matches!(
        parse_response(b"SSH-2.0-OpenSSH\r\n"),
        Err(ClientError::Malformed(_))
    ));
}

#[test]
fn url_must_be_plain_http_host_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").expect("write");
    Target::tcp("http://127.0.0.1:8056", &token).expect("valid");
    Target::tcp("http://127.0.0.1:8056/", &token).expect("valid");
    for bad in [
        "https://127.0.0.1:8056",
        "127.0.0.1:8056",
        "http://host/path",
    ] {
        assert!(
            matches!(Target::tcp(bad, &token), Err(ClientError::BadUrl(_))),
            "{bad}"
        );
    }
    std::fs::write(&token, "\n").expect("write");
    assert!(matches!(
        Target::tcp("http://127.0.0.1:8056", &token),
        Err(ClientError::TokenFile { .. })
    ));
}

#[test]
fn control_characters_in_rejections_are_escaped() {
    let mut document: serde_json::Value =
        serde_json::from_str(&documented_example()).expect("json");
    document["rejected"][0]["origin"] = serde_json::json!("bad\nforged line\x1b[2J.yaml");
    let status = model::parse(&document.to_string()).expect("parse");
    let table = render::table(&status);
    assert!(!table.contains('\x1b'), "{table:?}");
    assert!(!table.contains("\nforged line"), "{table:?}");
    assert!(
        table.contains("bad\\nforged line\\u{1b}[2J.yaml"),
        "{table:?}"
    );
}

#[test]
fn channel_states_read_as_words_and_plain_peers_as_plain_wireguard() {
    let text = documented_example().replace(r#""state": "down""#, r#""state": "plain""#);
    let table = render::table(&model::parse(&text).expect("parse"));
    assert!(
        table.contains("zoo-k8s  plain WireGuard  -             never\n"),
        "{table}"
    );
    let text = documented_example().replace(r#""state": "down""#, r#""state": "none""#);
    let table = render::table(&model::parse(&text).expect("parse"));
    assert!(table.contains("none (no tunnel address)"), "{table}");
    // A document without channels (an older gateway) shows no channel table.
    let mut value: serde_json::Value = serde_json::from_str(&documented_example()).expect("json");
    value.as_object_mut().expect("object").remove("channels");
    let table = render::table(&model::parse(&value.to_string()).expect("parse"));
    assert!(!table.contains("CHANNEL"), "{table}");
}

#[test]
fn capabilities_of_one_family_share_an_entry_and_the_row_fits_the_width() {
    let mut doc: serde_json::Value = serde_json::from_str(&documented_example()).expect("json");
    doc["channels"][0]["capabilities"] = serde_json::json!([
        "hello",
        "rotate.announce",
        "rotate.complete",
        "rotate.abort"
    ]);
    let table = render::table(&model::parse(&doc.to_string()).expect("parse"));
    assert!(
        table.contains("  hello,rotate.{announce,complete,abort}  10s ago\n"),
        "{table}"
    );
    for line in table.lines() {
        assert!(line.chars().count() <= WIDTH, "too wide: {line:?}");
    }
}
