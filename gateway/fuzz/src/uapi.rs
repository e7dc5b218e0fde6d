//! The `uapi_set` scenario: the input is the text a client writes to the native device's
//! UAPI channel (invalid UTF-8 replaced), framed into requests as the device's reader does:
//! a request's lines run to a blank line, and `get=1` alone is a whole request. Each request
//! goes to `uapi::answer` on a core with a private key and two peers.
//!
//! Checked after every request: the answer is a well-formed `errno=N` (N one of 0, EINVAL,
//! EOPNOTSUPP) ending with a blank line, and a refused request changed nothing. At the end:
//! the `get=1` answer parses with the gateway's own reader and reports every peer once, no
//! prefix belongs to two peers, and replaying the answer as a `set=1` on a new core gives
//! the same answer back.

use gateway::core::uapi::{UapiError, parse_errno, parse_get};
use gateway::device::native::core::Core;
use gateway::device::native::uapi::{EINVAL, EOPNOTSUPP, answer, get};

use crate::{hex, key_pair};

/// The port the device is bound to.
pub const LISTEN_PORT: u16 = 51820;

const KEY_DEVICE: u8 = 0x11;
const KEY_PEER: u8 = 0x22;
const KEY_OTHER: u8 = 0x33;
/// Lines of a `get=1` answer that a `set=1` does not take.
const READ_ONLY: [&str; 5] = [
    "last_handshake_time_sec",
    "last_handshake_time_nsec",
    "tx_bytes",
    "rx_bytes",
    "errno",
];

/// Runs one input: the fuzz target's body.
pub fn run(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut core = keyed_core();
    for request in requests(&text) {
        let before = get(&core, LISTEN_PORT);
        let reply = answer(&mut core, &request.join("\n"), LISTEN_PORT);
        assert!(reply.ends_with("\n\n"), "answer {:?}", reply.as_str());
        match parse_errno(&reply) {
            Ok(()) => {}
            Err(UapiError::Errno(n)) if n == i64::from(EINVAL) || n == i64::from(EOPNOTSUPP) => {
                assert_eq!(
                    before.as_str(),
                    get(&core, LISTEN_PORT).as_str(),
                    "a refused request changed the device: {request:?}"
                );
            }
            Err(e) => panic!("answer {:?}: {e}", reply.as_str()),
        }
    }
    check_state(&core);
}

/// Splits the text into requests the way the device's reader does.
pub fn requests(text: &str) -> Vec<Vec<String>> {
    let mut requests = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            if !lines.is_empty() {
                requests.push(std::mem::take(&mut lines));
            }
            continue;
        }
        lines.push(line.to_owned());
        if lines.len() == 1 && lines[0] == "get=1" {
            requests.push(std::mem::take(&mut lines));
        }
    }
    // A request the client never ended gets no answer: the reader hits the end of the stream.
    requests
}

/// A core with a private key and two peers, one of them with an endpoint, a preshared key
/// and allowed IPs.
pub fn keyed_core() -> Core {
    let (private, _) = key_pair(KEY_DEVICE);
    let (_, peer) = key_pair(KEY_PEER);
    let (_, other) = key_pair(KEY_OTHER);
    let setup = [
        "set=1".to_owned(),
        format!("private_key={}", hex(&private)),
        format!("public_key={}", hex(&peer)),
        format!("preshared_key={}", hex(&[0x55; 32])),
        "endpoint=192.0.2.2:51820".to_owned(),
        "persistent_keepalive_interval=25".to_owned(),
        "allowed_ip=10.2.0.0/16".to_owned(),
        "allowed_ip=fd00:2::/64".to_owned(),
        format!("public_key={}", hex(&other)),
        "allowed_ip=10.3.0.0/16".to_owned(),
    ];
    let mut core = Core::new();
    let reply = answer(&mut core, &setup.join("\n"), LISTEN_PORT);
    assert_eq!(reply.as_str(), "errno=0\n\n", "the setup request");
    core
}

fn check_state(core: &Core) {
    let report = get(core, LISTEN_PORT);
    let parsed = match parse_get(report.as_str()) {
        Ok(parsed) => parsed,
        Err(e) => panic!("the get answer does not parse: {e}\n{}", report.as_str()),
    };
    assert_eq!(parsed.peers.len(), core.peers().count(), "peers reported");
    assert_eq!(parsed.listen_port, Some(LISTEN_PORT));
    let mut seen = std::collections::BTreeSet::new();
    for peer in &parsed.peers {
        for net in &peer.allowed_ips {
            assert!(seen.insert(*net), "{net} belongs to two peers");
        }
    }
    // What the device reports, written back as a configuration, makes the same device.
    let mut replay = vec!["set=1".to_owned()];
    replay.extend(
        report
            .as_str()
            .lines()
            .filter(|line| !line.is_empty())
            .filter(|line| {
                let key = line.split_once('=').map_or(*line, |(key, _)| key);
                !READ_ONLY.contains(&key)
            })
            .map(str::to_owned),
    );
    let mut copy = Core::new();
    let reply = answer(&mut copy, &replay.join("\n"), LISTEN_PORT);
    assert_eq!(
        reply.as_str(),
        "errno=0\n\n",
        "the get answer written back as a set: {replay:?}"
    );
    assert_eq!(
        get(&copy, LISTEN_PORT).as_str(),
        report.as_str(),
        "a device configured from the get answer reports something else"
    );
}
