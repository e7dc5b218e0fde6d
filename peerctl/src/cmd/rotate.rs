//! `peerctl rotate`: the gateway's key rotation (`docs/rotation.md`) through its admin API:
//! `--plan` (what would happen now, per peer, and what blocks it), `--now` (start one),
//! `--status` (phase, each peer's ack and handshake, time in phase) and `--abort` (roll back
//! while not committed). `--manual-peer NAME` hands a peer without the control channel to
//! the operator, who is given the `wg set` line to run there.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use ztgw_model::status::{RotationPlan, RotationRun, RotationStatus};

use super::status::client::Target;
use super::status::model;

/// Arguments of `rotate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["plan", "now", "status", "abort"])))]
pub struct Args {
    /// Show what a rotation started now would do, per peer, and what blocks it.
    #[arg(long)]
    plan: bool,
    /// Start a rotation now (the key's age and the maintenance window do not matter; every
    /// blocker does).
    #[arg(long)]
    now: bool,
    /// Show the rotation in flight, or the last one.
    #[arg(long)]
    status: bool,
    /// Roll back the rotation in flight (refused once the new key is committed).
    #[arg(long)]
    abort: bool,
    /// A peer without the control channel (plain WireGuard), to be given the new key by
    /// hand; repeat for several.
    #[arg(long = "manual-peer", value_name = "NAME")]
    manual_peer: Vec<String>,
    /// Print the admin API's JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The gateway's admin socket.
    #[arg(
        long,
        default_value = "/run/zt-gateway/admin.sock",
        conflicts_with = "url"
    )]
    socket: PathBuf,
    /// The gateway's admin TCP listener instead of the socket, e.g. `http://127.0.0.1:8056`.
    #[arg(long, requires = "token_file")]
    url: Option<String>,
    /// File holding the bearer token for `--url`.
    #[arg(long, requires = "url")]
    token_file: Option<PathBuf>,
}

/// Runs `rotate`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let target = match (&args.url, &args.token_file) {
        (Some(url), Some(token_file)) => Target::tcp(url, token_file)?,
        _ => Target::Socket(args.socket.clone()),
    };
    let body = serde_json::json!({ "manual_peers": args.manual_peer }).to_string();
    let text = if args.status {
        let answer = target.get("/v1/status")?;
        let status = model::parse(&answer)?;
        let rotation = status.rotation.unwrap_or_default();
        if args.json {
            serde_json::to_string_pretty(&rotation)? + "\n"
        } else {
            render_status(&rotation, status.now_unix)
        }
    } else if args.plan {
        let answer = call(&target, "/v1/rotation/plan", &body)?;
        if args.json {
            answer
        } else {
            let plan: RotationPlan = serde_json::from_str(&answer)
                .context("the gateway's plan answer is not a rotation plan")?;
            render_plan(&plan)
        }
    } else if args.now {
        let answer = call(&target, "/v1/rotation/start", &body)?;
        if args.json {
            answer
        } else {
            let started: serde_json::Value =
                serde_json::from_str(&answer).context("the gateway's answer is not JSON")?;
            let id = started
                .get("rotation_id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            format!("rotation {id} started: follow it with peerctl rotate --status\n")
        }
    } else {
        let answer = call(&target, "/v1/rotation/abort", &body)?;
        if args.json {
            answer
        } else {
            "rotation rolling back: follow it with peerctl rotate --status\n".to_owned()
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// POSTs and returns a 200's body; any other answer is its error line.
fn call(target: &Target, path: &str, body: &str) -> anyhow::Result<String> {
    let (code, answer) = target.post(path, body)?;
    if code == 200 {
        return Ok(answer);
    }
    let message = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| answer.lines().next().unwrap_or("").to_owned());
    bail!("{message} (HTTP {code})")
}

fn render_plan(plan: &RotationPlan) -> String {
    let mut out = match plan.decision.as_str() {
        "start" => "a rotation can start now\n".to_owned(),
        _ => "a rotation cannot start now:\n".to_owned(),
    };
    for blocker in &plan.blockers {
        out.push_str(&format!("  - {blocker}\n"));
    }
    if !plan.peers.is_empty() {
        out.push_str("PEER                 HOW       BLOCKED BY\n");
        for peer in &plan.peers {
            out.push_str(&format!(
                "{:<20} {:<9} {}\n",
                peer.name,
                peer.how,
                peer.blocker.as_deref().unwrap_or("-")
            ));
        }
    }
    out
}

fn render_status(rotation: &RotationStatus, now: u64) -> String {
    let mut out = String::new();
    if !rotation.available {
        out.push_str(&format!(
            "key rotation is not available: {}\n",
            rotation.detail.as_deref().unwrap_or("no reason given")
        ));
    } else if let Some(detail) = &rotation.detail {
        out.push_str(&format!("attention: {detail}\n"));
    }
    match &rotation.current {
        None => out.push_str("no rotation has run\n"),
        Some(run) => render_run(&mut out, run, now),
    }
    if let Some(schedule) = &rotation.schedule {
        out.push_str(&format!("schedule: {schedule}\n"));
    }
    for peer in &rotation.peers {
        if let Some(next) = &peer.next_public_key {
            out.push_str(&format!("peer {} is rotating to {next}\n", peer.name));
        }
        if let Some(declared) = &peer.declared_public_key {
            out.push_str(&format!(
                "peer {} rotated: its declaration names {declared}; update spec.publicKey to {}\n",
                peer.name, peer.active_public_key
            ));
        }
    }
    out
}

fn render_run(out: &mut String, run: &RotationRun, now: u64) {
    out.push_str(&format!(
        "rotation {} (sequence {}): {} for {}s\n",
        run.id,
        run.sequence,
        run.phase,
        now.saturating_sub(run.phase_since_unix)
    ));
    out.push_str(&format!(
        "  old key  {}\n  next key {}\n",
        run.old_public_key, run.next_public_key
    ));
    if let Some(reason) = &run.rollback_reason {
        out.push_str(&format!("  rollback: {reason}\n"));
    }
    if let Some(finished) = run.finished_unix {
        out.push_str(&format!(
            "  took {}s\n",
            finished.saturating_sub(run.started_unix)
        ));
    }
    out.push_str("  PEER                 ACKED  HANDSHAKE  TOLD END\n");
    for peer in &run.peers {
        let yes = |b: bool| if b { "yes" } else { "no" };
        out.push_str(&format!(
            "  {:<20} {:<6} {:<10} {}{}\n",
            peer.name,
            yes(peer.acked),
            yes(peer.handshake),
            if peer.manual {
                "manual"
            } else {
                yes(peer.told_end)
            },
            ""
        ));
        if let Some(line) = &peer.manual_line {
            out.push_str(&format!("    run on {}: {line}\n", peer.name));
        }
    }
}
