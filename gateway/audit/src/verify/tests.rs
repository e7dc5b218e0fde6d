use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;
use crate::{AuditKey, Chain, CheckpointReason};

/// Writes records the way the gateway does.
struct Writer {
    chain: Chain,
    key: AuditKey,
    text: String,
}

impl Writer {
    fn new() -> Self {
        Self {
            chain: Chain::new(),
            key: AuditKey::from_seed(&[9u8; 32]),
            text: String::new(),
        }
    }

    fn record(&mut self, time: u64, kind: &str, details: Map<String, Value>) -> &mut Self {
        let sealed = self
            .chain
            .seal(time, kind, "gateway", "subject-a", "ok", details)
            .expect("seal");
        self.push(&sealed)
    }

    fn checkpoint(&mut self, time: u64, reason: CheckpointReason) -> &mut Self {
        let sealed = self
            .chain
            .checkpoint(time, "gateway", reason, 300, &self.key)
            .expect("seal");
        self.push(&sealed)
    }

    fn push(&mut self, sealed: &crate::Sealed) -> &mut Self {
        self.text.push_str(&sealed.line);
        self.text.push('\n');
        self.chain.commit(sealed);
        self
    }
}

/// start, checkpoint, key load, peer change, checkpoint, admin call, stop, checkpoint.
fn valid() -> Writer {
    let mut w = Writer::new();
    w.record(100, kind::START, Map::new())
        .checkpoint(100, CheckpointReason::Start)
        .record(100, kind::KEY_LOAD, Map::new())
        .record(150, kind::PEER_CHANGE, Map::new())
        .checkpoint(400, CheckpointReason::Interval)
        .record(500, kind::ADMIN_CALL, Map::new())
        .record(600, kind::STOP, Map::new())
        .checkpoint(600, CheckpointReason::Stop);
    w
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn join(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Recomputes `prev` and `hash` of every line (and `seq` when `renumber`), as someone without
/// the audit key would after tampering.
fn rechain(lines: &[String], renumber: bool) -> Vec<String> {
    let mut head = GENESIS.to_owned();
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut value: Value = serde_json::from_str(line).expect("json");
            let map = value.as_object_mut().expect("object");
            map.insert("prev".to_owned(), Value::from(head.clone()));
            if renumber {
                map.insert("seq".to_owned(), Value::from(i as u64));
            }
            let hash = record_hash(&value).expect("hash");
            value
                .as_object_mut()
                .expect("object")
                .insert("hash".to_owned(), Value::from(hash.clone()));
            head = hash;
            canonical(&value).expect("canonical")
        })
        .collect()
}

fn failure(text: &str) -> Failure {
    verify(text.as_bytes(), None).expect_err("must fail")
}

#[test]
fn a_valid_file_verifies() {
    let w = valid();
    let summary = verify(w.text.as_bytes(), Some(&w.key.public())).expect("valid");
    assert_eq!(summary.records, 8);
    let last = summary.last_checkpoint.expect("checkpoint");
    assert_eq!((last.line, last.seq, last.reason.as_str()), (8, 7, "stop"));
    assert_eq!(summary.key_ids, vec![w.key.public().key_id()]);
}

#[test]
fn an_edited_field_is_named_at_its_line() {
    let mut l = lines(&valid().text);
    l[3] = l[3].replace("subject-a", "subject-b");
    let f = failure(&join(&l));
    assert_eq!((f.line, f.seq), (4, None));
    assert_eq!(f.problem.kind(), "edited", "{f}");
}

#[test]
fn a_deleted_line_is_named_as_missing() {
    let mut l = lines(&valid().text);
    l.remove(3);
    let f = failure(&join(&l));
    assert_eq!(
        (f.line, f.seq, f.problem.kind()),
        (4, Some(4), "missing"),
        "{f}"
    );
}

#[test]
fn swapped_lines_are_named_as_reordered() {
    let mut l = lines(&valid().text);
    l.swap(3, 5);
    let f = failure(&join(&l));
    assert_eq!(
        (f.line, f.seq, f.problem.kind()),
        (4, Some(5), "reordered"),
        "{f}"
    );
    assert!(f.to_string().contains("line 6"), "{f}");
}

#[test]
fn a_cut_tail_is_named_as_truncated() {
    let mut l = lines(&valid().text);
    l.truncate(7);
    let f = failure(&join(&l));
    assert_eq!(
        (f.line, f.seq, f.problem.kind()),
        (6, Some(5), "truncated"),
        "{f}"
    );
    let text = valid().text;
    let f = failure(&text[..text.len() - 10]);
    assert_eq!((f.line, f.problem.kind()), (8, "truncated"), "{f}");
}

#[test]
fn a_changed_signature_is_named_at_the_checkpoint() {
    let mut l = lines(&valid().text);
    let mut value: Value = serde_json::from_str(&l[4]).expect("json");
    let other = AuditKey::from_seed(&[1u8; 32]).sign(b"other");
    value["details"]["signature"] = Value::from(STANDARD.encode(other));
    l[4] = canonical(&value).expect("canonical");
    // Without a new hash the line is simply edited; with the chain recomputed, the
    // signature is what gives it away.
    assert_eq!(failure(&join(&l)).line, 5);
    let f = failure(&join(&rechain(&l, false)));
    assert_eq!(
        (f.line, f.seq, f.problem.kind()),
        (5, Some(4), "bad signature"),
        "{f}"
    );
}

#[test]
fn an_edit_with_the_chain_recomputed_fails_at_the_next_checkpoint() {
    let mut l = lines(&valid().text);
    l[3] = l[3].replace("subject-a", "subject-b");
    let f = failure(&join(&rechain(&l, false)));
    assert_eq!((f.line, f.problem.kind()), (5, "bad signature"), "{f}");
}

#[test]
fn a_file_without_checkpoints_fails() {
    let l: Vec<String> = lines(&valid().text)
        .into_iter()
        .filter(|l| !l.contains("\"kind\":\"checkpoint\""))
        .collect();
    let f = failure(&join(&l));
    assert_eq!((f.line, f.problem.kind()), (2, "missing"), "{f}");
    // Within the grace after start, no gap is seen: the file has no checkpoint at all.
    let mut w = Writer::new();
    w.record(100, kind::START, Map::new())
        .checkpoint(100, CheckpointReason::Start)
        .record(110, kind::STOP, Map::new())
        .checkpoint(110, CheckpointReason::Stop);
    let l: Vec<String> = lines(&w.text)
        .into_iter()
        .filter(|l| !l.contains("\"kind\":\"checkpoint\""))
        .collect();
    let f = failure(&join(&rechain(&l, true)));
    assert_eq!(
        (f.line, f.seq, &f.problem),
        (1, Some(0), &Problem::NoCheckpoint),
        "{f}"
    );
    assert_eq!(failure("").problem, Problem::NoCheckpoint);
}

#[test]
fn a_removed_interval_checkpoint_is_a_gap() {
    let mut l = lines(&valid().text);
    l.remove(4);
    let f = failure(&join(&rechain(&l, true)));
    assert_eq!((f.line, f.problem.kind()), (5, "gap in checkpoints"), "{f}");
}

#[test]
fn another_key_is_refused_when_one_is_given() {
    let w = valid();
    let other = AuditKey::from_seed(&[2u8; 32]).public();
    let f = verify(w.text.as_bytes(), Some(&other)).expect_err("other key");
    assert_eq!((f.line, f.problem.kind()), (2, "bad signature"), "{f}");
}

#[test]
fn a_start_inside_a_running_session_is_refused() {
    let mut w = Writer::new();
    w.record(100, kind::START, Map::new())
        .checkpoint(100, CheckpointReason::Start)
        .record(120, kind::START, Map::new())
        .checkpoint(120, CheckpointReason::Stop);
    let f = failure(&w.text);
    assert_eq!((f.line, f.problem.kind()), (3, "missing"), "{f}");
}

#[test]
fn a_torn_line_recovered_as_documented_verifies() {
    let mut w = Writer::new();
    w.record(100, kind::START, Map::new())
        .checkpoint(100, CheckpointReason::Start)
        .record(110, kind::PEER_CHANGE, Map::new());
    w.text.push_str("{\"actor\":\"gatew");
    assert_eq!(failure(&w.text).problem.kind(), "truncated");
    let resume = resume(w.text.as_bytes()).expect("resumable");
    let torn = resume.torn.expect("torn");
    assert_eq!((torn.line, torn.bytes, resume.clean), (4, 15, false));
    assert_eq!(resume.unsigned, 1);
    let mut chain = Chain::resume(resume.next_seq, resume.head);
    assert_eq!(chain, w.chain);
    w.text.push('\n');
    let mut details = Map::new();
    details.insert("torn_line".to_owned(), Value::from(4u64));
    details.insert("torn_bytes".to_owned(), Value::from(15u64));
    w.record(200, kind::RECOVERED, details)
        .record(200, kind::START, Map::new())
        .checkpoint(200, CheckpointReason::Start)
        .record(210, kind::STOP, Map::new())
        .checkpoint(210, CheckpointReason::Stop);
    let summary = verify(w.text.as_bytes(), None).expect("valid");
    assert_eq!((summary.records, summary.recoveries), (8, 1));
    chain = w.chain.clone();
    assert_eq!(chain.next_seq(), 8);
}

#[test]
fn an_unclean_stop_recovered_verifies_and_a_clean_one_resumes_cleanly() {
    let mut w = Writer::new();
    w.record(100, kind::START, Map::new())
        .checkpoint(100, CheckpointReason::Start)
        .record(110, kind::PEER_CHANGE, Map::new());
    let r = resume(w.text.as_bytes()).expect("resumable");
    assert_eq!((r.clean, r.torn, r.unsigned), (false, None, 1));
    w.record(5000, kind::RECOVERED, Map::new())
        .record(5000, kind::START, Map::new())
        .checkpoint(5000, CheckpointReason::Start)
        .record(5001, kind::STOP, Map::new())
        .checkpoint(5001, CheckpointReason::Stop);
    verify(w.text.as_bytes(), None).expect("valid");
    let r = resume(w.text.as_bytes()).expect("resumable");
    assert!(r.clean);
    assert!(resume(b"").expect("empty").clean);
}

#[test]
fn a_torn_line_in_the_middle_without_its_recovered_record_is_edited() {
    let mut l = lines(&valid().text);
    l.insert(3, "{\"actor\":\"gat".to_owned());
    let f = failure(&join(&l));
    assert_eq!((f.line, f.problem.kind()), (4, "edited"), "{f}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_single_byte_change_is_caught(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let text = valid().text.into_bytes();
        let i = index.index(text.len());
        prop_assume!(text[i] != byte);
        let mut changed = text.clone();
        changed[i] = byte;
        prop_assert!(verify(&changed, None).is_err());
    }
}
