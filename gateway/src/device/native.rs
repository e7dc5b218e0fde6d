//! The `native` data plane: our own userspace WireGuard device on the protocol core
//! `boringtun::noise::Tunn`, with a UAPI that updates peers in place.
//!
//! Threads (plain OS threads, no tokio on the packet path):
//! - **tun**: reads IP packets from the TUN device, encrypts, sends UDP;
//! - **udp**: receives datagrams, decrypts, writes to the TUN device; it also runs the peers'
//!   timers every 250 ms (its receive timeout bounds the wait);
//!
//! The gateway drives the device through a typed in-process handle ([`handle`]), which the
//! public UAPI socket is an adapter over.
//!
//! IO is batched: the TUN device hands over TCP super-packets (offloads, [`tun`]) that are
//! split, encrypted and sent as one UDP GSO run ([`udp`]); received datagrams come in
//! `recvmmsg` batches (coalesced by UDP GRO) and the decrypted packets are coalesced again
//! into one TUN write. Both threads and the handle share one [`core::Core`] behind a mutex,
//! locked once per batch (or call) for the crypto only; the system calls happen outside it. Each
//! thread owns its buffers, allocated once. The sans-IO logic is in [`core`] and [`uapi`];
//! this file and its IO modules are the rest.

pub mod core;
pub mod handle;
pub mod tun;
pub mod uapi;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use self::core::{Core, Sink};
use self::handle::{DeviceHandle, lock};
use self::tun::Tun;
use self::udp::Udp;
use crate::clock;

/// How often the peers' timers run.
const TICK: Duration = Duration::from_millis(250);
/// The UDP receive timeout: the longest the udp thread waits before checking timers and stop.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Most TUN reads (packets or offloaded super-packets) taken before what they made is sent.
const TUN_READS_PER_BATCH: usize = 64;
/// Most TUN reads the udp thread takes after writing, for the answers its packets made.
const REPLY_READS: usize = 4;
/// Scratch space for one encrypted or decrypted packet (a TUN MTU up to 65535 plus
/// WireGuard's overhead).
const BUF_SIZE: usize = 65536 + 148;

/// A running native device. Dropping it stops its threads; the TUN interface goes away
/// when its descriptor closes or the link is deleted.
pub struct NativeHandle {
    stop: Arc<AtomicBool>,
    device: DeviceHandle,
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
    /// Creates the TUN device `name` (packets padded up to `mtu`), binds the UDP port (IPv6 and IPv4 on one socket where
    /// the host has IPv6) and starts the threads. The device has no key and no peers until
    /// they are set through [`NativeHandle::device`].
    ///
    /// # Errors
    /// When the TUN device or the socket cannot be created (`AddrInUse` for a taken port).
    pub fn start(name: &str, listen_port: u16, mtu: u32) -> std::io::Result<Self> {
        let udp = Arc::new(Udp::bind(listen_port, RECV_TIMEOUT)?);
        let tun = Arc::new(Tun::create(name)?);
        tracing::debug!(gro = udp.gro(), "native device: UDP socket bound");
        let mut core = Core::new();
        core.set_mtu(usize::try_from(mtu).unwrap_or(usize::MAX));
        let core = Arc::new(Mutex::new(core));
        let stop = Arc::new(AtomicBool::new(false));
        let reading = Arc::new(Mutex::new(tun::Reader::new()));
        let loops: [(&str, IoLoop); 2] = [("tun", tun_loop), ("udp", udp_loop)];
        for (thread, io_loop) in loops {
            let shared = (
                core.clone(),
                tun.clone(),
                reading.clone(),
                udp.clone(),
                stop.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("native-{thread}"))
                .spawn(move || {
                    let (core, tun, reading, udp, stop) = shared;
                    io_loop(&core, &tun, &reading, &udp, &stop);
                });
            if let Err(e) = spawned {
                // A thread already started stops at its next wake-up.
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(Self {
            stop,
            device: DeviceHandle::new(core, listen_port),
        })
    }

    /// Returns the typed handle on the device.
    pub fn device(&self) -> &DeviceHandle {
        &self.device
    }
}

/// Batches the core's output: datagrams into GSO runs, TUN packets into coalesced writes.
/// Nothing leaves before [`IoSink::flush`].
struct IoSink<'a> {
    udp: &'a Udp,
    batch: udp::Batch,
    tun: &'a Tun,
    writer: tun::Writer,
}

impl<'a> IoSink<'a> {
    fn new(udp: &'a Udp, tun: &'a Tun) -> Self {
        Self {
            udp,
            batch: udp::Batch::new(),
            tun,
            writer: tun::Writer::new(),
        }
    }

    fn flush(&mut self) {
        self.batch.flush(self.udp);
        self.writer.flush(self.tun);
    }

    /// Sends or writes what would not leave room for another call's output, so that the
    /// next call does not do it with the core locked. `tun_room`: the most packets one call
    /// writes to the TUN device.
    fn relieve(&mut self, tun_room: usize) {
        if self.batch.nearly_full() {
            self.batch.flush(self.udp);
        }
        if self.writer.nearly_full(tun_room) {
            self.writer.flush(self.tun);
        }
    }
}

impl Sink for IoSink<'_> {
    fn send(&mut self, to: SocketAddr, datagram: &[u8]) {
        self.batch.push(self.udp, to, datagram);
    }

    fn write_tun(&mut self, packet: &[u8]) {
        self.writer.push(self.tun, packet);
    }
}

/// One of the device's IO threads: the core, the TUN device, its shared reader, the socket
/// and the stop flag.
type IoLoop = fn(&Mutex<Core>, &Tun, &Mutex<tun::Reader>, &Udp, &AtomicBool);

/// Reads one packet or super-packet from the TUN device and encrypts it into `sink`, the
/// core locked for the crypto only; then sends what would not leave room for the next read.
fn read_and_seal(
    core: &Mutex<Core>,
    tun: &Tun,
    reader: &mut tun::Reader,
    out: &mut [u8],
    sink: &mut IoSink<'_>,
) -> std::io::Result<()> {
    let now = clock::monotonic();
    let mut guard: Option<MutexGuard<'_, Core>> = None;
    let read = tun.read_batch(reader, |packet| {
        guard
            .get_or_insert_with(|| lock(core))
            .from_tun(packet, out, now, sink);
    });
    drop(guard);
    // Encrypting writes nothing to the TUN device.
    sink.relieve(0);
    read
}

fn tun_loop(
    core: &Mutex<Core>,
    tun: &Tun,
    reading: &Mutex<tun::Reader>,
    udp: &Udp,
    stop: &AtomicBool,
) {
    let mut out = vec![0u8; BUF_SIZE];
    let mut sink = IoSink::new(udp, tun);
    while !stop.load(Ordering::Relaxed) {
        match tun.wait_readable(RECV_TIMEOUT) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                if !stop.load(Ordering::Relaxed) {
                    tracing::warn!(error = %e, "TUN wait failed; the native device stops sending");
                }
                return;
            }
        }
        // Whoever holds the reader reads, encrypts and sends before letting go, so packets
        // leave in the order they were read.
        let mut reader = lock(reading);
        // Drain what is queued, so small packets to one peer leave as one GSO run too.
        for _ in 0..TUN_READS_PER_BATCH {
            let Err(e) = read_and_seal(core, tun, &mut reader, &mut out, &mut sink) else {
                continue;
            };
            match e.kind() {
                std::io::ErrorKind::WouldBlock => break,
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::InvalidInput => {}
                std::io::ErrorKind::Other if e.raw_os_error().is_none() => {
                    tracing::trace!(error = %e, "TUN read dropped");
                }
                _ => {
                    sink.flush();
                    if !stop.load(Ordering::Relaxed) {
                        tracing::warn!(error = %e, "TUN read failed; the native device stops sending");
                    }
                    return;
                }
            }
        }
        sink.flush();
    }
}

fn udp_loop(
    core: &Mutex<Core>,
    tun: &Tun,
    reading: &Mutex<tun::Reader>,
    udp: &Udp,
    stop: &AtomicBool,
) {
    let mut receiver = udp::Receiver::new();
    let mut out = vec![0u8; BUF_SIZE];
    let mut sink = IoSink::new(udp, tun);
    let mut last_tick = Duration::ZERO;
    let mut reported_invalid = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Wait for the first message, then take what else is queued. The core is locked once
        // per message (a GRO batch of up to 64 datagrams), for the crypto only: the TUN
        // writes and the sends happen after.
        let mut wrote = false;
        for round in 0..udp::RECV_BATCH {
            let message = match udp.recv(&mut receiver, round == 0) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(e) => {
                    if round == 0
                        && !matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        )
                    {
                        tracing::trace!(error = %e, "UDP receive failed");
                    }
                    break;
                }
            };
            let now = clock::monotonic();
            let mut locked = lock(core);
            for datagram in message.datagrams() {
                locked.from_udp(message.source, datagram, &mut out, now, &mut sink);
            }
            drop(locked);
            sink.relieve(udp::MAX_SEGMENTS);
            wrote = true;
        }
        let now = clock::monotonic();
        if now.saturating_sub(last_tick) >= TICK {
            last_tick = now;
            let mut locked = lock(core);
            locked.tick(now, clock::now(), &mut out, &mut sink);
            let invalid = locked.counters.invalid;
            if invalid != reported_invalid {
                tracing::info!(
                    dropped_invalid = invalid,
                    "native device: dropped invalid datagrams from the network"
                );
                reported_invalid = invalid;
            }
        }
        sink.flush();
        // What was just written may have made the local stack answer at once (an echo
        // reply, a TCP acknowledgement): send it from here rather than wait for the tun
        // thread to wake, unless that thread is reading already.
        if wrote && let Ok(mut reader) = reading.try_lock() {
            for _ in 0..REPLY_READS {
                if read_and_seal(core, tun, &mut reader, &mut out, &mut sink).is_err() {
                    break;
                }
            }
            sink.flush();
        }
    }
}
