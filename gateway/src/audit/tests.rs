use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::core::plan::Op;

fn config(path: &Path) -> AuditConfig {
    AuditConfig {
        sink: AuditSink::File(path.to_owned()),
        key: AuditKeySource::File(path.with_extension("key")),
        checkpoint_interval: Duration::from_secs(300),
    }
}

fn key() -> LoadedAuditKey {
    LoadedAuditKey {
        key: AuditKey::from_seed(&[5u8; 32]),
        source: "file",
        version: None,
    }
}

fn open(path: &Path) -> (Audit, Metrics, Arc<RwLock<Readiness>>) {
    let metrics = Metrics::new().expect("metrics");
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let audit = Audit::open(
        &config(path),
        key(),
        details([("cluster", Value::from("a"))]),
        metrics.clone(),
        readiness.clone(),
    )
    .expect("open");
    (audit, metrics, readiness)
}

fn verify(path: &Path) -> ztgw_audit::Summary {
    let bytes = std::fs::read(path).expect("read");
    let pin = AuditKey::from_seed(&[5u8; 32]).public();
    ztgw_audit::verify(&bytes, Some(&pin)).expect("verifies")
}

#[test]
fn a_run_writes_a_file_that_verifies_and_a_restart_continues_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/audit.jsonl");
    let (audit, metrics, _) = open(&path);
    audit.record(
        kind::ADMIN_CALL,
        "admin:unix",
        "GET /v1/status",
        "ok",
        Map::new(),
    );
    audit.stop("SIGTERM");
    // A checkpoint timer firing during shutdown leaves the stop checkpoint last.
    audit.checkpoint(CheckpointReason::Interval);
    audit.stop("SIGTERM");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(verify(&path).records, 6);
    let text = metrics.render();
    assert!(
        text.contains("zt_wireguard_audit_records_total{kind=\"checkpoint\"} 2"),
        "{text}"
    );

    let (audit, _, _) = open(&path);
    audit.stop("SIGTERM");
    let summary = verify(&path);
    assert_eq!((summary.records, summary.recoveries), (11, 0));
}

#[test]
fn a_torn_line_and_an_unclean_stop_are_recovered_in_the_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (audit, _, _) = open(&path);
    audit.record(kind::ADMIN_CALL, "admin:unix", "x", "ok", Map::new());
    drop(audit);
    // A crash: no stop checkpoint. The next start notes it.
    let (audit, _, _) = open(&path);
    drop(audit);
    let mut file = OpenOptions::new().append(true).open(&path).expect("open");
    file.write_all(b"{\"actor\":\"gate").expect("tear");
    let (audit, _, _) = open(&path);
    audit.stop("SIGTERM");
    let summary = verify(&path);
    assert_eq!(summary.recoveries, 2);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("\"reason\":\"torn last line\""), "{text}");
    assert!(text.contains("\"reason\":\"unclean stop\""), "{text}");
}

#[test]
fn a_file_that_does_not_verify_is_not_continued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (audit, _, _) = open(&path);
    audit.stop("SIGTERM");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("gateway", "gatewaz", 1)).expect("edit");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let error = Audit::open(
        &config(&path),
        key(),
        Map::new(),
        Metrics::new().expect("metrics"),
        Arc::new(RwLock::new(Readiness::default())),
    )
    .expect_err("edited");
    assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let error = Audit::open(
        &config(&path),
        key(),
        Map::new(),
        Metrics::new().expect("metrics"),
        Arc::new(RwLock::new(Readiness::default())),
    )
    .expect_err("open to others");
    assert!(format!("{error:#}").contains("mode 644"), "{error:#}");
}

#[test]
fn a_failed_write_counts_and_makes_the_gateway_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "").expect("create");
    let read_only = File::open(&path).expect("open");
    let metrics = Metrics::new().expect("metrics");
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let audit = Audit {
        inner: Arc::new(Mutex::new(Inner {
            chain: Chain::new(),
            sink: Sink::File {
                file: read_only,
                path: path.clone(),
                len: 0,
            },
            key: AuditKey::from_seed(&[5u8; 32]),
            failing: false,
            closed: false,
            stopped: false,
        })),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        interval: Duration::from_secs(300),
    };
    audit.record(kind::START, GATEWAY, "gateway", "ok", Map::new());
    assert!(readiness.read().expect("lock").audit_unwritable);
    let text = metrics.render();
    assert!(
        text.contains("zt_wireguard_audit_write_errors_total 1"),
        "{text}"
    );
}

#[test]
fn no_secret_reaches_a_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (audit, _, _) = open(&path);
    let seed = AuditKey::from_seed(&[5u8; 32]).to_base64();
    let psk = crate::core::psk::PresharedKey::from_bytes([3u8; 32]);
    let config = crate::core::peer::PeerConfig {
        public_key: crate::core::key::PublicKey::from_bytes([1u8; 32]),
        endpoint: None,
        allowed_ips: std::collections::BTreeSet::new(),
        persistent_keepalive: 0,
        preshared_key: Some(psk.clone()),
    };
    audit.peer_op(&Op::UpsertPeer(config), Some("b"), None);
    audit.stop("SIGTERM");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(!text.contains(seed.as_str()));
    use base64::Engine as _;
    let psk_b64 = base64::engine::general_purpose::STANDARD.encode(psk.as_bytes());
    assert!(!text.contains(&psk_b64));
    assert!(!text.contains(psk.to_hex().as_str()));
    assert!(text.contains("\"preshared_key\":true"), "{text}");
}

#[test]
fn control_messages_are_audited_accepted_each_and_refused_at_a_bounded_rate() {
    use crate::control::outcome::{Outcome, Recorder, Verdict};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (audit, metrics, _) = open(&path);
    let recorder = Recorder::with_audit(metrics, Some(audit.clone()));
    let accepted = Outcome {
        kind: Some(crate::control::envelope::MessageType::Hello),
        verdict: Verdict::Accepted,
        source: "10.10.0.2".parse().expect("ip"),
        peer: Some("lux-k8s".to_owned()),
        reason: "ok",
    };
    recorder.conclude(&accepted);
    recorder.conclude(&accepted);
    let refused = Outcome {
        kind: None,
        verdict: Verdict::Refused,
        source: "10.244.0.7".parse().expect("ip"),
        peer: None,
        reason: "source_behind_peer",
    };
    for _ in 0..100 {
        recorder.conclude(&refused);
    }
    audit.stop("test");
    let text = std::fs::read_to_string(&path).expect("read");
    let control: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["kind"] == kind::CONTROL_MESSAGE)
        .collect();
    let accepted_records = control
        .iter()
        .filter(|r| r["outcome"] == "accepted" && r["actor"] == "peer:lux-k8s")
        .count();
    assert_eq!(accepted_records, 2, "{text}");
    let refused_records: Vec<_> = control
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused_records.len(), 1, "{text}");
    assert_eq!(refused_records[0]["actor"], "source:10.244.0.7");
    verify(&path);
}
