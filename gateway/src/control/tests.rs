//! The server and the hello client over real sockets on loopback: `127.0.0.1/8` plays the
//! tunnel network, `127.0.0.2` peer b's tunnel address, `127.0.0.3` a host that is no peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::channel::Failure;
use super::envelope::Hello;
use super::outcome::Recorder;
use super::server::{self, Server};
use super::{Identity, client};
use crate::metrics::Metrics;
use crate::status::{self, GatewayInfo, PeerStatus, StatusBoard};

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HwAeAB0AHAAbABoAGQAYABcAFgAVABQAEwASABEAEAA=";

struct Fixture {
    addr: SocketAddr,
    metrics: Metrics,
    _task: tokio::task::JoinHandle<()>,
}

fn peer(name: &str, allowed: &[&str]) -> PeerStatus {
    PeerStatus {
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: KEY_B.to_owned(),
        endpoint: None,
        connected: true,
        last_handshake_unix: None,
        rx_bytes: 0,
        tx_bytes: 0,
        allowed_ips: allowed.iter().map(|s| (*s).to_owned()).collect(),
        persistent_keepalive: 0,
    }
}

async fn start() -> Fixture {
    let board = StatusBoard::new(status::Identity {
        gateway: GatewayInfo {
            version: "0.1.0".to_owned(),
            cluster: "a".to_owned(),
            backend: "userspace".to_owned(),
        },
        interface: "wg0".to_owned(),
        public_key: KEY_A.to_owned(),
        listen_port: 51820,
        address: "127.0.0.1/8".to_owned(),
        key_created: Some(SystemTime::UNIX_EPOCH),
    });
    board.publish(
        SystemTime::UNIX_EPOCH,
        vec![
            peer("b", &["127.0.0.2/32", "127.9.0.0/16"]),
            peer("c", &["127.0.0.4/32"]),
        ],
        Vec::new(),
    );
    let metrics = Metrics::new().expect("metrics");
    let server = Arc::new(Server::new(
        Identity {
            cluster: "a".to_owned(),
            public_key: KEY_A.to_owned(),
            key_created: Some(SystemTime::UNIX_EPOCH),
        },
        "127.0.0.1/8".parse().expect("net"),
        board,
        Recorder::new(metrics.clone()),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move { server::serve_listener(&listener, server).await });
    Fixture {
        addr,
        metrics,
        _task: task,
    }
}

fn their_hello(cluster: &str) -> Hello {
    Hello {
        cluster: cluster.to_owned(),
        version: "0.1.0".to_owned(),
        capabilities: vec!["hello".to_owned()],
        public_key: KEY_B.to_owned(),
        key_age_seconds: Some(3),
    }
}

async fn say_hello(fixture: &Fixture, local: &str, from: &str) -> Result<Hello, Failure> {
    let hello = their_hello(from);
    client::hello(&client::Exchange {
        local: local.parse().expect("ip"),
        remote: fixture.addr,
        from,
        id: "t-1",
        hello: &hello,
        expected: "a",
    })
    .await
}

fn count(metrics: &Metrics, kind: &str, result: &str) -> u64 {
    let text = metrics.render();
    text.lines()
        .filter(|line| line.starts_with("zt_wireguard_control_messages_total{"))
        .find(|line| {
            line.contains(&format!("type=\"{kind}\""))
                && line.contains(&format!("result=\"{result}\""))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Sends `request` from `local` and returns the answer's status code and body.
async fn raw(fixture: &Fixture, local: &str, request: &[u8]) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(local.parse().expect("ip"), 0))
        .expect("bind");
    let mut stream = socket.connect(fixture.addr).await.expect("connect");
    // The server may answer and close before the whole request is written.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn post(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /v1/control HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn a_peer_gateway_says_hello_and_gets_ours() {
    let fixture = start().await;
    let answer = say_hello(&fixture, "127.0.0.2", "b")
        .await
        .expect("answered");
    assert_eq!(answer.cluster, "a");
    assert_eq!(answer.public_key, KEY_A);
    assert_eq!(answer.capabilities, ["hello"]);
    assert!(answer.key_age_seconds.is_some());
    assert_eq!(count(&fixture.metrics, "hello", "accepted"), 1);
}

#[tokio::test]
async fn other_sources_and_false_names_are_refused_and_counted() {
    let fixture = start().await;
    // A host behind peer b, and one that is no peer at all.
    assert_eq!(
        say_hello(&fixture, "127.9.0.7", "b").await,
        Err(Failure::Rejected(403))
    );
    assert_eq!(
        say_hello(&fixture, "127.0.0.3", "b").await,
        Err(Failure::Rejected(403))
    );
    assert_eq!(count(&fixture.metrics, "unknown", "refused"), 2);
    // Peer b claiming to be peer c.
    assert_eq!(
        say_hello(&fixture, "127.0.0.2", "c").await,
        Err(Failure::Rejected(403))
    );
    assert_eq!(count(&fixture.metrics, "hello", "refused"), 1);
    assert_eq!(count(&fixture.metrics, "hello", "accepted"), 0);
}

#[tokio::test]
async fn garbage_unknown_types_and_large_bodies_get_4xx_without_echo() {
    let fixture = start().await;
    let (code, body) = raw(&fixture, "127.0.0.2", &post(b"{not json <script>")).await;
    assert_eq!(code, 400);
    assert_eq!(body, "{\"error\":\"malformed\"}\n");
    assert_eq!(count(&fixture.metrics, "unknown", "malformed"), 1);

    let unknown = br#"{"type":"policy.push","version":1,"from":"b","id":"x","body":{}}"#;
    let (code, body) = raw(&fixture, "127.0.0.2", &post(unknown)).await;
    assert_eq!(code, 400);
    assert!(!body.contains("policy"), "{body}");
    assert_eq!(count(&fixture.metrics, "unknown", "unsupported"), 1);

    let head = "POST /v1/control HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n";
    let mut request = head.as_bytes().to_vec();
    request.resize(head.len() + 2 * 1024 * 1024, b'{');
    let (code, _) = raw(&fixture, "127.0.0.2", &request).await;
    assert_eq!(code, 413);
    assert_eq!(count(&fixture.metrics, "unknown", "too_large"), 1);

    // Chunked, with no length announced: cut off past the limit all the same.
    let mut chunked =
        b"POST /v1/control HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..80 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b' '; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (code, _) = raw(&fixture, "127.0.0.2", &chunked).await;
    assert_eq!(code, 413);
    assert_eq!(count(&fixture.metrics, "unknown", "too_large"), 2);

    let (code, _) = raw(
        &fixture,
        "127.0.0.2",
        b"GET /v1/control HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(code, 405);
    // A stranger learns nothing about paths or methods: 403 first.
    let (code, _) = raw(
        &fixture,
        "127.0.0.3",
        b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(count(&fixture.metrics, "hello", "accepted"), 0);
}

#[tokio::test]
async fn a_closed_port_is_refused_and_silence_is_no_answer() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let hello = their_hello("b");
    let exchange = client::Exchange {
        local: "127.0.0.2".parse().expect("ip"),
        remote: addr,
        from: "b",
        id: "t-2",
        hello: &hello,
        expected: "a",
    };
    assert_eq!(client::hello(&exchange).await, Err(Failure::Refused));
}

#[test]
fn answers_must_be_a_hello_from_the_expected_peer_for_our_request() {
    let body = super::envelope::encode("a", "t-1", &super::envelope::Body::Hello(their_hello("a")))
        .expect("encode");
    let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n".to_vec();
    answer.extend_from_slice(&body);
    assert!(client::parse_answer(&answer, "a", "t-1").is_ok());
    assert_eq!(
        client::parse_answer(&answer, "b", "t-1"),
        Err(Failure::BadAnswer)
    );
    assert_eq!(
        client::parse_answer(&answer, "a", "t-9"),
        Err(Failure::BadAnswer)
    );
    assert_eq!(
        client::parse_answer(b"HTTP/1.1 403 Forbidden\r\n\r\n{}", "a", "t-1"),
        Err(Failure::Rejected(403))
    );
    assert_eq!(
        client::parse_answer(b"SSH-2.0\r\n", "a", "t-1"),
        Err(Failure::BadAnswer)
    );
    assert_eq!(
        client::parse_answer(b"", "a", "t-1"),
        Err(Failure::BadAnswer)
    );
}
