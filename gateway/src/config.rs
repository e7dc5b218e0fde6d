//! The validated configuration: `Cli` → [`Config::load`] → `run(config)`.
//!
//! Keys are those of SPEC section 4. A bad value stops start-up with one line naming the key,
//! the value and what is expected. Unknown keys are errors, so a typo never silently falls
//! back to a default.

mod audit;
mod control;
mod error;
mod http;
mod rotation;

use crate::core::validate::is_dns_label;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kms_client::cache::CacheConfig;
use kms_client::infisical::InfisicalConfig;

use ipnet::IpNet;
use serde::Deserialize;

pub use audit::{AuditConfig, AuditKeySource, AuditSink};
pub use control::ControlConfig;
pub use error::ConfigError;
pub use http::{AdminTcp, HttpConfig};
pub use rotation::RotationConfig;

use error::bad;

use crate::cli::{Cli, Overrides};
use crate::core::health::Liveness;
use crate::device::InterfaceSettings;

/// Which WireGuard implementation runs the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The gateway's own WireGuard device (the native data plane on `boringtun::noise`) in
    /// the gateway process over a TUN device. `"native"` is accepted as another name for it.
    Userspace,
    /// The Linux kernel module.
    Kernel,
}

/// Where the private key comes from.
#[derive(Debug, Clone)]
pub enum KeyConfig {
    /// A base64 key file, mode 0600.
    File {
        /// Its path.
        path: PathBuf,
    },
    /// A KMS speaking the Infisical API.
    Kms(Box<KmsConfig>),
}

/// `[key] source = "kms"`.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// How to reach the KMS and which project, environment and path to read.
    pub store: InfisicalConfig,
    /// The secret holding the base64 private key.
    pub secret_name: String,
    /// How long start-up keeps trying an unreachable KMS before giving up.
    pub deadline: Duration,
    /// The optional survival cache.
    pub cache: Option<CacheConfig>,
}

/// Where the declared peers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeersConfig {
    /// A directory of `*.yaml` files with `WireGuardPeer` documents.
    Directory {
        /// Its path.
        path: PathBuf,
    },
    /// `WireGuardPeer` resources of one namespace, through the Kubernetes API.
    Kubernetes {
        /// The namespace; `None` means the client's default (the pod's own namespace in a
        /// cluster, else the kubeconfig context's).
        namespace: Option<String>,
        /// A kubeconfig file; `None` means the service account, `$KUBECONFIG` or
        /// `~/.kube/config`.
        kubeconfig: Option<PathBuf>,
    },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[interface]` except the backend.
    pub interface: InterfaceSettings,
    /// `interface.backend`.
    pub backend: Backend,
    /// `cluster.name`.
    pub cluster_name: String,
    /// `cluster.trust_domain`.
    pub trust_domain: Option<String>,
    /// `[key]`.
    pub key: KeyConfig,
    /// `[key] rotation_*`.
    pub rotation: RotationConfig,
    /// `[peers]`.
    pub peers: PeersConfig,
    /// `peers.state_path`: where this gateway keeps, durably, what it holds of its peers'
    /// key rotations (default `/var/lib/zt-gateway/peer-rotations.json`). Directory source
    /// only: the Kubernetes source keeps them in the peers' `WireGuardPeer` status.
    pub peer_state: PathBuf,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[control]`.
    pub control: ControlConfig,
    /// `[audit]`; `None` when the section is absent (the audit log is off).
    pub audit: Option<AuditConfig>,
    /// The connected rule; always the production rule except under the hidden test flag
    /// `--test-peer-receive-window`.
    pub liveness: Liveness,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    interface: RawInterface,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    key: RawKey,
    #[serde(default)]
    peers: RawPeers,
    #[serde(default)]
    http: http::RawHttp,
    #[serde(default)]
    control: control::RawControl,
    audit: Option<audit::RawAudit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: Option<String>,
    listen_port: Option<i64>,
    address: Option<String>,
    mtu: Option<i64>,
    backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Option<String>,
    trust_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    source: Option<String>,
    path: Option<String>,
    backend: Option<String>,
    url: Option<String>,
    api: Option<String>,
    project_id: Option<String>,
    environment: Option<String>,
    secret_path: Option<String>,
    secret_name: Option<String>,
    client_id_file: Option<String>,
    client_secret_file: Option<String>,
    ca_file: Option<String>,
    deadline: Option<String>,
    request_timeout: Option<String>,
    cache_path: Option<String>,
    cache_kek_file: Option<String>,
    cache_max_age: Option<String>,
    rotation_max_age: Option<String>,
    rotation_lead: Option<String>,
    rotation_window: Option<String>,
    rotation_jitter: Option<String>,
    rotation_announce_timeout: Option<String>,
    rotation_verify_deadline: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeers {
    source: Option<String>,
    path: Option<String>,
    namespace: Option<String>,
    kubeconfig: Option<String>,
    state_path: Option<String>,
}

mod key;
mod peers;

const NUMERIC_KEYS: [&str; 3] = ["interface.listen_port", "interface.mtu", "control.port"];

impl Config {
    /// Loads the file the command line names, with its overrides and test flags.
    ///
    /// # Errors
    /// The first problem found, as one line.
    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        let mut config = Self::load(&cli.config, &cli.overrides)?;
        if let Some(seconds) = cli.test_peer_receive_window {
            if !(1..=3600).contains(&seconds) {
                return Err(bad(
                    "--test-peer-receive-window",
                    seconds,
                    "expected 1 to 3600 seconds",
                ));
            }
            config.liveness.receive_window = Some(Duration::from_secs(seconds));
        }
        if let Some(phase) = &cli.test_rotation_hold {
            const PHASES: [&str; 4] = ["announcing", "committing", "verifying", "rolling_back"];
            if !PHASES.contains(&phase.as_str()) {
                return Err(bad(
                    "--test-rotation-hold",
                    phase,
                    "expected announcing, committing, verifying or rolling_back",
                ));
            }
            tracing::warn!(phase = %phase, "test-only setting: a key rotation stops when it enters this phase");
            config.rotation.hold = Some(phase.clone());
        }
        Ok(config)
    }

    /// Reads the file at `path`, applies `overrides`, and validates everything.
    ///
    /// # Errors
    /// The first problem found, as one line.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// The first problem found, as one line.
    pub fn parse(text: &str, origin: &str, overrides: &Overrides) -> Result<Self, ConfigError> {
        let syntax = |reason: String| ConfigError::Syntax {
            path: origin.to_owned(),
            reason,
        };
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| syntax(one_line(&e, text)))?;
        for (key, value) in overrides.pairs() {
            let (section, field) = key.split_once('.').unwrap_or((key, ""));
            let value = if NUMERIC_KEYS.contains(&key) {
                toml::Value::Integer(
                    value
                        .parse()
                        .map_err(|_| bad(key, value, "expected a whole number"))?,
                )
            } else {
                toml::Value::String(value.to_owned())
            };
            let entry = table
                .entry(section.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section_table) = entry {
                section_table.insert(field.to_owned(), value);
            } else {
                return Err(bad(section, "(not a table)", "expected a [section]"));
            }
        }
        let raw: RawConfig =
            RawConfig::deserialize(table).map_err(|e| syntax(e.message().replace('\n', " ")))?;
        validate(raw)
    }
}

fn one_line(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let name = raw.interface.name.unwrap_or_else(|| "wg0".to_owned());
    let name_ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(bad(
            "interface.name",
            &name,
            "expected 1 to 15 characters from letters, digits, '-', '_' and '.'",
        ));
    }
    let listen_port = raw.interface.listen_port.unwrap_or(51820);
    let listen_port = u16::try_from(listen_port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            bad(
                "interface.listen_port",
                listen_port,
                "expected a UDP port from 1 to 65535",
            )
        })?;
    let address_text = raw.interface.address.ok_or_else(|| {
        bad(
            "interface.address",
            "",
            "is required: the gateway's tunnel address with prefix length, e.g. 10.10.0.1/24",
        )
    })?;
    let address: IpNet = address_text.parse().map_err(|_| {
        bad(
            "interface.address",
            &address_text,
            "expected an IP address with prefix length, e.g. 10.10.0.1/24",
        )
    })?;
    if address.addr() == address.network() && address.prefix_len() < address.max_prefix_len() {
        return Err(bad(
            "interface.address",
            &address_text,
            "is a network address; give the gateway's own address in it, e.g. 10.10.0.1/24",
        ));
    }
    let mtu = raw.interface.mtu.unwrap_or(1420);
    let mtu_min = if address.addr().is_ipv6() { 1280 } else { 576 };
    let mtu = u32::try_from(mtu)
        .ok()
        .filter(|m| (mtu_min..=65535).contains(m))
        .ok_or_else(|| {
            bad(
                "interface.mtu",
                mtu,
                &format!("expected {mtu_min} to 65535"),
            )
        })?;
    let backend = match raw.interface.backend.as_deref().unwrap_or("userspace") {
        "userspace" => Backend::Userspace,
        "kernel" => Backend::Kernel,
        "native" => Backend::Userspace,
        other => {
            return Err(bad(
                "interface.backend",
                other,
                "expected \"userspace\", \"kernel\" or \"native\"",
            ));
        }
    };

    let cluster_name = raw.cluster.name.ok_or_else(|| {
        bad(
            "cluster.name",
            "",
            "is required: this cluster's name, a DNS label",
        )
    })?;
    if !is_dns_label(&cluster_name) {
        return Err(bad(
            "cluster.name",
            &cluster_name,
            "expected a DNS label (1 to 63 lowercase letters, digits and '-')",
        ));
    }

    let mut raw_key = raw.key;
    let rotation = rotation::validate(rotation::RawRotation {
        max_age: raw_key.rotation_max_age.take(),
        lead: raw_key.rotation_lead.take(),
        window: raw_key.rotation_window.take(),
        jitter: raw_key.rotation_jitter.take(),
        announce_timeout: raw_key.rotation_announce_timeout.take(),
        verify_deadline: raw_key.rotation_verify_deadline.take(),
    })?;
    let key = key::validate(raw_key)?;
    let mut raw_peers = raw.peers;
    let peer_state = non_empty_path(
        "peers.state_path",
        raw_peers.state_path.take(),
        "/var/lib/zt-gateway/peer-rotations.json",
    )?;
    let peers = peers::validate(raw_peers)?;

    let http = http::validate(raw.http)?;
    let control = control::validate(raw.control)?;
    let audit = raw
        .audit
        .map(|a| audit::validate(a, matches!(key, KeyConfig::Kms(_))))
        .transpose()?;

    Ok(Config {
        interface: InterfaceSettings {
            name,
            listen_port,
            address,
            mtu,
        },
        backend,
        cluster_name,
        trust_domain: raw.cluster.trust_domain,
        key,
        rotation,
        peers,
        peer_state,
        http,
        control,
        audit,
        liveness: Liveness::default(),
    })
}

fn non_empty_path(key: &str, value: Option<String>, default: &str) -> Result<PathBuf, ConfigError> {
    let value = value.unwrap_or_else(|| default.to_owned());
    if value.trim().is_empty() {
        return Err(bad(key, &value, "expected a path"));
    }
    Ok(PathBuf::from(value))
}

impl Config {
    /// Returns the gateway's own tunnel address.
    pub fn tunnel_address(&self) -> IpAddr {
        self.interface.address.addr()
    }
}

#[cfg(test)]
mod tests;
