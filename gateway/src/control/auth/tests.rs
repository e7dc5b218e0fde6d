use super::*;

fn tunnel() -> IpNet {
    "10.10.0.1/24".parse().expect("net")
}

fn peer(name: &str, allowed: &[&str]) -> PeerView {
    PeerView {
        name: name.to_owned(),
        cluster: format!("cluster-{name}"),
        allowed_ips: allowed.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn peers() -> Vec<PeerView> {
    vec![
        peer("b", &["10.10.0.2/32", "10.2.0.0/16"]),
        peer("c", &["10.3.0.0/16", "10.10.0.3/32"]),
        peer("plain", &["10.4.0.0/16"]),
    ]
}

#[test]
fn the_channel_address_is_the_host_allowed_ip_inside_the_tunnel_network() {
    let t = tunnel();
    let at = |list: &[&str]| {
        channel_address(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), t)
    };
    assert_eq!(
        at(&["10.2.0.0/16", "10.10.0.2/32"]),
        ChannelAddress::At(ip("10.10.0.2"))
    );
    // Pod networks, wider prefixes over the tunnel network and hosts outside it do not count.
    assert_eq!(at(&["10.2.0.0/16"]), ChannelAddress::None);
    assert_eq!(at(&["10.10.0.0/24"]), ChannelAddress::None);
    assert_eq!(at(&["10.10.1.2/32"]), ChannelAddress::None);
    assert_eq!(at(&["not an ip", "fd00::1/128"]), ChannelAddress::None);
    // Our own address is never a peer's.
    assert_eq!(at(&["10.10.0.1/32"]), ChannelAddress::None);
    assert_eq!(
        at(&["10.10.0.2/32", "10.10.0.9/32"]),
        ChannelAddress::Ambiguous
    );
    let v6: IpNet = "fd10::1/64".parse().expect("net");
    assert_eq!(
        channel_address(&["fd10::2/128".to_owned()], v6),
        ChannelAddress::At(ip("fd10::2"))
    );
}

#[test]
fn a_peer_gateway_speaking_for_itself_is_accepted() {
    let peers = peers();
    let accepted = authenticate(ip("10.10.0.2"), "cluster-b", &peers, tunnel()).expect("b");
    assert_eq!(accepted.name, "b");
    let accepted = authenticate(ip("10.10.0.3"), "cluster-c", &peers, tunnel()).expect("c");
    assert_eq!(accepted.name, "c");
    // An IPv4-mapped source is the same address.
    let mapped = IpAddr::V6(std::net::Ipv4Addr::new(10, 10, 0, 2).to_ipv6_mapped());
    assert!(authenticate(mapped, "cluster-b", &peers, tunnel()).is_ok());
}

#[test]
fn a_pod_behind_a_peer_is_refused() {
    let peers = peers();
    for source in ["10.2.0.2", "10.3.0.9", "10.4.0.1"] {
        assert_eq!(
            authenticate(ip(source), "cluster-b", &peers, tunnel()),
            Err(Refusal::BehindPeer),
            "{source}"
        );
    }
}

#[test]
fn any_other_source_is_refused() {
    let peers = peers();
    for source in ["192.0.2.2", "10.10.0.1", "10.10.0.9", "127.0.0.1", "::1"] {
        assert_eq!(
            authenticate(ip(source), "cluster-b", &peers, tunnel()),
            Err(Refusal::NotAPeer),
            "{source}"
        );
    }
    assert_eq!(
        authenticate(ip("10.10.0.2"), "cluster-b", &[], tunnel()),
        Err(Refusal::NotAPeer)
    );
}

#[test]
fn a_peer_claiming_another_peers_cluster_is_refused() {
    let peers = peers();
    assert_eq!(
        authenticate(ip("10.10.0.2"), "cluster-c", &peers, tunnel()),
        Err(Refusal::WrongSender)
    );
    assert_eq!(
        authenticate(ip("10.10.0.2"), "nobody", &peers, tunnel()),
        Err(Refusal::WrongSender)
    );
}

#[test]
fn an_address_held_by_two_declarations_is_trusted_for_neither() {
    let peers = vec![
        peer("b", &["10.10.0.2/32"]),
        peer("twin", &["10.10.0.2/32"]),
    ];
    assert!(identify(ip("10.10.0.2"), &peers, tunnel()).is_err());
}

#[test]
fn a_peer_whose_tunnel_address_is_ambiguous_has_no_channel() {
    let peers = vec![peer("b", &["10.10.0.2/32", "10.10.0.5/32"])];
    assert!(identify(ip("10.10.0.2"), &peers, tunnel()).is_err());
}
