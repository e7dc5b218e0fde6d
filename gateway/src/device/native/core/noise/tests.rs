use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::open_initiation;

/// Returns the next initiation `tunn` sends.
fn initiation(tunn: &mut Tunn) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    match tunn.format_handshake_initiation(&mut buf, true) {
        TunnResult::WriteToNetwork(init) => init.to_vec(),
        _ => panic!("no initiation"),
    }
}

#[test]
fn an_initiation_opens_to_its_sender_and_a_growing_timestamp() {
    let ours = StaticSecret::from([1; 32]);
    let our_public = PublicKey::from(&ours);
    let theirs = StaticSecret::from([2; 32]);
    let their_public = PublicKey::from(&theirs).to_bytes();

    let mut tunn = Tunn::new(theirs, our_public, None, None, 0, None);
    let first = initiation(&mut tunn);
    let second = initiation(&mut tunn);
    let open = |init: &[u8]| open_initiation(&ours, &our_public, init, |k| *k == their_public);
    let Some(Some((sender, t1))) = open(&first) else {
        panic!("the first initiation does not open");
    };
    let Some(Some((_, t2))) = open(&second) else {
        panic!("the second initiation does not open");
    };
    assert_eq!(sender, their_public);
    assert!(t2 > t1, "timestamps grow");

    // Not a peer: it opens to an unknown sender.
    assert_eq!(
        open_initiation(&ours, &our_public, &first, |_| false),
        Some(None)
    );
    // Addressed to another key, or tampered with, or cut short: it does not open.
    let other = StaticSecret::from([3; 32]);
    assert_eq!(
        open_initiation(&other, &PublicKey::from(&other), &first, |_| true),
        None
    );
    for at in [10, 60, 100] {
        let mut tampered = first.clone();
        tampered[at] ^= 1;
        assert_eq!(open(&tampered), None, "byte {at} flipped");
    }
    assert_eq!(open(&first[..147]), None);
}
