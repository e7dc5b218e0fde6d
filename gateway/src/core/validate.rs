//! Validation of declared peers: each document on its own, then the set as a whole.
//!
//! One bad declaration never affects the others: it is rejected with a reason and every other
//! peer goes on. When two declarations conflict (same key, overlapping allowed IPs), the one
//! the device already runs wins, so adding a bad file can never take a working peer down.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::key::{KeyError, PublicKey};
use super::peer::{DEFAULT_PERSISTENT_KEEPALIVE, Endpoint, PeerSpec};
use super::psk::{PresharedKey, SecretValue};

/// A peer declaration as read by a source, fields not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPeer {
    /// Where it came from, e.g. `b.yaml` or `b.yaml#2` or `zt-system/b`.
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

/// What validation needs to know about the local gateway.
#[derive(Debug, Clone)]
pub struct Context {
    /// The gateway's own public key (a peer may not use it).
    pub own_public_key: PublicKey,
    /// The gateway's own tunnel address (no peer's allowed IPs may contain it).
    pub own_address: IpAddr,
    /// Peers the device currently runs: they win conflicts against newcomers.
    pub incumbents: BTreeSet<PublicKey>,
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
                        name: Some(raw.name).filter(|n| !n.is_empty()),
                        kind,
                        reason,
                    },
                )),
            },
        }
    }

    // Incumbents claim their keys and addresses first; newcomers follow in declaration order.
    candidates.sort_by_key(|(index, spec)| (!ctx.incumbents.contains(&spec.public_key), *index));
    let mut accepted: Vec<(usize, PeerSpec)> = Vec::new();
    for (index, spec) in candidates {
        match conflict(&spec, accepted.iter().map(|(_, s)| s)) {
            None => accepted.push((index, spec)),
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

fn conflict<'a>(spec: &PeerSpec, accepted: impl Iterator<Item = &'a PeerSpec>) -> Option<String> {
    for other in accepted {
        if other.public_key == spec.public_key {
            return Some(format!(
                "duplicate publicKey: already used by peer {} ({})",
                other.name, other.origin
            ));
        }
        if other.name == spec.name {
            return Some(format!(
                "duplicate metadata.name {:?}: already declared in {}",
                spec.name, other.origin
            ));
        }
        if other.cluster == spec.cluster {
            return Some(format!(
                "duplicate spec.cluster {:?}: already declared by peer {} ({})",
                spec.cluster, other.name, other.origin
            ));
        }
        for mine in &spec.allowed_ips {
            if let Some(theirs) = other.allowed_ips.iter().find(|t| overlaps(mine, t)) {
                return Some(format!(
                    "allowedIPs {mine} overlaps {theirs} of peer {} ({})",
                    other.name, other.origin
                ));
            }
        }
    }
    None
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

/// Checks what depends on the local gateway: its own key and tunnel address.
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
    Ok(spec)
}

/// Checks one declaration on its own, without knowing the local gateway: names, key,
/// endpoint, allowed IPs and keepalive (what `peerctl peer add` can check too).
///
/// # Errors
/// The first problem found, worded for the operator.
pub fn check_fields(raw: &RawPeer) -> Result<PeerSpec, String> {
    check_name(&raw.name)?;
    check_dns_label(&raw.cluster).map_err(|why| format!("spec.cluster {:?} {why}", raw.cluster))?;
    let public_key = PublicKey::from_base64(&raw.public_key).map_err(|e| match e {
        KeyError::Length(n) => {
            format!("spec.publicKey decodes to {n} bytes; a WireGuard key has 32")
        }
        other => format!("spec.publicKey {other}"),
    })?;
    let endpoint = raw
        .endpoint
        .as_deref()
        .map(parse_endpoint)
        .transpose()
        .map_err(|why| format!("spec.endpoint {why}"))?;
    if raw.allowed_ips.is_empty() {
        return Err("spec.allowedIPs must list at least one CIDR".to_owned());
    }
    let mut allowed_ips = BTreeSet::new();
    for text in &raw.allowed_ips {
        let net = parse_cidr(text).map_err(|why| format!("spec.allowedIPs {text:?}: {why}"))?;
        allowed_ips.insert(net);
    }
    let persistent_keepalive = match raw.persistent_keepalive {
        None => DEFAULT_PERSISTENT_KEEPALIVE,
        Some(value) => u16::try_from(value).map_err(|_| {
            format!("spec.persistentKeepalive {value} is out of range (0 to 65535 seconds)")
        })?,
    };
    Ok(PeerSpec {
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
        Err(format!(
            "metadata.name {name:?} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
        ))
    }
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
            return Err(format!("{text:?} has port 0"));
        }
        return Ok(Endpoint::Addr(addr));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{text:?} has no valid port (1 to 65535)"))?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && !host.contains(':')
        && host
            .trim_end_matches('.')
            .split('.')
            .all(|label| check_dns_label(&label.to_ascii_lowercase()).is_ok());
    if !host_ok || host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "{text:?} is not host:port with a valid DNS name or IP"
        ));
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
        return Err(format!(
            "invalid CIDR: host bits are set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Indexes accepted peers by public key.
pub fn by_key(accepted: &[PeerSpec]) -> BTreeMap<PublicKey, &PeerSpec> {
    accepted.iter().map(|s| (s.public_key, s)).collect()
}

#[cfg(test)]
mod tests;
