//! The driver over a [`FakeDevice`] and an empty peers directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use super::{Driver, Outputs};
use crate::core::health::{Liveness, Readiness};
use crate::core::key::PublicKey;
use crate::core::peer::PeerConfig;
use crate::core::plan::Op;
use crate::device::DropReason;
use crate::metrics::Metrics;
use crate::source::directory::DirectorySource;
use crate::status::{GatewayInfo, Identity, StatusBoard};
use crate::testing::{FakeDevice, Stats};

const T0: SystemTime = SystemTime::UNIX_EPOCH;

#[tokio::test]
async fn each_pass_publishes_the_device_drop_counts() {
    let dir = tempfile::tempdir().expect("peers directory");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let mut driver = driver(device.clone(), DirectorySource::new(dir.path()), &metrics);

    device.set_dropped_packets(vec![(DropReason::Invalid, 4), (DropReason::BadSource, 0)]);
    driver.tick(T0).await;
    device.set_dropped_packets(vec![(DropReason::Invalid, 9), (DropReason::BadSource, 1)]);
    driver.tick(T0 + Duration::from_secs(1)).await;

    let text = metrics.render();
    for line in [
        r#"zt_wireguard_dropped_packets_total{interface="fake0",reason="invalid"} 9"#,
        r#"zt_wireguard_dropped_packets_total{interface="fake0",reason="bad_source"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
}

const PEER_KEY: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

/// A peer file declaring `name` with [`PEER_KEY`] and keepalive 25 s.
fn peer_doc(name: &str) -> String {
    format!(
        "apiVersion: zt.hanzo.ai/v1alpha1\nkind: WireGuardPeer\nmetadata: {{ name: {name} }}\nspec:\n  cluster: {name}\n  publicKey: \"{PEER_KEY}\"\n  endpoint: \"192.0.2.2:51820\"\n  allowedIPs: [\"10.2.0.0/16\"]\n  persistentKeepalive: 25\n"
    )
}

/// Everything logged through the gateway's own subscriber, at the default level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Returns the lines that mention up or down transitions.
    fn transitions(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().expect("lock").clone())
            .expect("utf-8")
            .lines()
            .filter(|line| line.contains("peer up") || line.contains("peer down"))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
#[allow(
    clippy::await_holding_lock,
    reason = "held for the whole test on a current-thread runtime; no task of it takes the lock"
)]
async fn a_peer_is_logged_once_when_it_comes_up_and_once_when_it_goes_down() {
    let _serial = crate::testing::log_capture_lock();
    let captured = Captured::default();
    let make = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let _log = tracing::subscriber::set_default(crate::telemetry::subscriber("info", make));
    // See the admin tests: interest cached under another thread's filter must not hide events.
    tracing::callsite::rebuild_interest_cache();
    let dir = tempfile::tempdir().expect("peers directory");
    std::fs::write(dir.path().join("b.yaml"), peer_doc("b-east")).expect("peer file");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let mut driver = driver(device.clone(), DirectorySource::new(dir.path()), &metrics);
    let key = PublicKey::from_base64(PEER_KEY).expect("key");
    let at = |secs: u64| T0 + Duration::from_secs(secs);

    // Applied, never handshaked: nothing about it, however long it stays so.
    for now in 1000..1010 {
        driver.tick(at(now)).await;
    }
    assert!(device.peers().contains_key(&key), "peer applied");
    assert_eq!(captured.transitions(), Vec::<String>::new());

    // A handshake at 1010, none after: up once, then down once when the rule's limit
    // (180 + 25 + 5 s) has passed, and quiet in between and after.
    device.set_stats(
        key,
        Stats {
            last_handshake: Some(Duration::from_secs(1010)),
            rx_bytes: 92,
            tx_bytes: 92,
        },
    );
    for now in (1010..1400).step_by(5) {
        driver.tick(at(now)).await;
    }
    let lines = captured.transitions();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("INFO peer up peer=\"b-east\""),
        "{lines:#?}"
    );
    assert!(
        lines[1].contains("WARN peer down peer=\"b-east\""),
        "{lines:#?}"
    );
    for line in &lines {
        assert!(!line.contains(PEER_KEY), "the key is logged: {line}");
    }
    let up = r#"zt_wireguard_peer_up{cluster="b-east"} 0"#;
    assert!(
        metrics.render().lines().any(|l| l == up),
        "the metric agrees"
    );

    // Removed while down: no more lines about it, and a later one with the same key starts
    // as never up.
    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    driver.tick(at(1400)).await;
    assert!(!device.peers().contains_key(&key), "peer removed");
    std::fs::write(dir.path().join("b.yaml"), peer_doc("b-east")).expect("peer file");
    device.set_stats(key, Stats::default());
    driver.tick(at(1401)).await;
    driver.tick(at(1402)).await;
    assert_eq!(
        captured.transitions().len(),
        2,
        "{:#?}",
        captured.transitions()
    );
}

/// A key derived from a name, so tests need no randomness.
fn key(name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (slot, b) in bytes.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}

/// What one peer file declares.
#[derive(Debug, Clone)]
struct Doc {
    name: String,
    cluster: String,
    key: PublicKey,
    cidr: String,
    endpoint: String,
}

impl Doc {
    fn new(name: &str, cidr: &str, host: u8) -> Self {
        Self {
            name: name.to_owned(),
            cluster: name.to_owned(),
            key: key(name),
            cidr: cidr.to_owned(),
            endpoint: format!("192.0.2.{host}:51820"),
        }
    }

    fn yaml(&self) -> String {
        format!(
            "apiVersion: zt.hanzo.ai/v1alpha1\nkind: WireGuardPeer\nmetadata: {{ name: {} }}\nspec:\n  cluster: {}\n  publicKey: \"{}\"\n  endpoint: \"{}\"\n  allowedIPs: [\"{}\"]\n",
            self.name,
            self.cluster,
            self.key.to_base64(),
            self.endpoint,
            self.cidr
        )
    }

    fn config(&self) -> PeerConfig {
        PeerConfig {
            public_key: self.key,
            endpoint: Some(self.endpoint.parse().expect("endpoint")),
            allowed_ips: BTreeSet::from([self.cidr.parse::<IpNet>().expect("cidr")]),
            persistent_keepalive: 25,
            preshared_key: None,
        }
    }
}

/// The four ways a newcomer can collide with a running peer.
#[derive(Debug, Clone, Copy)]
enum Collision {
    Key,
    Name,
    Cluster,
    AllowedIps,
}

impl Collision {
    const ALL: [Collision; 4] = [
        Collision::Key,
        Collision::Name,
        Collision::Cluster,
        Collision::AllowedIps,
    ];

    /// Makes `newcomer` collide with `running` this way.
    fn apply(self, newcomer: &mut Doc, running: &Doc) {
        match self {
            Collision::Key => newcomer.key = running.key,
            Collision::Name => newcomer.name = running.name.clone(),
            Collision::Cluster => newcomer.cluster = running.cluster.clone(),
            Collision::AllowedIps => newcomer.cidr = "10.2.128.0/17".to_owned(),
        }
    }

    /// The start of the reason the newcomer is rejected with.
    fn reason(self) -> &'static str {
        match self {
            Collision::Key => "duplicate publicKey: already used by peer run",
            Collision::Name => "duplicate metadata.name run: already declared by peer run",
            Collision::Cluster => "duplicate spec.cluster run: already declared by peer run",
            Collision::AllowedIps => "allowedIPs 10.2.128.0/17 overlaps 10.2.0.0/16 of peer run",
        }
    }
}

#[tokio::test]
async fn a_newcomer_colliding_with_a_running_peer_is_rejected_whatever_the_order() {
    // The peer created first runs; the one created next collides with it. Its file sorts
    // after the running one's, then before it: neither order lets it in.
    for collision in Collision::ALL {
        for (running_file, newcomer_file) in [("a.yaml", "z.yaml"), ("z.yaml", "a.yaml")] {
            let case = format!("{collision:?}, running peer in {running_file}");
            let dir = tempfile::tempdir().expect("peers directory");
            let device = FakeDevice::new();
            let metrics = Metrics::new().expect("metrics");
            let (mut driver, status) =
                driver_with_status(device.clone(), DirectorySource::new(dir.path()), &metrics);
            let running = Doc::new("run", "10.2.0.0/16", 2);
            std::fs::write(dir.path().join(running_file), running.yaml()).expect("write");
            driver.tick(T0 + Duration::from_secs(1)).await;
            assert_eq!(device.peers().len(), 1, "{case}");

            let mut newcomer = Doc::new("new", "10.3.0.0/16", 3);
            collision.apply(&mut newcomer, &running);
            std::fs::write(dir.path().join(newcomer_file), newcomer.yaml()).expect("write");
            for second in 2..5 {
                driver.tick(T0 + Duration::from_secs(second)).await;
            }

            // The running peer did not change, and nothing else was done to the device.
            assert_eq!(
                device.peers(),
                BTreeMap::from([(running.key, running.config())]),
                "{case}"
            );
            assert_eq!(device.log(), [Op::UpsertPeer(running.config())], "{case}");
            let latest = status.latest().expect("status");
            let names: Vec<&str> = latest.peers.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["run"], "{case}");
            assert_eq!(latest.rejected.len(), 1, "{case}: {:?}", latest.rejected);
            let rejected = &latest.rejected[0];
            assert_eq!(rejected.origin, newcomer_file, "{case}");
            let reason = format!("{} ({running_file}, running)", collision.reason());
            assert!(
                rejected.reason.starts_with(&reason),
                "{case}: {} does not start with {reason}",
                rejected.reason
            );

            // Once the running peer's declaration is gone, the newcomer is applied.
            std::fs::remove_file(dir.path().join(running_file)).expect("remove");
            driver.tick(T0 + Duration::from_secs(5)).await;
            assert_eq!(
                device.peers(),
                BTreeMap::from([(newcomer.key, newcomer.config())]),
                "{case}"
            );
            assert!(
                status.latest().expect("status").rejected.is_empty(),
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn a_running_peer_edited_to_collide_with_another_loses_whatever_the_file_order() {
    for collision in Collision::ALL {
        for (holder_file, edited_file) in [("a.yaml", "z.yaml"), ("z.yaml", "a.yaml")] {
            let case = format!("{collision:?}, unchanged peer in {holder_file}");
            let dir = tempfile::tempdir().expect("peers directory");
            let device = FakeDevice::new();
            let metrics = Metrics::new().expect("metrics");
            let (mut driver, status) =
                driver_with_status(device.clone(), DirectorySource::new(dir.path()), &metrics);
            let holder = Doc::new("run", "10.2.0.0/16", 2);
            let before = Doc::new("new", "10.3.0.0/16", 3);
            std::fs::write(dir.path().join(holder_file), holder.yaml()).expect("write");
            std::fs::write(dir.path().join(edited_file), before.yaml()).expect("write");
            driver.tick(T0 + Duration::from_secs(1)).await;
            assert_eq!(device.peers().len(), 2, "{case}");

            let mut edited = before.clone();
            collision.apply(&mut edited, &holder);
            std::fs::write(dir.path().join(edited_file), edited.yaml()).expect("write");
            for second in 2..4 {
                driver.tick(T0 + Duration::from_secs(second)).await;
            }
            // The edited declaration is rejected (so its peer goes); the other is untouched.
            assert_eq!(
                device.peers(),
                BTreeMap::from([(holder.key, holder.config())]),
                "{case}"
            );
            let rejected = status.latest().expect("status").rejected;
            assert_eq!(rejected.len(), 1, "{case}: {rejected:?}");
            assert_eq!(rejected[0].origin, edited_file, "{case}");
            let reason = format!("{} ({holder_file}, running)", collision.reason());
            assert!(
                rejected[0].reason.starts_with(&reason),
                "{case}: {rejected:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_declared_peer_whose_key_changes_has_it_replaced_once_and_keeps_its_routes() {
    let dir = tempfile::tempdir().expect("peers directory");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let (mut driver, status) =
        driver_with_status(device.clone(), DirectorySource::new(dir.path()), &metrics);
    let before = Doc::new("b-east", "10.2.0.0/16", 2);
    std::fs::write(dir.path().join("b.yaml"), before.yaml()).expect("write");
    // Another peer, which must not be touched.
    let other = Doc::new("c-west", "10.3.0.0/16", 3);
    std::fs::write(dir.path().join("c.yaml"), other.yaml()).expect("write");
    driver.tick(T0 + Duration::from_secs(1)).await;
    let applied = device.log().len();

    let mut after = before.clone();
    after.key = key("b-east rotated");
    std::fs::write(dir.path().join("b.yaml"), after.yaml()).expect("write");
    for second in 2..5 {
        driver.tick(T0 + Duration::from_secs(second)).await;
    }

    assert_eq!(
        device.log()[applied..],
        [Op::ReplaceKey {
            old: before.key,
            config: after.config()
        }]
    );
    assert_eq!(
        device.peers(),
        BTreeMap::from([(after.key, after.config()), (other.key, other.config())])
    );
    // Status and metrics still know it by its declared name, under its new key.
    let latest = status.latest().expect("status");
    let b = latest
        .peers
        .iter()
        .find(|p| p.name == "b-east")
        .expect("b-east in the status");
    assert_eq!(b.public_key, after.key.to_string());
    assert_eq!(b.allowed_ips, ["10.2.0.0/16"]);
    assert!(latest.rejected.is_empty(), "{:?}", latest.rejected);
}

#[tokio::test]
async fn a_key_replacement_the_device_refuses_is_retried_and_reported() {
    let dir = tempfile::tempdir().expect("peers directory");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let (mut driver, status) =
        driver_with_status(device.clone(), DirectorySource::new(dir.path()), &metrics);
    let before = Doc::new("b-east", "10.2.0.0/16", 2);
    std::fs::write(dir.path().join("b.yaml"), before.yaml()).expect("write");
    driver.tick(T0 + Duration::from_secs(1)).await;

    let mut after = before.clone();
    after.key = key("b-east rotated");
    std::fs::write(dir.path().join("b.yaml"), after.yaml()).expect("write");
    device.refuse(before.key, true);
    driver.tick(T0 + Duration::from_secs(2)).await;
    // Still running under its old key, and still shown by name.
    assert_eq!(
        device.peers(),
        BTreeMap::from([(before.key, before.config())])
    );
    let latest = status.latest().expect("status");
    assert_eq!(latest.peers.len(), 1);
    assert_eq!(latest.peers[0].public_key, before.key.to_string());

    device.refuse(before.key, false);
    driver.tick(T0 + Duration::from_secs(3)).await;
    assert_eq!(
        device.peers(),
        BTreeMap::from([(after.key, after.config())])
    );
    let replacements = device
        .log()
        .iter()
        .filter(|op| matches!(op, Op::ReplaceKey { .. }))
        .count();
    assert_eq!(replacements, 2, "{:?}", device.log());
}

#[tokio::test]
async fn device_peers_nobody_declares_are_removed_and_one_declared_later_is_kept() {
    let dir = tempfile::tempdir().expect("peers directory");
    let device = FakeDevice::new();
    let metrics = Metrics::new().expect("metrics");
    let declared = Doc::new("b-east", "10.2.0.0/16", 2);
    let stray = Doc::new("stray", "10.9.0.0/16", 9);
    let mut seed = device.clone();
    for doc in [&declared, &stray] {
        crate::device::Device::apply(&mut seed, &Op::UpsertPeer(doc.config()), None)
            .await
            .expect("seed");
    }
    let seeded = device.log().len();
    std::fs::write(dir.path().join("b.yaml"), declared.yaml()).expect("write");
    let mut driver = driver(device.clone(), DirectorySource::new(dir.path()), &metrics);
    driver.tick(T0 + Duration::from_secs(1)).await;
    driver.tick(T0 + Duration::from_secs(2)).await;
    // The peer under the declared key is taken over as it is; the other one goes.
    assert_eq!(device.log()[seeded..], [Op::RemovePeer(stray.key)]);
    assert_eq!(
        device.peers(),
        BTreeMap::from([(declared.key, declared.config())])
    );
}

fn driver(
    device: FakeDevice,
    source: DirectorySource,
    metrics: &Metrics,
) -> Driver<FakeDevice, DirectorySource> {
    driver_with_status(device, source, metrics).0
}

/// A driver, and the status board it publishes to.
fn driver_with_status(
    device: FakeDevice,
    source: DirectorySource,
    metrics: &Metrics,
) -> (Driver<FakeDevice, DirectorySource>, StatusBoard) {
    let own = PublicKey::from_bytes([1; 32]);
    let status = StatusBoard::new(Identity {
        gateway: GatewayInfo {
            version: "0.1.0".to_owned(),
            cluster: "test".to_owned(),
            backend: "fake".to_owned(),
        },
        interface: "fake0".to_owned(),
        public_key: own.to_string(),
        listen_port: 51820,
        address: "10.10.0.1/24".to_owned(),
        key_created: None,
    });
    let driver = Driver::new(
        device,
        source,
        own,
        "10.10.0.1".parse().expect("ip"),
        Liveness::default(),
        Outputs {
            metrics: metrics.clone(),
            readiness: Arc::new(RwLock::new(Readiness::default())),
            status: status.clone(),
            audit: None,
        },
    );
    (driver, status)
}
