//! WireGuard messages as seen on the underlay: frames captured by [`Capture`](crate::Capture)
//! parsed down to UDP, super-packets split back into the messages they carry, and the
//! whitepaper's padding rule (section 5.4.6) checked on every data message.
//!
//! A sender using UDP GSO hands the kernel one datagram holding several WireGuard messages,
//! each `gso_size` bytes but the last (which may be shorter), and a veth carries it whole, so
//! a capture sees a super-packet. [`split_datagram`] finds the segment size from the data
//! messages themselves: a segment boundary is where the next header of the same session
//! starts (type 4, the same receiver index, a higher counter). Sixteen bytes of ciphertext
//! matching such a header by chance is a 2^-96 event, so the split is exact.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Result, bail, ensure};

/// Type of a data (transport) message.
pub const DATA: u8 = 4;
/// Bytes a data message adds to its plaintext: a 16-byte header and a 16-byte tag.
pub const DATA_OVERHEAD: usize = 32;
/// A data message's plaintext is padded to a multiple of this many bytes.
pub const PADDING: usize = 16;
/// Length of a data message's header: type and reserved bytes, receiver index, counter.
const HEADER: usize = 16;
/// How far a counter may jump between two segments of one super-packet (another thread may
/// send on the same session between two messages of a run).
const COUNTER_WINDOW: u64 = 1 << 16;
/// How many offending lengths or datagrams a failed check lists (the histogram has them all).
const REPORTED: usize = 10;

/// One UDP datagram seen on the underlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Its source.
    pub from: SocketAddrV4,
    /// Its destination.
    pub to: SocketAddrV4,
    /// The UDP payload: one WireGuard message, or several laid end to end.
    pub payload: Vec<u8>,
}

/// One WireGuard message inside a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The message type (1 initiation, 2 response, 3 cookie reply, 4 data).
    pub kind: u8,
    /// Its length in bytes.
    pub len: usize,
}

/// Returns the IPv4/UDP datagram in an Ethernet `frame` if either of its ports is `port`,
/// `None` for any other frame.
///
/// # Errors
/// Fails when the frame is cut short of the length its IP header gives.
pub fn parse_frame(frame: &[u8], port: u16) -> Option<Result<Datagram>> {
    let ip = frame.get(14..).filter(|_| frame[12..14] == [0x08, 0x00])?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ip.get(9) != Some(&17) || header_len < 20 {
        return None;
    }
    let udp = ip.get(header_len..header_len + 8)?;
    let (src_port, dst_port) = (
        u16::from_be_bytes([udp[0], udp[1]]),
        u16::from_be_bytes([udp[2], udp[3]]),
    );
    if src_port != port && dst_port != port {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(payload) = ip.get(header_len + 8..total) else {
        return Some(Err(anyhow::anyhow!(
            "a frame of {} bytes is shorter than its IP length {total}",
            frame.len()
        )));
    };
    let address = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Ok(Datagram {
        from: SocketAddrV4::new(address(12), src_port),
        to: SocketAddrV4::new(address(16), dst_port),
        payload: payload.to_vec(),
    }))
}

/// Splits a UDP payload into the WireGuard messages it carries: one, or for a GSO (or GRO)
/// super-packet, segments of one size but the last, each but the last a data message that
/// continues the first one's session.
///
/// # Errors
/// Fails when a super-packet breaks off: a segment that is not the last does not start with
/// the session's next data header.
pub fn split_datagram(payload: &[u8]) -> Result<Vec<Message>> {
    let kind = payload.first().copied().unwrap_or(0);
    let Some(first) = DataHeader::at(payload, 0) else {
        return Ok(vec![Message {
            kind,
            len: payload.len(),
        }]);
    };
    let Some(segment) = (DATA_OVERHEAD..payload.len())
        .find(|&at| DataHeader::at(payload, at).is_some_and(|next| first.precedes(next)))
    else {
        return Ok(vec![Message {
            kind,
            len: payload.len(),
        }]);
    };
    let mut messages = Vec::new();
    let (mut at, mut header) = (0, first);
    while payload.len() - at > segment {
        let next_at = at + segment;
        let rest = payload.len() - next_at;
        match DataHeader::at(payload, next_at) {
            Some(next) if header.precedes(next) => header = next,
            // The last segment may be any message.
            _ if rest <= segment => {}
            _ => bail!(
                "a super-packet of {} bytes in {segment}-byte segments breaks off at byte \
                 {next_at}",
                payload.len()
            ),
        }
        messages.push(Message {
            kind: DATA,
            len: segment,
        });
        at = next_at;
    }
    messages.push(Message {
        kind: payload[at],
        len: payload.len() - at,
    });
    Ok(messages)
}

/// Returns whether a data message of `len` bytes is padded as the whitepaper requires: its
/// plaintext a multiple of 16 bytes, or exactly `mtu` bytes (padding stops at the MTU), and
/// never longer than `mtu`.
pub fn is_padded(len: usize, mtu: usize) -> bool {
    len.checked_sub(DATA_OVERHEAD)
        .is_some_and(|plain| plain <= mtu && (plain % PADDING == 0 || plain == mtu))
}

/// Returns the length of the data message that carries an IP packet of `packet` bytes from a
/// padding sender with this `mtu`.
pub fn padded_len(packet: usize, mtu: usize) -> usize {
    packet.next_multiple_of(PADDING).min(mtu.max(packet)) + DATA_OVERHEAD
}

/// A direction on the underlay: (source, destination) address.
pub type Direction = (Ipv4Addr, Ipv4Addr);

/// What a capture saw: data-message lengths per direction, other messages by type, and the
/// datagrams that could not be split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    /// Count of data messages by length, per direction.
    pub data: BTreeMap<Direction, BTreeMap<usize, u64>>,
    /// Count of other messages (handshakes, cookie replies) by type.
    pub other: BTreeMap<u8, u64>,
    /// Why each datagram that could not be split was refused.
    pub errors: Vec<String>,
    /// Datagrams that carried more than one message.
    pub super_packets: u64,
}

impl Census {
    /// Returns the census of `datagrams`.
    pub fn of<'a>(datagrams: impl IntoIterator<Item = &'a Datagram>) -> Self {
        let mut census = Self::default();
        for datagram in datagrams {
            census.add(datagram);
        }
        census
    }

    /// Counts the messages in one datagram.
    pub fn add(&mut self, datagram: &Datagram) {
        let direction = (*datagram.from.ip(), *datagram.to.ip());
        let messages = match split_datagram(&datagram.payload) {
            Ok(messages) => messages,
            Err(error) => {
                self.errors
                    .push(format!("{} -> {}: {error:#}", datagram.from, datagram.to));
                return;
            }
        };
        if messages.len() > 1 {
            self.super_packets += 1;
        }
        for message in messages {
            if message.kind == DATA {
                *self
                    .data
                    .entry(direction)
                    .or_default()
                    .entry(message.len)
                    .or_default() += 1;
            } else {
                *self.other.entry(message.kind).or_default() += 1;
            }
        }
    }

    /// Returns every (direction, length, count) of data messages that are not padded for
    /// `mtu` (see [`is_padded`]).
    pub fn violations(&self, mtu: usize) -> Vec<(Direction, usize, u64)> {
        self.data
            .iter()
            .flat_map(|(direction, lengths)| {
                lengths
                    .iter()
                    .filter(|(len, _)| !is_padded(**len, mtu))
                    .map(|(len, count)| (*direction, *len, *count))
            })
            .collect()
    }

    /// Returns how many data messages went in `direction`.
    pub fn messages(&self, direction: Direction) -> u64 {
        self.data
            .get(&direction)
            .map_or(0, |lengths| lengths.values().sum())
    }

    /// Returns the plaintext bytes (padding included) the data messages in `direction` carried.
    pub fn plaintext_bytes(&self, direction: Direction) -> u64 {
        self.data.get(&direction).map_or(0, |lengths| {
            lengths
                .iter()
                .map(|(len, count)| len.saturating_sub(DATA_OVERHEAD) as u64 * count)
                .sum()
        })
    }

    /// Returns whether a data message of `len` bytes went in `direction`.
    pub fn saw(&self, direction: Direction, len: usize) -> bool {
        self.data
            .get(&direction)
            .is_some_and(|lengths| lengths.contains_key(&len))
    }

    /// Returns a histogram of data-message lengths per direction, one `length×count` per
    /// length, lengths not padded for `mtu` marked with `!`.
    pub fn histogram(&self, mtu: usize) -> String {
        let mut out = String::new();
        for ((from, to), lengths) in &self.data {
            let _ = write!(out, "{from} -> {to}:");
            for (len, count) in lengths {
                let mark = if is_padded(*len, mtu) { "" } else { "!" };
                let _ = write!(out, " {mark}{len}x{count}");
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "other messages by type: {:?}; super-packets: {}; unsplittable: {}",
            self.other,
            self.super_packets,
            self.errors.len()
        );
        out
    }

    /// Checks that every data message is padded for `mtu` and that every datagram split
    /// cleanly.
    ///
    /// # Errors
    /// Fails with the offending lengths, the split errors and the full histogram.
    pub fn check_padding(&self, mtu: usize) -> Result<()> {
        let violations = self.violations(mtu);
        ensure!(
            violations.is_empty() && self.errors.is_empty(),
            "{} data-message lengths not padded to 16 bytes, the first as (direction, length, \
             count): {:?}\n{} unsplittable datagrams, the first: {:?}\nhistogram (! marks a \
             length not padded):\n{}",
            violations.len(),
            &violations[..violations.len().min(REPORTED)],
            self.errors.len(),
            &self.errors[..self.errors.len().min(REPORTED)],
            self.histogram(mtu)
        );
        Ok(())
    }
}

/// The first 16 bytes of a data message: its session's receiver index and its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataHeader {
    receiver: u32,
    counter: u64,
}

impl DataHeader {
    /// Reads a data header at `at`, if the bytes there are one and a whole data message fits.
    fn at(payload: &[u8], at: usize) -> Option<Self> {
        let bytes = payload.get(at..at + HEADER)?;
        if bytes[..4] != [DATA, 0, 0, 0] || payload.len() - at < DATA_OVERHEAD {
            return None;
        }
        let receiver = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
        let counter = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
        Some(Self { receiver, counter })
    }

    /// Returns whether `next` can be a later message of the same session in one super-packet.
    fn precedes(self, next: Self) -> bool {
        next.receiver == self.receiver
            && next.counter > self.counter
            && next.counter - self.counter <= COUNTER_WINDOW
    }
}

#[cfg(test)]
mod tests;
