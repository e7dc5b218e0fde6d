//! The native device's UDP socket: batched receive (what is queued, with UDP GRO where the
//! kernel coalesces datagrams of one flow into one message) and batched send (UDP GSO: one `sendmsg` carries many
//! equal-sized datagrams to one peer, split by the kernel or passed whole over veth).
//!
//! Everything here is IO; what the datagrams mean is the core's business.

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};

/// Socket buffers asked for (with CAP_NET_ADMIN beyond `net.core.*mem_max`).
const SOCKET_BUFFER: usize = 7 * 1024 * 1024;
/// The largest UDP payload one GSO send or one GRO receive carries.
pub const MAX_SUPER_DATAGRAM: usize = 65_507;
/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS` on older kernels).
pub const MAX_SEGMENTS: usize = 64;
/// Messages taken per batch.
pub const RECV_BATCH: usize = 16;

/// The device's UDP socket.
pub struct Udp {
    socket: UdpSocket,
    /// Bound to `[::]`: IPv4 destinations are written as IPv4-mapped addresses.
    v6: bool,
    /// UDP GSO works on this socket (cleared after the kernel refuses it once).
    gso: AtomicBool,
    /// The kernel coalesces received datagrams (UDP GRO).
    gro: bool,
}

impl std::fmt::Debug for Udp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Udp")
            .field("v6", &self.v6)
            .field("gso", &self.gso.load(Ordering::Relaxed))
            .field("gro", &self.gro)
            .finish_non_exhaustive()
    }
}

impl Udp {
    /// Binds `[::]:port` (or `0.0.0.0:port` on a host without IPv6), with a receive timeout
    /// of `timeout`, large buffers and GRO where the kernel has it.
    ///
    /// # Errors
    /// When the port cannot be bound (`AddrInUse` when it is taken).
    pub fn bind(port: u16, timeout: Duration) -> std::io::Result<Self> {
        let socket = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?,
        };
        socket.set_read_timeout(Some(timeout))?;
        for result in [
            setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER),
            setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER),
        ] {
            if let Err(e) = result {
                tracing::debug!(error = %e, "cannot enlarge the UDP socket buffers");
            }
        }
        let gro = setsockopt(&socket, sockopt::UdpGroSegment, &true).is_ok();
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Ok(Self {
            socket,
            v6,
            gso: AtomicBool::new(true),
            gro,
        })
    }

    fn wire_address(&self, to: SocketAddr) -> SockaddrStorage {
        match (self.v6, to) {
            (true, SocketAddr::V4(v4)) => {
                SockaddrStorage::from(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            (_, SocketAddr::V4(v4)) => SockaddrStorage::from(v4),
            (_, SocketAddr::V6(v6)) => SockaddrStorage::from(v6),
        }
    }

    /// Sends one datagram. Errors are dropped packets (UDP); they are logged at trace level.
    pub fn send(&self, to: SocketAddr, datagram: &[u8]) {
        let address = self.wire_address(to);
        if let Err(e) = sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(datagram)],
            &[],
            MsgFlags::empty(),
            Some(&address),
        ) {
            tracing::trace!(error = %e, "UDP send failed");
        }
    }

    /// Sends `count` datagrams laid end to end in `data`, each `segment` bytes but the last
    /// (which may be shorter), to one destination: with one GSO `sendmsg` where the kernel
    /// takes it, else one by one.
    fn send_segments(&self, to: SocketAddr, data: &[u8], segment: usize, count: usize) {
        if count > 1 && self.gso.load(Ordering::Relaxed) {
            let address = self.wire_address(to);
            let Ok(size) = u16::try_from(segment) else {
                return;
            };
            match sendmsg(
                self.socket.as_raw_fd(),
                &[IoSlice::new(data)],
                &[ControlMessage::UdpGsoSegments(&size)],
                MsgFlags::empty(),
                Some(&address),
            ) {
                Ok(_) => return,
                // The device under the route cannot segment (or the path is too small for one
                // segment): send them one by one from now on.
                Err(Errno::EIO | Errno::EINVAL | Errno::EOPNOTSUPP) => {
                    tracing::debug!("UDP GSO refused by the kernel; sending datagrams singly");
                    self.gso.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::trace!(error = %e, "UDP send failed");
                    return;
                }
            }
        }
        for datagram in data.chunks(segment.max(1)) {
            self.send(to, datagram);
        }
    }

    /// Receives one message: waits up to the socket's timeout when `wait`, else takes only
    /// what is queued. `Ok(None)` for a message without a usable source address (dropped).
    ///
    /// # Errors
    /// The receive error (`WouldBlock` when nothing came).
    pub fn recv<'r>(
        &self,
        receiver: &'r mut Receiver,
        wait: bool,
    ) -> std::io::Result<Option<Received<'r>>> {
        let flags = if wait {
            MsgFlags::empty()
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let (bytes, source, segment) = {
            let mut iov = [IoSliceMut::new(receiver.buffer.as_mut_slice())];
            let message = recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut receiver.cmsg),
                flags,
            )
            .map_err(std::io::Error::from)?;
            let mut segment = message.bytes;
            if let Ok(cmsgs) = message.cmsgs() {
                for cmsg in cmsgs {
                    if let ControlMessageOwned::UdpGroSegments(size) = cmsg
                        && let Ok(size) = usize::try_from(size)
                        && size > 0
                    {
                        segment = size;
                    }
                }
            }
            (
                message.bytes,
                message.address.and_then(socket_addr),
                segment,
            )
        };
        let (Some(source), Some(data)) = (source, receiver.buffer.get(..bytes)) else {
            return Ok(None);
        };
        Ok(Some(Received {
            source,
            data,
            segment,
        }))
    }

    /// Receives up to [`RECV_BATCH`] messages: waits for the first up to the socket's
    /// timeout, then takes what else is queued without waiting. For each datagram (a message
    /// coalesced by GRO is split at its segment size) calls `each(source, datagram)`.
    ///
    /// # Errors
    /// The error of the first receive (`WouldBlock` on timeout).
    #[cfg(test)]
    pub fn recv_batch(
        &self,
        receiver: &mut Receiver,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> std::io::Result<()> {
        for round in 0..RECV_BATCH {
            match self.recv(receiver, round == 0) {
                Ok(Some(message)) => {
                    for datagram in message.datagrams() {
                        each(message.source, datagram);
                    }
                }
                Ok(None) => {}
                Err(e) if round == 0 => return Err(e),
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Whether the kernel coalesces received datagrams on this socket.
    pub fn gro(&self) -> bool {
        self.gro
    }
}

fn socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v6) = address.as_sockaddr_in6() {
        return Some(SocketAddr::V6(SocketAddrV6::from(*v6)));
    }
    address
        .as_sockaddr_in()
        .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
}

/// The buffers of one receiving thread, allocated once.
pub struct Receiver {
    buffer: Vec<u8>,
    cmsg: Vec<u8>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    /// Returns a buffer for one message of up to [`MAX_SUPER_DATAGRAM`] bytes.
    pub fn new() -> Self {
        Self {
            buffer: vec![0u8; MAX_SUPER_DATAGRAM + 1],
            cmsg: nix::cmsg_space!(nix::libc::c_int),
        }
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

/// One received message, borrowed from the [`Receiver`]'s buffer.
#[derive(Debug)]
pub struct Received<'r> {
    /// Where it came from.
    pub source: SocketAddr,
    data: &'r [u8],
    segment: usize,
}

impl<'r> Received<'r> {
    /// Its datagrams: a message coalesced by GRO split at its segment size; an empty
    /// datagram is still one (garbage, which the core counts).
    pub fn datagrams(&self) -> impl Iterator<Item = &'r [u8]> {
        let data = self.data;
        let empty = data.is_empty().then_some(data);
        empty.into_iter().chain(data.chunks(self.segment.max(1)))
    }
}

/// Most GSO runs a [`Batch`] holds before it must send: the caller sends at a moment of its
/// choosing (outside the core's lock) once [`Batch::nearly_full`] says so.
const MAX_RUNS: usize = 8;

/// Runs one call that encrypts a TUN read or handles a received message may start: a
/// 64 KiB TCP super-packet seals into two, and a handshake message may make one more.
const RUNS_PER_CALL: usize = 3;

/// Collects outgoing datagrams into GSO runs: consecutive datagrams to the same peer with the
/// same length (the last of a run may be shorter) go out in one `sendmsg`. Several runs are
/// held, so that nothing is sent while the core is locked unless [`MAX_RUNS`] are full.
pub struct Batch {
    /// The runs, `runs[..active]` in use; the last of those is the open one.
    runs: Vec<Run>,
    active: usize,
}

/// One GSO run.
struct Run {
    data: Vec<u8>,
    to: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// The run ended with a short datagram: nothing more may join it.
    closed: bool,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Returns an empty batch; a run's buffer (one full GSO send) is allocated when first
    /// used.
    pub fn new() -> Self {
        Self {
            runs: Vec::with_capacity(MAX_RUNS),
            active: 0,
        }
    }

    /// Adds a datagram: to the open run if it can join it, else to a new run, first sending
    /// everything if [`MAX_RUNS`] are in use.
    pub fn push(&mut self, udp: &Udp, to: SocketAddr, datagram: &[u8]) {
        let joins = self
            .active
            .checked_sub(1)
            .and_then(|open| self.runs.get(open))
            .is_some_and(|run| run.fits(to, datagram.len()));
        if !joins {
            if self.active == MAX_RUNS {
                self.flush(udp);
            }
            if self.active == self.runs.len() {
                self.runs.push(Run {
                    data: Vec::with_capacity(MAX_SUPER_DATAGRAM),
                    to: None,
                    segment: 0,
                    count: 0,
                    closed: false,
                });
            }
            self.active += 1;
        }
        let Some(run) = self.runs.get_mut(self.active - 1) else {
            return;
        };
        if run.count == 0 {
            run.to = Some(to);
            run.segment = datagram.len();
        }
        run.data.extend_from_slice(datagram);
        run.count += 1;
        if datagram.len() < run.segment {
            run.closed = true;
        }
    }

    /// Whether another call's datagrams might not fit without a send: the caller sends
    /// now, before it locks the core again.
    pub fn nearly_full(&self) -> bool {
        self.active + RUNS_PER_CALL > MAX_RUNS
    }

    /// Sends what is batched, run by run in the order they were made.
    pub fn flush(&mut self, udp: &Udp) {
        for run in self.runs.iter_mut().take(self.active) {
            if let Some(to) = run.to.take()
                && run.count > 0
            {
                udp.send_segments(to, &run.data, run.segment, run.count);
            }
            run.data.clear();
            run.count = 0;
            run.segment = 0;
            run.closed = false;
        }
        self.active = 0;
    }
}

impl Run {
    fn fits(&self, to: SocketAddr, len: usize) -> bool {
        self.count == 0
            || (self.to == Some(to)
                && !self.closed
                && len <= self.segment
                && len > 0
                && self.count < MAX_SEGMENTS
                && self.data.len() + len <= MAX_SUPER_DATAGRAM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_pair() -> (Udp, UdpSocket) {
        let udp = Udp::bind(0, Duration::from_millis(200)).expect("bind");
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind peer");
        peer.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        (udp, peer)
    }

    #[test]
    fn batched_datagrams_arrive_whole_and_in_order() {
        let (udp, peer) = udp_pair();
        let to = peer.local_addr().expect("addr");
        let mut batch = Batch::new();
        let sizes = [100, 100, 100, 40, 100, 7];
        for (i, size) in sizes.iter().enumerate() {
            let byte = u8::try_from(i).expect("small");
            batch.push(&udp, to, &vec![byte; *size]);
        }
        batch.flush(&udp);
        let mut buf = [0u8; 2048];
        for (i, size) in sizes.iter().enumerate() {
            let n = peer.recv(&mut buf).expect("datagram");
            assert_eq!(n, *size, "datagram {i}");
            assert!(buf[..n].iter().all(|b| usize::from(*b) == i));
        }
    }

    #[test]
    fn runs_to_several_peers_are_held_until_flushed_and_sent_in_order() {
        let (udp, first) = udp_pair();
        let second = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind peer");
        second
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let (to_first, to_second) = (
            first.local_addr().expect("addr"),
            second.local_addr().expect("addr"),
        );
        first
            .set_nonblocking(true)
            .expect("nonblocking for the check below");
        let mut batch = Batch::new();
        for i in 0..5u8 {
            let to = if i % 2 == 0 { to_first } else { to_second };
            batch.push(&udp, to, &[i; 64]);
        }
        assert!(
            !batch.nearly_full(),
            "five runs of eight leave room for a call's three"
        );
        let mut buf = [0u8; 2048];
        assert!(
            first.recv(&mut buf).is_err(),
            "nothing leaves before the flush"
        );
        batch.push(&udp, to_second, &[5; 64]);
        assert!(batch.nearly_full());
        batch.flush(&udp);
        first.set_nonblocking(false).expect("blocking");
        for (peer, expected) in [(&first, [0u8, 2, 4]), (&second, [1, 3, 5])] {
            for byte in expected {
                let n = peer.recv(&mut buf).expect("datagram");
                assert_eq!(n, 64);
                assert!(buf[..n].iter().all(|b| *b == byte), "datagram {byte}");
            }
        }
        // Past the last run, a push sends everything first and keeps going.
        for i in 0..(MAX_RUNS + 1) {
            let to = if i % 2 == 0 { to_first } else { to_second };
            batch.push(&udp, to, &[7; 32]);
        }
        batch.flush(&udp);
        let mut got = 0;
        while got < MAX_RUNS + 1 {
            let peer = if got % 2 == 0 { &first } else { &second };
            assert_eq!(peer.recv(&mut buf).expect("datagram"), 32);
            got += 1;
        }
    }

    #[test]
    fn received_batches_are_split_per_datagram() {
        let (udp, peer) = udp_pair();
        let port = udp.socket.local_addr().expect("addr").port();
        for i in 0..5u8 {
            peer.send_to(&[i; 300], (Ipv4Addr::LOCALHOST, port))
                .expect("send");
        }
        let mut receiver = Receiver::new();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            udp.recv_batch(&mut receiver, |from, datagram| {
                assert_eq!(from.port(), peer.local_addr().expect("addr").port());
                seen.push(datagram.to_vec());
            })
            .expect("receive");
        }
        for (i, datagram) in seen.iter().enumerate() {
            assert_eq!(datagram.len(), 300);
            assert!(datagram.iter().all(|b| usize::from(*b) == i));
        }
    }

    #[test]
    fn a_receive_times_out_without_traffic() {
        let (udp, _peer) = udp_pair();
        let mut receiver = Receiver::new();
        let error = udp
            .recv_batch(&mut receiver, |_, _| {})
            .expect_err("nothing to receive");
        assert!(matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
    }
}
