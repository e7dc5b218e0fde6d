//! Test helpers shared by the modules' tests: fixed instants and readable keys.

use std::time::{Duration, SystemTime};

use crate::PublicKey;

/// The instant every test's clock starts at.
const START: u64 = 1_700_000_000;

/// `secs` seconds after [`START`].
pub fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(START + secs)
}

/// A public key whose first bytes spell `name` (the rest zero).
pub fn key(name: &str) -> PublicKey {
    let mut bytes = [0u8; 32];
    for (slot, b) in bytes.iter_mut().zip(name.bytes()) {
        *slot = b;
    }
    PublicKey::from_bytes(bytes)
}
