//! `gateway.toml`: the configuration file our gateway is started with.

use std::path::PathBuf;

/// The contents of `gateway.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// `[interface].name`.
    pub iface: String,
    /// `[interface].listen_port`.
    pub listen_port: u16,
    /// `[interface].address`, e.g. `10.10.0.1/24`.
    pub address: String,
    /// `[interface].mtu`.
    pub mtu: u32,
    /// `[interface].backend`.
    pub backend: String,
    /// `[cluster].name`.
    pub cluster: String,
    /// `[key].path` (source `file`).
    pub key_path: PathBuf,
    /// `[peers].path` (source `directory`).
    pub peers_path: PathBuf,
    /// `[http].listen`.
    pub http_listen: String,
    /// `[http].admin_socket`.
    pub admin_socket: PathBuf,
    /// The whole `[key]` section body, replacing the `file` source (e.g. a `kms` source).
    pub key_toml: Option<String>,
    /// `[http].admin_listen`, omitted when `None`.
    pub admin_listen: Option<String>,
    /// `[http].admin_token_file`, omitted when `None`.
    pub admin_token_file: Option<PathBuf>,
    /// The whole `[peers]` section body, replacing the `directory` source (e.g. a
    /// `kubernetes` source).
    pub peers_toml: Option<String>,
    /// The whole `[audit]` section body; no section (audit log off) when `None`.
    pub audit_toml: Option<String>,
    /// Whether `[peers] state_path` is written beside the key (default); builds from before
    /// peer rotation states refuse the field.
    pub peer_state_path: bool,
}

impl GatewayConfig {
    /// Renders the config file.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "[interface]\n\
             name = {iface}\n\
             listen_port = {port}\n\
             address = {address}\n\
             mtu = {mtu}\n\
             backend = {backend}\n\
             \n\
             [cluster]\n\
             name = {cluster}\n\
             \n\
             [key]\n\
             {key}\n\
             \n\
             [peers]\n\
             {peers}\n\
             \n\
             [http]\n\
             listen = {listen}\n\
             admin_socket = {admin}\n",
            iface = quote(&self.iface),
            port = self.listen_port,
            address = quote(&self.address),
            mtu = self.mtu,
            backend = quote(&self.backend),
            cluster = quote(&self.cluster),
            key = self.key_toml.clone().unwrap_or_else(|| format!(
                "source = \"file\"\npath = {}",
                quote(&self.key_path.to_string_lossy())
            )),
            peers = {
                let mut peers = self.peers_toml.clone().unwrap_or_else(|| {
                    format!(
                        "source = \"directory\"\npath = {}",
                        quote(&self.peers_path.to_string_lossy())
                    )
                });
                if self.peer_state_path && !peers.contains("state_path") {
                    let state = self.key_path.with_file_name("peer-rotations.json");
                    peers.push_str(&format!(
                        "\nstate_path = {}",
                        quote(&state.to_string_lossy())
                    ));
                }
                peers
            },
            listen = quote(&self.http_listen),
            admin = quote(&self.admin_socket.to_string_lossy()),
        );
        if let Some(listen) = &self.admin_listen {
            text.push_str(&format!("admin_listen = {}\n", quote(listen)));
        }
        if let Some(path) = &self.admin_token_file {
            text.push_str(&format!(
                "admin_token_file = {}\n",
                quote(&path.to_string_lossy())
            ));
        }
        if let Some(audit) = &self.audit_toml {
            text.push_str(&format!("\n[audit]\n{audit}\n"));
        }
        text
    }
}

/// Quotes a TOML basic string; JSON escapes are valid TOML escapes for these values.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
