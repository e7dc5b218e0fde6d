//! Sequence-numbered UDP streams between pods, both ways between every pair, counting loss,
//! duplicates, reordering and the longest silence: what a key rotation must not disturb.
//!
//! Each direction has a sender thread, paced at a fixed rate against absolute deadlines (one
//! datagram per deadline, or a burst of several: [`Streams::start_in_bursts`]), and a
//! receiver thread. Their sockets are opened inside the pods' namespaces through
//! [`Netns::run_in`] before any thread starts (a socket stays in the namespace it was opened
//! in), so the threads never change namespace. The pure parts sit in submodules: `tally`
//! turns arrivals into [`StreamStats`], `datagram` is the wire format, and `check` holds the
//! only verdicts this module gives ([`check_no_loss`], [`check_in_order`]); every other
//! threshold is the test's.

mod check;
mod datagram;
mod tally;

use std::fmt;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Error, Result, anyhow, ensure};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, bind, connect, setsockopt, socket,
    sockopt,
};

pub use check::{check_in_order, check_no_loss, format_stats};

use crate::netns::{Netns, next_id};
use crate::wait::eventually;
use datagram::{decode, encode};
use tally::Tally;

/// What one direction of a stream sent and what arrived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Datagrams the sender sent (sequence numbers used, including failed sends).
    pub sent: u64,
    /// Datagrams of this stream that arrived, duplicates included.
    pub received: u64,
    /// Sequence numbers sent that never arrived, counted after the drain.
    pub lost: u64,
    /// Arrivals of a sequence number that had already arrived.
    pub duplicates: u64,
    /// First arrivals of a sequence number lower than the highest one seen before it.
    pub reordered: u64,
    /// The longest time without an arrival while the sender ran, in whole milliseconds: from
    /// the start to the first arrival, between consecutive arrivals, and from the last
    /// arrival to the sender's stop.
    pub max_gap_ms: u64,
    /// The longest run of consecutive sequence numbers that never arrived: an outage, in
    /// packets (at 1,000 packets/s, in milliseconds), apart from losses scattered elsewhere.
    pub longest_loss: u64,
    /// Sends the kernel refused (no buffer, unreachable, ...); each is also counted as sent.
    pub send_errors: u64,
}

impl fmt::Display for StreamStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, received {}, lost {} (longest run {}), duplicates {}, reordered {}, \
             max gap {} ms, send errors {}",
            self.sent,
            self.received,
            self.lost,
            self.longest_loss,
            self.duplicates,
            self.reordered,
            self.max_gap_ms,
            self.send_errors
        )
    }
}

/// Streams running in both directions between pairs of pods; [`Streams::stop`] returns what
/// each direction lost. Dropping it stops every thread too.
#[derive(Debug)]
pub struct Streams {
    shared: Arc<Shared>,
    /// When the senders' deadlines start, and the receivers' gaps with them.
    start: Instant,
    directions: Vec<Direction>,
}

impl Streams {
    /// Starts a stream of `rate_pps` datagrams per second each way between the pods of every
    /// pair `(own namespace, own address, peer namespace, peer address)`.
    ///
    /// Each receiver binds its pod's address and `port` and is connected to its sender's
    /// address and port, so several receivers in one pod share `port`. Each sender binds its
    /// pod's address and a free port. Each pair may appear once, in either order.
    ///
    /// # Errors
    /// Fails when the rate is 0, a pair repeats or joins a pod to itself, or a socket or
    /// thread cannot be created (every thread already started is stopped).
    pub fn start(
        pairs: &[(&Netns, Ipv4Addr, &Netns, Ipv4Addr)],
        rate_pps: u32,
        port: u16,
    ) -> Result<Self> {
        Self::start_in_bursts(pairs, rate_pps, 1, port)
    }

    /// As [`Streams::start`], at the same average rate, but each sender wakes once per
    /// `burst` datagrams and sends them back to back (at 1,000 packets/s and a burst of 50:
    /// 50 datagrams every 50 ms). Where the machine, not the tunnel, is short of CPU (an
    /// emulated guest), a sender waking 1,000 times a second is a load of its own; losses
    /// are still counted per datagram.
    ///
    /// # Errors
    /// As [`Streams::start`]; also when `burst` is 0.
    pub fn start_in_bursts(
        pairs: &[(&Netns, Ipv4Addr, &Netns, Ipv4Addr)],
        rate_pps: u32,
        burst: u32,
        port: u16,
    ) -> Result<Self> {
        ensure!(rate_pps > 0, "the stream rate must be at least 1 packet/s");
        ensure!(burst > 0, "a burst is at least 1 packet");
        ensure!(!pairs.is_empty(), "no pairs to stream between");
        for (index, &(_, own, _, peer)) in pairs.iter().enumerate() {
            ensure!(own != peer, "pair {own} <-> {peer} joins a pod to itself");
            let repeated = pairs[..index]
                .iter()
                .any(|&(_, a, _, b)| (a, b) == (own, peer) || (a, b) == (peer, own));
            ensure!(!repeated, "pair {own} <-> {peer} appears twice");
        }
        let sockets = pairs
            .iter()
            .flat_map(|&(own_ns, own, peer_ns, peer)| {
                [(own_ns, own, peer_ns, peer), (peer_ns, peer, own_ns, own)]
            })
            .map(|(from_ns, from, to_ns, to)| open_direction(from_ns, from, to_ns, to, port))
            .collect::<Result<Vec<_>>>()?;

        // A short lead lets every thread start before the first deadline.
        let start = now() + START_LEAD;
        let mut streams = Self {
            shared: Arc::new(Shared::default()),
            start,
            directions: Vec::with_capacity(sockets.len()),
        };
        for sockets in sockets {
            // On failure, dropping `streams` stops the threads already started.
            streams.spawn(sockets, Pace { rate_pps, burst })?;
        }
        Ok(streams)
    }

    /// Stops the senders, waits until every datagram sent has arrived or `drain` has passed,
    /// stops the receivers, and returns the figures of each direction, named
    /// `"<sender address>-><receiver address>"`, in the order the pairs were given (each
    /// pair's own-to-peer direction first).
    ///
    /// # Errors
    /// Fails when a sender or receiver failed (its socket returned an unexpected error) or
    /// panicked; every thread has stopped all the same.
    pub fn stop(mut self, drain: Duration) -> Result<Vec<(String, StreamStats)>> {
        self.finish(drain)
    }

    fn spawn(&mut self, sockets: DirectionSockets, pace: Pace) -> Result<()> {
        let DirectionSockets {
            name,
            sender,
            receiver,
        } = sockets;
        let stream = (u64::from(std::process::id()) << 32) | u64::from(next_id());
        let progress = Arc::new(AtomicU64::new(0));
        let (shared, start, published) =
            (Arc::clone(&self.shared), self.start, Arc::clone(&progress));
        let receiver = std::thread::Builder::new()
            .name(format!("stream-rx-{name}"))
            .spawn(move || receive(&receiver, stream, start, &published, &shared))
            .with_context(|| format!("failed to start the receiver of {name}"))?;
        // Kept before the sender starts, so that a failure to start it still stops the
        // receiver.
        self.directions.push(Direction {
            name: name.clone(),
            sender: None,
            receiver: Some(receiver),
            progress,
        });
        let shared = Arc::clone(&self.shared);
        let sender = std::thread::Builder::new()
            .name(format!("stream-tx-{name}"))
            .spawn(move || send(&sender, stream, pace, start, &shared.stop_sending))
            .with_context(|| format!("failed to start the sender of {name}"))?;
        if let Some(direction) = self.directions.last_mut() {
            direction.sender = Some(sender);
        }
        Ok(())
    }

    fn finish(&mut self, drain: Duration) -> Result<Vec<(String, StreamStats)>> {
        self.shared.stop_sending.store(true, Ordering::Relaxed);
        let mut failure: Option<Error> = None;
        let mut sent = Vec::with_capacity(self.directions.len());
        for direction in &mut self.directions {
            sent.push(
                match join(direction.sender.take(), &direction.name, "sender") {
                    Ok(count) => count,
                    Err(error) => {
                        failure.get_or_insert(error);
                        SendCount::default()
                    }
                },
            );
        }
        let end = now();
        let _ = self.shared.end.set(end);

        // Nothing to wait for once every datagram sent has arrived; the timeout is not a
        // failure, what is still missing then is loss.
        let _ = eventually(drain, || {
            let complete =
                self.directions.iter().zip(&sent).all(|(direction, sent)| {
                    direction.progress.load(Ordering::Relaxed) >= sent.sent
                });
            ensure!(complete, "datagrams still in flight");
            Ok(())
        });

        self.shared.stop_receiving.store(true, Ordering::Relaxed);
        let mut stats = Vec::with_capacity(self.directions.len());
        for (direction, sent) in self.directions.iter_mut().zip(sent) {
            match join(direction.receiver.take(), &direction.name, "receiver") {
                Ok(tally) => stats.push((
                    direction.name.clone(),
                    StreamStats {
                        send_errors: sent.errors,
                        ..tally.stats(sent.sent, end)
                    },
                )),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(stats),
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let running = self
            .directions
            .iter()
            .any(|direction| direction.sender.is_some() || direction.receiver.is_some());
        if running {
            let _ = self.finish(Duration::ZERO);
        }
    }
}

/// How far ahead of the first deadline [`Streams::start`] sets the start.
const START_LEAD: Duration = Duration::from_millis(20);
/// The longest a sender sleeps before it looks at its stop flag again.
const MAX_NAP: Duration = Duration::from_millis(20);
/// How long a receiver waits for a datagram before it looks at its stop flag again.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(20);
/// Receive buffer of each receiver: room for seconds of a stream while its thread waits for a
/// core.
const RECEIVE_BUFFER: usize = 4 << 20;

/// The flags and the instant every thread of one [`Streams`] shares.
#[derive(Debug, Default)]
struct Shared {
    stop_sending: AtomicBool,
    stop_receiving: AtomicBool,
    /// When the senders stopped; later arrivals no longer lengthen a gap.
    end: OnceLock<Instant>,
}

#[derive(Debug)]
struct Direction {
    name: String,
    sender: Option<JoinHandle<Result<SendCount>>>,
    receiver: Option<JoinHandle<Result<Tally>>>,
    /// Distinct sequence numbers received so far.
    progress: Arc<AtomicU64>,
}

#[derive(Debug)]
struct DirectionSockets {
    name: String,
    sender: UdpSocket,
    receiver: UdpSocket,
}

/// A sender's pace: datagrams per second on average, sent `burst` at a time.
#[derive(Debug, Clone, Copy)]
struct Pace {
    rate_pps: u32,
    burst: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct SendCount {
    sent: u64,
    errors: u64,
}

/// Opens the sockets of the direction `from` -> `to`: the sender in `from_ns` on a free port,
/// connected to `to:port`; the receiver in `to_ns` on `to:port`, connected to the sender.
fn open_direction(
    from_ns: &Netns,
    from: Ipv4Addr,
    to_ns: &Netns,
    to: Ipv4Addr,
    port: u16,
) -> Result<DirectionSockets> {
    let name = format!("{from}->{to}");
    let sender = from_ns
        .run_in(|| {
            let socket = UdpSocket::bind((from, 0)).context("failed to bind")?;
            socket.connect((to, port)).context("failed to connect")?;
            // A full send buffer must not hold a sender past its stop flag.
            socket
                .set_write_timeout(Some(MAX_NAP))
                .context("failed to set SO_SNDTIMEO")?;
            Ok(socket)
        })
        .with_context(|| format!("failed to open the sender of {name}"))?;
    let sender_port = sender
        .local_addr()
        .context("failed to read the sender's port")?
        .port();
    let receiver = to_ns
        .run_in(|| {
            receiver_socket(
                SocketAddrV4::new(to, port),
                SocketAddrV4::new(from, sender_port),
            )
        })
        .with_context(|| format!("failed to open the receiver of {name}"))?;
    Ok(DirectionSockets {
        name,
        sender,
        receiver,
    })
}

/// Opens a UDP socket bound to `local`, shared with other receivers (`SO_REUSEADDR`), and
/// connected to `remote`, so that only `remote`'s datagrams reach it.
fn receiver_socket(local: SocketAddrV4, remote: SocketAddrV4) -> Result<UdpSocket> {
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )
    .context("failed to open a UDP socket")?;
    setsockopt(&socket, sockopt::ReuseAddr, &true).context("failed to set SO_REUSEADDR")?;
    if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        // Without CAP_NET_ADMIN the kernel caps the buffer at net.core.rmem_max.
        setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER).context("failed to set SO_RCVBUF")?;
    }
    bind(socket.as_raw_fd(), &SockaddrIn::from(local))
        .with_context(|| format!("failed to bind {local}"))?;
    connect(socket.as_raw_fd(), &SockaddrIn::from(remote))
        .with_context(|| format!("failed to connect to {remote}"))?;
    let socket = UdpSocket::from(socket);
    socket
        .set_read_timeout(Some(RECEIVE_TIMEOUT))
        .context("failed to set SO_RCVTIMEO")?;
    Ok(socket)
}

/// Sends datagram `n` at `start + m / rate_pps`, `m` being `n` rounded down to a whole burst
/// (late ones at once, so the rate never drifts) until `stop` is set.
#[allow(
    clippy::disallowed_methods,
    reason = "a paced sender waits for its next deadline; no event marks it"
)]
fn send(
    socket: &UdpSocket,
    stream: u64,
    pace: Pace,
    start: Instant,
    stop: &AtomicBool,
) -> Result<SendCount> {
    let mut count = SendCount::default();
    while !stop.load(Ordering::Relaxed) {
        let due = start + burst_deadline(count.sent, pace);
        let now = now();
        if now < due {
            std::thread::sleep((due - now).min(MAX_NAP));
            continue;
        }
        match socket.send(&encode(stream, count.sent)) {
            Ok(_) => {}
            Err(error) if is_transient(&error) => count.errors += 1,
            Err(error) => return Err(error).context("failed to send"),
        }
        count.sent += 1;
    }
    Ok(count)
}

/// Returns when datagram `seq` is due, counted from the stream's start.
fn deadline(seq: u64, rate_pps: u32) -> Duration {
    let rate = u64::from(rate_pps.max(1));
    let nanos = (seq % rate) * 1_000_000_000 / rate;
    Duration::new(seq / rate, u32::try_from(nanos).unwrap_or(u32::MAX))
}

/// Returns when datagram `seq` is due when datagrams leave `pace.burst` at a time: with its
/// burst's first.
fn burst_deadline(seq: u64, pace: Pace) -> Duration {
    let burst = u64::from(pace.burst.max(1));
    deadline(seq / burst * burst, pace.rate_pps)
}

/// Returns whether a send failed for a reason that loses this datagram but not the next
/// (a full queue, no route yet, an ICMP error from an earlier datagram, a firewall drop).
fn is_transient(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionRefused
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(Errno::ENOBUFS as i32)
}

/// Records `stream`'s arrivals until `shared.stop_receiving` is set and the queue is empty,
/// publishing the number of distinct sequence numbers in `progress`.
fn receive(
    socket: &UdpSocket,
    stream: u64,
    start: Instant,
    progress: &AtomicU64,
    shared: &Shared,
) -> Result<Tally> {
    let mut tally = Tally::new(start);
    let mut buf = [0u8; 2048];
    loop {
        // Read the flag before the socket: a timeout after it was set means the queue is empty.
        let stopping = shared.stop_receiving.load(Ordering::Relaxed);
        match socket.recv(&mut buf) {
            Ok(len) => {
                let arrived = now();
                if let Some(seq) = decode(&buf[..len], stream) {
                    let at = shared.end.get().map_or(arrived, |end| arrived.min(*end));
                    tally.record(seq, at);
                    progress.store(tally.distinct(), Ordering::Relaxed);
                }
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stopping {
                    return Ok(tally);
                }
            }
            // A receiver never sends, so an ICMP error reported here is not about its stream.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionRefused
                ) => {}
            Err(error) => return Err(error).context("failed to receive"),
        }
    }
}

/// Joins a stream thread, turning its failure or panic into an error naming it.
fn join<T>(handle: Option<JoinHandle<Result<T>>>, name: &str, role: &str) -> Result<T> {
    let handle = handle.with_context(|| format!("the {role} of {name} is not running"))?;
    handle
        .join()
        .map_err(|_| anyhow!("the {role} of {name} panicked"))?
        .with_context(|| format!("the {role} of {name} failed"))
}

#[allow(
    clippy::disallowed_methods,
    reason = "senders pace by the clock and receivers time arrivals"
)]
fn now() -> Instant {
    Instant::now()
}

#[cfg(test)]
mod tests;
