//! The native device's TUN interface, with the kernel's TCP segmentation offloads:
//! `IFF_VNET_HDR` and `TUNSETOFFLOAD` (checksum, TSO4, TSO6; USO where the kernel has it).
//!
//! Reading, the kernel may hand over one TCP "super-packet" of up to 64 KiB; it is split into
//! MTU-sized packets with their checksums filled in. Writing, a batch of decrypted packets is
//! coalesced where they continue one TCP (or UDP) flow and written as one super-packet,
//! which the kernel's stack takes in one piece. Both are done by the `tun-rs` crate, which
//! follows the kernel's virtio-net header format.

use tun_rs::{DeviceBuilder, GROTable, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

/// Largest packet read or written (an MTU up to 65535).
const PACKET_MAX: usize = 65_535;

/// The TUN device.
pub struct Tun {
    device: SyncDevice,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun").finish_non_exhaustive()
    }
}

impl Tun {
    /// Creates the TUN device `name` with offloads (without, if the kernel refuses them).
    ///
    /// # Errors
    /// When the device cannot be created.
    pub fn create(name: &str) -> std::io::Result<Self> {
        let device = match DeviceBuilder::new().name(name).offload(true).build_sync() {
            Ok(device) => device,
            Err(error) => {
                tracing::debug!(%error, "TUN offloads unavailable; one packet per read");
                DeviceBuilder::new().name(name).build_sync()?
            }
        };
        // Reads drain what is queued without waiting; `wait_readable` does the waiting.
        device.set_nonblocking(true)?;
        Ok(Self { device })
    }

    /// Waits up to `timeout` for something to read. Returns whether there is.
    ///
    /// # Errors
    /// The `poll` error.
    pub fn wait_readable(&self, timeout: std::time::Duration) -> std::io::Result<bool> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd as _;
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.device.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(ready) => Ok(ready > 0),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads one packet (or offloaded super-packet) if the kernel has one, and calls `each`
    /// for every IP packet in it.
    ///
    /// # Errors
    /// The read error (`WouldBlock` when nothing is queued); a malformed offload header is
    /// an error too (the read is dropped).
    pub fn read_batch(
        &self,
        reader: &mut Reader,
        mut each: impl FnMut(&[u8]),
    ) -> std::io::Result<()> {
        let Reader {
            original,
            packets,
            sizes,
        } = reader;
        let count = self.device.recv_multiple(original, packets, sizes, 0)?;
        for (packet, size) in packets.iter().zip(sizes.iter()).take(count) {
            if let Some(packet) = packet.get(..*size)
                && !packet.is_empty()
            {
                each(packet);
            }
        }
        Ok(())
    }
}

/// A reading thread's buffers, allocated once.
pub struct Reader {
    original: Vec<u8>,
    packets: Vec<Vec<u8>>,
    sizes: Vec<usize>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    /// Returns buffers for one offloaded read.
    pub fn new() -> Self {
        // Each buffer is allocated zeroed on its own: the allocator hands out fresh pages
        // that are not resident until a split packet is written to them (cloning one
        // zeroed buffer 128 times would write, and keep resident, 8 MiB at start).
        Self {
            original: vec![0u8; VIRTIO_NET_HDR_LEN + PACKET_MAX],
            packets: (0..IDEAL_BATCH_SIZE)
                .map(|_| vec![0u8; PACKET_MAX])
                .collect(),
            sizes: vec![0; IDEAL_BATCH_SIZE],
        }
    }
}

/// Decrypted packets waiting to be written, coalesced on [`Writer::flush`].
pub struct Writer {
    packets: Vec<Vec<u8>>,
    count: usize,
    gro: GROTable,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    /// Returns an empty writer.
    pub fn new() -> Self {
        Self {
            // Coalescing appends a flow's packets to its first buffer, and only where that
            // buffer already has room for a whole super-packet.
            packets: (0..IDEAL_BATCH_SIZE)
                .map(|_| Vec::with_capacity(2 * VIRTIO_NET_HDR_LEN + PACKET_MAX))
                .collect(),
            count: 0,
            gro: GROTable::default(),
        }
    }

    /// Queues one packet; writes the batch when it is full.
    pub fn push(&mut self, tun: &Tun, packet: &[u8]) {
        if self.count == self.packets.len() {
            self.flush(tun);
        }
        if let Some(buffer) = self.packets.get_mut(self.count) {
            buffer.clear();
            buffer.resize(VIRTIO_NET_HDR_LEN, 0);
            buffer.extend_from_slice(packet);
            self.count += 1;
        }
    }

    /// Whether another call's packets (up to `room` of them) might not fit without a write:
    /// the caller writes now, before it locks the core again.
    pub fn nearly_full(&self, room: usize) -> bool {
        self.count + room > self.packets.len()
    }

    /// Writes the queued packets, coalescing those of one flow.
    pub fn flush(&mut self, tun: &Tun) {
        if self.count == 0 {
            return;
        }
        if let Some(batch) = self.packets.get_mut(..self.count)
            && let Err(error) = tun
                .device
                .send_multiple(&mut self.gro, batch, VIRTIO_NET_HDR_LEN)
        {
            tracing::trace!(%error, "TUN write failed");
        }
        self.count = 0;
    }
}
