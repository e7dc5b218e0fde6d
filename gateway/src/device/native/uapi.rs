//! The native device's side of the cross-platform UAPI: a strict `set=1` parser, applying a
//! parsed request to the [`Core`], and the `get=1` answer. The public socket
//! ([`crate::device::uapi_server`]) calls [`answer`] in-process through the device handle.
//!
//! Requests and answers may carry `private_key=` and `preshared_key=`: the request is read
//! as borrowed lines of the caller's zeroizing buffer, parsed keys go straight into
//! zeroizing arrays, and the answer is written into a [`SecretText`], which never leaves a
//! copy behind when it grows.
//!
//! Unlike boringtun's device, a `set` that names an existing peer updates it in place:
//! endpoint, keepalive and allowed IPs change without touching its session; only a new
//! preshared key (or private key) starts a new handshake.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use ipnet::IpNet;
use zeroize::Zeroizing;

use super::core::Core;

/// errno values answered, negative as wireguard-go answers and `wg` expects.
pub const EINVAL: i32 = -22;
/// For settings this device does not support (another listen port, a fwmark).
pub const EOPNOTSUPP: i32 = -95;

/// One peer section of a `set` request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PeerSet {
    /// Its public key.
    pub public: [u8; 32],
    /// `remove=true`.
    pub remove: bool,
    /// `update_only=true`: skip the section if the peer does not exist.
    pub update_only: bool,
    /// `preshared_key=`: `Some(None)` removes it (all zeros).
    pub psk: Option<Option<Zeroizing<[u8; 32]>>>,
    /// `endpoint=`.
    pub endpoint: Option<SocketAddr>,
    /// `persistent_keepalive_interval=`.
    pub keepalive: Option<u16>,
    /// `replace_allowed_ips=true`.
    pub replace_allowed_ips: bool,
    /// `allowed_ip=` lines, in order.
    pub allowed_ips: Vec<IpNet>,
}

/// A parsed `set` request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// `private_key=`: `Some(None)` removes it (all zeros).
    pub private_key: Option<Option<Zeroizing<[u8; 32]>>>,
    /// `listen_port=`.
    pub listen_port: Option<u16>,
    /// `fwmark=`.
    pub fwmark: Option<u32>,
    /// `replace_peers=true`.
    pub replace_peers: bool,
    /// Peer sections, in order.
    pub peers: Vec<PeerSet>,
}

fn hex_key(value: &str) -> Result<Zeroizing<[u8; 32]>, i32> {
    let bytes = value.as_bytes();
    if bytes.len() != 64 {
        return Err(EINVAL);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(EINVAL),
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Ok(out)
}

fn optional_key(value: &str) -> Result<Option<Zeroizing<[u8; 32]>>, i32> {
    let key = hex_key(value)?;
    Ok(if key.iter().all(|b| *b == 0) {
        None
    } else {
        Some(key)
    })
}

fn flag(value: &str) -> Result<bool, i32> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(EINVAL),
    }
}

/// Parses the lines of a `set` request after `set=1` (without the blank line that ends it).
/// Every line must be a known `key=value`; anything else is `EINVAL`.
///
/// # Errors
/// The errno to answer.
pub fn parse_set<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<SetRequest, i32> {
    let mut request = SetRequest::default();
    for line in lines {
        let (key, value) = line.split_once('=').ok_or(EINVAL)?;
        if key == "public_key" {
            request.peers.push(PeerSet {
                public: *hex_key(value)?,
                ..PeerSet::default()
            });
            continue;
        }
        match request.peers.last_mut() {
            None => match key {
                "private_key" => request.private_key = Some(optional_key(value)?),
                "listen_port" => request.listen_port = Some(value.parse().map_err(|_| EINVAL)?),
                "fwmark" => request.fwmark = Some(value.parse().map_err(|_| EINVAL)?),
                "replace_peers" => request.replace_peers = flag(value)?,
                _ => return Err(EINVAL),
            },
            Some(peer) => match key {
                "remove" => peer.remove = flag(value)?,
                "update_only" => peer.update_only = flag(value)?,
                "preshared_key" => peer.psk = Some(optional_key(value)?),
                "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| EINVAL)?),
                "persistent_keepalive_interval" => {
                    peer.keepalive = Some(value.parse().map_err(|_| EINVAL)?);
                }
                "replace_allowed_ips" => peer.replace_allowed_ips = flag(value)?,
                "allowed_ip" => peer.allowed_ips.push(value.parse().map_err(|_| EINVAL)?),
                "protocol_version" if value == "1" => {}
                _ => return Err(EINVAL),
            },
        }
    }
    Ok(request)
}

/// Applies a parsed request. `listen_port` is the port the device is bound to: another one
/// (or a non-zero fwmark) is refused before anything changes.
///
/// # Errors
/// The errno to answer.
pub fn apply(core: &mut Core, request: SetRequest, listen_port: u16) -> Result<(), i32> {
    if request.listen_port.is_some_and(|p| p != listen_port) {
        return Err(EOPNOTSUPP);
    }
    if request.fwmark.is_some_and(|m| m != 0) {
        return Err(EOPNOTSUPP);
    }
    if let Some(key) = request.private_key {
        core.set_private_key(key.map(|k| *k));
    }
    if request.replace_peers {
        core.clear_peers();
    }
    for section in request.peers {
        let public = section.public;
        if section.remove {
            core.remove_peer(&public);
            continue;
        }
        if section.update_only && !core.has_peer(&public) {
            continue;
        }
        let peer = core.peer_mut(public).ok_or(EINVAL)?;
        if let Some(endpoint) = section.endpoint {
            peer.endpoint = Some(super::core::canonical(endpoint));
        }
        if let Some(keepalive) = section.keepalive {
            peer.keepalive = keepalive;
        }
        if let Some(psk) = section.psk {
            core.set_psk(&public, psk.map(|k| *k));
        }
        if section.replace_allowed_ips {
            core.clear_allowed_ips(&public);
        }
        for net in section.allowed_ips {
            core.add_allowed_ip(&public, net);
        }
    }
    Ok(())
}

/// Text that may hold key material: wiped on drop, and wiped when it grows (a larger
/// buffer is allocated, the text copied, and the old buffer wiped before it is freed), so
/// no copy is left in freed memory, as a `String` that reallocates would leave.
#[derive(Default)]
pub struct SecretText {
    text: Zeroizing<String>,
    /// How many times the text moved to a larger buffer.
    grown: usize,
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretText")
            .field("len", &self.text.len())
            .finish_non_exhaustive()
    }
}

impl SecretText {
    /// Returns empty text with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            text: Zeroizing::new(String::with_capacity(capacity)),
            grown: 0,
        }
    }

    /// Appends `s`, moving to a larger buffer first if it does not fit.
    pub fn push_str(&mut self, s: &str) {
        let needed = self.text.len().saturating_add(s.len());
        if needed > self.text.capacity() {
            let capacity = needed.max(self.text.capacity().saturating_mul(2)).max(64);
            let mut larger = Zeroizing::new(String::with_capacity(capacity));
            larger.push_str(&self.text);
            // The old buffer is wiped as it drops.
            self.text = larger;
            self.grown += 1;
        }
        self.text.push_str(s);
    }

    /// Appends one hex-encoded key.
    fn push_hex(&mut self, bytes: &[u8; 32]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in bytes {
            let pair = [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]];
            self.push_str(std::str::from_utf8(&pair).unwrap_or_default());
        }
    }

    /// Returns the text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns how many times the text moved to a larger buffer.
    pub fn grown(&self) -> usize {
        self.grown
    }

    /// Returns the text, still wiped on drop.
    pub fn into_inner(self) -> Zeroizing<String> {
        self.text
    }
}

impl std::fmt::Write for SecretText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// Formats the `get=1` answer, ending with `errno=0` and the blank line. It holds the
/// private key and preshared keys, so it is a [`SecretText`].
pub fn get(core: &Core, listen_port: u16) -> SecretText {
    let mut out = SecretText::with_capacity(512);
    if let Some(key) = core.private_key() {
        out.push_str("private_key=");
        out.push_hex(&Zeroizing::new(key.to_bytes()));
        out.push_str("\n");
    }
    let _ = writeln!(out, "listen_port={listen_port}");
    for peer in core.peers() {
        out.push_str("public_key=");
        out.push_hex(&peer.public);
        out.push_str("\n");
        if let Some(psk) = &peer.psk {
            out.push_str("preshared_key=");
            out.push_hex(psk);
            out.push_str("\n");
        }
        out.push_str("protocol_version=1\n");
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let since = peer
            .last_handshake()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", since.subsec_nanos());
        let (tx, rx) = peer.bytes();
        let _ = writeln!(out, "tx_bytes={tx}\nrx_bytes={rx}");
        let _ = writeln!(out, "persistent_keepalive_interval={}", peer.keepalive);
        for net in core.allowed_ips(&peer.public) {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// Answers one request: `get=1`, or `set=1` and its lines, without the blank line that ends
/// it (blank lines are skipped). The lines are borrowed from `request`, never copied.
pub fn answer(core: &mut Core, request: &str, listen_port: u16) -> Zeroizing<String> {
    let mut lines = request.lines().filter(|line| !line.is_empty());
    match lines.next() {
        Some("get=1") if lines.next().is_none() => get(core, listen_port).into_inner(),
        Some("set=1") => {
            let result = parse_set(lines).and_then(|request| apply(core, request, listen_port));
            Zeroizing::new(format!("errno={}\n\n", result.err().unwrap_or(0)))
        }
        _ => Zeroizing::new(format!("errno={EINVAL}\n\n")),
    }
}

#[cfg(test)]
mod tests;
