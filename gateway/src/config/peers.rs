//! The `[peers]` section: a directory of documents, or the Kubernetes API.

use super::{ConfigError, PeersConfig, RawPeers, bad, is_dns_label, non_empty_path};

pub(super) fn validate(raw: RawPeers) -> Result<PeersConfig, ConfigError> {
    match raw.source.as_deref().unwrap_or("directory") {
        "directory" => {
            let kubernetes_only = [
                ("peers.namespace", &raw.namespace),
                ("peers.kubeconfig", &raw.kubeconfig),
            ];
            if let Some((key, Some(value))) = kubernetes_only.into_iter().find(|(_, v)| v.is_some())
            {
                return Err(bad(key, value, "only applies to source = \"kubernetes\""));
            }
            Ok(PeersConfig::Directory {
                path: non_empty_path("peers.path", raw.path, "/etc/zt-gateway/peers")?,
            })
        }
        "kubernetes" => {
            if let Some(path) = &raw.path {
                return Err(bad(
                    "peers.path",
                    path,
                    "only applies to source = \"directory\"; the Kubernetes source takes namespace",
                ));
            }
            if let Some(namespace) = &raw.namespace
                && !is_dns_label(namespace)
            {
                return Err(bad(
                    "peers.namespace",
                    namespace,
                    "expected a namespace name (1 to 63 lowercase letters, digits and '-')",
                ));
            }
            let kubeconfig = match raw.kubeconfig {
                None => None,
                Some(path) => Some(non_empty_path("peers.kubeconfig", Some(path), "")?),
            };
            Ok(PeersConfig::Kubernetes {
                namespace: raw.namespace,
                kubeconfig,
            })
        }
        other => Err(bad(
            "peers.source",
            other,
            "expected \"directory\" or \"kubernetes\"",
        )),
    }
}
