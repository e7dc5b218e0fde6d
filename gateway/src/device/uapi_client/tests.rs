use std::io::{BufRead as _, BufReader, Write as _};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use super::*;

/// A fake device: serves the streams it is handed one after the other, answering the `n`th
/// request (counted over all streams, from 1) with `answer(n)`, after `before(n)` returns
/// and calling `after(n)` once it is written.
fn fake_device(
    streams: Receiver<UnixStream>,
    before: impl Fn(usize) + Send + 'static,
    answer: fn(usize) -> String,
    after: impl Fn(usize) + Send + 'static,
) -> JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        for stream in streams {
            let Ok(mut writer) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(stream);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                n += 1;
                before(n);
                let written = writer.write_all(answer(n).as_bytes());
                after(n);
                if written.is_err() {
                    break;
                }
            }
        }
        n
    })
}

#[test]
fn after_a_slow_answer_the_next_request_gets_its_own() {
    let (channel, streams) = Channel::with_limits(Duration::from_millis(200), MAX_ANSWER);
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (wrote, written) = std::sync::mpsc::channel::<()>();
    let released = Mutex::new(released);
    let wrote = Mutex::new(wrote);
    let device = fake_device(
        streams,
        // The first answer waits until the client has given up on it.
        move |n| {
            if n == 1 {
                let _ = released.lock().map(|r| r.recv());
            }
        },
        |n| format!("errno={n}\n\n"),
        move |n| {
            if n == 1 {
                let _ = wrote.lock().map(|w| w.send(()));
            }
        },
    );
    assert!(channel.exchange_raw(b"get=1\n").is_err(), "slow answer");
    release.send(()).expect("release the late answer");
    written.recv().expect("late answer written");
    let second = channel.exchange_raw(b"get=1\n").expect("second answer");
    assert_eq!(second.as_str(), "errno=2\n\n");
    let third = channel.exchange_raw(b"get=1\n").expect("third answer");
    assert_eq!(third.as_str(), "errno=3\n\n");
    drop(channel);
    assert_eq!(device.join().expect("device"), 3);
}

#[test]
fn after_an_oversized_answer_the_next_request_gets_its_own() {
    let (channel, streams) = Channel::with_limits(Duration::from_secs(3), 64);
    let device = fake_device(
        streams,
        |_| {},
        |n| {
            if n == 1 {
                format!("{}errno=1\n\n", "allowed_ip=10.0.0.0/8\n".repeat(1000))
            } else {
                format!("errno={n}\n\n")
            }
        },
        |_| {},
    );
    assert!(
        channel.exchange_raw(b"get=1\n").is_err(),
        "oversized answer"
    );
    let second = channel.exchange_raw(b"get=1\n").expect("second answer");
    assert_eq!(second.as_str(), "errno=2\n\n");
    drop(channel);
    assert_eq!(device.join().expect("device"), 2);
}

#[test]
fn a_stopped_device_fails_every_request() {
    let (channel, streams) = Channel::new();
    drop(streams);
    assert!(channel.exchange_raw(b"get=1\n").is_err());
    assert!(channel.exchange_raw(b"get=1\n").is_err());
}
