//! A peer's rotation through the handle: b accepts a's next key, refusals map to the
//! handle's errors, and completing the rotation leaves b knowing a by its new key.

use super::{A, B, Net, generate, public};
use crate::core::key::PublicKey;
use crate::device::native::core::RotationError;
use crate::device::native::handle::{DeviceHandle, Error};

#[test]
fn peer_key_steps_through_the_handle_map_errors_and_change_the_core() {
    let (mut net, [k1, _, kc]) = Net::new();
    let k2 = generate();
    let (a_old, a_next, stranger) = (public(&k1), public(&k2), public(&kc));
    let b = net.sides[B].handle.clone();

    assert_eq!(
        b.accept_peer_next_key(&stranger, &a_next),
        Err(Error::UnknownPeer(stranger))
    );
    assert_eq!(
        b.accept_peer_next_key(&a_old, &a_old),
        Err(Error::KeyInUse(a_old))
    );
    assert_eq!(b.peer_next_key(&a_old), None);
    b.accept_peer_next_key(&a_old, &a_next).expect("b accepts");
    assert_eq!(b.peer_next_key(&a_old), Some(a_next));
    let listed = |b: &DeviceHandle| -> Vec<PublicKey> {
        b.report()
            .device
            .peers
            .iter()
            .map(|p| p.public_key)
            .collect()
    };
    assert_eq!(listed(&b), vec![a_old], "listed under its current key");
    assert_eq!(
        b.accept_peer_next_key(&a_old, &public(&generate())),
        Err(Error::Rotation(RotationError::OtherNextKey))
    );
    assert_eq!(
        b.stage_key(&generate()),
        Err(Error::Rotation(RotationError::PeerRotating))
    );
    b.forget_peer_next_key(&a_old).expect("b forgets");
    assert_eq!(b.peer_next_key(&a_old), None);
    assert_eq!(
        b.forget_peer_next_key(&stranger),
        Err(Error::UnknownPeer(stranger))
    );
    assert_eq!(
        b.complete_peer_key(&a_next),
        Err(Error::UnknownPeer(a_next))
    );

    b.accept_peer_next_key(&a_old, &a_next)
        .expect("b accepts again");
    net.both_ways(B);
    let a = net.sides[A].handle.clone();
    a.stage_key(&k2).expect("a stages");
    a.promote_staged().expect("a promotes");
    net.both_ways(B);
    b.complete_peer_key(&a_next).expect("b completes");
    b.complete_peer_key(&a_next)
        .expect("completing again is fine");
    assert_eq!(listed(&b), vec![a_next]);
    a.drop_previous().expect("a drops its old key");
    net.both_ways(B);
}

#[test]
fn a_rotation_rolled_back_after_the_switch_through_the_handle_keeps_the_tunnel() {
    let (mut net, [k1, _, _]) = Net::new();
    let k2 = generate();
    let (a_old, a_next) = (public(&k1), public(&k2));
    let (a, b) = (net.sides[A].handle.clone(), net.sides[B].handle.clone());
    assert_eq!(
        a.demote_current(),
        Err(Error::Rotation(RotationError::NoPrevious))
    );
    b.accept_peer_next_key(&a_old, &a_next).expect("b accepts");
    a.stage_key(&k2).expect("a stages");
    a.promote_staged().expect("a promotes");
    net.both_ways(B);

    a.demote_current().expect("a demotes");
    let keys = a.keys();
    assert_eq!(
        (keys.current, keys.staged, keys.previous),
        (Some(a_old), Some(a_next), None)
    );
    net.both_ways(B);
    b.forget_peer_next_key(&a_old).expect("b forgets");
    a.unstage_key().expect("a unstages");
    net.both_ways(B);
    assert_eq!(a.keys().current, Some(a_old));
    assert_eq!(b.peer_next_key(&a_old), None);
}
