//! UAPI requests against a keyed native core (see `gateway_fuzz::uapi`).
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| gateway_fuzz::uapi::run(input));
