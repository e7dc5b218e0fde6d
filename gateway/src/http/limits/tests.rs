//! Raw TCP clients against a listener served under short limits.

use std::net::SocketAddr;
use std::time::Duration;

use crate::clock::monotonic;

use axum::routing::get;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;

/// Limits short enough for tests; each test shortens what it exercises.
const TEST: Limits = Limits {
    header_timeout: Duration::from_secs(5),
    max_header_bytes: 4 * 1024,
    max_connections: 16,
    max_age: Duration::from_secs(30),
    close_grace: Duration::from_secs(1),
};

async fn start(limits: Limits) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    (addr, tokio::spawn(serve(listener, router, limits)))
}

/// Reads until the server closes the connection (or resets it), up to `within`. Returns what
/// was read, or `None` if the connection was still open at the end.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0_u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| received)
}

fn status_of(response: &[u8]) -> Option<u16> {
    String::from_utf8_lossy(response)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
}

async fn healthz(stream: &mut TcpStream, extra_headers: &str) -> Option<u16> {
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{extra_headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let response = read_until_closed(stream, Duration::from_secs(5)).await?;
    status_of(&response)
}

#[tokio::test]
async fn slow_loris_headers_are_cut_off_after_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(500),
        ..TEST
    };
    let (addr, server) = start(limits).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = monotonic();
    // A head that never ends, one byte every 50 ms, for up to 3 s.
    let start_of_head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    let bytes = start_of_head.iter().copied().chain(std::iter::repeat(b'a'));
    let mut cut_off = false;
    for byte in bytes {
        if monotonic().saturating_sub(started) > Duration::from_secs(3) {
            break;
        }
        if stream.write_all(&[byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0_u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => panic!("the server answered a request it never fully received"),
        }
    }
    let elapsed = monotonic().saturating_sub(started);
    assert!(cut_off, "a slow client kept its connection for {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    server.abort();
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..TEST
    };
    let (addr, server) = start(limits).await;
    // A connection that never sends anything.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(2))
            .await
            .is_some(),
        "a silent connection stayed open"
    );
    // A keep-alive connection idle after its first response.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let response = read_until_closed(&mut idle, Duration::from_secs(2))
        .await
        .expect("an idle keep-alive connection stayed open");
    assert_eq!(status_of(&response), Some(200));
    server.abort();
}

#[tokio::test]
async fn oversized_headers_get_431_and_a_close() {
    let (addr, server) = start(TEST).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let moderate = format!("X-Fill: {}\r\n", "a".repeat(2 * 1024));
    assert_eq!(healthz(&mut stream, &moderate).await, Some(200));

    // Larger than the limit in one write, with no end of head: hyper gives up at the limit
    // and answers on its own.
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Fill: {}",
        "a".repeat(TEST.max_header_bytes + 512)
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let response = read_until_closed(&mut stream, Duration::from_secs(3))
        .await
        .expect("the connection stayed open");
    assert_eq!(
        status_of(&response),
        Some(431),
        "{}",
        String::from_utf8_lossy(&response)
    );
    server.abort();
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_a_served_one_ends() {
    let limits = Limits {
        max_connections: 2,
        ..TEST
    };
    let (addr, server) = start(limits).await;
    let mut first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    // Both slots taken by idle connections; the kernel still completes the third handshake.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0_u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "a connection beyond the cap was served");

    // One slot frees up: the waiting connection is served.
    assert_eq!(healthz(&mut first, "").await, Some(200));
    let response = read_until_closed(&mut third, Duration::from_secs(3))
        .await
        .expect("the waiting connection was not served");
    assert_eq!(status_of(&response), Some(200));
    server.abort();
}

#[tokio::test]
async fn connections_are_closed_at_their_maximum_age_after_their_response() {
    let limits = Limits {
        max_age: Duration::from_millis(400),
        ..TEST
    };
    let (addr, server) = start(limits).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = monotonic();
    let mut answered = 0;
    // Keep-alive requests every 100 ms: never idle, yet closed at its age.
    loop {
        if stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .is_err()
        {
            break;
        }
        let mut buf = [0_u8; 1024];
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                assert_eq!(status_of(&buf[..n]), Some(200));
                answered += 1;
            }
            _ => break,
        }
        assert!(
            monotonic().saturating_sub(started) < Duration::from_secs(3),
            "the connection outlived its maximum age"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered >= 2, "{answered}");
    server.abort();
}
