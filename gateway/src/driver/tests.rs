//! The driver over a [`FakeDevice`] and an empty peers directory.

use std::io;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::{Driver, Outputs};
use crate::core::health::{Liveness, Readiness};
use crate::core::key::PublicKey;
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
async fn a_peer_is_logged_once_when_it_comes_up_and_once_when_it_goes_down() {
    let captured = Captured::default();
    let make = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let _log = tracing::subscriber::set_default(crate::telemetry::subscriber("info", make));
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

fn driver(
    device: FakeDevice,
    source: DirectorySource,
    metrics: &Metrics,
) -> Driver<FakeDevice, DirectorySource> {
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
    Driver::new(
        device,
        source,
        own,
        "10.10.0.1".parse().expect("ip"),
        Liveness::default(),
        Outputs {
            metrics: metrics.clone(),
            readiness: Arc::new(RwLock::new(Readiness::default())),
            status,
            audit: None,
        },
    )
}
