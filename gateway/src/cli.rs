//! The `gateway` command line. Every configuration key can be overridden by a flag or a
//! `ZTGW_*` environment variable (secrets excepted: they come from files or the KMS).
//! This is the only module that reads the environment.

use std::path::PathBuf;

use clap::Parser;

/// ZT Gateway: joins Kubernetes clusters with WireGuard.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(
        long,
        env = "ZTGW_CONFIG",
        default_value = "/etc/zt-gateway/gateway.toml"
    )]
    pub config: PathBuf,

    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing directive list).
    #[arg(long, env = "ZTGW_LOG", default_value = "info")]
    pub log: String,

    /// Overrides of configuration keys.
    #[command(flatten)]
    pub overrides: Overrides,

    /// For integration tests only (hidden): a peer also needs traffic from it within this
    /// many seconds to count as connected. See docs/metrics.md.
    #[arg(long, env = "ZTGW_TEST_PEER_RECEIVE_WINDOW", hide = true)]
    pub test_peer_receive_window: Option<u64>,

    /// For integration tests only (hidden): a key rotation that enters this phase
    /// (`announcing`, `committing`, `verifying`, `rolling_back`) stops there, so a test can
    /// kill the gateway at that boundary. See docs/rotation.md.
    #[arg(long, env = "ZTGW_TEST_ROTATION_HOLD", hide = true)]
    pub test_rotation_hold: Option<String>,
}

/// Flags that override keys of the configuration file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Overrides `interface.name`.
    #[arg(long, env = "ZTGW_INTERFACE_NAME")]
    pub interface_name: Option<String>,
    /// Overrides `interface.listen_port`.
    #[arg(long, env = "ZTGW_INTERFACE_LISTEN_PORT")]
    pub interface_listen_port: Option<String>,
    /// Overrides `interface.address`.
    #[arg(long, env = "ZTGW_INTERFACE_ADDRESS")]
    pub interface_address: Option<String>,
    /// Overrides `interface.mtu`.
    #[arg(long, env = "ZTGW_INTERFACE_MTU")]
    pub interface_mtu: Option<String>,
    /// Overrides `interface.backend` (`userspace`, `kernel` or `native`).
    #[arg(long, env = "ZTGW_INTERFACE_BACKEND")]
    pub interface_backend: Option<String>,
    /// Overrides `cluster.name`.
    #[arg(long, env = "ZTGW_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Overrides `key.path` (the file key source).
    #[arg(long, env = "ZTGW_KEY_PATH")]
    pub key_path: Option<String>,
    /// Overrides `peers.source` (`directory` or `kubernetes`).
    #[arg(long, env = "ZTGW_PEERS_SOURCE")]
    pub peers_source: Option<String>,
    /// Overrides `peers.path` (the directory peer source).
    #[arg(long, env = "ZTGW_PEERS_PATH")]
    pub peers_path: Option<String>,
    /// Overrides `peers.namespace` (the Kubernetes peer source).
    #[arg(long, env = "ZTGW_PEERS_NAMESPACE")]
    pub peers_namespace: Option<String>,
    /// Overrides `peers.kubeconfig` (the Kubernetes peer source).
    #[arg(long, env = "ZTGW_PEERS_KUBECONFIG")]
    pub peers_kubeconfig: Option<String>,
    /// Overrides `http.listen`.
    #[arg(long, env = "ZTGW_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Overrides `http.admin_socket`.
    #[arg(long, env = "ZTGW_HTTP_ADMIN_SOCKET")]
    pub http_admin_socket: Option<String>,
    /// Overrides `http.admin_listen` (admin API over TCP; needs a token file).
    #[arg(long, env = "ZTGW_HTTP_ADMIN_LISTEN")]
    pub http_admin_listen: Option<String>,
    /// Overrides `http.admin_token_file` (the bearer token for `http.admin_listen`).
    #[arg(long, env = "ZTGW_HTTP_ADMIN_TOKEN_FILE")]
    pub http_admin_token_file: Option<String>,
    /// Overrides `control.port` (the control channel's TCP port on the tunnel address).
    #[arg(long, env = "ZTGW_CONTROL_PORT")]
    pub control_port: Option<String>,
    /// Overrides `control.hello_interval` (e.g. `30s`).
    #[arg(long, env = "ZTGW_CONTROL_HELLO_INTERVAL")]
    pub control_hello_interval: Option<String>,
    /// Overrides `audit.path` (and turns the audit log on).
    #[arg(long, env = "ZTGW_AUDIT_PATH")]
    pub audit_path: Option<String>,
    /// Overrides `audit.key_path` (and turns the audit log on).
    #[arg(long, env = "ZTGW_AUDIT_KEY_PATH")]
    pub audit_key_path: Option<String>,
}

impl Overrides {
    /// Returns each override as a (`section.key`, value) pair.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("interface.name", &self.interface_name),
            ("interface.listen_port", &self.interface_listen_port),
            ("interface.address", &self.interface_address),
            ("interface.mtu", &self.interface_mtu),
            ("interface.backend", &self.interface_backend),
            ("cluster.name", &self.cluster_name),
            ("key.path", &self.key_path),
            ("peers.source", &self.peers_source),
            ("peers.path", &self.peers_path),
            ("peers.namespace", &self.peers_namespace),
            ("peers.kubeconfig", &self.peers_kubeconfig),
            ("http.listen", &self.http_listen),
            ("http.admin_socket", &self.http_admin_socket),
            ("http.admin_listen", &self.http_admin_listen),
            ("http.admin_token_file", &self.http_admin_token_file),
            ("control.port", &self.control_port),
            ("control.hello_interval", &self.control_hello_interval),
            ("audit.path", &self.audit_path),
            ("audit.key_path", &self.audit_key_path),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| (key, v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
