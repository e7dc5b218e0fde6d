//! A real Kubernetes API server for the tests: `etcd` and `kube-apiserver` (built from source
//! by `scripts/go-tools.sh`) started inside a namespace, on that namespace's address only, with
//! a static token for the test's administrator, the RBAC authorizer, and a service-account
//! signing key made for the run. The gateway talks to it as the ServiceAccount of
//! `manifests/base`, bound to the shipped Role, with a token from the TokenRequest API.
//!
//! Everything is driven through `kubectl`, as an operator would.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_client::PrivateKey;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::apiserver::{NAMESPACE, peers_toml};
use crate::netns::Netns;
use crate::peer::PeerSpec;
use crate::process::Proc;
use crate::wait::eventually;

/// How long etcd and kube-apiserver get to come up (a shared, loaded machine is slow).
pub const KUBE_START_TIMEOUT: Duration = Duration::from_secs(120);

/// The port kube-apiserver listens on.
pub const KUBE_PORT: u16 = 6443;

/// The CRD the gateway reads, as generated.
pub const CRD_NAME: &str = "wireguardpeers.zt.hanzo.ai";

/// The test tools a real API server needs, from `scripts/go-tools.sh`.
#[derive(Debug, Clone)]
pub struct KubeTools {
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
}

/// Returns the workspace's directory (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Finds a tool built by `scripts/go-tools.sh`: in `$ZTGW_GO_TOOLS_BIN`, else in the
/// workspace's `target/go-tools/bin/`, else on the `PATH`.
pub fn go_tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("ZTGW_GO_TOOLS_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_dir().join("target/go-tools/bin")])
        .chain(
            std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
    for dir in dirs {
        let path = dir.join(name);
        if path.is_file() {
            return Some(path);
        }
    }
    None
}

/// Returns the tools, or says which are missing and how to build them.
///
/// # Errors
/// When any of `etcd`, `kube-apiserver`, `kubectl` is not found, or `openssl` (which makes
/// the service-account signing key) is not on the `PATH`.
pub fn kube_tools() -> Result<KubeTools> {
    ensure!(
        crate::has_tool("openssl"),
        "openssl is not installed (it makes the API server's service-account signing key)"
    );
    let find = |name: &str| {
        go_tool(name).with_context(|| {
            format!("{name} is not built (scripts/go-tools.sh builds it into target/go-tools/bin)")
        })
    };
    Ok(KubeTools {
        etcd: find("etcd")?,
        apiserver: find("kube-apiserver")?,
        kubectl: find("kubectl")?,
    })
}

/// Skips the calling test unless `etcd`, `kube-apiserver` and `kubectl` are built (and
/// `openssl` is installed); fails
/// instead when `ZTGW_NETNS_TESTS=required` (CI builds them), so a skip there is a failure.
#[macro_export]
macro_rules! require_kube {
    () => {
        if let Err(error) = $crate::kube_tools() {
            if std::env::var_os("ZTGW_NETNS_TESTS").is_some_and(|v| v == "required") {
                panic!("ZTGW_NETNS_TESTS=required but {error:#}");
            }
            eprintln!("skipping {}: {error:#}", module_path!());
            return;
        }
    };
}

/// etcd and kube-apiserver running in a namespace, and an administrator's kubeconfig.
#[derive(Debug)]
pub struct RealApiServer<'n> {
    ns: &'n Netns,
    tools: KubeTools,
    // Dropped in this order: the API server, then etcd, then their files.
    apiserver: Proc,
    etcd: Proc,
    dir: TempDir,
    /// `IP:port` the API server listens on (HTTPS).
    pub listen: String,
}

impl<'n> RealApiServer<'n> {
    /// Starts etcd (on the namespace's loopback) and kube-apiserver on `ip:6443` in `ns`, and
    /// waits until the API server is ready.
    ///
    /// # Errors
    /// Fails when a tool is missing, a key cannot be made, or the servers do not come up
    /// within [`KUBE_START_TIMEOUT`] (with the end of their logs).
    pub fn start(ns: &'n Netns, ip: Ipv4Addr) -> Result<Self> {
        let tools = kube_tools()?;
        let dir = tempfile::Builder::new()
            .prefix("ztgw-kube-")
            .tempdir()
            .context("failed to create the API server's directory")?;
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

        let etcd = ns.spawn(
            &[
                &tools.etcd.to_string_lossy(),
                "--name=default",
                &format!("--data-dir={}", path("etcd")),
                "--listen-client-urls=http://127.0.0.1:2379",
                "--advertise-client-urls=http://127.0.0.1:2379",
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=default=http://127.0.0.1:2380",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            &[],
        )?;

        // The service-account signing key, made for this run only.
        let key = path("sa.key");
        run_host(&[
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key,
        ])?;
        let admin_token = random_token()?;
        write_private(
            &dir.path().join("tokens.csv"),
            &format!("{admin_token},ztgw-admin,ztgw-admin,\"system:masters\"\n"),
        )?;

        let listen = format!("{ip}:{KUBE_PORT}");
        let apiserver = ns.spawn(
            &[
                &tools.apiserver.to_string_lossy(),
                "--etcd-servers=http://127.0.0.1:2379",
                &format!("--bind-address={ip}"),
                &format!("--advertise-address={ip}"),
                &format!("--secure-port={KUBE_PORT}"),
                &format!("--cert-dir={}", path("certs")),
                &format!("--token-auth-file={}", path("tokens.csv")),
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={key}"),
                &format!("--service-account-signing-key-file={key}"),
                "--service-cluster-ip-range=172.31.255.0/24",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
            &[],
        )?;
        let server = Self {
            ns,
            tools,
            apiserver,
            etcd,
            dir,
            listen,
        };
        server.write_kubeconfig("admin.kubeconfig", &admin_token)?;
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<()> {
        let outcome = eventually(KUBE_START_TIMEOUT, || {
            let ready =
                self.exec_kubectl(&self.admin_kubeconfig(), &["get", "--raw", "/readyz"])?;
            if ready.status.success() {
                return Ok(Ok(()));
            }
            if exited(&self.apiserver) || exited(&self.etcd) {
                return Ok(Err(anyhow::anyhow!("a server exited")));
            }
            bail!("kube-apiserver not ready yet")
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) | Err(error) => Err(error.context(format!(
                "the API server did not come up\nkube-apiserver: {}\netcd: {}",
                tail(&self.apiserver.stderr(), 30),
                tail(&self.etcd.stderr(), 15)
            ))),
        }
    }

    /// Returns the administrator's kubeconfig (group `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// Returns the CA bundle that verifies the API server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("certs/apiserver.crt")
    }

    /// Returns the namespace the servers run in.
    pub fn netns(&self) -> &Netns {
        self.ns
    }

    fn write_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(name);
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{listen}\n    certificate-authority: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: {NAMESPACE}\ncurrent-context: test\n",
            listen = self.listen,
            ca = self.ca_file().display(),
        );
        write_private(&path, &text)?;
        Ok(path)
    }

    fn exec_kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Result<Output> {
        let kubectl = self.tools.kubectl.to_string_lossy();
        let flag = format!("--kubeconfig={}", kubeconfig.display());
        let mut argv = vec![kubectl.as_ref(), flag.as_str(), "--request-timeout=20s"];
        argv.extend_from_slice(args);
        self.ns.exec(&argv)
    }

    /// Runs `kubectl` as the administrator and returns its output, whatever its exit status.
    ///
    /// # Errors
    /// Fails only when `kubectl` cannot be started.
    pub fn kubectl_output(&self, args: &[&str]) -> Result<Output> {
        self.exec_kubectl(&self.admin_kubeconfig(), args)
    }

    /// Runs `kubectl` as the administrator and returns its stdout.
    ///
    /// # Errors
    /// Fails when it exits non-zero, with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let output = self.kubectl_output(args)?;
        if !output.status.success() {
            bail!(
                "kubectl {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Applies the generated CRD and waits until it is established.
    ///
    /// # Errors
    /// Fails when the API server refuses it or it is not established in time.
    pub fn apply_crd(&self) -> Result<()> {
        let crd = workspace_dir().join("manifests/crds/wireguardpeers.zt.hanzo.ai.yaml");
        self.kubectl(&["apply", "--server-side", "-f", &crd.to_string_lossy()])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{CRD_NAME}"),
            "--timeout=60s",
        ])?;
        Ok(())
    }

    /// Installs what `manifests/base` gives the gateway: the CRD, the namespace, the
    /// ServiceAccount, the Role and its RoleBinding. The Role is the shipped one with only
    /// its Lease `resourceNames` entry (`zt-gateway-wg0`) naming this test's interface
    /// instead, as an overlay for another interface would.
    ///
    /// # Errors
    /// Fails when a manifest is refused or the Role no longer names `zt-gateway-wg0`.
    pub fn install_gateway_rbac(&self, iface: &str) -> Result<()> {
        self.apply_crd()?;
        let base = workspace_dir().join("manifests/base");
        let file = |name: &str| base.join(name).to_string_lossy().into_owned();
        self.kubectl(&["apply", "-f", &file("namespace.yaml")])?;
        let role = std::fs::read_to_string(base.join("role.yaml")).context("role.yaml")?;
        ensure!(
            role.matches("\"zt-gateway-wg0\"").count() == 1,
            "manifests/base/role.yaml no longer names the lease zt-gateway-wg0 once"
        );
        let role = role.replace("\"zt-gateway-wg0\"", &format!("\"zt-gateway-{iface}\""));
        let role_path = self.dir.path().join("role.yaml");
        std::fs::write(&role_path, role).context("failed to write the Role")?;
        self.kubectl(&[
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            &file("serviceaccount.yaml"),
            "-f",
            &role_path.to_string_lossy(),
            "-f",
            &file("rolebinding.yaml"),
        ])?;
        Ok(())
    }

    /// Returns a kubeconfig for the gateway's ServiceAccount (`zt-system/zt-gateway`), with a
    /// one-hour token from the TokenRequest API.
    ///
    /// # Errors
    /// Fails when the token cannot be created.
    pub fn gateway_kubeconfig(&self) -> Result<PathBuf> {
        let token = self.kubectl(&[
            "create",
            "token",
            "zt-gateway",
            "-n",
            NAMESPACE,
            "--duration=1h",
        ])?;
        self.write_kubeconfig("gateway.kubeconfig", token.trim())
    }

    /// Returns a `[peers]` section body that reads peers from this server as the gateway's
    /// ServiceAccount.
    ///
    /// # Errors
    /// Fails when the token cannot be created.
    pub fn gateway_peers_toml(&self) -> Result<String> {
        Ok(peers_toml(&self.gateway_kubeconfig()?))
    }

    /// Applies `object` (JSON) as the administrator.
    ///
    /// # Errors
    /// Fails when the API server refuses it.
    pub fn apply(&self, name: &str, object: &Value) -> Result<()> {
        let path = self.dir.path().join(format!("{name}.json"));
        write_private(&path, &object.to_string())?;
        let result = self.kubectl(&["apply", "-f", &path.to_string_lossy()]);
        std::fs::remove_file(&path).context("failed to remove the applied file")?;
        result.map(drop)
    }

    /// Creates or replaces the `WireGuardPeer` `spec.name`, optionally with a preshared key
    /// from key `psk` of Secret `psk_secret`.
    ///
    /// # Errors
    /// Fails when the API server refuses it.
    pub fn put_peer(&self, spec: &PeerSpec, psk_secret: Option<&str>) -> Result<()> {
        let mut object = json!({
            "apiVersion": "zt.hanzo.ai/v1alpha1",
            "kind": "WireGuardPeer",
            "metadata": {"name": spec.name, "namespace": NAMESPACE},
            "spec": {
                "cluster": spec.cluster,
                "publicKey": spec.public_key,
                "allowedIPs": spec.allowed_ips,
            }
        });
        if let Some(endpoint) = &spec.endpoint {
            object["spec"]["endpoint"] = json!(endpoint);
        }
        if let Some(keepalive) = spec.persistent_keepalive {
            object["spec"]["persistentKeepalive"] = json!(keepalive);
        }
        if let Some(secret) = psk_secret {
            object["spec"]["presharedKeySecretRef"] = json!({"name": secret, "key": "psk"});
        }
        self.apply(&format!("peer-{}", spec.name), &object)
    }

    /// Creates or replaces Secret `name` with `value` under key `psk`, labelled as a
    /// preshared-key Secret. The value passes through a private file that is removed at once.
    ///
    /// # Errors
    /// Fails when the API server refuses it.
    pub fn put_secret(&self, name: &str, value: &str) -> Result<()> {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "labels": {"zt.hanzo.ai/preshared-key": "true"},
            },
            "type": "Opaque",
            "data": {"psk": STANDARD.encode(value)},
        });
        self.apply(&format!("secret-{name}"), &object)
    }

    /// Returns the object `kind/name` of the test namespace as stored (managed fields included).
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn get(&self, kind: &str, name: &str) -> Result<Value> {
        let text = self.kubectl(&[
            "get",
            "-n",
            NAMESPACE,
            kind,
            name,
            "-o",
            "json",
            "--show-managed-fields",
        ])?;
        serde_json::from_str(&text).with_context(|| format!("kubectl get {kind}: not JSON"))
    }

    /// Returns the `WireGuardPeer` `name` as stored (status included).
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn peer(&self, name: &str) -> Result<Value> {
        self.get("wireguardpeers", name)
    }

    /// Deletes the `WireGuardPeer` `name`.
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn delete_peer(&self, name: &str) -> Result<()> {
        self.kubectl(&["delete", "-n", NAMESPACE, "wireguardpeers", name])
            .map(drop)
    }

    /// Returns the Lease `name` as stored.
    ///
    /// # Errors
    /// Fails when it does not exist.
    pub fn lease(&self, name: &str) -> Result<Value> {
        self.get("leases", name)
    }

    /// Returns the API server's log so far.
    pub fn log(&self) -> String {
        self.apiserver.stderr()
    }
}

fn exited(proc: &Proc) -> bool {
    // The `ip netns exec` wrapper's pid is the server's (exec): it is gone once the server
    // exits.
    !Path::new(&format!("/proc/{}", proc.pid())).exists()
        || std::fs::read_to_string(format!("/proc/{}/stat", proc.pid()))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn random_token() -> Result<String> {
    Ok(PrivateKey::generate()
        .context("random")?
        .to_base64()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

fn run_host(argv: &[&str]) -> Result<()> {
    let (program, args) = argv.split_first().context("empty command")?;
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !output.status.success() {
        bail!(
            "{argv:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
