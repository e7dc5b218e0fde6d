//! ICMP echo with chosen payload sizes, each reply checked byte for byte against its request:
//! a packet of every length crosses the tunnel and must come back exactly as sent.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, SockaddrIn, recvfrom, sendto};

use crate::netns::Netns;
use crate::ping::{icmp_socket, internet_checksum};

/// Times a size is tried before it counts as failed.
const ATTEMPTS: u32 = 3;

/// Sends one echo request per payload size in `sizes` (ICMP data after the 8-byte header)
/// from inside `ns` to `dst`, one at a time, and waits up to `timeout` for a reply carrying
/// exactly the payload sent; a size without one is tried again, up to three times.
///
/// Returns the sizes that never got an exact reply (empty when all did).
///
/// # Errors
/// Fails when the raw socket cannot be opened or used (not when replies are missing).
pub fn echo_sizes(
    ns: &Netns,
    dst: Ipv4Addr,
    sizes: &[usize],
    timeout: Duration,
) -> Result<Vec<usize>> {
    ns.run_in(|| {
        let mut echo = Echo::open(dst)?;
        let mut failed = Vec::new();
        for &size in sizes {
            let mut answered = false;
            for _ in 0..ATTEMPTS {
                if echo.round_trip(size, timeout)? {
                    answered = true;
                    break;
                }
            }
            if !answered {
                failed.push(size);
            }
        }
        Ok(failed)
    })
}

#[derive(Debug)]
struct Echo {
    socket: OwnedFd,
    dst: Ipv4Addr,
    id: u16,
    seq: u16,
}

impl Echo {
    fn open(dst: Ipv4Addr) -> Result<Self> {
        let (socket, id) = icmp_socket(10)?;
        // Told apart from the steady pinger's identifiers.
        let id = id ^ 0x5555;
        Ok(Self {
            socket,
            dst,
            id,
            seq: 0,
        })
    }

    /// Sends one request with `size` bytes of payload and returns whether its exact reply
    /// came back within `timeout`.
    #[allow(
        clippy::disallowed_methods,
        reason = "a round trip is bounded by the clock; waiting is done by socket timeouts"
    )]
    fn round_trip(&mut self, size: usize, timeout: Duration) -> Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let payload: Vec<u8> = (0..size)
            .map(|i| (i as u8).wrapping_mul(31) ^ (self.seq as u8) ^ 0xc3)
            .collect();
        let mut packet = vec![8, 0, 0, 0];
        packet.extend_from_slice(&self.id.to_be_bytes());
        packet.extend_from_slice(&self.seq.to_be_bytes());
        packet.extend_from_slice(&payload);
        let checksum = internet_checksum(&packet);
        packet[2..4].copy_from_slice(&checksum.to_be_bytes());
        let to = SockaddrIn::from(SocketAddrV4::new(self.dst, 0));
        match sendto(self.socket.as_raw_fd(), &packet, &to, MsgFlags::empty()) {
            Ok(_) => {}
            // No route or a full queue is a lost request: try again.
            Err(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::ENOBUFS | Errno::EAGAIN) => {
                return Ok(false);
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to ping {}", self.dst));
            }
        }
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            let len = match recvfrom::<SockaddrIn>(self.socket.as_raw_fd(), &mut buf) {
                Ok((len, _)) => len,
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(error) => return Err(error).context("failed to receive ICMP"),
            };
            if self.is_reply(&buf[..len], &payload) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns whether `packet` (IPv4 header included) is the reply from `dst` to the request
    /// just sent, carrying exactly `payload`.
    fn is_reply(&self, packet: &[u8], payload: &[u8]) -> bool {
        let header_len = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        let Some(total) = packet
            .get(2..4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return false;
        };
        let (Some(source), Some(icmp)) = (packet.get(12..16), packet.get(header_len..total)) else {
            return false;
        };
        source == self.dst.octets()
            && icmp.len() >= 8
            && icmp[..2] == [0, 0]
            && icmp[4..6] == self.id.to_be_bytes()
            && icmp[6..8] == self.seq.to_be_bytes()
            && &icmp[8..] == payload
    }
}
