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
const MAX_SEGMENTS: usize = 64;
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

    /// Receives up to [`RECV_BATCH`] messages: waits for the first up to the socket's
    /// timeout, then takes what else is queued without waiting. For each datagram (a message
    /// coalesced by GRO is split at its segment size) calls `each(source, datagram)`.
    ///
    /// # Errors
    /// The error of the first receive (`WouldBlock` on timeout).
    pub fn recv_batch(
        &self,
        receiver: &mut Receiver,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> std::io::Result<()> {
        for round in 0..RECV_BATCH {
            let flags = if round == 0 {
                MsgFlags::empty()
            } else {
                MsgFlags::MSG_DONTWAIT
            };
            let (bytes, source, segment) = {
                let mut iov = [IoSliceMut::new(receiver.buffer.as_mut_slice())];
                let message = match recvmsg::<SockaddrStorage>(
                    self.socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut receiver.cmsg),
                    flags,
                ) {
                    Ok(message) => message,
                    Err(e) if round == 0 => return Err(std::io::Error::from(e)),
                    Err(_) => return Ok(()),
                };
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
            let Some(source) = source else { continue };
            let Some(data) = receiver.buffer.get(..bytes) else {
                continue;
            };
            if data.is_empty() {
                // An empty datagram is still one (and garbage): the core counts it.
                each(source, data);
            }
            for datagram in data.chunks(segment.max(1)) {
                each(source, datagram);
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

/// Collects outgoing datagrams into GSO runs: consecutive datagrams to the same peer with the
/// same length (the last of a run may be shorter) go out in one `sendmsg`.
pub struct Batch {
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
            .field("segment", &self.segment)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// Returns an empty batch with room for one full GSO send.
    pub fn new() -> Self {
        Self {
            data: Vec::with_capacity(MAX_SUPER_DATAGRAM),
            to: None,
            segment: 0,
            count: 0,
            closed: false,
        }
    }

    /// Adds a datagram, first sending what is batched if it cannot join the run.
    pub fn push(&mut self, udp: &Udp, to: SocketAddr, datagram: &[u8]) {
        if !self.fits(to, datagram.len()) {
            self.flush(udp);
        }
        if self.count == 0 {
            self.to = Some(to);
            self.segment = datagram.len();
        }
        self.data.extend_from_slice(datagram);
        self.count += 1;
        if datagram.len() < self.segment {
            self.closed = true;
        }
    }

    fn fits(&self, to: SocketAddr, len: usize) -> bool {
        self.count == 0
            || (self.to == Some(to)
                && !self.closed
                && len <= self.segment
                && len > 0
                && self.count < MAX_SEGMENTS
                && self.data.len() + len <= MAX_SUPER_DATAGRAM)
    }

    /// Sends what is batched.
    pub fn flush(&mut self, udp: &Udp) {
        if let Some(to) = self.to.take()
            && self.count > 0
        {
            udp.send_segments(to, &self.data, self.segment, self.count);
        }
        self.data.clear();
        self.count = 0;
        self.segment = 0;
        self.closed = false;
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
