//! The replay window (whitepaper section 5.4.6): data messages may arrive out of order within
//! the window, each counter is accepted once, and a counter too far behind the newest is
//! refused. boringtun keeps a window of 1,024 counters.

use std::time::Duration;

use super::{B_ADDR, Pair, addr, ipv4};

const WINDOW: usize = 1024;

#[test]
fn out_of_order_data_within_the_window_arrives_once_and_older_data_is_refused() {
    let mut pair = Pair::new();
    pair.initiate_from_b(b"1");
    pair.b_out.sent.clear();
    let mut messages = Vec::new();
    for i in 0..WINDOW + 100 {
        let packet = ipv4([10, 2, 0, 7], [10, 1, 0, 5], &(i as u32).to_le_bytes());
        pair.b
            .from_tun(&packet, &mut pair.buf, Duration::ZERO, &mut pair.b_out);
        let (_, datagram) = pair.b_out.sent.pop_back().expect("b sends");
        messages.push(datagram);
    }
    let deliver = |pair: &mut Pair, i: usize| {
        let (tun, invalid) = (pair.a_out.tun.len(), pair.a.counters.invalid);
        pair.a.from_udp(
            addr(B_ADDR),
            &messages[i],
            &mut pair.buf,
            Duration::ZERO,
            &mut pair.a_out,
        );
        match (
            pair.a_out.tun.len() - tun,
            pair.a.counters.invalid - invalid,
        ) {
            (1, 0) => true,
            (0, 1) => false,
            other => panic!("message {i}: {other:?}"),
        }
    };
    let newest = messages.len() - 1;
    assert!(deliver(&mut pair, newest), "the newest");
    assert!(
        deliver(&mut pair, newest - 5),
        "behind the newest, inside the window"
    );
    assert!(deliver(&mut pair, newest - 1), "out of order");
    assert!(!deliver(&mut pair, newest - 5), "a replay");
    assert!(!deliver(&mut pair, newest), "a replay of the newest");
    assert!(
        deliver(&mut pair, newest + 1 - WINDOW),
        "at the far edge of the window"
    );
    assert!(!deliver(&mut pair, 0), "too far behind");
    assert!(
        !deliver(&mut pair, newest - WINDOW - 1),
        "just past the window"
    );
}
