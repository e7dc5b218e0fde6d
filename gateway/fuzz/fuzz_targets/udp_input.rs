//! Datagrams, tampered handshakes and replays against a native core with a real peer (see
//! `gateway_fuzz::udp` for the input format).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| gateway_fuzz::udp::run(input));
