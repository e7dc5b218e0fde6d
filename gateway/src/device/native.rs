//! The `native` data plane: our own userspace WireGuard device on the protocol core
//! `boringtun::noise::Tunn`, with a UAPI that updates peers in place.
//!
//! Threads (plain OS threads, no tokio on the packet path):
//! - **tun**: reads IP packets from the TUN device, encrypts, sends UDP;
//! - **udp**: receives datagrams, decrypts, writes to the TUN device; it also runs the peers'
//!   timers every 250 ms (its receive timeout bounds the wait);
//! - **uapi**: answers UAPI requests on the private channel the gateway relays the public
//!   socket through.
//!
//! All three share one [`core::Core`] behind a mutex, locked once per packet (or request).
//! Each thread owns its buffers, allocated once. The sans-IO logic is in [`core`] and
//! [`uapi`]; this file is the IO around them.

pub mod core;
pub mod uapi;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use defguard_boringtun::device::tun::TunSocket;

use self::core::{Core, Sink};
use crate::clock;

/// How often the peers' timers run.
const TICK: Duration = Duration::from_millis(250);
/// The UDP receive timeout: the longest the udp thread waits before checking timers and stop.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Largest datagram or packet handled (a TUN MTU up to 65535 plus WireGuard's overhead).
const BUF_SIZE: usize = 65536 + 148;
/// Socket buffers asked for (with CAP_NET_ADMIN beyond `net.core.*mem_max`).
const SOCKET_BUFFER: usize = 7 * 1024 * 1024;

/// A running native device. Dropping it stops its threads; the TUN interface goes away
/// when its descriptor closes or the link is deleted.
pub struct NativeHandle {
    stop: Arc<AtomicBool>,
    core: Arc<Mutex<Core>>,
}

impl std::fmt::Debug for NativeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeHandle").finish_non_exhaustive()
    }
}

impl Drop for NativeHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl NativeHandle {
    /// Creates the TUN device `name`, binds the UDP port (IPv6 and IPv4 on one socket where
    /// the host has IPv6) and starts the threads. `uapi` is the device's end of the
    /// private UAPI channel.
    ///
    /// # Errors
    /// When the TUN device or the socket cannot be created (`AddrInUse` for a taken port).
    pub fn start(name: &str, listen_port: u16, uapi: UnixStream) -> std::io::Result<Self> {
        let udp = bind(listen_port)?;
        let tun = TunSocket::new(name).map_err(|e| std::io::Error::other(e.to_string()))?;
        let tun = Arc::new(tun);
        let udp = Arc::new(udp);
        let core = Arc::new(Mutex::new(Core::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |thread: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("native-{thread}"))
                .spawn(f)
                .map(drop)
        };
        {
            let (core, tun, udp, stop) = (core.clone(), tun.clone(), udp.clone(), stop.clone());
            spawn("tun", Box::new(move || tun_loop(&core, &tun, &udp, &stop)))?;
        }
        {
            let (core, tun, udp, stop) = (core.clone(), tun.clone(), udp.clone(), stop.clone());
            spawn("udp", Box::new(move || udp_loop(&core, &tun, &udp, &stop)))?;
        }
        {
            let core = core.clone();
            spawn(
                "uapi",
                Box::new(move || uapi_loop(&core, uapi, listen_port)),
            )?;
        }
        Ok(Self { stop, core })
    }

    /// Returns the drop counters.
    pub fn counters(&self) -> core::Counters {
        lock(&self.core).counters
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    // A panic while holding the lock leaves the tables consistent enough to keep forwarding.
    core.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bind(port: u16) -> std::io::Result<UdpSocket> {
    let socket = match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
        Err(_) => UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port))?,
    };
    socket.set_read_timeout(Some(RECV_TIMEOUT))?;
    use nix::sys::socket::{setsockopt, sockopt};
    for result in [
        setsockopt(&socket, sockopt::RcvBufForce, &SOCKET_BUFFER),
        setsockopt(&socket, sockopt::SndBufForce, &SOCKET_BUFFER),
    ] {
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot enlarge the UDP socket buffers");
        }
    }
    Ok(socket)
}

/// Writes the core's output to the socket and the TUN device.
struct IoSink<'a> {
    udp: &'a UdpSocket,
    tun: &'a TunSocket,
    v6: bool,
}

impl Sink for IoSink<'_> {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        let to = match (self.v6, to.ip()) {
            (true, IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port()),
            _ => to,
        };
        if let Err(e) = self.udp.send_to(datagram, to) {
            tracing::trace!(error = %e, "UDP send failed");
        }
    }

    fn write_tun(&mut self, packet: &[u8]) {
        match packet.first().map(|b| b >> 4) {
            Some(4) => drop(self.tun.write4(packet)),
            Some(6) => drop(self.tun.write6(packet)),
            _ => {}
        }
    }
}

fn is_v6(udp: &UdpSocket) -> bool {
    udp.local_addr().is_ok_and(|a| a.is_ipv6())
}

fn tun_loop(core: &Mutex<Core>, tun: &TunSocket, udp: &UdpSocket, stop: &AtomicBool) {
    let mut packet = vec![0u8; BUF_SIZE];
    let mut out = vec![0u8; BUF_SIZE];
    let mut sink = IoSink {
        udp,
        tun,
        v6: is_v6(udp),
    };
    while !stop.load(Ordering::Relaxed) {
        let n = match tun.read(&mut packet) {
            Ok(read) => read.len(),
            Err(e) => {
                if !stop.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "TUN read failed; the native device stops sending");
                }
                return;
            }
        };
        if n == 0 {
            continue;
        }
        let now = clock::monotonic();
        lock(core).from_tun(&packet[..n], &mut out, now, &mut sink);
    }
}

fn udp_loop(core: &Mutex<Core>, tun: &TunSocket, udp: &UdpSocket, stop: &AtomicBool) {
    let mut datagram = vec![0u8; BUF_SIZE];
    let mut out = vec![0u8; BUF_SIZE];
    let mut sink = IoSink {
        udp,
        tun,
        v6: is_v6(udp),
    };
    let mut last_tick = Duration::ZERO;
    let mut reported_invalid = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let received = udp.recv_from(&mut datagram);
        let now = clock::monotonic();
        let mut core = lock(core);
        match received {
            Ok((n, src)) => core.from_udp(src, &datagram[..n], &mut out, now, &mut sink),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => tracing::trace!(error = %e, "UDP receive failed"),
        }
        if now.saturating_sub(last_tick) >= TICK {
            last_tick = now;
            core.tick(now, clock::now(), &mut out, &mut sink);
            let invalid = core.counters.invalid;
            if invalid != reported_invalid {
                tracing::info!(
                    dropped_invalid = invalid,
                    "native device: dropped invalid datagrams from the network"
                );
                reported_invalid = invalid;
            }
        }
    }
}

fn uapi_loop(core: &Mutex<Core>, stream: UnixStream, listen_port: u16) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = zeroize::Zeroizing::new(String::new());
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if lines.is_empty() {
                    continue;
                }
                break;
            }
            lines.push(line.to_owned());
            if lines.len() == 1 && lines[0] == "get=1" {
                break;
            }
        }
        let answer = uapi::answer(&mut lock(core), &lines, listen_port);
        for line in &mut lines {
            zeroize::Zeroize::zeroize(line);
        }
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
