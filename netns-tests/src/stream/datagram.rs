//! The stream's datagram: magic, stream id and sequence number (big-endian `u64`s), zero-padded
//! to 64 bytes.

/// The datagram: magic, stream id and sequence number (big-endian `u64`s), zero-padded.
pub(super) const DATAGRAM_LEN: usize = 64;
/// "ztstream" in ASCII.
const MAGIC: u64 = 0x7a74_7374_7265_616d;

/// Returns the datagram carrying `seq` of `stream`.
pub(super) fn encode(stream: u64, seq: u64) -> [u8; DATAGRAM_LEN] {
    let mut datagram = [0u8; DATAGRAM_LEN];
    datagram[..8].copy_from_slice(&MAGIC.to_be_bytes());
    datagram[8..16].copy_from_slice(&stream.to_be_bytes());
    datagram[16..24].copy_from_slice(&seq.to_be_bytes());
    datagram
}

/// Returns the sequence number if `datagram` is one of `stream`'s.
pub(super) fn decode(datagram: &[u8], stream: u64) -> Option<u64> {
    let datagram: &[u8; DATAGRAM_LEN] = datagram.try_into().ok()?;
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&datagram[at..at + 8]);
        u64::from_be_bytes(bytes)
    };
    (word(0) == MAGIC && word(8) == stream).then(|| word(16))
}
