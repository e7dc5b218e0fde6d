use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn identity(key_created: Option<SystemTime>) -> Identity {
    Identity {
        gateway: GatewayInfo {
            version: "0.1.0".to_owned(),
            cluster: "hanzo-k8s".to_owned(),
            backend: "userspace".to_owned(),
        },
        interface: "wg0".to_owned(),
        public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".to_owned(),
        listen_port: 51820,
        address: "10.10.0.1/24".to_owned(),
        key_created,
    }
}

fn peer(name: &str, key: &str) -> PeerStatus {
    PeerStatus {
        name: name.to_owned(),
        cluster: name.to_owned(),
        public_key: key.to_owned(),
        endpoint: None,
        connected: false,
        last_handshake_unix: None,
        rx_bytes: 0,
        tx_bytes: 0,
        allowed_ips: Vec::new(),
        persistent_keepalive: 25,
    }
}

/// The first JSON block of docs/admin-api.md.
fn documented_example() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.md");
    let text = std::fs::read_to_string(path).expect("docs/admin-api.md");
    let block = text
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a json block");
    serde_json::from_str(block).expect("the example is JSON")
}

#[test]
fn snapshot_serializes_exactly_as_the_documented_example() {
    let board = StatusBoard::new(identity(None));
    let lux = PeerStatus {
        endpoint: Some("24.144.69.101:51820".to_owned()),
        connected: true,
        last_handshake_unix: Some(1_763_899_988),
        rx_bytes: 1_288_490,
        tx_bytes: 3481,
        allowed_ips: vec!["10.10.0.2/32".to_owned(), "10.244.0.0/16".to_owned()],
        ..peer("lux-k8s", "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
    };
    let zoo = PeerStatus {
        allowed_ips: vec!["10.10.0.3/32".to_owned()],
        ..peer("zoo-k8s", "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=")
    };
    let rejected = RejectedDeclaration {
        origin: "bad.yaml".to_owned(),
        name: Some("bad-k8s".to_owned()),
        reason: "spec.allowedIPs 10.10.0.0/24 overlaps the local tunnel address 10.10.0.1 of this gateway".to_owned(),
    };

    // Published out of order: the snapshot orders peers by cluster.
    board.publish(at(1_763_900_000), vec![zoo, lux], vec![rejected]);
    board.publish_channels(vec![
        ChannelStatus {
            peer: "lux-k8s".to_owned(),
            cluster: "lux-k8s".to_owned(),
            state: ChannelState::Up,
            address: Some("10.10.0.2".to_owned()),
            capabilities: vec!["hello".to_owned()],
            public_key: Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".to_owned()),
            key_age_seconds: Some(86_400),
            version: Some("0.1.0".to_owned()),
            last_contact_unix: Some(1_763_899_990),
            detail: None,
        },
        ChannelStatus {
            peer: "zoo-k8s".to_owned(),
            cluster: "zoo-k8s".to_owned(),
            state: ChannelState::Down,
            address: Some("10.10.0.3".to_owned()),
            capabilities: Vec::new(),
            public_key: None,
            key_age_seconds: None,
            version: None,
            last_contact_unix: None,
            detail: Some("no answer, tunnel down".to_owned()),
        },
    ]);

    board.publish_rotation(RotationStatus {
        available: true,
        detail: None,
        current: Some(RotationRun {
            id: "5f1c0a7e9b2d4c31".to_owned(),
            sequence: 1_763_890_000,
            phase: "complete".to_owned(),
            started_unix: 1_763_890_000,
            phase_since_unix: 1_763_890_001,
            finished_unix: Some(1_763_890_001),
            old_public_key: "0fQ3n6uBl5GQkDcGO0tTtMQ1iLdLDfwRoBqj8X8xXWM=".to_owned(),
            next_public_key: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".to_owned(),
            rollback_reason: None,
            peers: vec![RotationPeer {
                name: "lux-k8s".to_owned(),
                acked: true,
                handshake: true,
                told_end: true,
                manual: false,
                manual_line: None,
            }],
        }),
        due_unix: Some(1_771_234_567),
        schedule: Some("not_due".to_owned()),
        peers: vec![PeerKeyStatus {
            name: "lux-k8s".to_owned(),
            active_public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".to_owned(),
            next_public_key: None,
            declared_public_key: Some("Q2nHTYRvnGzoq3SVR5r6YJBqNqMWxUbPfeJjvMYRqWY=".to_owned()),
        }],
    });

    let status = board.latest().expect("published");
    assert_eq!(
        serde_json::to_value(&status).expect("serialize"),
        documented_example()
    );
}

#[test]
fn nothing_is_published_before_the_first_pass() {
    assert_eq!(StatusBoard::new(identity(None)).latest(), None);
}

#[test]
fn key_age_is_computed_at_each_snapshot_when_the_creation_time_is_known() {
    let board = StatusBoard::new(identity(Some(at(1000))));
    board.publish(at(1000 + 86_400), Vec::new(), Vec::new());
    let status = board.latest().expect("published");
    assert_eq!(status.interface.key_created_unix, Some(1000));
    assert_eq!(status.interface.key_age_seconds, Some(86_400));
}

#[test]
fn a_document_without_channels_still_parses() {
    let mut value = documented_example();
    value.as_object_mut().expect("object").remove("channels");
    let status: Status = serde_json::from_value(value).expect("older document");
    assert!(status.channels.is_empty());
}

#[test]
fn an_unknown_channel_state_reads_as_unknown() {
    let state: ChannelState = serde_json::from_str("\"rotating\"").expect("state");
    assert_eq!(state, ChannelState::Unknown);
}
