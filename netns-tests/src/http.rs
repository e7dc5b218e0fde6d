//! A minimal blocking HTTP/1.0 client from inside a namespace, for the gateway's health and
//! metrics endpoints (which listen on the namespace's own loopback) and the test servers'
//! controls.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::netns::Netns;

/// Connect, read and write timeout of one request.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends `GET <path>` to `addr` from inside `ns` and returns the status code and body.
///
/// # Errors
/// Fails when the connection fails, times out, or the response has no HTTP status line.
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> Result<(u16, String)> {
    http_request(ns, addr, "GET", path, None)
}

/// Sends `<method> <path>` with an optional JSON body to `addr` from inside `ns` and returns
/// the status code and body.
///
/// # Errors
/// Fails when the connection fails, times out, or the response has no HTTP status line.
pub fn http_request(
    ns: &Netns,
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let response = ns
        .run_in(|| {
            let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
                .with_context(|| format!("failed to connect to {addr}"))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            let request = match body {
                None => format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
                Some(body) => format!(
                    "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            };
            stream
                .write_all(request.as_bytes())
                .context("failed to send request")?;
            let mut response = Vec::new();
            stream
                .read_to_end(&mut response)
                .context("failed to read response")?;
            Ok(response)
        })
        .with_context(|| format!("{method} http://{addr}{path} in {}", ns.name()))?;
    parse_response(&String::from_utf8_lossy(&response))
        .with_context(|| format!("bad response from http://{addr}{path}"))
}

fn parse_response(text: &str) -> Result<(u16, String)> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let status_line = head.lines().next().context("empty response")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    Ok((status, body.to_owned()))
}
