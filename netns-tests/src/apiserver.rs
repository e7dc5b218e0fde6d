//! The test Kubernetes API server (`fake-apiserver`, a stand-in that follows the API for what
//! the gateway uses) running as a process inside a namespace, with a kubeconfig that points a
//! gateway at it and helpers to create peers and Secrets and read status and leases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::binary::workspace_bin;
use crate::http::http_request;
use crate::netns::Netns;
use crate::peer::PeerSpec;
use crate::process::Proc;
use crate::wait::eventually;

/// The namespace the tests keep their resources in.
pub const NAMESPACE: &str = "zt-system";

/// A running fake API server and a kubeconfig for it.
#[derive(Debug)]
pub struct TestApiServer<'n> {
    ns: &'n Netns,
    _proc: Proc,
    dir: TempDir,
    /// `IP:port` it listens on, reachable from `ns` (and, for an underlay address, from the
    /// other gateways' namespaces).
    pub listen: String,
}

impl<'n> TestApiServer<'n> {
    /// Starts the fake on `listen` (e.g. `127.0.0.1:6443`) in `ns`, requiring a random bearer
    /// token that only its kubeconfig carries.
    ///
    /// # Errors
    /// Fails when the binary is missing or the fake does not come up.
    pub fn start(ns: &'n Netns, listen: &str) -> Result<Self> {
        let bin = workspace_bin("fake-apiserver", "ZTGW_FAKE_APISERVER_BIN")?;
        let dir = tempfile::Builder::new()
            .prefix("ztgw-apiserver-")
            .tempdir()
            .context("failed to create the kubeconfig directory")?;
        let token = PrivateKey::generate()
            .context("random")?
            .to_base64()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>();
        let proc = ns.spawn(
            &[
                &bin.to_string_lossy(),
                "--listen",
                listen,
                "--token",
                &token,
                "--bookmark-interval",
                "2",
            ],
            &[],
        )?;
        eventually(Duration::from_secs(5), || {
            ensure!(
                proc.stdout().contains("listening on"),
                "fake API server not up yet: {}",
                proc.stderr()
            );
            Ok(())
        })?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{listen}\nusers:\n- name: gateway\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gateway\n    namespace: {NAMESPACE}\ncurrent-context: fake\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig)
            .context("failed to write the kubeconfig")?;
        Ok(Self {
            ns,
            _proc: proc,
            dir,
            listen: listen.to_owned(),
        })
    }

    /// Returns the kubeconfig file for gateways.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Returns a `[peers]` section body that reads peers from this server.
    pub fn peers_toml(&self) -> String {
        peers_toml(&self.kubeconfig())
    }

    /// Creates or replaces the `WireGuardPeer` `spec.name`, optionally with a preshared key
    /// from key `psk` of Secret `psk_secret`.
    ///
    /// # Errors
    /// Fails when the fake refuses.
    pub fn put_peer(&self, spec: &PeerSpec, psk_secret: Option<&str>) -> Result<Value> {
        let mut body = json!({
            "spec": {
                "cluster": spec.cluster,
                "publicKey": spec.public_key,
                "allowedIPs": spec.allowed_ips,
            }
        });
        if let Some(endpoint) = &spec.endpoint {
            body["spec"]["endpoint"] = json!(endpoint);
        }
        if let Some(keepalive) = spec.persistent_keepalive {
            body["spec"]["persistentKeepalive"] = json!(keepalive);
        }
        if let Some(secret) = psk_secret {
            body["spec"]["presharedKeySecretRef"] = json!({"name": secret, "key": "psk"});
        }
        self.control(
            "PUT",
            &object_path("wireguardpeers", &spec.name),
            Some(&body),
        )
    }

    /// Deletes the `WireGuardPeer` `name`.
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn delete_peer(&self, name: &str) -> Result<()> {
        self.control("DELETE", &object_path("wireguardpeers", name), None)
            .map(drop)
    }

    /// Creates or replaces Secret `name` with `value` under key `psk`, labelled as a
    /// preshared-key Secret (`zt.hanzo.ai/preshared-key: "true"`).
    ///
    /// # Errors
    /// Fails when the fake refuses.
    pub fn put_secret(&self, name: &str, value: &str) -> Result<()> {
        let body = json!({
            "metadata": {"labels": {"zt.hanzo.ai/preshared-key": "true"}},
            "type": "Opaque",
            "data": {"psk": STANDARD.encode(value)},
        });
        self.control("PUT", &object_path("secrets", name), Some(&body))
            .map(drop)
    }

    /// Returns the `WireGuardPeer` `name` as stored (status included).
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn peer(&self, name: &str) -> Result<Value> {
        self.control("GET", &object_path("wireguardpeers", name), None)
    }

    /// Returns the Lease `name` as stored.
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn lease(&self, name: &str) -> Result<Value> {
        self.control("GET", &object_path("leases", name), None)
    }

    /// Returns the fake's request counters.
    ///
    /// # Errors
    /// Fails when the fake does not answer.
    pub fn stats(&self) -> Result<Value> {
        self.control("GET", "/_fake/stats", None)
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let text = body.map(Value::to_string);
        let (code, answer) = http_request(self.ns, &self.listen, method, path, text.as_deref())?;
        if !(200..300).contains(&code) {
            bail!("{method} {path} answered {code}: {answer}");
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("{method} {path}: not JSON: {answer}"))
    }
}

/// Returns a `[peers]` section body for the Kubernetes source with this kubeconfig.
pub fn peers_toml(kubeconfig: &Path) -> String {
    format!(
        "source = \"kubernetes\"\nnamespace = {}\nkubeconfig = {}",
        serde_json::Value::from(NAMESPACE),
        serde_json::Value::from(kubeconfig.to_string_lossy().as_ref())
    )
}

/// Returns the condition `kind` (`Ready`, `Connected`) of a stored peer as (status, reason).
pub fn condition(peer: &Value, kind: &str) -> Option<(String, String)> {
    let found = peer["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?;
    Some((
        found["status"].as_str()?.to_owned(),
        found["reason"].as_str()?.to_owned(),
    ))
}

fn object_path(plural: &str, name: &str) -> String {
    format!("/_fake/objects/{plural}/{NAMESPACE}/{name}")
}
