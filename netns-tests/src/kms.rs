//! The test KMS (`fake-kms`, a stand-in that follows the Infisical API) running as a process
//! inside a namespace, with the credential and key-encryption-key files a gateway needs.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use kms_client::PrivateKey;
use tempfile::TempDir;

use crate::binary::workspace_bin;
use crate::netns::Netns;
use crate::process::Proc;
use crate::wait::eventually;

/// Project, environment, path and name under which the fake holds the gateway key.
pub const PROJECT: &str = "zt";
const ENVIRONMENT: &str = "prod";
const SECRET_PATH: &str = "/zt-gateway";
const SECRET_NAME: &str = "wg-private-key";

/// A running fake KMS and the files that let a gateway use it.
#[derive(Debug)]
pub struct TestKms {
    proc: Option<Proc>,
    dir: TempDir,
    /// Base URL inside the namespace, `http://127.0.0.1:<port>`.
    pub url: String,
    /// The machine identity's client secret (tests check it never leaks).
    pub client_secret: String,
    /// More secrets the fake holds, `(name, value)`, under the same project, environment and
    /// path as the gateway key.
    extra_secrets: Vec<(String, String)>,
}

impl TestKms {
    /// Starts the fake on `127.0.0.1:port` in `ns`, holding `key` as the gateway's secret.
    ///
    /// # Errors
    /// Fails when the binary is missing or the fake does not come up.
    pub fn start(ns: &Netns, key: &PrivateKey, port: u16) -> Result<Self> {
        Self::start_with(ns, key, port, &[])
    }

    /// Starts the fake as [`TestKms::start`] does, also holding each `(name, value)` of
    /// `extra` next to the gateway key (e.g. the audit key).
    ///
    /// # Errors
    /// Fails when the binary is missing or the fake does not come up.
    pub fn start_with(
        ns: &Netns,
        key: &PrivateKey,
        port: u16,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ztgw-kms-")
            .tempdir()
            .context("failed to create the KMS credentials directory")?;
        let client_secret = PrivateKey::generate()
            .context("random")?
            .to_base64()
            .to_string();
        write_private(&dir.path().join("client-id"), "gateway-identity")?;
        write_private(&dir.path().join("client-secret"), &client_secret)?;
        let kek = PrivateKey::generate().context("random")?;
        write_private(&dir.path().join("kek"), &kek.to_base64())?;
        let url = format!("http://127.0.0.1:{port}");
        let mut kms = Self {
            proc: None,
            dir,
            url,
            client_secret,
            extra_secrets: extra
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        };
        kms.restart(ns, key)?;
        Ok(kms)
    }

    /// Starts the fake again (after [`TestKms::stop`]) with the same credentials.
    ///
    /// # Errors
    /// Fails when the fake does not come up.
    pub fn restart(&mut self, ns: &Netns, key: &PrivateKey) -> Result<()> {
        let bin = workspace_bin("fake-kms", "ZTGW_FAKE_KMS_BIN")?;
        let listen = self.url.trim_start_matches("http://").to_owned();
        let secret = format!(
            "{PROJECT}/{ENVIRONMENT}/{}/{SECRET_NAME}={}",
            SECRET_PATH.trim_start_matches('/'),
            key.to_base64().as_str()
        );
        let bin = bin.to_string_lossy();
        let mut argv: Vec<String> = [
            bin.as_ref(),
            "--listen",
            &listen,
            "--client-id",
            "gateway-identity",
            "--client-secret",
            &self.client_secret,
            "--secret",
            &secret,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (name, value) in &self.extra_secrets {
            argv.push("--secret".to_owned());
            argv.push(format!(
                "{PROJECT}/{ENVIRONMENT}/{}/{name}={value}",
                SECRET_PATH.trim_start_matches('/')
            ));
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let proc = ns.spawn(&argv, &[])?;
        eventually(Duration::from_secs(5), || {
            ensure!(
                proc.stdout().contains("listening on"),
                "fake KMS not up yet"
            );
            Ok(())
        })?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Stops the fake (the KMS becomes unreachable).
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Returns the directory with the credential files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the key-encryption-key file for the survival cache.
    pub fn kek_file(&self) -> PathBuf {
        self.dir.path().join("kek")
    }

    /// Returns a `[key]` section for a gateway using this KMS; `cache` enables the survival
    /// cache at that path.
    pub fn key_toml(&self, deadline: &str, cache: Option<&Path>) -> String {
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let mut toml = format!(
            "source = \"kms\"\nbackend = \"infisical\"\nurl = {url}\nproject_id = {PROJECT:?}\nenvironment = {ENVIRONMENT:?}\nsecret_path = {SECRET_PATH:?}\nsecret_name = {SECRET_NAME:?}\nclient_id_file = {id}\nclient_secret_file = {secret}\ndeadline = {deadline}\nrequest_timeout = \"1s\"",
            url = quote(&self.url),
            id = quote(&self.dir.path().join("client-id").to_string_lossy()),
            secret = quote(&self.dir.path().join("client-secret").to_string_lossy()),
            deadline = quote(deadline),
        );
        if let Some(cache) = cache {
            toml.push_str(&format!(
                "\ncache_path = {}\ncache_kek_file = {}",
                quote(&cache.to_string_lossy()),
                quote(&self.kek_file().to_string_lossy())
            ));
        }
        toml
    }
}

fn write_private(path: &Path, value: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    writeln!(file, "{value}").with_context(|| format!("failed to write {}", path.display()))
}
