use std::time::{Duration, SystemTime};

use super::*;

const INTERVAL: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_secs(2);

fn settings() -> Settings {
    Settings {
        interval: INTERVAL,
        retry_delay: RETRY,
        retries: 3,
    }
}

fn tunnel() -> IpNet {
    "10.10.0.1/24".parse().expect("net")
}

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
}

fn input(name: &str, allowed: &[&str], connected: bool) -> PeerInput {
    PeerInput {
        view: PeerView {
            name: name.to_owned(),
            cluster: format!("c-{name}"),
            allowed_ips: allowed.iter().map(|s| (*s).to_owned()).collect(),
        },
        connected,
    }
}

fn b(connected: bool) -> PeerInput {
    input("b", &["10.10.0.2/32", "10.2.0.0/16"], connected)
}

fn hello() -> Hello {
    Hello {
        cluster: "c-b".to_owned(),
        version: "0.1.0".to_owned(),
        capabilities: vec!["hello".to_owned()],
        public_key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
        key_age_seconds: Some(5),
    }
}

fn state(channels: &Channels, name: &str) -> ChannelStatus {
    channels
        .statuses()
        .into_iter()
        .find(|s| s.peer == name)
        .expect("peer")
}

#[test]
fn a_new_peer_is_greeted_at_once_and_only_once_in_flight() {
    let mut channels = Channels::new(settings());
    let due = channels.poll(at(0), &[b(false)], tunnel());
    assert_eq!(
        due,
        [Attempt {
            name: "b".to_owned(),
            cluster: "c-b".to_owned(),
            address: "10.10.0.2".parse().expect("ip"),
        }]
    );
    assert_eq!(state(&channels, "b").state, ChannelState::Unknown);
    assert!(channels.poll(at(1), &[b(true)], tunnel()).is_empty());
    assert!(channels.poll(at(100), &[b(true)], tunnel()).is_empty());
}

#[test]
fn an_answered_hello_is_up_with_what_it_announced_and_repeats_after_the_interval() {
    let mut channels = Channels::new(settings());
    channels.poll(at(0), &[b(true)], tunnel());
    channels.answered("b", at(1), hello());
    let status = state(&channels, "b");
    assert_eq!(status.state, ChannelState::Up);
    assert_eq!(status.capabilities, ["hello"]);
    assert_eq!(
        status.public_key.as_deref(),
        Some(hello().public_key.as_str())
    );
    assert_eq!(status.key_age_seconds, Some(5));
    assert_eq!(status.last_contact_unix, Some(unix_seconds(at(1))));
    assert_eq!(status.address.as_deref(), Some("10.10.0.2"));
    assert_eq!(status.detail, None);
    assert!(channels.poll(at(30), &[b(true)], tunnel()).is_empty());
    assert_eq!(channels.poll(at(31), &[b(true)], tunnel()).len(), 1);
}

#[test]
fn refusals_while_the_tunnel_is_up_make_a_plain_wireguard_peer_after_the_retries() {
    let mut channels = Channels::new(settings());
    let mut now = 0;
    for attempt in 1..=3 {
        assert_eq!(
            channels.poll(at(now), &[b(true)], tunnel()).len(),
            1,
            "attempt {attempt}"
        );
        channels.failed("b", at(now), Failure::Refused);
        if attempt < 3 {
            assert_eq!(state(&channels, "b").state, ChannelState::Unknown);
            assert!(channels.poll(at(now + 1), &[b(true)], tunnel()).is_empty());
        }
        now += 2;
    }
    let status = state(&channels, "b");
    assert_eq!(status.state, ChannelState::Plain);
    assert_eq!(
        status.detail.as_deref(),
        Some("tunnel up, control port closed")
    );
    // The next round comes one interval later.
    assert!(channels.poll(at(now + 20), &[b(true)], tunnel()).is_empty());
    assert_eq!(channels.poll(at(now + 30), &[b(true)], tunnel()).len(), 1);
}

#[test]
fn silence_while_the_tunnel_is_down_is_down_and_the_tunnel_coming_up_retries_at_once() {
    let mut channels = Channels::new(settings());
    for now in [0, 2, 4] {
        assert_eq!(channels.poll(at(now), &[b(false)], tunnel()).len(), 1);
        channels.failed("b", at(now), Failure::NoAnswer);
    }
    assert_eq!(state(&channels, "b").state, ChannelState::Down);
    assert!(channels.poll(at(10), &[b(false)], tunnel()).is_empty());
    assert_eq!(channels.poll(at(11), &[b(true)], tunnel()).len(), 1);
    channels.answered("b", at(12), hello());
    assert_eq!(state(&channels, "b").state, ChannelState::Up);
}

#[test]
fn a_peer_whose_channel_refuses_us_is_down_with_the_status_code() {
    let mut channels = Channels::new(settings());
    for now in [0, 2, 4] {
        channels.poll(at(now), &[b(true)], tunnel());
        channels.failed("b", at(now), Failure::Rejected(403));
    }
    let status = state(&channels, "b");
    assert_eq!(status.state, ChannelState::Down);
    assert_eq!(
        status.detail.as_deref(),
        Some("the peer's channel answered HTTP 403")
    );
}

#[test]
fn an_up_peer_stays_up_through_a_failure_below_the_retry_bound() {
    let mut channels = Channels::new(settings());
    channels.poll(at(0), &[b(true)], tunnel());
    channels.answered("b", at(0), hello());
    assert_eq!(channels.poll(at(30), &[b(true)], tunnel()).len(), 1);
    channels.failed("b", at(31), Failure::NoAnswer);
    assert_eq!(state(&channels, "b").state, ChannelState::Up);
    assert_eq!(channels.poll(at(33), &[b(true)], tunnel()).len(), 1);
    channels.answered("b", at(33), hello());
    assert_eq!(
        state(&channels, "b").last_contact_unix,
        Some(unix_seconds(at(33)))
    );
}

#[test]
fn a_peer_without_a_tunnel_address_has_no_channel_and_is_never_contacted() {
    let mut channels = Channels::new(settings());
    let pods_only = input("p", &["10.4.0.0/16"], true);
    let twice = input("t", &["10.10.0.7/32", "10.10.0.8/32"], true);
    assert!(
        channels
            .poll(at(0), &[pods_only.clone(), twice.clone()], tunnel())
            .is_empty()
    );
    assert!(
        channels
            .poll(at(999), &[pods_only, twice], tunnel())
            .is_empty()
    );
    let p = state(&channels, "p");
    assert_eq!(p.state, ChannelState::None);
    assert_eq!(p.address, None);
    assert!(p.detail.is_some_and(|d| d.contains("no allowed IP")));
    assert_eq!(state(&channels, "t").state, ChannelState::None);
}

#[test]
fn removed_peers_are_forgotten_and_late_results_for_them_ignored() {
    let mut channels = Channels::new(settings());
    channels.poll(at(0), &[b(true)], tunnel());
    channels.poll(at(1), &[], tunnel());
    assert!(channels.statuses().is_empty());
    channels.answered("b", at(2), hello());
    channels.failed("b", at(2), Failure::Refused);
    assert!(channels.statuses().is_empty());
}

#[test]
fn a_changed_tunnel_address_starts_over() {
    let mut channels = Channels::new(settings());
    channels.poll(at(0), &[b(true)], tunnel());
    channels.answered("b", at(0), hello());
    let moved = input("b", &["10.10.0.9/32"], true);
    let due = channels.poll(at(1), &[moved], tunnel());
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].address, "10.10.0.9".parse::<IpAddr>().expect("ip"));
    assert_eq!(state(&channels, "b").state, ChannelState::Unknown);
}
