//! Validation of declared peers: each document on its own, then the set as a whole.
//!
//! One bad declaration never affects the others: it is rejected with a reason and every other
//! peer goes on. When two declarations conflict (same key, name or cluster, overlapping
//! allowed IPs, allowed IPs over another peer's endpoint), the one the device already runs
//! wins, so adding a bad file can never take a working peer down. A peer is known by where it
//! is declared ([`PeerId`]), not by its key: a newcomer that repeats a running peer's key is a
//! newcomer, and loses, whatever the order of file names or of creation.
//!
//! Reasons never quote a value that failed its check: they name the field and the kind of
//! problem. Values that passed (a canonical CIDR, a DNS name) may be named in a conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::key::{KeyError, PublicKey};
use super::peer::{DEFAULT_PERSISTENT_KEEPALIVE, Endpoint, PeerId, PeerSpec};
use super::psk::{PresharedKey, SecretValue};

/// A peer declaration as read by a source, fields not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPeer {
    /// The peer's identity: where it is declared.
    pub id: PeerId,
    /// Where it came from, worded for the operator, e.g. `b.yaml`, `b.yaml (document 2)` or
    /// `zt-system/b`.
    pub origin: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.cluster`.
    pub cluster: String,
    /// `spec.publicKey`.
    pub public_key: String,
    /// `spec.endpoint`.
    pub endpoint: Option<String>,
    /// `spec.allowedIPs`.
    pub allowed_ips: Vec<String>,
    /// `spec.persistentKeepalive`.
    pub persistent_keepalive: Option<i64>,
    /// Whether `spec.presharedKeySecretRef` is set.
    pub has_preshared_key_ref: bool,
    /// What the source read behind `spec.presharedKeySecretRef`; `None` when it read nothing.
    pub preshared_key: Option<SecretValue>,
}

/// One input to validation: a declaration, or a document that could not even be read.
#[allow(
    clippy::large_enum_variant,
    reason = "one per document per pass, moved into validation once; boxing buys nothing"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declaration {
    /// A document that parsed into the peer shape.
    Peer(RawPeer),
    /// A document that did not parse; the reason is already worded for the operator.
    Unreadable {
        /// Where it came from.
        origin: String,
        /// Why it could not be read.
        reason: String,
    },
}

/// Most allowed IPs one peer may declare (the CRD's `maxItems`).
pub const MAX_ALLOWED_IPS: usize = 64;
/// Longest text of one allowed IP (the CRD's `maxLength` of an item).
pub const MAX_CIDR_LEN: usize = 43;
/// Longest endpoint text (the CRD's `maxLength`).
pub const MAX_ENDPOINT_LEN: usize = 261;
/// Length of a public key in base64 (the CRD's `minLength` and `maxLength`).
pub const PUBLIC_KEY_LEN: usize = 44;

/// What validation needs to know about the local gateway.
#[derive(Debug, Clone)]
pub struct Context {
    /// The gateway's own public key (a peer may not use it).
    pub own_public_key: PublicKey,
    /// The gateway's own tunnel address (no peer's allowed IPs may contain it).
    pub own_address: IpAddr,
    /// The addresses of the host's interfaces other than the tunnel (the underlay): no peer's
    /// allowed IPs may contain one, or its route would take the gateway's own traffic.
    pub underlay_addresses: BTreeSet<IpAddr>,
    /// The address each peer with a DNS endpoint was last given (resolved), by peer; a
    /// literal endpoint is read from the declaration itself.
    pub resolved_endpoints: BTreeMap<PeerId, IpAddr>,
    /// Peers the device currently runs, by declaration, as they were accepted when applied.
    /// They win conflicts against newcomers (declarations the device does not run yet),
    /// whatever their order; among them, one whose declaration still claims what it did wins
    /// against one edited since (see [`validate`]).
    pub incumbents: BTreeMap<PeerId, PeerSpec>,
    /// Whether the source can resolve `presharedKeySecretRef` (only the Kubernetes source).
    pub supports_secret_refs: bool,
}

/// Why, in one word, a declaration was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectionKind {
    /// The declaration itself is wrong (or could not be read).
    Invalid,
    /// It is valid but collides with a peer that won (same key, name, cluster or addresses).
    Conflict,
    /// Its preshared key could not be read (Secret or key missing, access denied).
    SecretUnavailable,
}

impl RejectionKind {
    /// Returns the word used as a condition reason: `Invalid`, `Conflict`, `SecretUnavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionKind::Invalid => "Invalid",
            RejectionKind::Conflict => "Conflict",
            RejectionKind::SecretUnavailable => "SecretUnavailable",
        }
    }
}

/// A declaration that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Where it came from.
    pub origin: String,
    /// Its name, when it had one.
    pub name: Option<String>,
    /// The kind of problem.
    pub kind: RejectionKind,
    /// Why, worded for the operator.
    pub reason: String,
}

/// The result of validating a set of declarations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Valid peers, in declaration order.
    pub accepted: Vec<PeerSpec>,
    /// Rejected declarations, in declaration order.
    pub rejected: Vec<Rejection>,
}

/// Validates every declaration, then resolves conflicts between them.
///
/// Conflicts are settled in this order of precedence, then in declaration order: running
/// peers whose declaration claims what it claimed when applied (key, name, cluster, endpoint,
/// allowed IPs), then running peers edited since, then newcomers. So neither a new
/// declaration nor an edited one can take what a running peer holds.
pub fn validate(declarations: Vec<Declaration>, ctx: &Context) -> Outcome {
    let mut rejected: Vec<(usize, Rejection)> = Vec::new();
    let mut candidates: Vec<(usize, PeerSpec)> = Vec::new();
    for (index, declaration) in declarations.into_iter().enumerate() {
        match declaration {
            Declaration::Unreadable { origin, reason } => rejected.push((
                index,
                Rejection {
                    origin,
                    name: None,
                    kind: RejectionKind::Invalid,
                    reason,
                },
            )),
            Declaration::Peer(raw) => match check_peer(&raw, ctx) {
                Ok(spec) => candidates.push((index, spec)),
                Err((kind, reason)) => rejected.push((
                    index,
                    Rejection {
                        origin: raw.origin,
                        // A name that is not a valid name is input of any shape: not repeated.
                        name: Some(raw.name).filter(|n| check_name(n).is_ok()),
                        kind,
                        reason,
                    },
                )),
            },
        }
    }

    // Incumbents claim their keys, names, clusters and addresses first; newcomers follow in
    // declaration order.
    candidates.sort_by_key(|(index, spec)| (precedence(spec, ctx), *index));
    let mut accepted: Vec<(usize, PeerSpec)> = Vec::new();
    let mut claims = Claims::default();
    for (index, spec) in candidates {
        let endpoint = endpoint_address(&spec, ctx);
        let holder = |at: &usize| {
            let (_, other) = accepted.get(*at)?;
            Some(Holder {
                spec: other,
                running: ctx.incumbents.contains_key(&other.id),
            })
        };
        match claims.conflict(&spec, endpoint, holder) {
            None => {
                claims.claim(&spec, endpoint, accepted.len());
                accepted.push((index, spec));
            }
            Some(reason) => rejected.push((
                index,
                Rejection {
                    origin: spec.origin.clone(),
                    name: Some(spec.name.clone()),
                    kind: RejectionKind::Conflict,
                    reason,
                },
            )),
        }
    }
    accepted.sort_by_key(|(index, _)| *index);
    rejected.sort_by_key(|(index, _)| *index);
    Outcome {
        accepted: accepted.into_iter().map(|(_, s)| s).collect(),
        rejected: rejected.into_iter().map(|(_, r)| r).collect(),
    }
}

/// Ranks a candidate for conflicts: 0 for a running peer that claims what it did, 1 for a
/// running peer edited since, 2 for a newcomer.
fn precedence(spec: &PeerSpec, ctx: &Context) -> u8 {
    match ctx.incumbents.get(&spec.id) {
        Some(was)
            if was.public_key == spec.public_key
                && was.name == spec.name
                && was.cluster == spec.cluster
                && was.endpoint == spec.endpoint
                && was.allowed_ips == spec.allowed_ips =>
        {
            0
        }
        Some(_) => 1,
        None => 2,
    }
}

/// The address a peer's datagrams go to, when known before it is applied.
fn endpoint_address(spec: &PeerSpec, ctx: &Context) -> Option<IpAddr> {
    match &spec.endpoint {
        Some(Endpoint::Addr(addr)) => Some(addr.ip()),
        Some(Endpoint::Host { .. }) => ctx.resolved_endpoints.get(&spec.id).copied(),
        None => None,
    }
}

/// What the peers accepted so far hold, indexed so that checking a newcomer costs a few
/// lookups per allowed IP whatever the number of peers.
#[derive(Debug, Default)]
struct Claims {
    keys: BTreeMap<PublicKey, usize>,
    names: BTreeMap<String, usize>,
    clusters: BTreeMap<String, usize>,
    prefixes: Prefixes,
    endpoints: BTreeMap<IpAddr, usize>,
}

impl Claims {
    /// Records what the accepted peer at `at` holds.
    fn claim(&mut self, spec: &PeerSpec, endpoint: Option<IpAddr>, at: usize) {
        self.keys.insert(spec.public_key, at);
        self.names.insert(spec.name.clone(), at);
        self.clusters.insert(spec.cluster.clone(), at);
        for net in &spec.allowed_ips {
            self.prefixes.insert(*net, at);
        }
        if let Some(addr) = endpoint {
            self.endpoints.entry(addr).or_insert(at);
        }
    }

    /// Returns why `spec` cannot be accepted next to the peers already accepted; `peer`
    /// finds the accepted peer at an index.
    fn conflict<'a>(
        &self,
        spec: &PeerSpec,
        endpoint: Option<IpAddr>,
        peer: impl Fn(&usize) -> Option<Holder<'a>>,
    ) -> Option<String> {
        if let Some(other) = self.keys.get(&spec.public_key).and_then(&peer) {
            return Some(format!("duplicate publicKey: already used by {other}"));
        }
        if let Some(other) = self.names.get(&spec.name).and_then(&peer) {
            return Some(format!(
                "duplicate metadata.name {}: already declared by {other}",
                spec.name
            ));
        }
        if let Some(other) = self.clusters.get(&spec.cluster).and_then(&peer) {
            return Some(format!(
                "duplicate spec.cluster {}: already declared by {other}",
                spec.cluster
            ));
        }
        for mine in &spec.allowed_ips {
            if let Some((theirs, other)) = self
                .prefixes
                .overlapping(mine)
                .and_then(|(net, at)| Some((net, peer(&at)?)))
            {
                return Some(format!("allowedIPs {mine} overlaps {theirs} of {other}"));
            }
        }
        for mine in &spec.allowed_ips {
            if let Some(other) = self
                .endpoints
                .range(mine.network()..=mine.broadcast())
                .next()
                .and_then(|(_, at)| peer(at))
            {
                return Some(format!(
                    "allowedIPs {mine} contains the endpoint address of {other}: its route would take that peer's tunnel traffic"
                ));
            }
        }
        if let Some((theirs, other)) = endpoint
            .and_then(|addr| self.prefixes.containing(addr, u8::MAX))
            .and_then(|(net, at)| Some((net, peer(&at)?)))
        {
            return Some(format!(
                "spec.endpoint lies in allowedIPs {theirs} of {other}: its tunnel traffic would be routed into the tunnel"
            ));
        }
        None
    }
}

/// An accepted peer that holds what a later one claims, as a conflict names it: `peer b
/// (b.yaml)`, or `peer b (b.yaml, running)` when the device runs it (it keeps what it holds).
struct Holder<'a> {
    spec: &'a PeerSpec,
    running: bool,
}

impl std::fmt::Display for Holder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = if self.running { ", running" } else { "" };
        write!(f, "peer {} ({}{running})", self.spec.name, self.spec.origin)
    }
}

/// A set of prefixes, each with its owner, answering "which one shares an address with this
/// prefix" in O(log n) map lookups: one range scan for the prefixes inside it, and one probe
/// per prefix length in use for those containing it.
#[derive(Debug, Default)]
struct Prefixes {
    entries: BTreeMap<(IpAddr, u8), usize>,
    lengths_v4: BTreeSet<u8>,
    lengths_v6: BTreeSet<u8>,
}

impl Prefixes {
    fn insert(&mut self, net: IpNet, owner: usize) {
        let net = net.trunc();
        self.entries
            .entry((net.network(), net.prefix_len()))
            .or_insert(owner);
        match net {
            IpNet::V4(_) => self.lengths_v4.insert(net.prefix_len()),
            IpNet::V6(_) => self.lengths_v6.insert(net.prefix_len()),
        };
    }

    /// Returns a prefix that shares an address with `net`, and its owner.
    fn overlapping(&self, net: &IpNet) -> Option<(IpNet, usize)> {
        let net = net.trunc();
        // A prefix whose first address lies in `net` overlaps it (it is inside or equal).
        let inside = self
            .entries
            .range((net.network(), 0)..=(net.broadcast(), u8::MAX))
            .next()
            .and_then(|((addr, len), owner)| Some((IpNet::new(*addr, *len).ok()?, *owner)));
        inside.or_else(|| self.containing(net.network(), net.prefix_len()))
    }

    /// Returns a prefix of at most `max_len` bits that contains `addr`, and its owner.
    fn containing(&self, addr: IpAddr, max_len: u8) -> Option<(IpNet, usize)> {
        let lengths = match addr {
            IpAddr::V4(_) => &self.lengths_v4,
            IpAddr::V6(_) => &self.lengths_v6,
        };
        lengths.range(..=max_len).rev().find_map(|len| {
            let net = IpNet::new(addr, *len).ok()?.trunc();
            let owner = self.entries.get(&(net.network(), *len))?;
            Some((net, *owner))
        })
    }
}

/// Returns whether two networks share any address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn check_peer(raw: &RawPeer, ctx: &Context) -> Result<PeerSpec, (RejectionKind, String)> {
    let mut spec = check_fields(raw)
        .and_then(|spec| check_local(spec, ctx))
        .map_err(|why| (RejectionKind::Invalid, why))?;
    if raw.has_preshared_key_ref {
        spec.preshared_key = Some(check_preshared_key(raw, ctx)?);
    }
    Ok(spec)
}

fn check_preshared_key(
    raw: &RawPeer,
    ctx: &Context,
) -> Result<PresharedKey, (RejectionKind, String)> {
    if !ctx.supports_secret_refs {
        return Err((
            RejectionKind::Invalid,
            "spec.presharedKeySecretRef needs [peers] source = \"kubernetes\"; the directory source cannot read Secrets"
                .to_owned(),
        ));
    }
    match &raw.preshared_key {
        Some(SecretValue::Found { secret, value }) => {
            PresharedKey::from_base64(value).map_err(|e| {
                (
                    RejectionKind::Invalid,
                    format!("spec.presharedKeySecretRef: {secret} {e}"),
                )
            })
        }
        Some(SecretValue::Unavailable(why)) => Err((
            RejectionKind::SecretUnavailable,
            format!("spec.presharedKeySecretRef: {why}"),
        )),
        None => Err((
            RejectionKind::SecretUnavailable,
            "spec.presharedKeySecretRef: the Secret has not been read yet".to_owned(),
        )),
    }
}

/// Checks what depends on the local gateway: its own key, tunnel and underlay addresses, and
/// the peer's own endpoint.
fn check_local(spec: PeerSpec, ctx: &Context) -> Result<PeerSpec, String> {
    if spec.public_key == ctx.own_public_key {
        return Err("spec.publicKey is this gateway's own public key".to_owned());
    }
    if let Some(net) = spec
        .allowed_ips
        .iter()
        .find(|net| net.contains(&ctx.own_address))
    {
        return Err(format!(
            "spec.allowedIPs {net} overlaps the local tunnel address {} of this gateway",
            ctx.own_address
        ));
    }
    for net in &spec.allowed_ips {
        if let Some(addr) = ctx
            .underlay_addresses
            .range(net.network()..=net.broadcast())
            .next()
        {
            return Err(format!(
                "spec.allowedIPs {net} contains {addr}, an address of this gateway's own network interfaces: its route would take the gateway's own traffic"
            ));
        }
    }
    if let Some(addr) = endpoint_address(&spec, ctx)
        && let Some(net) = spec.allowed_ips.iter().find(|net| net.contains(&addr))
    {
        return Err(format!(
            "spec.allowedIPs {net} contains the peer's own endpoint address: its tunnel traffic would be routed into the tunnel"
        ));
    }
    Ok(spec)
}

/// Checks one declaration on its own, without knowing the local gateway: names, key,
/// endpoint, allowed IPs and keepalive (what `peerctl peer add` can check too).
///
/// # Errors
/// The first problem found, worded for the operator.
pub fn check_fields(raw: &RawPeer) -> Result<PeerSpec, String> {
    check_name(&raw.name)?;
    check_dns_label(&raw.cluster).map_err(|why| format!("spec.cluster {why}"))?;
    if raw.public_key.len() > PUBLIC_KEY_LEN {
        return Err(format!(
            "spec.publicKey is longer than {PUBLIC_KEY_LEN} characters; a WireGuard key in base64 has {PUBLIC_KEY_LEN}"
        ));
    }
    let public_key = PublicKey::from_base64(&raw.public_key).map_err(|e| match e {
        KeyError::Length(n) => {
            format!("spec.publicKey decodes to {n} bytes; a WireGuard key has 32")
        }
        other => format!("spec.publicKey {other}"),
    })?;
    if raw
        .endpoint
        .as_ref()
        .is_some_and(|e| e.len() > MAX_ENDPOINT_LEN)
    {
        return Err(format!(
            "spec.endpoint is longer than {MAX_ENDPOINT_LEN} characters"
        ));
    }
    let endpoint = raw
        .endpoint
        .as_deref()
        .map(parse_endpoint)
        .transpose()
        .map_err(|why| format!("spec.endpoint {why}"))?;
    if raw.allowed_ips.is_empty() {
        return Err("spec.allowedIPs must list at least one CIDR".to_owned());
    }
    if raw.allowed_ips.len() > MAX_ALLOWED_IPS {
        return Err(format!(
            "spec.allowedIPs lists {} CIDRs; at most {MAX_ALLOWED_IPS} are allowed",
            raw.allowed_ips.len()
        ));
    }
    let mut allowed_ips = BTreeSet::new();
    for (i, text) in raw.allowed_ips.iter().enumerate() {
        if text.len() > MAX_CIDR_LEN {
            return Err(format!(
                "spec.allowedIPs[{i}] is longer than {MAX_CIDR_LEN} characters"
            ));
        }
        let net = parse_cidr(text).map_err(|why| format!("spec.allowedIPs[{i}]: {why}"))?;
        allowed_ips.insert(net);
    }
    let persistent_keepalive = match raw.persistent_keepalive {
        None => DEFAULT_PERSISTENT_KEEPALIVE,
        Some(value) => u16::try_from(value).map_err(|_| {
            "spec.persistentKeepalive is out of range (0 to 65535 seconds)".to_owned()
        })?,
    };
    Ok(PeerSpec {
        id: raw.id.clone(),
        origin: raw.origin.clone(),
        name: raw.name.clone(),
        cluster: raw.cluster.clone(),
        public_key,
        endpoint,
        allowed_ips,
        persistent_keepalive,
        preshared_key: None,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| check_dns_label(label).is_ok());
    if ok {
        Ok(())
    } else {
        Err(
            "metadata.name is not a DNS subdomain (at most 253 lowercase letters, digits, '-' and '.')"
                .to_owned(),
        )
    }
}

/// Returns whether `text` is a DNS label (RFC 1123): 1 to 63 lowercase letters, digits and
/// `-`, not at either end. Cluster names, namespaces and the control channel's `from` are.
pub fn is_dns_label(text: &str) -> bool {
    check_dns_label(text).is_ok()
}

fn check_dns_label(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let edges_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    if !bytes.is_empty() && bytes.len() <= 63 && valid_chars && edges_ok {
        Ok(())
    } else {
        Err("is not a DNS label (1 to 63 lowercase letters, digits and '-')")
    }
}

/// Parses `host:port`, `ip:port` or `[ipv6]:port`.
///
/// # Errors
/// Returns why the text is not an endpoint.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("has port 0".to_owned());
        }
        return Ok(Endpoint::Addr(addr));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "is not host:port".to_owned())?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| "has no valid port (1 to 65535)".to_owned())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.contains(':')
        && host
            .trim_end_matches('.')
            .split('.')
            .all(|label| check_dns_label(&label.to_ascii_lowercase()).is_ok());
    if !host_ok || host.parse::<IpAddr>().is_ok() {
        return Err("is not host:port with a valid DNS name or IP".to_owned());
    }
    Ok(Endpoint::Host {
        host: host.to_owned(),
        port,
    })
}

/// Parses a CIDR; a bare address means a single host.
///
/// # Errors
/// Returns why the text is not a CIDR, including a network with host bits set.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net: IpNet = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => return Err("invalid CIDR (expected e.g. 10.244.0.0/16)".to_owned()),
        },
    };
    if net.trunc() != net {
        return Err(
            "invalid CIDR: host bits are set (the address must be the first of its network)"
                .to_owned(),
        );
    }
    Ok(net)
}

/// Indexes accepted peers by public key.
pub fn by_key(accepted: &[PeerSpec]) -> BTreeMap<PublicKey, &PeerSpec> {
    accepted.iter().map(|s| (s.public_key, s)).collect()
}

#[cfg(test)]
mod tests;
