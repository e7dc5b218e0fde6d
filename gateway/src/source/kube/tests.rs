//! The Kubernetes source driving a [`FakeDevice`] through the driver, against the fake API
//! server (`kube-fake`) on loopback. Simulated time is passed to each pass explicitly.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use kube_fake::{FakeApiServer, FakeConfig, PEERS, TooOld};
use serde_json::{Value, json};

use super::*;
use crate::core::health::Liveness;
use crate::core::health::Readiness;
use crate::core::key::PublicKey;
use crate::core::plan::Op;
use crate::core::psk::PresharedKey;
use crate::driver::Driver;
use crate::driver::Outputs;
use crate::metrics::Metrics;
use crate::status::{GatewayInfo, Identity, StatusBoard};
use crate::testing::{FakeDevice, Stats};

const NS: &str = "zt-system";
const T0: SystemTime = SystemTime::UNIX_EPOCH;
/// Bounds every wait for the watch to catch up (real time).
const PATIENCE: Duration = Duration::from_secs(15);
const GENPSK: &str = "2Aq9Yo8Qv5Ju6c3T1xQ2a8ZlM0v5mJkz0CqO8i3uX2Q=\n";

#[tokio::test]
async fn peers_follow_resources_added_changed_and_deleted() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.fake.put_peer(NS, "c", spec("c", "10.3.0.0/16")).await;
    h.until("b and c applied", |h| h.device.peers().len() == 2)
        .await;
    assert!(h.is_ready());

    h.fake.put_peer(NS, "b", spec("b", "10.20.0.0/16")).await;
    h.until("b changed", |h| {
        h.device.peers().get(&key("b")).is_some_and(|p| {
            p.allowed_ips
                .iter()
                .any(|n| n.to_string() == "10.20.0.0/16")
        })
    })
    .await;
    h.until("status names generation 2", |h| {
        h.status_of("b")["observedGeneration"] == 2
    })
    .await;

    h.fake.delete(PEERS, NS, "c").await;
    h.until("c removed", |h| !h.device.peers().contains_key(&key("c")))
        .await;
    assert!(h.device.log().contains(&Op::RemovePeer(key("c"))));
}

#[tokio::test]
async fn nothing_is_planned_before_the_first_complete_list() {
    // Nothing listens on this port: the list never completes.
    let unreachable: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let device = FakeDevice::new();
    let stray = crate::core::peer::PeerConfig {
        public_key: key("stray"),
        endpoint: None,
        allowed_ips: std::collections::BTreeSet::new(),
        persistent_keepalive: 0,
        preshared_key: None,
    };
    let mut seed = device.clone();
    crate::device::Device::apply(&mut seed, &Op::UpsertPeer(stray), None)
        .await
        .expect("seed");
    let readiness = Arc::new(RwLock::new(Readiness::default()));
    let mut driver = driver(device.clone(), &format!("http://{unreachable}"), &readiness);
    for second in 0..3 {
        driver.tick(T0 + Duration::from_secs(second)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!driver.source().is_listed());
    assert_eq!(device.log().len(), 1, "{:?}", device.log());
    assert!(!readiness.read().expect("lock").peers_reconciled);

    // A watch task that is gone (its store writer dropped) does not count as listed either.
    driver.source().watch.abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    driver.tick(T0 + Duration::from_secs(3)).await;
    assert!(!driver.source().is_listed());
    assert_eq!(device.log().len(), 1, "{:?}", device.log());
}

#[tokio::test]
async fn invalid_resources_are_not_ready_with_the_reason_and_the_others_apply() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.fake
        .put_peer(NS, "host-bits", spec("host-bits", "10.4.0.1/16"))
        .await;
    h.fake
        .put_peer(NS, "overlap", spec("overlap", "10.2.128.0/17"))
        .await;
    h.fake
        .put_peer(
            NS,
            "schema",
            json!({"publicKey": key("schema").to_base64()}),
        )
        .await;
    // Values of the wrong type are never repeated in the reason.
    h.fake
        .put_peer(
            NS,
            "marker",
            json!({
                "cluster": "marker",
                "publicKey": key("marker").to_base64(),
                "allowedIPs": "SECRET-MARKER-1",
                "persistentKeepalive": "SECRET-MARKER-2",
            }),
        )
        .await;
    h.until("every status written", |h| {
        ["b", "host-bits", "overlap", "schema", "marker"]
            .iter()
            .all(|n| h.status_of(n).get("conditions").is_some())
    })
    .await;

    assert_eq!(h.ready("b"), ("True".to_owned(), "Applied".to_owned()));
    let (status, reason, message) = h.ready_message("host-bits");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(message.contains("host bits"), "{message}");
    let (_, reason, message) = h.ready_message("overlap");
    assert_eq!(reason, "Conflict");
    assert!(message.contains("zt-system/b"), "{message}");
    let (_, reason, message) = h.ready_message("schema");
    assert_eq!(reason, "Invalid");
    assert!(message.contains("schema"), "{message}");
    let (_, reason, message) = h.ready_message("marker");
    assert_eq!(reason, "Invalid");
    assert!(message.contains("spec.allowedIPs"), "{message}");
    assert!(!message.contains("SECRET-MARKER"), "{message}");
    assert_eq!(h.device.peers().len(), 1);
    assert_eq!(h.status_of("b")["observedGeneration"], 1);
}

#[tokio::test]
async fn preshared_key_comes_from_the_secret_and_fails_closed_without_it() {
    let mut h = Harness::start().await;
    h.fake
        .put_secret(NS, "psk-b", "psk", GENPSK.as_bytes())
        .await;
    h.fake
        .put_peer(NS, "b", with_psk(spec("b", "10.2.0.0/16"), "psk-b"))
        .await;
    h.fake
        .put_peer(NS, "c", with_psk(spec("c", "10.3.0.0/16"), "psk-c"))
        .await;
    h.until("b applied, c rejected", |h| {
        h.device.peers().contains_key(&key("b")) && h.status_of("c").get("conditions").is_some()
    })
    .await;
    let expected = PresharedKey::from_base64(GENPSK.as_bytes()).expect("psk");
    assert_eq!(h.device.peers()[&key("b")].preshared_key, Some(expected));
    let (_, reason, message) = h.ready_message("c");
    assert_eq!(reason, "SecretUnavailable");
    assert_eq!(message, UNUSABLE, "{message}");

    // A Secret that appears is read within the retry interval; a bad value is not applied.
    h.fake.put_secret(NS, "psk-c", "psk", b"not a key").await;
    h.advance(secret::RETRY);
    h.tick().await;
    h.refresh().await;
    assert!(!h.device.peers().contains_key(&key("c")));
    assert_eq!(h.ready_message("c").2, UNUSABLE);
    h.fake
        .put_secret(NS, "psk-c", "psk", GENPSK.as_bytes())
        .await;
    h.advance(secret::RETRY);
    h.until("c applied", |h| h.device.peers().contains_key(&key("c")))
        .await;

    // A Secret that disappears takes its peer down at the next refresh.
    h.fake.delete(kube_fake::SECRETS, NS, "psk-b").await;
    h.advance(secret::REFRESH);
    h.until("b removed", |h| !h.device.peers().contains_key(&key("b")))
        .await;
    assert_eq!(h.ready("b").1, "SecretUnavailable");
}

const UNUSABLE: &str = "spec.presharedKeySecretRef: not a usable preshared-key Secret (it must exist in this namespace, carry the label zt.hanzo.ai/preshared-key: \"true\" and hold base64 of 32 bytes under the key named)";

#[tokio::test]
async fn only_labelled_secrets_are_read_and_the_reason_tells_nothing_about_others() {
    let mut h = Harness::start().await;
    let unlabelled = |value: &[u8]| json!({"type": "Opaque", "data": {"psk": base64::engine::general_purpose::STANDARD.encode(value)}});
    // Not meant for the gateway: a Secret that happens to hold 32 bytes of base64, and one
    // that holds something else.
    h.fake
        .put(
            kube_fake::SECRETS,
            NS,
            "app-token",
            unlabelled(GENPSK.as_bytes()),
        )
        .await;
    h.fake
        .put(
            kube_fake::SECRETS,
            NS,
            "db-password",
            unlabelled(b"hunter2"),
        )
        .await;
    // Labelled, but wrong: a value of another length, no value under the key named.
    h.fake.put_secret(NS, "short", "psk", b"c2hvcnQ=").await;
    h.fake
        .put_secret(NS, "other-key", "other", GENPSK.as_bytes())
        .await;
    let refs = [
        ("b", "app-token"),
        ("c", "db-password"),
        ("d", "short"),
        ("e", "other-key"),
        ("f", "absent"),
    ];
    for (i, (peer, secret)) in refs.iter().enumerate() {
        h.fake
            .put_peer(
                NS,
                peer,
                with_psk(spec(peer, &format!("10.{}.0.0/16", i + 2)), secret),
            )
            .await;
    }
    h.until("every peer rejected", |h| {
        refs.iter()
            .all(|(peer, _)| h.status_of(peer).get("conditions").is_some())
    })
    .await;
    for (peer, secret) in refs {
        let (status, reason, message) = h.ready_message(peer);
        assert_eq!(
            (status.as_str(), reason.as_str(), message.as_str()),
            ("False", "SecretUnavailable", UNUSABLE),
            "{peer} -> {secret}"
        );
    }
    assert!(h.device.peers().is_empty());

    // Labelling the Secret makes it usable at the next read.
    h.fake
        .put_secret(NS, "app-token", "psk", GENPSK.as_bytes())
        .await;
    h.advance(secret::RETRY);
    h.until("b applied", |h| h.device.peers().contains_key(&key("b")))
        .await;
}

#[tokio::test]
async fn dropped_and_expired_watches_relist_without_removing_any_peer() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.fake.put_peer(NS, "c", spec("c", "10.3.0.0/16")).await;
    h.until("b and c applied", |h| h.device.peers().len() == 2)
        .await;

    // A dropped connection resumes from the last version seen.
    h.fake.drop_watches().await;
    h.fake.put_peer(NS, "d", spec("d", "10.4.0.0/16")).await;
    h.until("d applied", |h| h.device.peers().len() == 3).await;

    // A watch that ends with a 410 ERROR event lists again.
    let lists = h.fake.stats().await.lists;
    h.fake.expire_watches().await;
    h.fake.put_peer(NS, "e", spec("e", "10.5.0.0/16")).await;
    h.until("e applied", |h| h.device.peers().len() == 4).await;
    assert!(h.fake.stats().await.lists > lists);

    // Resuming from a compacted version: an ERROR event, then HTTP 410.
    for answer in [TooOld::Event, TooOld::Status] {
        let lists = h.fake.stats().await.lists;
        h.fake.set_too_old(answer).await;
        h.fake.compact().await;
        h.fake.drop_watches().await;
        h.until("listed again", |h| h.stats.lists > lists).await;
        let name = format!("f-{answer:?}").to_lowercase();
        let cidr = if answer == TooOld::Event {
            "10.6.0.0/16"
        } else {
            "10.7.0.0/16"
        };
        h.fake.put_peer(NS, &name, spec(&name, cidr)).await;
        h.until("new peer applied", |h| {
            h.device.peers().contains_key(&key(&name))
        })
        .await;
    }
    let removals: Vec<Op> = h
        .device
        .log()
        .into_iter()
        .filter(|op| matches!(op, Op::RemovePeer(_)))
        .collect();
    assert!(removals.is_empty(), "peers flapped: {removals:?}");
    assert_eq!(h.device.peers().len(), 6);
}

#[tokio::test]
async fn status_is_written_at_once_on_changes_and_at_most_every_30s_otherwise() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.until("b applied and reported", |h| {
        h.status_of("b").get("conditions").is_some()
    })
    .await;
    let start = h.now;
    let handshake = (start + Duration::from_secs(2))
        .duration_since(T0)
        .expect("after the epoch");
    for second in 1..=120u64 {
        h.now = start + Duration::from_secs(second);
        h.device.set_stats(
            key("b"),
            Stats {
                last_handshake: (second >= 2).then_some(handshake),
                rx_bytes: second * 1000,
                tx_bytes: second * 500,
            },
        );
        h.tick().await;
    }
    // First write, Connected flipping at 2 s, then counters at 32, 62 and 92 s.
    assert_eq!(h.fake.stats().await.status_patches["b"], 5);
    h.until("status reached the store", |h| {
        h.ready_of("b", "Connected").0 == "True"
    })
    .await;
    let status = h.status_of("b");
    assert_eq!(status["rxBytes"], 92_000);
    assert!(
        status["lastHandshakeTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[tokio::test]
async fn the_status_writer_leaves_the_rotation_fields_to_the_peer_store() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.until("b applied and reported", |h| {
        h.status_of("b").get("conditions").is_some()
    })
    .await;
    let status = h.status_of("b");
    for field in ["activePublicKey", "nextPublicKey", "rotation"] {
        assert!(status.get(field).is_none(), "{field} in {status}");
    }
    let kinds: Vec<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(kinds, ["Ready", "Connected"]);
}

#[tokio::test]
async fn a_peer_the_device_refuses_is_not_ready_and_the_gateway_not_reconciled() {
    let mut h = Harness::start().await;
    h.device.refuse(key("b"), true);
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.until("b reported", |h| {
        h.status_of("b").get("conditions").is_some()
    })
    .await;
    assert_eq!(h.ready("b").1, "ApplyFailed");
    assert!(!h.is_ready());
    h.device.refuse(key("b"), false);
    h.until("b applied", |h| h.device.peers().contains_key(&key("b")))
        .await;
    h.advance(crate::core::status::RETRY_AFTER_FAILURE);
    h.until("b ready", |h| h.ready("b").1 == "Applied").await;
    assert!(h.is_ready());
}

#[tokio::test]
async fn a_new_resource_colliding_with_a_running_peer_is_rejected_whatever_the_name_order() {
    // Names are unique in a namespace (the API server sees to it), so two resources cannot
    // collide on the name; they can on key, cluster and allowed IPs. For each, the running
    // resource's name sorts first in one case and last in the other.
    let classes = ["key", "cluster", "ips"];
    let mut cases = Vec::new();
    for (i, class) in classes.iter().enumerate() {
        for (j, (running, newcomer)) in [("a", "z"), ("z", "a")].iter().enumerate() {
            let n = i * 2 + j;
            let running = format!("{class}{n}-{running}");
            let newcomer = format!("{class}{n}-{newcomer}");
            let cidr = format!("10.{}.0.0/16", 20 + n);
            let mut colliding = spec(&newcomer, &format!("10.{}.0.0/16", 40 + n));
            let reason = match *class {
                "key" => {
                    colliding["publicKey"] = json!(key(&running).to_base64());
                    "duplicate publicKey: already used by".to_owned()
                }
                "cluster" => {
                    colliding["cluster"] = json!(running);
                    format!("duplicate spec.cluster {running}: already declared by")
                }
                _ => {
                    let inside = format!("10.{}.128.0/17", 20 + n);
                    colliding["allowedIPs"] = json!([inside]);
                    format!("allowedIPs {inside} overlaps {cidr} of")
                }
            };
            let reason = format!("{reason} peer {running} ({NS}/{running}, running)");
            cases.push((running, cidr, newcomer, colliding, reason));
        }
    }
    let mut h = Harness::start().await;
    for (running, cidr, ..) in &cases {
        h.fake.put_peer(NS, running, spec(running, cidr)).await;
    }
    h.until("every running peer applied", |h| {
        h.device.peers().len() == cases.len()
    })
    .await;
    let applied = h.device.log();

    for (_, _, newcomer, colliding, _) in &cases {
        h.fake.put_peer(NS, newcomer, colliding.clone()).await;
    }
    h.until("every newcomer has a status", |h| {
        cases
            .iter()
            .all(|(_, _, newcomer, ..)| h.status_of(newcomer).get("conditions").is_some())
    })
    .await;
    for (running, cidr, newcomer, _, reason) in &cases {
        let (status, kind, message) = h.ready_message(newcomer);
        assert_eq!(
            (status.as_str(), kind.as_str()),
            ("False", "Conflict"),
            "{newcomer}"
        );
        assert_eq!(&message, reason, "{newcomer}");
        assert_eq!(h.ready(running), ("True".to_owned(), "Applied".to_owned()));
        let held = &h.device.peers()[&key(running)];
        assert_eq!(
            held.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [cidr.as_str()],
            "{running}"
        );
    }
    assert_eq!(h.device.peers().len(), cases.len());
    assert_eq!(h.device.log(), applied, "the running peers were touched");
}

#[tokio::test]
async fn a_resource_whose_key_changes_has_it_replaced_in_place() {
    let mut h = Harness::start().await;
    h.fake.put_peer(NS, "b", spec("b", "10.2.0.0/16")).await;
    h.until("b applied", |h| h.device.peers().contains_key(&key("b")))
        .await;
    let mut rotated = spec("b", "10.2.0.0/16");
    rotated["publicKey"] = json!(key("b rotated").to_base64());
    h.fake.put_peer(NS, "b", rotated).await;
    h.until("b runs under its new key", |h| {
        h.device.peers().contains_key(&key("b rotated"))
    })
    .await;
    let log = h.device.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        matches!(&log[1], Op::ReplaceKey { old, config } if *old == key("b") && config.allowed_ips.len() == 1),
        "{log:?}"
    );
    assert_eq!(h.device.peers().len(), 1);
    h.until("status names generation 2", |h| {
        h.status_of("b")["observedGeneration"] == 2
    })
    .await;
    assert_eq!(h.ready("b"), ("True".to_owned(), "Applied".to_owned()));
}

struct Harness {
    fake: FakeApiServer,
    device: FakeDevice,
    driver: Driver<FakeDevice, KubeSource>,
    readiness: Arc<RwLock<Readiness>>,
    now: SystemTime,
    /// The objects last read back from the fake, by name.
    seen: std::collections::BTreeMap<String, Value>,
    /// The fake's counters, last read.
    stats: kube_fake::Stats,
}

impl Harness {
    async fn start() -> Self {
        let fake = FakeApiServer::start(
            "127.0.0.1:0".parse().expect("addr"),
            FakeConfig {
                // No bookmark may move the watch past a compaction behind the test's back.
                bookmark_interval: Duration::from_secs(3600),
                ..FakeConfig::default()
            },
        )
        .await
        .expect("fake API server");
        let device = FakeDevice::new();
        let readiness = Arc::new(RwLock::new(Readiness::default()));
        let driver = driver(device.clone(), &fake.url(), &readiness);
        Self {
            fake,
            device,
            driver,
            readiness,
            now: T0 + Duration::from_secs(1_000),
            seen: std::collections::BTreeMap::new(),
            stats: kube_fake::Stats::default(),
        }
    }

    async fn tick(&mut self) {
        self.driver.tick(self.now).await;
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Runs passes (at the current simulated time) until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(PATIENCE, async {
            loop {
                self.tick().await;
                self.refresh().await;
                if done(self) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{what}: not reached; device {:?}, log {:?}, objects {:#?}",
            self.device.peers().keys().collect::<Vec<_>>(),
            self.device.log(),
            self.seen
        );
    }

    async fn refresh(&mut self) {
        self.seen = self
            .fake
            .list(PEERS, NS)
            .await
            .into_iter()
            .map(|o| {
                (
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    o,
                )
            })
            .collect();
        self.stats = self.fake.stats().await;
    }

    fn is_ready(&self) -> bool {
        self.readiness.read().expect("lock").peers_reconciled
    }

    fn status_of(&self, name: &str) -> Value {
        self.seen
            .get(name)
            .and_then(|o| o.get("status"))
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn ready_of(&self, name: &str, kind: &str) -> (String, String, String) {
        let status = self.status_of(name);
        let condition = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .cloned()
            .unwrap_or(Value::Null);
        let text = |field: &str| condition[field].as_str().unwrap_or_default().to_owned();
        (text("status"), text("reason"), text("message"))
    }

    fn ready(&self, name: &str) -> (String, String) {
        let (status, reason, _) = self.ready_of(name, "Ready");
        (status, reason)
    }

    fn ready_message(&self, name: &str) -> (String, String, String) {
        self.ready_of(name, "Ready")
    }
}

fn driver(
    device: FakeDevice,
    url: &str,
    readiness: &Arc<RwLock<Readiness>>,
) -> Driver<FakeDevice, KubeSource> {
    let config = kube::Config::new(url.parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    let source = KubeSource::start(client, NS);
    let status = StatusBoard::new(Identity {
        gateway: GatewayInfo {
            version: "0.1.0".to_owned(),
            cluster: "test".to_owned(),
            backend: "fake".to_owned(),
        },
        interface: "wg0".to_owned(),
        public_key: key("self").to_string(),
        listen_port: 51820,
        address: "10.10.0.1/24".to_owned(),
        key_created: None,
    });
    Driver::new(
        device,
        source,
        key("self"),
        "10.10.0.1".parse().expect("ip"),
        Liveness::default(),
        Outputs {
            metrics: Metrics::new().expect("metrics"),
            readiness: readiness.clone(),
            status,
            audit: None,
        },
    )
}

/// A key derived from a name, so tests need no randomness.
fn key(name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (slot, b) in bytes.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}

fn spec(name: &str, cidr: &str) -> Value {
    json!({
        "cluster": name,
        "publicKey": key(name).to_base64(),
        "endpoint": "192.0.2.9:51820",
        "allowedIPs": [cidr],
    })
}

fn with_psk(mut spec: Value, secret: &str) -> Value {
    spec["presharedKeySecretRef"] = json!({"name": secret, "key": "psk"});
    spec
}
