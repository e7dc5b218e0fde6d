//! The Kubernetes backend: its pure parts (reading a stored state, the condition, the apply
//! body), then the store against the fake API server (`kube-fake`) on loopback.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition as ApiCondition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube_fake::{FakeApiServer, FakeConfig, PEERS};
use serde_json::{Value, json};
use ztgw_rotation::RotationId;
use ztgw_rotation::machine::AnnounceBody;
use ztgw_rotation::responder::{self, PeerRotationState};

use super::*;
use crate::rotate::peer_store::{PeerStore, StoreError};

const NS: &str = "zt-system";
const T0: SystemTime = SystemTime::UNIX_EPOCH;
/// Bounds every wait for a background write (real time).
const PATIENCE: Duration = Duration::from_secs(15);

#[test]
fn a_status_without_a_stored_state_reads_as_none() {
    assert_eq!(read_state(None), Ok(None));
    assert_eq!(read_state(Some(&json!({"rxBytes": 3}))), Ok(None));
    assert_eq!(read_state(Some(&json!({"rotation": null}))), Ok(None));
}

#[test]
fn the_stored_state_reads_back_as_the_apply_body_wrote_it() {
    let state = pending(&PeerRotationState::new(key(1)), key(2), 7);
    let body = apply_body(&state, &condition_at(T0)).expect("body");

    assert_eq!(read_state(Some(&body["status"])), Ok(Some(state)));
}

#[test]
fn a_damaged_stored_state_is_refused_without_its_content() {
    let not_a_state = json!({"rotation": {"active_public_key": "SECRET-LOOKING-TEXT"}});
    let what = read_state(Some(&not_a_state)).expect_err("damaged");
    assert_eq!(what, "not a peer rotation state");

    let not_an_object = json!({"rotation": "SECRET-LOOKING-TEXT"});
    assert_eq!(read_state(Some(&not_an_object)), Err("not a JSON object"));

    let too_many_retired = json!({"rotation": {
        "active_public_key": key(1).to_base64(),
        "retired": (10..19).map(|b| key(b).to_base64()).collect::<Vec<_>>(),
    }});
    assert!(read_state(Some(&too_many_retired)).is_err());
}

#[test]
fn the_apply_body_holds_only_the_rotation_fields_and_the_next_key_while_pending() {
    let state = pending(&PeerRotationState::new(key(1)), key(2), 7);

    let body = apply_body(&state, &condition_at(T0)).expect("body");

    assert_eq!(body["apiVersion"], "zt.hanzo.ai/v1alpha1");
    assert_eq!(body["kind"], "WireGuardPeer");
    let status = body["status"].as_object().expect("status");
    let fields: Vec<&str> = status.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        ["activePublicKey", "conditions", "nextPublicKey", "rotation"]
    );
    assert_eq!(status["activePublicKey"], key(1).to_base64());
    assert_eq!(status["nextPublicKey"], key(2).to_base64());
    assert_eq!(status["rotation"]["last_sequence"], 7);
    assert_eq!(status["conditions"][0]["type"], KEY_CURRENT);
}

#[test]
fn the_apply_body_leaves_the_next_key_and_nulls_out_once_the_rotation_ended() {
    let done = completed(&PeerRotationState::new(key(1)), key(2), 7);

    let body = apply_body(&done, &condition_at(T0)).expect("body");

    let status = &body["status"];
    assert_eq!(status["activePublicKey"], key(2).to_base64());
    assert!(status.get("nextPublicKey").is_none(), "{status}");
    let text = status["rotation"].to_string();
    assert!(!text.contains("null"), "{text}");
}

#[test]
fn the_condition_says_whether_the_declaration_names_the_running_key() {
    let done = completed(&PeerRotationState::new(key(1)), key(2), 7);

    let current = key_condition(&done, Some(&key(2)));
    assert_eq!(
        (current.status, current.reason),
        ("True", "DeclarationCurrent")
    );

    let outdated = key_condition(&done, Some(&key(1)));
    assert_eq!(
        (outdated.status, outdated.reason),
        ("False", "DeclarationOutdated")
    );
    assert!(
        outdated
            .message
            .contains(&format!("set spec.publicKey to {}", key(2))),
        "{}",
        outdated.message
    );

    let new = key_condition(&done, Some(&key(3)));
    assert_eq!((new.status, new.reason), ("True", "NewKeyDeclared"));

    let unknown = key_condition(&done, None);
    assert_eq!(unknown.status, "Unknown");
}

#[test]
fn a_condition_keeps_its_transition_time_until_its_status_changes() {
    let done = completed(&PeerRotationState::new(key(1)), key(2), 7);
    let first = to_condition(key_condition(&done, Some(&key(1))), None, T0);
    let later = T0 + Duration::from_secs(60);

    let same = to_condition(key_condition(&done, Some(&key(1))), Some(&first), later);
    let changed = to_condition(key_condition(&done, Some(&key(2))), Some(&first), later);

    assert_eq!(same.last_transition_time, first.last_transition_time);
    assert_eq!(changed.last_transition_time.0.as_second(), 60);
}

#[test]
fn the_key_condition_is_read_among_the_others() {
    let written = condition_at(T0);
    let status = json!({"conditions": [
        {"type": "Ready", "status": "True", "reason": "Applied", "message": "", "lastTransitionTime": "1970-01-01T00:00:00Z"},
        written,
    ]});

    assert_eq!(read_condition(Some(&status)), Some(written));
    assert_eq!(read_condition(Some(&json!({"conditions": []}))), None);
}

#[tokio::test]
async fn a_stored_state_is_on_the_resource_and_survives_a_reopen() {
    let fake = fake().await;
    fake.put_peer(NS, "b", spec(key(1))).await;
    let store = PeerStore::open_kube(client(&fake), NS).await.expect("open");
    store.set_declared(BTreeMap::from([("b".to_owned(), key(1))]));
    let state = pending(&PeerRotationState::new(key(1)), key(2), 7);

    store.put("b", state.clone()).await.expect("put");

    assert_eq!(store.get("b"), Some(state.clone()));
    let status = status_of(&fake, "b").await;
    assert_eq!(status["nextPublicKey"], key(2).to_base64());
    assert_eq!(status["conditions"][0]["status"], "True");
    let reopened = PeerStore::open_kube(client(&fake), NS)
        .await
        .expect("reopen");
    assert_eq!(reopened.get("b"), Some(state));
    assert_eq!(reopened.get("c"), None);
}

#[tokio::test]
async fn a_write_the_api_server_refuses_changes_nothing() {
    let fake = fake().await;
    fake.put_peer(NS, "b", spec(key(1))).await;
    let store = PeerStore::open_kube(client(&fake), NS).await.expect("open");
    let state = pending(&PeerRotationState::new(key(1)), key(2), 7);
    store.put("b", state.clone()).await.expect("put");
    fake.delete(PEERS, NS, "b").await;

    let err = store
        .put("b", completed(&PeerRotationState::new(key(1)), key(2), 7))
        .await
        .expect_err("the resource is gone");

    assert!(matches!(err, StoreError::Api { .. }), "{err}");
    assert_eq!(store.get("b"), Some(state));
}

#[tokio::test]
async fn a_damaged_stored_state_stops_the_open_naming_the_resource() {
    let fake = fake().await;
    fake.put_peer(NS, "b", spec(key(1))).await;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client(&fake), NS, &ApiResource::erase::<WireGuardPeer>(&()));
    api.patch_status(
        "b",
        &PatchParams::apply("someone-else"),
        &Patch::Apply(json!({
            "apiVersion": "zt.hanzo.ai/v1alpha1",
            "kind": "WireGuardPeer",
            "status": {"rotation": {"active_public_key": "SECRET-LOOKING-TEXT"}},
        })),
    )
    .await
    .expect("patch");

    let err = PeerStore::open_kube(client(&fake), NS)
        .await
        .expect_err("damaged");

    assert!(matches!(err, StoreError::DamagedStatus { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("WireGuardPeer zt-system/b"), "{text}");
    assert!(!text.contains("SECRET"), "{text}");
}

#[tokio::test]
async fn an_unreachable_api_server_fails_the_open() {
    // Nothing listens on this port.
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");

    let err = PeerStore::open_kube(client, NS)
        .await
        .expect_err("unreachable");

    assert!(
        matches!(err, StoreError::Api { .. } | StoreError::TimedOut { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_updated_declaration_gets_its_condition_rewritten() {
    let fake = fake().await;
    fake.put_peer(NS, "b", spec(key(1))).await;
    let store = PeerStore::open_kube(client(&fake), NS).await.expect("open");
    store.set_declared(BTreeMap::from([("b".to_owned(), key(1))]));
    let done = completed(&PeerRotationState::new(key(1)), key(2), 7);
    store.put("b", done.clone()).await.expect("put");
    let status = status_of(&fake, "b").await;
    assert_eq!(status["conditions"][0]["reason"], "DeclarationOutdated");

    // The operator declares the key the peer rotated to.
    store.set_declared(BTreeMap::from([("b".to_owned(), key(2))]));

    let mut waited = Duration::ZERO;
    loop {
        let status = status_of(&fake, "b").await;
        if status["conditions"][0]["reason"] == "DeclarationCurrent" {
            assert_eq!(status["conditions"][0]["status"], "True");
            assert_eq!(status["activePublicKey"], key(2).to_base64());
            break;
        }
        assert!(waited < PATIENCE, "condition not rewritten: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(store.get("b"), Some(done), "the state is unchanged");
}

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn rotation_id() -> RotationId {
    RotationId::new("00000000000000aa").expect("id")
}

/// `state` after the peer announced `next` with `sequence`.
fn pending(state: &PeerRotationState, next: PublicKey, sequence: u64) -> PeerRotationState {
    let body = AnnounceBody {
        rotation_id: rotation_id(),
        sequence,
        next_public_key: next,
        sender_key: *state.active_public_key(),
        receiver_key: key(9),
    };
    responder::on_announce(state, &body, &key(9))
        .expect("taken")
        .0
}

/// `state` after the peer announced `next` with `sequence` and completed the rotation.
fn completed(state: &PeerRotationState, next: PublicKey, sequence: u64) -> PeerRotationState {
    responder::on_complete(&pending(state, next, sequence), &rotation_id()).expect("complete")
}

fn condition_at(now: SystemTime) -> ApiCondition {
    let state = PeerRotationState::new(key(1));
    to_condition(key_condition(&state, Some(&key(1))), None, now)
}

async fn fake() -> FakeApiServer {
    FakeApiServer::start("127.0.0.1:0".parse().expect("addr"), FakeConfig::default())
        .await
        .expect("fake API server")
}

fn client(fake: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

fn spec(public_key: PublicKey) -> Value {
    json!({
        "cluster": "b",
        "publicKey": public_key.to_base64(),
        "allowedIPs": ["10.2.0.0/16"],
    })
}

async fn status_of(fake: &FakeApiServer, name: &str) -> Value {
    fake.get(PEERS, NS, name)
        .await
        .map(|object| object["status"].clone())
        .unwrap_or_default()
}
