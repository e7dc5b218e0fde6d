//! The fake follows the API where the gateway relies on it, checked with kube's own client.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::{Client, Config};
use kube_fake::{FakeApiServer, FakeConfig, PEERS, TooOld};
use serde_json::json;

const NS: &str = "zt-system";

async fn fake(config: FakeConfig) -> FakeApiServer {
    FakeApiServer::start("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("fake")
}

fn client(fake: &FakeApiServer, token: Option<&str>) -> Client {
    let mut config = Config::new(fake.url().parse().expect("url"));
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_owned().into());
    }
    Client::try_from(config).expect("client")
}

fn peers(client: Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "zt.hanzo.ai".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "zt.hanzo.ai/v1alpha1".to_owned(),
        kind: "WireGuardPeer".to_owned(),
        plural: "wireguardpeers".to_owned(),
    };
    Api::namespaced_with(client, NS, &resource)
}

fn code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("not an API error: {other}"),
    }
}

fn apply(status: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Apply(json!({
        "apiVersion": "zt.hanzo.ai/v1alpha1",
        "kind": "WireGuardPeer",
        "status": status,
    }))
}

#[tokio::test]
async fn status_apply_owns_fields_and_skips_no_ops() {
    let fake = fake(FakeConfig::default()).await;
    fake.put_peer(NS, "b", json!({"cluster": "b"})).await;
    let api = peers(client(&fake, None));
    let params = PatchParams::apply("zt-gateway").force();

    let first = api
        .patch_status("b", &params, &apply(json!({"rxBytes": 1, "txBytes": 2})))
        .await
        .expect("apply");
    assert_eq!(first.data["status"]["txBytes"], 2);
    let version = first.metadata.resource_version.clone();

    // Applying the same again changes nothing, not even the resource version.
    let again = api
        .patch_status("b", &params, &apply(json!({"rxBytes": 1, "txBytes": 2})))
        .await
        .expect("apply");
    assert_eq!(again.metadata.resource_version, version);

    // A field the manager no longer applies is removed; generation does not move.
    let next = api
        .patch_status("b", &params, &apply(json!({"rxBytes": 5})))
        .await
        .expect("apply");
    assert_eq!(next.data["status"], json!({"rxBytes": 5}));
    assert_eq!(next.metadata.generation, Some(1));
    assert_eq!(fake.stats().await.status_patches["b"], 3);
}

#[tokio::test]
async fn status_apply_refuses_what_the_api_server_refuses() {
    let fake = fake(FakeConfig::default()).await;
    fake.put_peer(NS, "b", json!({"cluster": "b"})).await;
    let api = peers(client(&fake, None));
    let forced = PatchParams::apply("zt-gateway").force();
    let missing = api
        .patch_status("nobody", &forced, &apply(json!({"rxBytes": 1})))
        .await
        .expect_err("missing");
    assert_eq!(code(missing), 404);
    let untyped = Patch::Apply(json!({"status": {"rxBytes": 1}}));
    let invalid = api
        .patch_status("b", &forced, &untyped)
        .await
        .expect_err("no apiVersion and kind");
    assert_eq!(code(invalid), 422);

    api.patch_status("b", &forced, &apply(json!({"rxBytes": 1})))
        .await
        .expect("apply");
    let other = PatchParams::apply("someone-else");
    let conflict = api
        .patch_status("b", &other, &apply(json!({"rxBytes": 9})))
        .await
        .expect_err("conflict");
    assert_eq!(code(conflict), 409);
    let taken = api
        .patch_status("b", &other.force(), &apply(json!({"rxBytes": 9})))
        .await
        .expect("forced apply");
    assert_eq!(taken.data["status"]["rxBytes"], 9);
}

#[tokio::test]
async fn lists_page_and_expired_continue_tokens_are_gone() {
    let fake = fake(FakeConfig::default()).await;
    for name in ["a", "b", "c"] {
        fake.put_peer(NS, name, json!({"cluster": name})).await;
    }
    let api = peers(client(&fake, None));
    let page = api
        .list(&ListParams::default().limit(2))
        .await
        .expect("page");
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().expect("continue");
    let rest = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect("rest");
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].metadata.name.as_deref(), Some("c"));

    fake.compact().await;
    let expired = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .expect_err("expired");
    assert_eq!(code(expired), 410);
}

#[tokio::test]
async fn watches_replay_changes_and_answer_410_for_compacted_versions() {
    let fake = fake(FakeConfig::default()).await;
    let api = peers(client(&fake, None));
    let listed = api.list(&ListParams::default()).await.expect("list");
    let from = listed.metadata.resource_version.expect("version");
    fake.put_peer(NS, "a", json!({"cluster": "a"})).await;
    fake.put_peer(NS, "a", json!({"cluster": "a2"})).await;
    fake.delete(PEERS, NS, "a").await;
    let mut events = api
        .watch(&WatchParams::default().timeout(1), &from)
        .await
        .expect("watch")
        .boxed();
    let mut kinds = Vec::new();
    while let Some(event) = events.next().await {
        kinds.push(match event.expect("event") {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(o) => {
                assert_eq!(o.metadata.generation, Some(2));
                "MODIFIED"
            }
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(e) => panic!("{e:?}"),
        });
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);

    fake.compact().await;
    let mut events = api
        .watch(&WatchParams::default(), &from)
        .await
        .expect("the watch starts")
        .boxed();
    match events.next().await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    fake.set_too_old(TooOld::Status).await;
    let refused = api
        .watch(&WatchParams::default(), &from)
        .await
        .err()
        .expect("HTTP 410");
    assert_eq!(code(refused), 410);
}

#[tokio::test]
async fn watches_with_bookmarks_get_the_current_version() {
    let fake = fake(FakeConfig {
        bookmark_interval: Duration::from_millis(50),
        ..FakeConfig::default()
    })
    .await;
    fake.put_peer(NS, "a", json!({"cluster": "a"})).await;
    let api = peers(client(&fake, None));
    let mut events = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .expect("watch")
        .boxed();
    assert!(matches!(
        events.next().await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    match events.next().await {
        Some(Ok(WatchEvent::Bookmark(mark))) => assert!(!mark.metadata.resource_version.is_empty()),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_are_created_once_and_replaced_only_at_the_current_version() {
    let fake = fake(FakeConfig::default()).await;
    let api: Api<Lease> = Api::namespaced(client(&fake, None), NS);
    let mut lease = Lease::default();
    lease.metadata.name = Some("zt-gateway-wg0".to_owned());
    let created = api
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let again = api
        .create(&PostParams::default(), &lease)
        .await
        .expect_err("exists");
    assert_eq!(code(again), 409);

    let mut update = created.clone();
    update.spec = Some(Default::default());
    api.replace("zt-gateway-wg0", &PostParams::default(), &update)
        .await
        .expect("replace at the current version");
    let stale = api
        .replace("zt-gateway-wg0", &PostParams::default(), &update)
        .await
        .expect_err("stale version");
    assert_eq!(code(stale), 409);
    let missing = api.get("other").await.expect_err("missing");
    assert_eq!(code(missing), 404);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let fake = fake(FakeConfig {
        token: Some("s3cret".to_owned()),
        ..FakeConfig::default()
    })
    .await;
    let anonymous = peers(client(&fake, None))
        .list(&ListParams::default())
        .await
        .expect_err("anonymous");
    assert_eq!(code(anonymous), 401);
    peers(client(&fake, Some("s3cret")))
        .list(&ListParams::default())
        .await
        .expect("with the token");
}
