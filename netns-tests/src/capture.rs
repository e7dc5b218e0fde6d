//! Capture of one interface's UDP traffic on a port, in both directions, with an `AF_PACKET`
//! socket opened inside the interface's namespace. What the frames carry is parsed by
//! [`wire`](crate::wire).

use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context as _, Result, anyhow};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType, recvfrom, setsockopt, socket,
    sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike as _};

use crate::netns::Netns;
use crate::wire::{Datagram, parse_frame};

/// Receive buffer of the capture socket: room for a burst of super-packets.
const RECEIVE_BUFFER: usize = 64 << 20;
/// The largest frame: an Ethernet header and a 64 KiB IP packet (a GSO super-packet).
const MAX_FRAME: usize = 14 + 65535;

/// A capture running on a background thread; [`Capture::stop`] returns what it saw.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<Result<Vec<Datagram>>>>,
}

impl Capture {
    /// Starts capturing the IPv4/UDP datagrams to or from `port` that `iface` in `ns` sends and
    /// receives, whole (GSO super-packets as the kernel hands them to the device).
    ///
    /// # Errors
    /// Fails when the interface does not exist or the packet socket cannot be opened (it
    /// needs root).
    pub fn start(ns: &Netns, iface: &str, port: u16) -> Result<Self> {
        let (socket, index) = ns.run_in(|| {
            let index = nix::net::if_::if_nametoindex(iface)
                .with_context(|| format!("no interface {iface}"))?;
            let socket = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
            .context("failed to open a packet socket (needs root)")?;
            setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER)
                .context("failed to set SO_RCVBUFFORCE")?;
            // A short timeout lets the thread notice the stop flag.
            setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::milliseconds(20))
                .context("failed to set SO_RCVTIMEO")?;
            Ok((socket, index))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let worker = std::thread::Builder::new()
            .name(format!("capture-{iface}"))
            .spawn(move || capture(&socket, index as usize, port, &flag))
            .context("failed to start the capture thread")?;
        Ok(Self {
            stop,
            worker: Some(worker),
        })
    }

    /// Stops the capture once every frame already queued is read, and returns the datagrams
    /// in the order the interface saw them.
    ///
    /// # Errors
    /// Fails when the socket failed or a frame was cut short.
    pub fn stop(mut self) -> Result<Vec<Datagram>> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Vec<Datagram>> {
        self.stop.store(true, Ordering::Relaxed);
        let worker = self.worker.take().context("capture already stopped")?;
        worker
            .join()
            .map_err(|_| anyhow!("capture thread panicked"))?
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.finish();
        }
    }
}

/// Reads frames until `stop` is set and the queue is empty, keeping the datagrams on `port`
/// that went through the interface `index`.
fn capture(socket: &OwnedFd, index: usize, port: u16, stop: &AtomicBool) -> Result<Vec<Datagram>> {
    let mut frame = vec![0u8; MAX_FRAME];
    let mut datagrams = Vec::new();
    loop {
        // Read the flag before the socket: a timeout after it was set means the queue is empty.
        let stopping = stop.load(Ordering::Relaxed);
        match recvfrom::<LinkAddr>(socket.as_raw_fd(), &mut frame) {
            Ok((len, from)) => {
                if from.is_some_and(|from| from.ifindex() == index)
                    && let Some(datagram) = parse_frame(&frame[..len], port)
                {
                    datagrams.push(datagram?);
                }
            }
            Err(Errno::EAGAIN) if stopping => return Ok(datagrams),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(error) => return Err(error).context("failed to read the capture socket"),
        }
    }
}
