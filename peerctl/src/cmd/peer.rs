//! `peerctl peer add|list|remove`: `WireGuardPeer` resources, printed as YAML or applied to
//! the cluster through the Kubernetes API (kubeconfig or in-cluster credentials).

use anyhow::{Context as _, bail};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use ztgw_model::crd::{SecretKeyRef, WireGuardPeer, WireGuardPeerSpec};
use ztgw_model::validate::{RawPeer, check_fields};

/// `peer` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print a WireGuardPeer for another cluster's gateway (and apply it with --apply).
    Add(AddArgs),
    /// List the WireGuardPeers of the namespace with their status.
    List(ListArgs),
    /// Delete a WireGuardPeer: the gateway removes the peer.
    Remove(RemoveArgs),
}

/// Arguments of `peer add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The peer's cluster name (a DNS label).
    #[arg(long)]
    cluster: String,
    /// The peer gateway's public key (base64, as `peerctl pubkey` prints it).
    #[arg(long)]
    public_key: String,
    /// The peer gateway's `host:port`; omit for a passive peer.
    #[arg(long)]
    endpoint: Option<String>,
    /// Networks routed to the peer: its tunnel address and its pod/service CIDRs.
    #[arg(long, value_delimiter = ',', required = true)]
    allowed_ips: Vec<String>,
    /// Persistent keepalive in seconds (0 turns it off).
    #[arg(long, default_value_t = 25)]
    keepalive: u16,
    /// A Secret holding a preshared key, as NAME:KEY.
    #[arg(long)]
    psk_secret: Option<String>,
    /// The resource's name (default: the cluster name).
    #[arg(long)]
    name: Option<String>,
    /// The gateway's namespace.
    #[arg(long, short, default_value = "zt-system")]
    namespace: String,
    /// Apply the resource (server-side apply) instead of only printing it.
    #[arg(long)]
    apply: bool,
}

/// Arguments of `peer list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The gateway's namespace.
    #[arg(long, short, default_value = "zt-system")]
    namespace: String,
    /// `table` or `json`.
    #[arg(long, short, default_value = "table", value_parser = ["table", "json"])]
    output: String,
}

/// Arguments of `peer remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The resource's name.
    name: String,
    /// The gateway's namespace.
    #[arg(long, short, default_value = "zt-system")]
    namespace: String,
}

/// Runs a `peer` subcommand.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add(args) => add(args),
        Command::List(args) => block_on(list(args)),
        Command::Remove(args) => block_on(remove(args)),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Builds the resource and checks it with the gateway's own validation rules.
pub fn build(args: &AddArgs) -> anyhow::Result<WireGuardPeer> {
    let name = args.name.clone().unwrap_or_else(|| args.cluster.clone());
    let preshared_key_secret_ref = match &args.psk_secret {
        None => None,
        Some(text) => {
            let (name, key) = text
                .split_once(':')
                .filter(|(n, k)| !n.is_empty() && !k.is_empty())
                .context("--psk-secret wants NAME:KEY, e.g. zt-psk-lux:psk")?;
            Some(SecretKeyRef {
                name: name.to_owned(),
                key: key.to_owned(),
            })
        }
    };
    let spec = WireGuardPeerSpec {
        cluster: args.cluster.clone(),
        public_key: args.public_key.trim().to_owned(),
        endpoint: args.endpoint.clone(),
        allowed_ips: args
            .allowed_ips
            .iter()
            .map(|s| s.trim().to_owned())
            .collect(),
        persistent_keepalive: Some(i64::from(args.keepalive)),
        preshared_key_secret_ref,
        trust_domain: None,
        policy_signing_key: None,
    };
    let mut peer = WireGuardPeer::new(&name, spec);
    peer.metadata.namespace = Some(args.namespace.clone());
    let raw: RawPeer = peer.to_raw();
    if let Err(reason) = check_fields(&raw) {
        bail!("{reason}");
    }
    Ok(peer)
}

fn add(args: AddArgs) -> anyhow::Result<()> {
    let peer = build(&args)?;
    if !args.apply {
        let yaml = serde_saphyr::to_string(&peer).context("cannot render YAML")?;
        print!("{yaml}");
        return Ok(());
    }
    block_on(async move {
        let api: Api<WireGuardPeer> = Api::namespaced(client().await?, &args.namespace);
        let name = peer.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("peerctl").force(),
            &Patch::Apply(&peer),
        )
        .await
        .with_context(|| format!("cannot apply wireguardpeer {}/{name}", args.namespace))?;
        println!("wireguardpeer {}/{name} applied", args.namespace);
        Ok(())
    })
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let api: Api<WireGuardPeer> = Api::namespaced(client().await?, &args.namespace);
    let peers = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("cannot list wireguardpeers in namespace {}", args.namespace))?;
    let rows: Vec<Row> = peers.items.iter().map(Row::from).collect();
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows.iter().map(Row::json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<24} {:<6} {:<10} LAST HANDSHAKE",
        "NAME", "CLUSTER", "ENDPOINT", "READY", "CONNECTED"
    );
    for row in &rows {
        println!(
            "{:<16} {:<16} {:<24} {:<6} {:<10} {}",
            row.name, row.cluster, row.endpoint, row.ready, row.connected, row.last_handshake
        );
    }
    Ok(())
}

async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let api: Api<WireGuardPeer> = Api::namespaced(client().await?, &args.namespace);
    api.delete(&args.name, &DeleteParams::default())
        .await
        .with_context(|| {
            format!(
                "cannot delete wireguardpeer {}/{}",
                args.namespace, args.name
            )
        })?;
    println!("wireguardpeer {}/{} deleted", args.namespace, args.name);
    Ok(())
}

async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("no Kubernetes credentials: set KUBECONFIG or run inside a cluster")
}

struct Row {
    name: String,
    cluster: String,
    endpoint: String,
    ready: String,
    connected: String,
    last_handshake: String,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "cluster": self.cluster,
            "endpoint": self.endpoint,
            "ready": self.ready,
            "connected": self.connected,
            "lastHandshakeTime": self.last_handshake,
        })
    }
}

impl From<&WireGuardPeer> for Row {
    fn from(peer: &WireGuardPeer) -> Self {
        let condition = |kind: &str| {
            peer.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
                .map_or_else(|| "-".to_owned(), |c| c.status.clone())
        };
        Row {
            name: peer.metadata.name.clone().unwrap_or_default(),
            cluster: peer.spec.cluster.clone(),
            endpoint: peer
                .spec
                .endpoint
                .clone()
                .unwrap_or_else(|| "(passive)".to_owned()),
            ready: condition("Ready"),
            connected: condition("Connected"),
            last_handshake: peer
                .status
                .as_ref()
                .and_then(|s| s.last_handshake_time.clone())
                .unwrap_or_else(|| "never".to_owned()),
        }
    }
}
