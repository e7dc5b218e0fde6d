//! Writes the seed inputs under `seeds/<target>/`, and checks that each one reaches what it
//! is there for. Run from anywhere:
//!
//! ```text
//! cargo run --manifest-path gateway/fuzz/Cargo.toml --example write_seeds
//! ```
//!
//! The seeds are plain operation scripts, except `raw-initiation`: a handshake initiation
//! captured from a real core, so it differs from run to run (its ephemeral key is random).

use std::path::Path;

use gateway_fuzz::udp::{Op, Remac, Scenario, Source, encode, ipv4, ipv6};
use gateway_fuzz::{hex, key_pair, uapi};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, ops, check) in udp_seeds() {
        let mut scenario = Scenario::new();
        for op in &ops {
            scenario.apply(op);
        }
        check(&scenario);
        write(&dir.join("udp_input"), name, &encode(&ops));
    }
    for (name, text) in uapi_seeds() {
        assert!(
            !uapi::requests(&text).is_empty(),
            "{name} holds no whole request"
        );
        uapi::run(text.as_bytes());
        write(&dir.join("uapi_set"), name, text.as_bytes());
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
    println!("{}/{name}: {} bytes", dir.display(), bytes.len());
}

type Check = fn(&Scenario);

fn udp_seeds() -> Vec<(&'static str, Vec<Op>, Check)> {
    let to_a = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"hello");
    let to_b = ipv4([10, 1, 0, 5], [10, 2, 0, 7], b"back");
    let v6 = ipv6(v6("fd00:2::7"), v6("fd00:1::5"), b"over v6");
    let spoofed = ipv4([10, 3, 0, 1], [10, 1, 0, 5], b"not b's");
    let delivered: Check = |s| assert!(s.a_delivered > 0, "nothing reached a's TUN device");
    let counted: Check = |s| assert!(s.a.counters.invalid > 0, "nothing was counted invalid");
    let mut cookie = vec![Op::Control(8), Op::FromB(to_a.clone()), Op::Control(9)];
    cookie.extend(std::iter::repeat_n(Op::Replay(0), 60));
    vec![
        (
            "session-v4",
            vec![Op::FromB(to_a.clone()), Op::FromA(to_b.clone())],
            delivered,
        ),
        (
            "session-v6",
            vec![Op::FromB(v6), Op::Tick(0), Op::FromB(spoofed)],
            |s| {
                assert!(s.a_delivered > 0);
                assert_eq!(s.a.counters.bad_source, 1, "the spoofed packet");
            },
        ),
        ("raw-initiation", vec![raw_initiation()], |s| {
            assert_eq!(s.a.counters, Default::default(), "the initiation is taken");
        }),
        (
            "tamper-remac",
            vec![
                Op::Control(8),
                Op::FromB(to_a.clone()),
                Op::Control(9),
                Op::Tamper {
                    from: Source::Stranger,
                    remac: Remac::Current,
                    at: 4,
                    mask: vec![1],
                },
                Op::Tamper {
                    from: Source::B,
                    remac: Remac::Current,
                    at: 40,
                    mask: vec![0xff],
                },
            ],
            counted,
        ),
        (
            "second-key",
            vec![
                Op::Control(0),
                Op::Control(2),
                Op::FromB(to_a.clone()),
                Op::FromA(to_b.clone()),
                Op::Control(1),
                Op::FromB(to_a.clone()),
            ],
            delivered,
        ),
        (
            "psk-and-keepalive",
            vec![
                Op::Control(4),
                Op::FromB(to_a.clone()),
                Op::Control(6),
                Op::Control(5),
                Op::Control(7),
                Op::FromB(to_a.clone()),
                Op::Tick(4),
                Op::Control(10),
                Op::Control(11),
                Op::FromA(to_b),
            ],
            delivered,
        ),
        ("cookie", cookie, |s| {
            assert!(
                s.a.counters.invalid > 0,
                "replays past the rate limit are refused"
            );
        }),
        (
            "garbage",
            vec![
                Op::Datagram {
                    from: Source::Stranger,
                    bytes: [4, 0, 0, 0].into_iter().chain([0; 32]).collect(),
                },
                Op::Datagram {
                    from: Source::V6,
                    bytes: [1; 148].to_vec(),
                },
                Op::Datagram {
                    from: Source::MappedB,
                    bytes: [3; 64].to_vec(),
                },
                Op::ToB([2; 92].to_vec()),
                Op::Replay(5),
            ],
            counted,
        ),
    ]
}

/// A handshake initiation from `b` to `a`, captured.
fn raw_initiation() -> Op {
    let mut scenario = Scenario::new();
    let mut buf = vec![0u8; gateway_fuzz::BUF_SIZE];
    let packet = ipv4([10, 2, 0, 7], [10, 1, 0, 5], b"x");
    scenario.b.from_tun(
        &packet,
        &mut buf,
        std::time::Duration::ZERO,
        &mut scenario.b_out,
    );
    let (_, bytes) = scenario.b_out.sent.pop_front().expect("an initiation");
    assert_eq!(bytes.len(), 148);
    Op::Datagram {
        from: Source::B,
        bytes,
    }
}

fn uapi_seeds() -> Vec<(&'static str, String)> {
    let (private, _) = key_pair(0x66);
    let (_, peer) = key_pair(0x22);
    let (_, other) = key_pair(0x33);
    let (_, new) = key_pair(0x77);
    let (private, peer, other, new) = (hex(&private), hex(&peer), hex(&other), hex(&new));
    let psk = hex(&[0x99; 32]);
    let zero = hex(&[0; 32]);
    vec![
        (
            "set-device",
            format!(
                "set=1\nprivate_key={private}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
                 public_key={new}\npreshared_key={psk}\nendpoint=[2001:db8::7]:4500\n\
                 persistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
                 allowed_ip=10.7.0.0/16\nallowed_ip=fd00:7::/64\nprotocol_version=1\n\n\
                 get=1\n"
            ),
        ),
        (
            "update-in-place",
            format!(
                "set=1\npublic_key={peer}\nupdate_only=true\nendpoint=[::ffff:198.51.100.2]:51820\n\
                 preshared_key={zero}\nreplace_allowed_ips=true\nallowed_ip=10.2.0.0/24\n\
                 allowed_ip=10.3.0.0/16\n\nset=1\npublic_key={other}\nremove=true\n\
                 public_key={new}\nupdate_only=true\n\nget=1\n"
            ),
        ),
        (
            "refusals-and-keys",
            format!(
                "set=1\nlisten_port=1\n\nset=1\nfwmark=7\n\nset=1\npublic_key={peer}\n\
                 allowed_ip=10.9.0.0/33\n\nset=1\nprivate_key={zero}\n\nset=1\n\
                 private_key={private}\n\nget=2\n\n"
            ),
        ),
    ]
}

fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>()
        .expect("constant address")
        .octets()
}
