//! The audit log of real runs (`docs/audit.md`).
//!
//! - Two gateways, each with its own audit file and key; a peer change applied, a declaration
//!   rejected, an admin call, a clean stop. The file verifies with `peerctl audit verify
//!   --key`, holds no key material, and each tampering (an edited field, a deleted line, two
//!   lines swapped, the tail cut, a checkpoint's signature changed, the checkpoints removed)
//!   is named by `peerctl audit verify` at the right line with exit 1; usage errors exit 2.
//! - The audit key read from the (test) KMS.
//! - A restart after `kill -9` and a torn last line continues the chain with a `recovered`
//!   record, rewriting nothing.
//! - A full volume: the tunnel stays up, `/readyz` says `audit_writable`, the write errors are
//!   counted, and once there is space again the gateway is ready and the file verifies.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use netns_tests::{
    Gateway, TestKms, Topology, eventually, metric_value, peerctl_bin, require_root, wait_reachable,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const EXIT: Duration = Duration::from_secs(10);

fn peerctl(args: &[&str]) -> Output {
    Command::new(peerctl_bin().expect("peerctl binary"))
        .args(args)
        .output()
        .expect("run peerctl")
}

#[test]
fn an_audit_log_of_a_real_run_verifies_and_every_tampering_is_named() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let (mut setup_a, public_a) = Gateway::setup(a)
        .expect("setup a")
        .with_peers(&[b])
        .expect("peers")
        .with_audit("2s")
        .expect("audit a");
    let token_file = setup_a.dir().join("admin.token");
    std::fs::write(&token_file, "audit-test-admin-token\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    setup_a.config.admin_listen = Some("127.0.0.1:8056".to_owned());
    setup_a.config.admin_token_file = Some(token_file.clone());
    let mut gw_a = setup_a.start().expect("start a");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready");
    let (setup_b, public_b) = Gateway::setup(b)
        .expect("setup b")
        .with_peers(&[a])
        .expect("peers")
        .with_audit("2s")
        .expect("audit b");
    let mut gw_b = setup_b.start().expect("start b");
    gw_b.wait_ready(netns_tests::READY_TIMEOUT)
        .expect("b ready");
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");

    // A peer change (b's keepalive), a rejected declaration and an admin call.
    let mut changed = b.peer();
    changed.persistent_keepalive = Some(10);
    gw_a.write_peer(&b.name, &changed).expect("change b");
    let mut bad = b.peer();
    bad.name = "forged".to_owned();
    bad.public_key = "not-a-key".to_owned();
    gw_a.write_peer("forged", &bad).expect("bad peer");
    let audit_a = gw_a.dir().join("audit.jsonl");
    eventually(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit_a)?;
        anyhow::ensure!(
            text.contains("\"outcome\":\"rejected\"")
                && text.contains("\"persistent_keepalive\":10")
                && text.contains("\"reason\":\"interval\""),
            "not yet recorded"
        );
        Ok(())
    })
    .expect("peer changes and an interval checkpoint recorded");
    let socket = gw_a.config().admin_socket.to_string_lossy().into_owned();
    let status = peerctl(&["status", "--socket", &socket]);
    assert!(status.status.success(), "{status:?}");
    // Over TCP: once with the token, once with a wrong one (refused, and recorded).
    let bin = peerctl_bin().expect("peerctl");
    let bin = bin.to_string_lossy();
    let wrong = gw_a.dir().join("wrong.token");
    std::fs::write(&wrong, "audit-test-wrong-token").expect("write");
    for (token, code) in [(&token_file, Some(0)), (&wrong, Some(1))] {
        let out =
            a.gw.exec(&[
                &bin,
                "status",
                "--url",
                "http://127.0.0.1:8056",
                "--token-file",
                &token.to_string_lossy(),
            ])
            .expect("run");
        assert_eq!(out.status.code(), code, "{}", text(&out));
    }

    let exit = gw_a.stop(EXIT).expect("a stops");
    assert!(exit.success(), "gateway a: {exit}\n{}", gw_a.log());
    let exit = gw_b.stop(EXIT).expect("b stops");
    assert!(exit.success(), "gateway b: {exit}\n{}", gw_b.log());

    let work = tempfile::tempdir().expect("tempdir");
    let file_a = work.path().join("a.jsonl");
    std::fs::copy(&audit_a, &file_a).expect("copy a");
    let file_b = work.path().join("b.jsonl");
    std::fs::copy(gw_b.dir().join("audit.jsonl"), &file_b).expect("copy b");
    let seeds = [
        std::fs::read_to_string(gw_a.dir().join("audit.key")).expect("seed a"),
        std::fs::read_to_string(gw_b.dir().join("audit.key")).expect("seed b"),
    ];

    // Both verify with their own key, not with the other's.
    let out = verify(&file_a, Some(&public_a));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("records verify"), "{stdout}");
    assert!(stdout.contains("last checkpoint: line"), "{stdout}");
    assert!(stdout.contains("(stop)"), "{stdout}");
    let out = verify(&file_b, Some(&public_b));
    assert!(out.status.success(), "{}", text(&out));
    expect_failure(&verify(&file_a, Some(&public_b)), 2, "bad signature");

    // What a run records, and what it never does.
    let original = std::fs::read_to_string(&file_a).expect("read a");
    let records: Vec<Value> = original
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let has = |kind: &str, subject: &str, outcome: &str| {
        records
            .iter()
            .any(|r| r["kind"] == kind && r["subject"] == subject && r["outcome"] == outcome)
    };
    assert!(has("start", "gateway", "ok"), "{original}");
    assert!(has("key_load", "wireguard", "ok"), "{original}");
    assert!(has("key_load", "audit-key", "ok"), "{original}");
    assert!(has("peer_change", &b.name, "applied"), "{original}");
    assert!(has("peer_change", "forged", "rejected"), "{original}");
    assert!(has("admin_call", "GET /v1/status", "ok"), "{original}");
    assert!(has("admin_call", "GET /v1/status", "refused"), "{original}");
    let actors: Vec<&str> = records
        .iter()
        .filter(|r| r["kind"] == "admin_call")
        .filter_map(|r| r["actor"].as_str())
        .collect();
    assert_eq!(
        actors,
        ["admin:unix", "admin:tcp", "admin:tcp"],
        "{original}"
    );
    assert!(has("stop", "gateway", "ok"), "{original}");
    let wireguard = records
        .iter()
        .find(|r| r["kind"] == "key_load" && r["subject"] == "wireguard")
        .expect("key load");
    assert_eq!(wireguard["details"]["public_key"], a.public_key().as_str());
    for secret in [
        a.key.to_base64().as_str().to_owned(),
        b.key.to_base64().as_str().to_owned(),
        seeds[0].trim().to_owned(),
        seeds[1].trim().to_owned(),
        "audit-test-admin-token".to_owned(),
        "audit-test-wrong-token".to_owned(),
    ] {
        assert!(
            !original.contains(&secret),
            "key material in the audit file"
        );
    }
    for file in [&file_a, &file_b] {
        let text = std::fs::read_to_string(file).expect("read");
        assert!(!text.contains(seeds[0].trim()) && !text.contains(seeds[1].trim()));
    }

    // Each tampering, named at its line with exit 1.
    let lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let line_of = |kind: &str, subject: &str| {
        records
            .iter()
            .position(|r| r["kind"] == kind && r["subject"] == subject)
            .expect("record")
    };
    let tampered = work.path().join("tampered.jsonl");
    let check = |lines: &[String], line: usize, what: &str| {
        std::fs::write(&tampered, join(lines)).expect("write");
        expect_failure(&verify(&tampered, Some(&public_a)), line, what);
    };

    let edited = line_of("peer_change", "forged");
    let mut l = lines.clone();
    l[edited] = l[edited].replace("\"subject\":\"forged\"", "\"subject\":\"harmless\"");
    check(&l, edited + 1, "edited");

    let deleted = line_of("admin_call", "GET /v1/status");
    let mut l = lines.clone();
    l.remove(deleted);
    check(&l, deleted + 1, "missing");

    let mut l = lines.clone();
    l.swap(edited, edited + 1);
    check(&l, edited + 1, "reordered");

    // Cut after the stop record: named at the first record the last checkpoint left unsigned.
    let n = lines.len();
    let last_signed = lines[..n - 1]
        .iter()
        .rposition(|l| l.contains("\"kind\":\"checkpoint\""))
        .expect("a checkpoint");
    check(&lines[..n - 1], last_signed + 2, "truncated");
    std::fs::write(&tampered, &original[..original.len() - 20]).expect("write");
    expect_failure(&verify(&tampered, Some(&public_a)), n, "truncated");

    let checkpoint = records
        .iter()
        .position(|r| r["kind"] == "checkpoint" && r["details"]["reason"] == "interval")
        .expect("interval checkpoint");
    let mut value = records[checkpoint].clone();
    let signature = value["details"]["signature"]
        .as_str()
        .expect("sig")
        .to_owned();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    value["details"]["signature"] = Value::from(format!("{flipped}{}", &signature[1..]));
    let mut l = lines.clone();
    l[checkpoint] = ztgw_audit::canonical(&value).expect("canonical");
    check(&l, checkpoint + 1, "edited");
    // Someone without the key may recompute every hash after the change: the signature
    // still gives it away.
    check(&rechain(&l, false), checkpoint + 1, "bad signature");

    let without: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("\"kind\":\"checkpoint\""))
        .cloned()
        .collect();
    let first_checkpoint = line_of("checkpoint", "audit-chain");
    check(&without, first_checkpoint + 1, "missing");
    check(&rechain(&without, true), 1, "no checkpoint");

    // Usage errors exit 2.
    let out = peerctl(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let path = file_a.to_string_lossy().into_owned();
    let out = peerctl(&["audit", "verify", &path, "--key", "not-a-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_audit_key_can_come_from_the_kms_and_only_its_public_key_is_recorded() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let audit_key = ztgw_audit::AuditKey::generate().expect("random");
    let seed = audit_key.to_base64();
    let kms = TestKms::start_with(&a.gw, &a.key, 8201, &[("audit-signing-key", seed.as_str())])
        .expect("test KMS");
    let mut setup = Gateway::setup(a)
        .expect("setup")
        .with_peers(&[b])
        .expect("peers");
    setup.config.key_toml = Some(kms.key_toml("3s", None));
    setup.config.audit_toml = Some(format!(
        "path = {}\nkey_source = \"kms\"\nkey_secret_name = \"audit-signing-key\"",
        Value::from(setup.dir().join("audit.jsonl").to_string_lossy())
    ));
    let mut gw = setup.start().expect("start a");
    gw.wait_ready(netns_tests::READY_TIMEOUT).expect("ready");
    let exit = gw.stop(EXIT).expect("stops");
    assert!(exit.success(), "gateway: {exit}\n{}", gw.log());

    let file = gw.dir().join("audit.jsonl");
    let public = audit_key.public().to_base64();
    let out = verify(&file, Some(&public));
    assert!(out.status.success(), "{}", text(&out));
    let original = std::fs::read_to_string(&file).expect("read");
    let records: Vec<Value> = original
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let load = |subject: &str| {
        records
            .iter()
            .find(|r| r["kind"] == "key_load" && r["subject"] == subject)
            .unwrap_or_else(|| panic!("{subject} key load in {original}"))
            .clone()
    };
    let audit_load = load("audit-key");
    assert_eq!(audit_load["details"]["source"], "kms");
    assert_eq!(audit_load["details"]["public_key"], public.as_str());
    assert!(audit_load["details"]["version"].is_u64(), "{audit_load}");
    assert_eq!(load("wireguard")["details"]["source"], "kms");
    for secret in [
        seed.as_str(),
        a.key.to_base64().as_str(),
        kms.client_secret.as_str(),
    ] {
        assert!(!original.contains(secret), "secret in the audit file");
        assert!(!gw.log().contains(secret), "secret in the log");
    }
}

#[test]
fn a_restart_after_a_crash_continues_the_chain_and_records_the_torn_line() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    let (setup, public) = Gateway::setup(a)
        .expect("setup a")
        .with_peers(&[b])
        .expect("peers")
        .with_audit("1s")
        .expect("audit");
    let mut crashed = setup.start().expect("start a");
    crashed
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready");
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");
    crashed.signal(Signal::SIGKILL).expect("kill -9");
    crashed.wait_exit(EXIT).expect("killed gateway exits");
    // As if the crash had cut a record short.
    let file = crashed.dir().join("audit.jsonl");
    let before = std::fs::read_to_string(&file).expect("read");
    let torn_line = before.lines().count() + 1;
    let mut handle = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open");
    std::io::Write::write_all(&mut handle, b"{\"actor\":\"gatew").expect("tear");
    let out = verify(&file, Some(&public));
    expect_failure(&out, torn_line, "truncated");

    let mut setup = Gateway::setup(a)
        .expect("setup a again")
        .with_peers(&[b])
        .expect("peers");
    setup.config.audit_toml = crashed.config().audit_toml.clone();
    let mut restarted = setup.start().expect("restart a");
    restarted
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready again");
    let exit = restarted.stop(EXIT).expect("a stops");
    assert!(exit.success(), "gateway a: {exit}\n{}", restarted.log());
    assert!(restarted.log().contains("torn line"), "{}", restarted.log());

    let out = verify(&file, Some(&public));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("recovered after an unclean stop: 1"),
        "{}",
        text(&out)
    );
    let after = std::fs::read_to_string(&file).expect("read");
    assert!(
        after.starts_with(&before),
        "nothing before the crash is rewritten"
    );
    let recovered: Value = after
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["kind"] == "recovered")
        .expect("recovered record");
    assert_eq!(recovered["details"]["reason"], "torn last line");
    assert_eq!(recovered["details"]["torn_line"], torn_line);
    assert_eq!(recovered["details"]["torn_bytes"], 15);
    let starts = after
        .lines()
        .filter(|l| l.contains("\"kind\":\"start\""))
        .count();
    assert_eq!(starts, 2, "{after}");
}

#[test]
fn a_full_disk_keeps_the_tunnel_up_and_the_gateway_not_ready_until_writes_succeed() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let volume = SmallVolume::mount("512k").expect("tmpfs");
    let (mut setup, public) = Gateway::setup(a)
        .expect("setup a")
        .with_peers(&[b])
        .expect("peers")
        .with_audit("1s")
        .expect("audit");
    let file = volume.path().join("audit.jsonl");
    setup.config.audit_toml = setup.config.audit_toml.as_ref().map(|t| {
        let key_line = t
            .lines()
            .find(|l| l.starts_with("key_path"))
            .expect("key_path");
        format!(
            "path = {}\n{key_line}\ncheckpoint_interval = \"1s\"",
            Value::from(file.to_string_lossy())
        )
    });
    let mut gw_a = setup.start().expect("start a");
    gw_a.wait_ready(netns_tests::READY_TIMEOUT)
        .expect("a ready");
    let _gw_b = Gateway::launch(b, &[a]).expect("gateway b ready");
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(10)).expect("pod a reaches pod b");

    // Fill the volume: the next checkpoint cannot be written.
    let filler = volume.path().join("filler");
    fill(&filler);
    eventually(Duration::from_secs(10), || {
        let (status, body) = gw_a.http("/readyz")?;
        anyhow::ensure!(
            status == 503 && body.contains("audit_writable"),
            "{status} {body}"
        );
        let errors = metric_value(
            &gw_a.metrics()?,
            "zt_wireguard_audit_write_errors_total",
            &[],
        );
        anyhow::ensure!(errors.is_some_and(|e| e >= 1.0), "errors: {errors:?}");
        Ok(())
    })
    .expect("not ready, with write errors counted");
    wait_reachable(&a.pod, b.pod_ip(), Duration::from_secs(5)).expect("the tunnel stays up");
    assert!(
        gw_a.log().contains("cannot write the audit log"),
        "{}",
        gw_a.log()
    );

    // Space again: the next checkpoint is written and the gateway is ready again.
    std::fs::remove_file(&filler).expect("free the volume");
    eventually(Duration::from_secs(10), || {
        let (status, body) = gw_a.http("/readyz")?;
        anyhow::ensure!(status == 200, "{status} {body}");
        Ok(())
    })
    .expect("ready again");
    let exit = gw_a.stop(EXIT).expect("a stops");
    assert!(exit.success(), "gateway a: {exit}\n{}", gw_a.log());
    let out = verify(&file, Some(&public));
    assert!(out.status.success(), "{}", text(&out));
}

/// Writes zeros to `path` until the volume is full.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    // Whatever part of a page is left goes too.
    while file.write_all(&[0u8]).is_ok() {}
}

/// A small tmpfs, unmounted on drop.
struct SmallVolume {
    dir: tempfile::TempDir,
}

impl SmallVolume {
    fn mount(size: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ztgw-audit-vol-")
            .tempdir()?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()?;
        anyhow::ensure!(status.success(), "mount tmpfs: {status}");
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn verify(file: &Path, key: Option<&str>) -> Output {
    let path = file.to_string_lossy().into_owned();
    let mut args = vec!["audit", "verify", path.as_str()];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    peerctl(&args)
}

fn expect_failure(out: &Output, line: usize, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(
        stderr.contains(&format!("line {line} (")) || stderr.contains(&format!("line {line}:")),
        "expected line {line} ({what}): {stderr}"
    );
    assert!(
        stderr.contains(what),
        "expected {what} at line {line}: {stderr}"
    );
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn join(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Recomputes `prev` and `hash` of every line (and `seq` when `renumber`).
fn rechain(lines: &[String], renumber: bool) -> Vec<String> {
    let mut head = ztgw_audit::GENESIS.to_owned();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut value: Value = serde_json::from_str(line).expect("json");
            value["prev"] = Value::from(head.clone());
            if renumber {
                value["seq"] = Value::from(i as u64);
            }
            let hash = ztgw_audit::record_hash(&value).expect("hash");
            value["hash"] = Value::from(hash.clone());
            head = hash;
            ztgw_audit::canonical(&value).expect("canonical")
        })
        .collect()
}
