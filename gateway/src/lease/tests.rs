//! The lease against the fake API server (`kube-fake`). Expiry by time is covered by the
//! core's election tests and the netns lease test.

use kube_fake::{FakeApiServer, FakeConfig, LEASES};
use serde_json::json;

use super::*;

const NS: &str = "zt-system";

async fn fake() -> FakeApiServer {
    FakeApiServer::start("127.0.0.1:0".parse().expect("addr"), FakeConfig::default())
        .await
        .expect("fake API server")
}

fn lock(fake: &FakeApiServer, identity: &str) -> LeaseLock {
    let config = kube::Config::new(fake.url().parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    LeaseLock::new(client, NS, "wg0", identity.to_owned())
}

#[tokio::test]
async fn first_gateway_creates_the_lease_and_a_second_one_waits() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    assert_eq!(
        second.round(clock::now()).await,
        Round::Waiting("lease held by gw-a_1".to_owned())
    );
    let stored = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-a_1");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 15);
    assert!(stored["spec"]["renewTime"].as_str().is_some());

    // Renewal keeps the lease and moves its renew time.
    assert_eq!(first.round(clock::now()).await, Round::Held);
    let renewed = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_ne!(
        renewed["metadata"]["resourceVersion"],
        stored["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    first.release().await;
    assert_eq!(second.round(clock::now()).await, Round::Held);
    let stored = fake.get(LEASES, NS, "zt-gateway-wg0").await.expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "gw-b_2");
    assert_eq!(stored["spec"]["leaseTransitions"], 1);
}

#[tokio::test]
async fn a_holder_that_finds_another_holder_has_lost_the_lease() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    fake.put(
        LEASES,
        NS,
        "zt-gateway-wg0",
        json!({"spec": {"holderIdentity": "gw-c_3", "leaseDurationSeconds": 15}}),
    )
    .await;
    assert_eq!(
        first.round(clock::now()).await,
        Round::Lost("gw-c_3".to_owned())
    );
}

#[tokio::test]
async fn a_stale_write_loses_to_the_current_version() {
    let fake = fake().await;
    let first = lock(&fake, "gw-a_1");
    let mut second = lock(&fake, "gw-b_2");
    assert_eq!(second.round(clock::now()).await, Round::Held);
    let spec = LeaseSpec {
        holder: Some("gw-a_1".to_owned()),
        duration: LEASE_DURATION,
        acquired: clock::now(),
        renewed: clock::now(),
        transitions: 1,
    };
    let refused = first.write(Some("1"), &spec).await;
    assert_eq!(refused, Err("another gateway wrote it first".to_owned()));
    assert_eq!(fake.stats().await.lease_conflicts, 1);
}

#[tokio::test]
async fn waiting_for_the_lease_is_shown_as_not_ready() {
    let fake = fake().await;
    let mut first = lock(&fake, "gw-a_1");
    assert_eq!(first.round(clock::now()).await, Round::Held);
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let mut second = lock(&fake, "gw-b_2");
    let waiting =
        tokio::time::timeout(Duration::from_millis(300), second.acquire(&readiness)).await;
    assert!(waiting.is_err(), "the second gateway must keep waiting");
    assert_eq!(
        readiness.read().expect("lock").failing()[1],
        "lease held by gw-a_1"
    );
}

#[test]
fn identity_is_the_host_name_with_a_random_suffix() {
    let one = identity();
    let two = identity();
    assert_ne!(one, two);
    let (host, suffix) = one.rsplit_once('_').expect("suffix");
    assert!(!host.is_empty());
    assert_eq!(suffix.len(), 8);
}
