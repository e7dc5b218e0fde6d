//! Key rotation when things go wrong (`docs/rotation.md`): a peer that never acknowledges
//! (its control port blocked) makes the rotation time out and roll back without losing a
//! packet; the operator's abort rolls back before the commit and is refused when nothing
//! runs; a gateway killed at each phase boundary resumes or rolls back at its restart and
//! every tunnel converges; with the key in the KMS, a KMS that is down at the stage or at
//! the commit makes the rotation roll back with the old key kept, and the next run succeeds
//! once the KMS is back.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use netns_tests::{
    Cluster, Gateway, GatewaySetup, Netns, Streams, TestKms, Topology, check_in_order,
    check_no_loss, eventually, format_stats, metric_value, peerctl_bin, require_root,
    wait_reachable,
};
use nix::sys::signal::Signal;

const CHANNELS_UP: Duration = Duration::from_secs(30);
const ROTATION: Duration = Duration::from_secs(60);
/// The bound: every tunnel converges within 30 s of a restart.
const CONVERGE: Duration = Duration::from_secs(30);
const RATE_PPS: u32 = 1000;
const DRAIN: Duration = Duration::from_secs(2);
const EXIT: Duration = Duration::from_secs(10);

/// A file key with short rotation deadlines.
fn file_key_toml(setup: &GatewaySetup<'_>) -> String {
    format!(
        "source = \"file\"\npath = {}\nrotation_announce_timeout = \"5s\"\nrotation_verify_deadline = \"20s\"",
        serde_json::Value::from(setup.config.key_path.to_string_lossy())
    )
}

fn setup<'c>(cluster: &'c Cluster, peers: &[&Cluster], extra: &[&str]) -> GatewaySetup<'c> {
    let mut setup = Gateway::setup(cluster)
        .expect("setup")
        .with_peers(peers)
        .expect("peers");
    setup.config.key_toml = Some(file_key_toml(&setup));
    setup.extra_args = ["--control-hello-interval", "2s"]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
    setup
}

fn start(setup: GatewaySetup<'_>) -> Gateway<'_> {
    let mut gateway = setup.start().expect("start");
    gateway
        .wait_ready(netns_tests::READY_TIMEOUT)
        .expect("gateway ready");
    gateway
}

fn peerctl(gateway: &Gateway<'_>, args: &[&str]) -> Output {
    let socket = gateway.config().admin_socket.to_string_lossy().into_owned();
    Command::new(peerctl_bin().expect("peerctl binary"))
        .args(args)
        .args(["--socket", &socket])
        .output()
        .expect("run peerctl")
}

fn ok_stdout(out: &Output) -> Result<String> {
    ensure!(
        out.status.success(),
        "peerctl failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout.clone())?)
}

fn run_status(gateway: &Gateway<'_>) -> Result<serde_json::Value> {
    let text = ok_stdout(&peerctl(gateway, &["rotate", "--status", "--json"]))?;
    let status: serde_json::Value = serde_json::from_str(&text)?;
    Ok(status["current"].clone())
}

/// Waits until the current rotation is in `phase`; returns it.
fn wait_phase(gateway: &Gateway<'_>, phase: &str, within: Duration) -> serde_json::Value {
    eventually(within, || {
        let run = run_status(gateway)?;
        ensure!(run["phase"] == phase, "not {phase} yet: {run}");
        Ok(run)
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()))
}

fn wait_channels(gateway: &Gateway<'_>, peers: usize) {
    eventually(CHANNELS_UP, || {
        let text = ok_stdout(&peerctl(gateway, &["status", "--output", "json"]))?;
        let doc: serde_json::Value = serde_json::from_str(&text)?;
        let up = doc["channels"]
            .as_array()
            .context("channels")?
            .iter()
            .filter(|c| c["state"] == "up")
            .count();
        ensure!(up == peers, "channels: {}", doc["channels"]);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
}

fn start_rotation(gateway: &Gateway<'_>) {
    let out = ok_stdout(&peerctl(gateway, &["rotate", "--now"]))
        .unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", gateway.log()));
    assert!(out.contains("started"), "{out}");
}

/// Drops TCP to the control port in `ns` (the peer's channel stops answering), or lets it
/// through again.
fn block_control(ns: &Netns, block: bool) {
    let action = if block { "-I" } else { "-D" };
    ns.exec(&[
        "iptables", action, "INPUT", "-p", "tcp", "--dport", "51821", "-j", "DROP",
    ])
    .expect("iptables");
}

fn failed_rotations(gateway: &Gateway<'_>) -> f64 {
    let text = gateway.metrics().expect("metrics");
    metric_value(
        &text,
        "zt_wireguard_key_rotations_total",
        &[("result", "failed")],
    )
    .expect("zt_wireguard_key_rotations_total{result=failed}")
}

fn own_key(gateway: &Gateway<'_>) -> String {
    gateway.dump().expect("wg dump").public_key
}

/// The public key of the private key file at `path`.
fn key_file_public(path: &Path) -> String {
    let out = Command::new(peerctl_bin().expect("peerctl"))
        .arg("pubkey")
        .stdin(std::fs::File::open(path).expect("open key"))
        .output()
        .expect("peerctl pubkey");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// Both ways between the pods of `a` and `b` work.
fn converged(a: &Cluster, b: &Cluster) {
    wait_reachable(&a.pod, b.pod_ip(), CONVERGE).expect("pod a reaches pod b");
    wait_reachable(&b.pod, a.pod_ip(), CONVERGE).expect("pod b reaches pod a");
}

#[test]
fn an_unacknowledged_rotation_times_out_an_aborted_one_rolls_back_and_the_next_succeeds() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_a = start(setup(a, &[b], &[]));
    let gw_b = start(setup(b, &[a], &[]));
    converged(a, b);
    wait_channels(&gw_a, 1);
    let original = own_key(&gw_a);
    let key_path = gw_a.config().key_path.clone();
    let streams = Streams::start(
        &[(&a.pod, a.pod_ip(), &b.pod, b.pod_ip())],
        RATE_PPS,
        40_200,
    )
    .expect("streams");

    // b never acknowledges: the announcement times out (5 s) and the rotation rolls back; the
    // rollback waits to tell b, and ends once b answers again.
    block_control(&b.gw, true);
    start_rotation(&gw_a);
    let run = wait_phase(&gw_a, "rolling_back", Duration::from_secs(20));
    assert!(
        run["rollback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not acknowledge")),
        "{run}"
    );
    assert_eq!(
        failed_rotations(&gw_a),
        1.0,
        "counted when the rollback begins"
    );
    let text = ok_stdout(&peerctl(&gw_a, &["rotate", "--status"])).expect("status text");
    assert!(
        text.contains("rolling_back") && text.contains("rollback:"),
        "{text}"
    );
    block_control(&b.gw, false);
    let run = wait_phase(&gw_a, "rolled_back", ROTATION);
    assert_eq!(run["peers"][0]["acked"], false, "{run}");
    assert_eq!(own_key(&gw_a), original, "the old key stays");
    assert_eq!(key_file_public(&key_path), original);
    assert!(
        !key_path.with_extension("key.next").exists(),
        "the next key is discarded"
    );

    // The operator aborts before the commit.
    block_control(&b.gw, true);
    start_rotation(&gw_a);
    wait_phase(&gw_a, "announcing", Duration::from_secs(10));
    let out = ok_stdout(&peerctl(&gw_a, &["rotate", "--abort"])).expect("abort");
    assert!(out.contains("rolling back"), "{out}");
    let run = wait_phase(&gw_a, "rolling_back", Duration::from_secs(10));
    assert!(
        run["rollback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("aborted by the operator")),
        "{run}"
    );
    block_control(&b.gw, false);
    wait_phase(&gw_a, "rolled_back", ROTATION);
    let refused = peerctl(&gw_a, &["rotate", "--abort"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("no key rotation is under way"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(own_key(&gw_a), original);

    // Nothing broke: the next rotation completes.
    start_rotation(&gw_a);
    let run = wait_phase(&gw_a, "complete", ROTATION);
    assert_ne!(own_key(&gw_a), original);
    assert_eq!(
        own_key(&gw_a),
        run["next_public_key"].as_str().expect("next")
    );
    let stats = streams.stop(DRAIN).expect("stop the streams");
    println!("two rollbacks and a rotation:\n{}", format_stats(&stats));
    check_no_loss(&stats).unwrap_or_else(|e| panic!("{e:#}"));
    check_in_order(&stats).unwrap_or_else(|e| panic!("{e:#}"));
    drop(gw_b);
}

/// Kills `gateway` (held at `phase`) and starts it again without the hold.
fn kill_and_restart<'c>(gateway: Gateway<'c>) -> Gateway<'c> {
    let mut gateway = gateway;
    gateway.signal(Signal::SIGKILL).expect("kill -9");
    gateway.wait_exit(EXIT).expect("killed gateway exits");
    let setup = gateway
        .into_setup(vec!["--control-hello-interval".to_owned(), "2s".to_owned()])
        .expect("setup again");
    start(setup)
}

#[test]
fn a_gateway_killed_at_each_phase_boundary_resumes_or_rolls_back_and_converges() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let gw_b = start(setup(b, &[a], &[]));
    let mut current = {
        let gateway = start(setup(a, &[b], &["--test-rotation-hold", "announcing"]));
        converged(a, b);
        wait_channels(&gateway, 1);
        gateway
    };
    let key_path = current.config().key_path.clone();
    let mut cases = Vec::new();
    for (hold, resumed) in [
        ("announcing", "rolled_back"),
        ("committing", "rolled_back"),
        ("verifying", "complete"),
    ] {
        if hold != "announcing" {
            let setup = current
                .into_setup(vec![
                    "--control-hello-interval".to_owned(),
                    "2s".to_owned(),
                    "--test-rotation-hold".to_owned(),
                    hold.to_owned(),
                ])
                .expect("setup with hold");
            current = start(setup);
            converged(a, b);
            wait_channels(&current, 1);
        }
        let before = own_key(&current);
        start_rotation(&current);
        let held = wait_phase(&current, hold, Duration::from_secs(20));
        let next = held["next_public_key"].as_str().expect("next").to_owned();
        // The running key is always readable from the key store.
        let on_disk = key_file_public(&key_path);
        assert!(
            on_disk == before || on_disk == next,
            "{hold}: key file holds {on_disk}"
        );
        current = kill_and_restart(current);
        let run = wait_phase(&current, resumed, CONVERGE);
        converged(a, b);
        let expected = if resumed == "complete" {
            &next
        } else {
            &before
        };
        assert_eq!(
            &own_key(&current),
            expected,
            "{hold}: the device runs the expected key"
        );
        assert_eq!(
            key_file_public(&key_path),
            *expected,
            "{hold}: the key file agrees"
        );
        // b runs a under the key a runs.
        let b_peers = gw_b.dump().expect("b dump").peers;
        assert_eq!(b_peers.len(), 1);
        assert_eq!(
            &b_peers[0].public_key, expected,
            "{hold}: b knows a by its key"
        );
        cases.push(format!("{hold} -> {resumed} ({})", run["rollback_reason"]));
    }
    println!("killed at each boundary: {cases:?}");
}

#[test]
fn with_the_key_in_the_kms_a_kms_down_at_stage_or_commit_rolls_back_and_the_next_run_succeeds() {
    require_root!();
    let topo = Topology::clusters(2).expect("build topology");
    let (a, b) = (&topo.clusters[0], &topo.clusters[1]);
    let mut kms = TestKms::start(&a.gw, &a.key, 18_210).expect("fake KMS");
    let mut setup_a = setup(a, &[b], &[]);
    setup_a.config.key_toml = Some(format!(
        "{}\nrotation_announce_timeout = \"30s\"\nrotation_verify_deadline = \"20s\"",
        kms.key_toml("5s", None)
    ));
    let gw_a = start(setup_a);
    let gw_b = start(setup(b, &[a], &[]));
    converged(a, b);
    wait_channels(&gw_a, 1);
    let original = own_key(&gw_a);

    // Down at the stage: the record and the next key cannot be stored, so nothing starts;
    // the attempt counts as failed and says why in one line.
    kms.stop();
    let refused = peerctl(&gw_a, &["rotate", "--now"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot be written to the key store") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(failed_rotations(&gw_a), 1.0);
    assert_eq!(own_key(&gw_a), original, "the old key stays");
    converged(a, b);
    kms.restart(&a.gw, &a.key).expect("KMS back");

    // Down at the commit: b's channel is held until the KMS is stopped, then the acks come
    // and the commit cannot be written.
    block_control(&b.gw, true);
    start_rotation(&gw_a);
    wait_phase(&gw_a, "announcing", Duration::from_secs(20));
    kms.stop();
    block_control(&b.gw, false);
    let run = wait_phase(&gw_a, "rolling_back", Duration::from_secs(60));
    assert!(
        run["rollback_reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not take the new key as current")),
        "{run}"
    );
    assert_eq!(failed_rotations(&gw_a), 2.0);
    converged(a, b);
    kms.restart(&a.gw, &a.key).expect("KMS back");
    wait_phase(&gw_a, "rolled_back", ROTATION);
    assert_eq!(own_key(&gw_a), original, "the old key stays");
    let b_peers = gw_b.dump().expect("b dump").peers;
    assert_eq!(b_peers[0].public_key, original, "b forgot a's next key");

    // The KMS is back: the next run succeeds, and the KMS serves the new key.
    start_rotation(&gw_a);
    let run = wait_phase(&gw_a, "complete", ROTATION);
    let new = run["next_public_key"].as_str().expect("next").to_owned();
    assert_eq!(own_key(&gw_a), new);
    converged(a, b);
    let restarted = kill_and_restart(gw_a);
    assert_eq!(
        own_key(&restarted),
        new,
        "a restart loads the new key from the KMS"
    );
}
