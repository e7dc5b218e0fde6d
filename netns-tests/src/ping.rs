//! ICMP echo ("ping") from inside a namespace, on a raw socket: one-shot probes and a steady
//! background stream whose every lost packet is counted.
//!
//! Built in rather than shelling out to `ping(8)` so that no extra package is needed, and so
//! that stopping a steady ping still waits for the replies in flight instead of counting them
//! as lost.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};

use crate::netns::{Netns, enter, next_id};
use crate::wait::eventually;

/// How long a stopped or finished ping waits for replies still in flight.
const GRACE: Duration = Duration::from_secs(1);

/// What a ping run sent and got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingStats {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Distinct echo replies received.
    pub received: u32,
    /// Sequence numbers (counting from 0) that got no reply, at most the first 20.
    pub lost: Vec<u32>,
}

impl PingStats {
    /// Returns the lost fraction, 0.0 to 1.0 (1.0 when nothing was sent).
    pub fn loss(&self) -> f64 {
        if self.transmitted == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.received) / f64::from(self.transmitted)
    }
}

/// Sends `count` echo requests 20 ms apart from inside `ns` to `dst`, and waits up to one
/// second after the last for replies.
///
/// # Errors
/// Fails when the raw socket cannot be opened or used (not when packets are lost).
pub fn ping(ns: &Netns, dst: Ipv4Addr, count: u32) -> Result<PingStats> {
    let never = AtomicBool::new(false);
    let sent = AtomicU32::new(0);
    ns.run_in(|| run(dst, Duration::from_millis(20), Some(count), &never, &sent))
}

/// Pings `dst` from inside `ns` until one reply comes back, for at most `timeout`.
///
/// # Errors
/// Fails when no reply arrived within `timeout`.
pub fn wait_reachable(ns: &Netns, dst: Ipv4Addr, timeout: Duration) -> Result<()> {
    eventually(timeout, || {
        let stats = ping(ns, dst, 1)?;
        if stats.received == 0 {
            bail!("no echo reply from {dst} in {}", ns.name());
        }
        Ok(())
    })
}

/// A background ping at a fixed rate; [`SteadyPing::stop`] returns what was lost.
#[derive(Debug)]
pub struct SteadyPing {
    dst: Ipv4Addr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    worker: Option<JoinHandle<Result<PingStats>>>,
}

impl SteadyPing {
    /// Starts pinging `dst` from inside `ns` every `interval` (10 ms is 100 packets/s).
    ///
    /// # Errors
    /// Fails when the worker thread cannot be started.
    pub fn start(ns: &Netns, dst: Ipv4Addr, interval: Duration) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let name = ns.name().to_owned();
        let flag = Arc::clone(&stop);
        let sent = Arc::new(AtomicU32::new(0));
        let progress = Arc::clone(&sent);
        let worker = std::thread::Builder::new()
            .name(format!("steady-ping-{dst}"))
            .spawn(move || {
                enter(&name)?;
                run(dst, interval, None, &flag, &progress)
            })
            .context("failed to start the ping thread")?;
        Ok(Self {
            dst,
            stop,
            sent,
            worker: Some(worker),
        })
    }

    /// Returns how many echo requests have been sent so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending, waits (bounded) for replies in flight, and returns the totals.
    ///
    /// # Errors
    /// Fails when the ping thread failed (e.g. its socket could not be opened).
    pub fn stop(mut self) -> Result<PingStats> {
        self.finish()
    }

    fn finish(&mut self) -> Result<PingStats> {
        self.stop.store(true, Ordering::Relaxed);
        let worker = self.worker.take().context("ping already stopped")?;
        worker
            .join()
            .map_err(|_| anyhow!("ping thread to {} panicked", self.dst))?
    }
}

impl Drop for SteadyPing {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.finish();
        }
    }
}

/// Sends echo requests every `interval` until `count` are sent or `stop` is set, then waits
/// up to [`GRACE`] for the remaining replies, publishing the number sent in `sent`. Must run
/// inside the target namespace.
#[allow(
    clippy::disallowed_methods,
    reason = "pacing a ping stream needs the clock; waiting is done by socket timeouts"
)]
fn run(
    dst: Ipv4Addr,
    interval: Duration,
    count: Option<u32>,
    stop: &AtomicBool,
    sent: &AtomicU32,
) -> Result<PingStats> {
    let mut pinger = Pinger::open(dst)?;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) && count.is_none_or(|count| pinger.sent() < count) {
        if Instant::now() >= next {
            pinger.send()?;
            sent.store(pinger.sent(), Ordering::Relaxed);
            next += interval;
        }
        pinger.receive()?;
    }
    let deadline = Instant::now() + GRACE;
    while !pinger.is_complete() && Instant::now() < deadline {
        pinger.receive()?;
    }
    Ok(pinger.stats())
}

/// Bytes of payload after the 8-byte ICMP header, as `ping(8)` sends by default.
const PAYLOAD: usize = 56;

#[derive(Debug)]
struct Pinger {
    socket: OwnedFd,
    dst: Ipv4Addr,
    id: u16,
    /// One entry per request sent: whether its reply has arrived.
    replied: Vec<bool>,
}

impl Pinger {
    fn open(dst: Ipv4Addr) -> Result<Self> {
        // A short receive timeout paces the loop without sleeping.
        let (socket, id) = icmp_socket(2)?;
        Ok(Self {
            socket,
            dst,
            id,
            replied: Vec::new(),
        })
    }

    fn sent(&self) -> u32 {
        u32::try_from(self.replied.len()).unwrap_or(u32::MAX)
    }

    fn send(&mut self) -> Result<()> {
        let seq = (self.replied.len() & 0xffff) as u16;
        let mut packet = [0u8; 8 + PAYLOAD];
        packet[0] = 8; // echo request
        packet[4..6].copy_from_slice(&self.id.to_be_bytes());
        packet[6..8].copy_from_slice(&seq.to_be_bytes());
        for (i, byte) in packet[8..].iter_mut().enumerate() {
            *byte = (i & 0xff) as u8;
        }
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        let to = SockaddrIn::from(SocketAddrV4::new(self.dst, 0));
        match sendto(self.socket.as_raw_fd(), &packet, &to, MsgFlags::empty()) {
            // No route or a full queue is packet loss, not a harness failure.
            Ok(_)
            | Err(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::ENOBUFS | Errno::EAGAIN) => {}
            Err(error) => {
                return Err(error).with_context(|| format!("failed to ping {}", self.dst));
            }
        }
        self.replied.push(false);
        Ok(())
    }

    /// Reads at most one packet (waiting at most the socket timeout) and records it if it is
    /// one of our replies.
    fn receive(&mut self) -> Result<()> {
        let mut buf = [0u8; 1500];
        let len = match recvfrom::<SockaddrIn>(self.socket.as_raw_fd(), &mut buf) {
            Ok((len, _)) => len,
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(()),
            Err(error) => return Err(error).context("failed to receive ICMP"),
        };
        let Some(seq) = self.parse_reply(&buf[..len]) else {
            return Ok(());
        };
        let sent = self.replied.len();
        if sent == 0 {
            return Ok(());
        }
        // Map the 16-bit sequence number back to the newest request that carried it.
        let base = (sent - 1) & !0xffff;
        let mut index = base + usize::from(seq);
        if index >= sent {
            match index.checked_sub(0x1_0000) {
                Some(earlier) => index = earlier,
                None => return Ok(()),
            }
        }
        self.replied[index] = true;
        Ok(())
    }

    /// Returns the sequence number if `packet` (IPv4 header included) is an echo reply from
    /// `dst` to us.
    fn parse_reply(&self, packet: &[u8]) -> Option<u16> {
        let header_len = usize::from(packet.first()? & 0x0f) * 4;
        let source = Ipv4Addr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?);
        let icmp = packet.get(header_len..header_len + 8)?;
        let is_reply = icmp[0] == 0 && icmp[1] == 0;
        let id = u16::from_be_bytes([icmp[4], icmp[5]]);
        (is_reply && id == self.id && source == self.dst)
            .then(|| u16::from_be_bytes([icmp[6], icmp[7]]))
    }

    fn is_complete(&self) -> bool {
        self.replied.iter().all(|replied| *replied)
    }

    fn stats(&self) -> PingStats {
        let received = self.replied.iter().filter(|replied| **replied).count();
        PingStats {
            transmitted: self.sent(),
            received: u32::try_from(received).unwrap_or(u32::MAX),
            lost: (0u32..)
                .zip(&self.replied)
                .filter(|(_, replied)| !**replied)
                .map(|(seq, _)| seq)
                .take(20)
                .collect(),
        }
    }
}

/// The RFC 1071 ones' complement checksum.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Opens a raw ICMP socket (root only) whose receives time out after `timeout_ms`, and returns
/// it with an echo identifier no other socket of this process uses at the same time.
pub(crate) fn icmp_socket(timeout_ms: i64) -> Result<(OwnedFd, u16)> {
    let socket = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .context("failed to open a raw ICMP socket (needs root)")?;
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &TimeVal::milliseconds(timeout_ms),
    )
    .context("failed to set SO_RCVTIMEO")?;
    let low = (next_id() & 0xffff) as u16;
    let id = (std::process::id() & 0xffff) as u16 ^ low.rotate_left(8);
    Ok((socket, id))
}
