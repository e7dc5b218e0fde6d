//! `WireGuardPeer` documents as the gateway reads them from its peers directory.

use std::fmt::Write as _;

/// One remote cluster as a gateway's peer file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// `metadata.name`.
    pub name: String,
    /// `spec.cluster`, the label used in metrics.
    pub cluster: String,
    /// `spec.publicKey`, base64.
    pub public_key: String,
    /// `spec.endpoint`, `host:port`.
    pub endpoint: Option<String>,
    /// `spec.allowedIPs`, CIDRs.
    pub allowed_ips: Vec<String>,
    /// `spec.persistentKeepalive`, seconds; omitted when `None`.
    pub persistent_keepalive: Option<u16>,
}

impl PeerSpec {
    /// Renders the spec as one YAML document (without a `---` separator).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "apiVersion: zt.hanzo.ai/v1alpha1");
        let _ = writeln!(out, "kind: WireGuardPeer");
        let _ = writeln!(out, "metadata:");
        let _ = writeln!(out, "  name: {}", quote(&self.name));
        let _ = writeln!(out, "spec:");
        let _ = writeln!(out, "  cluster: {}", quote(&self.cluster));
        let _ = writeln!(out, "  publicKey: {}", quote(&self.public_key));
        if let Some(endpoint) = &self.endpoint {
            let _ = writeln!(out, "  endpoint: {}", quote(endpoint));
        }
        let ips: Vec<String> = self.allowed_ips.iter().map(|ip| quote(ip)).collect();
        let _ = writeln!(out, "  allowedIPs: [{}]", ips.join(", "));
        if let Some(keepalive) = self.persistent_keepalive {
            let _ = writeln!(out, "  persistentKeepalive: {keepalive}");
        }
        out
    }

    /// Renders several specs as one multi-document YAML file.
    pub fn to_yaml_documents(specs: &[Self]) -> String {
        specs
            .iter()
            .map(|spec| format!("---\n{}", spec.to_yaml()))
            .collect()
    }
}

/// Double-quotes a string; JSON string escapes are valid YAML double-quoted escapes.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
