//! TCP segments and sequence numbers.
//!
//! Reading list:
//! - RFC 9293 §3.1: the header format, the data offset, the flags, and the
//!   checksum over the IPv4 pseudo-header; §3.2: the option syntax (kinds
//!   0 and 1 are one byte, every other option carries its own length) and
//!   MSS (kind 2); §3.4: sequence numbers and their modulo-2^32 comparison.
//! - RFC 7323 §2.2: Window Scale (kind 3); §3.2: Timestamps (kind 8).
//! - RFC 2018 §2–3: SACK-Permitted (kind 4) and SACK blocks (kind 5).
//! - RFC 1122 §4.2.2.5: unknown options must be skipped using their length.
//!
//! Options are parsed strictly: an option whose length byte is below 2,
//! runs past the header, or does not fit its kind (MSS not 4 bytes, SACK
//! not 2 + 8n) makes the whole segment [`WireError::Malformed`], because a
//! receiver cannot know where the next option starts (RFC 9293 §3.2 lets a
//! receiver treat such a segment as an error). Unknown kinds are skipped.
//! The urgent pointer is read and written but nothing interprets it (RFC
//! 6093 advises new applications not to use urgent data).
//!
//! See the [module contract](super#the-contract): after
//! [`TcpPacket::new_checked`], no getter, no `options()` and no `payload()`
//! panics.

use core::cmp::Ordering;
use core::fmt;
use core::net::Ipv4Addr;
use core::ops::{Add, AddAssign, Sub};

use mirage_types::ip::IpProtocol;

use super::{checksum, need, read_u16, write_u16, WireError};

mod field {
    use core::ops::Range;

    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Bytes in a TCP header without options.
pub const TCP_HEADER_LEN: usize = 20;

/// Bytes in the longest TCP header (data offset 15).
pub const TCP_MAX_HEADER_LEN: usize = 60;

/// The most SACK blocks one segment carries: 4 fill the 40 option bytes
/// (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// A TCP sequence number: arithmetic and comparison modulo 2^32.
///
/// RFC 9293 §3.4: `a < b` means `b` is "after" `a` by less than 2^31. The
/// order is therefore not transitive over the whole space; it is only
/// meaningful between numbers less than 2^31 apart, which every window in
/// a connection is. [`Ord`] is deliberately not implemented.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The signed distance from `other` to `self` (positive when `self` is
    /// after `other`).
    pub fn distance_from(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// The later of the two.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self > other {
            self
        } else {
            other
        }
    }

    /// The earlier of the two.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            self
        } else {
            other
        }
    }

    /// `self − len`, modulo 2^32 (the `-` operator gives a distance).
    pub fn sub_len(self, len: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(len as u32))
    }

    /// Whether `start <= self < end` modulo 2^32.
    pub fn in_range(self, start: SeqNumber, end: SeqNumber) -> bool {
        self.0.wrapping_sub(start.0) < end.0.wrapping_sub(start.0)
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.distance_from(*other).cmp(&0))
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Adds a length; lengths are below 2^31 in any window, so truncating
    /// the `usize` is the modulo arithmetic RFC 9293 §3.4 asks for.
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;
    /// The length from `rhs` to `self`; 0 if `rhs` is after `self`.
    fn sub(self, rhs: SeqNumber) -> usize {
        self.distance_from(rhs).max(0) as usize
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The control bits of a TCP header (RFC 9293 §3.1, RFC 3168 §6.1 for ECE
/// and CWR).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN echo.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// FIN is set.
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN is set.
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST is set.
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// PSH is set.
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    /// ACK is set.
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// A view of a TCP segment (header, options and payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than the header, and `options()`/`payload()` if the data offset lies.
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer (the whole IP payload) after checking its lengths.
    ///
    /// `Ok` means no getter, no `options()` and no `payload()` panics: the
    /// buffer holds the 20-byte header, and the data offset is at least 5
    /// words and within the buffer. Errors with [`WireError::Truncated`]
    /// if the buffer is shorter than the header or the data offset, and
    /// [`WireError::Malformed`] if the data offset is below 5.
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, WireError> {
        let len = buffer.as_ref().len();
        need("TCP header", len, TCP_HEADER_LEN)?;
        let packet = TcpPacket { buffer };
        let header_len = packet.header_len();
        if header_len < TCP_HEADER_LEN {
            return Err(WireError::Malformed { what: "TCP data offset below 5 words" });
        }
        need("TCP header (data offset)", len, header_len)?;
        Ok(packet)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::SEQ_NUM.start))
    }

    /// The acknowledgment number (meaningful only with ACK set).
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(read_u32(self.buffer.as_ref(), field::ACK_NUM.start))
    }

    /// The header length in bytes, from the data offset field.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS] >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS + 1])
    }

    /// The window field, unscaled.
    pub fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The urgent pointer (meaningful only with URG set; never interpreted).
    pub fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes: from the fixed header to the data offset.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[TCP_HEADER_LEN..self.header_len()]
    }

    /// The payload: everything after the data offset.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum is right for a segment from `src` to `dst`
    /// (RFC 9293 §3.1; unlike UDP, 0 is not "no checksum").
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let segment = self.buffer.as_ref();
        let Ok(length) = u16::try_from(segment.len()) else {
            return false;
        };
        checksum::combine(&[checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, length), checksum::data(segment)])
            == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: SeqNumber) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.0.to_be_bytes());
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4
    /// from 20 to 60), clearing the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (TCP_HEADER_LEN..=TCP_MAX_HEADER_LEN).contains(&len));
        self.buffer.as_mut()[field::FLAGS] = ((len / 4) as u8) << 4;
    }

    /// Sets the control bits.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS + 1] = flags.0;
    }

    /// Sets the window field.
    pub fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field (see [`Self::fill_checksum`]).
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// The option bytes, to write into.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[TCP_HEADER_LEN..end]
    }

    /// The payload, to write into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer as
    /// it is now, and writes it.
    ///
    /// Panics if the buffer is longer than 65 535 bytes (a bug in the
    /// caller: no IPv4 datagram carries that much).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let segment = self.buffer.as_ref();
        let length = u16::try_from(segment.len())
            .unwrap_or_else(|_| panic!("TCP segment of {} bytes exceeds 65535", segment.len()));
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::TCP, length),
            checksum::data(segment),
        ]);
        self.set_checksum(!sum);
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The Timestamps option (RFC 7323 §3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpTimestamp {
    /// The sender's clock when it sent the segment (TSval).
    pub value: u32,
    /// The most recent TSval the sender received (TSecr).
    pub echo: u32,
}

/// Up to [`MAX_SACK_BLOCKS`] SACK blocks (RFC 2018 §3): each the left and
/// right edge of a run of data the receiver holds beyond its cumulative
/// acknowledgment.
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// No blocks.
    pub const EMPTY: SackBlocks = SackBlocks { blocks: [(SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS], len: 0 };

    /// Appends a block; returns false (and keeps the list) when it is full.
    pub fn push(&mut self, left: SeqNumber, right: SeqNumber) -> bool {
        let Some(slot) = self.blocks.get_mut(usize::from(self.len)) else {
            return false;
        };
        *slot = (left, right);
        self.len += 1;
        true
    }

    /// The blocks, first (most recent, RFC 2018 §4) first.
    pub fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..usize::from(self.len)]
    }

    /// The number of blocks.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `n` blocks.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n.min(MAX_SACK_BLOCKS) as u8);
    }
}

// Slots past `len` are stale; only the blocks in use count.
impl PartialEq for SackBlocks {
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl core::hash::Hash for SackBlocks {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The options of a segment that this implementation understands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpOptions {
    /// Maximum segment size (RFC 9293 §3.7.1); only meaningful on SYN.
    pub max_seg_size: Option<u16>,
    /// Window scale shift count as sent (RFC 7323 §2.2); receivers clamp
    /// it to 14 (§2.3). Only meaningful on SYN.
    pub window_scale: Option<u8>,
    /// SACK-Permitted (RFC 2018 §2); only meaningful on SYN.
    pub sack_permitted: bool,
    /// SACK blocks (RFC 2018 §3).
    pub sack_blocks: SackBlocks,
    /// Timestamps (RFC 7323 §3.2).
    pub timestamp: Option<TcpTimestamp>,
}

mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

impl TcpOptions {
    /// Decodes the option bytes of a header.
    ///
    /// Errors with [`WireError::Malformed`] if an option's length byte is
    /// missing, below 2, runs past the options, or does not fit its kind.
    /// Unknown kinds are skipped (RFC 1122 §4.2.2.5); a repeated option
    /// replaces the earlier one.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions, WireError> {
        if let &[kind::NOP, kind::NOP, kind::TIMESTAMP, 10, v0, v1, v2, v3, e0, e1, e2, e3] = bytes {
            // What nearly every segment after the handshake carries (the
            // layout of RFC 7323 Appendix A), decoded inline; the loop
            // decodes it the same way, one option at a time.
            let (value, echo) = (u32::from_be_bytes([v0, v1, v2, v3]), u32::from_be_bytes([e0, e1, e2, e3]));
            return Ok(TcpOptions { timestamp: Some(TcpTimestamp { value, echo }), ..TcpOptions::default() });
        }
        TcpOptions::parse_each(bytes)
    }

    /// [`Self::parse`], one option at a time.
    fn parse_each(mut bytes: &[u8]) -> Result<TcpOptions, WireError> {
        let mut options = TcpOptions::default();
        while let Some(&kind) = bytes.first() {
            match kind {
                kind::END => break,
                kind::NOP => {
                    bytes = &bytes[1..];
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*bytes.get(1).ok_or(WireError::Malformed { what: "TCP option without length" })?);
            if len < 2 {
                return Err(WireError::Malformed { what: "TCP option length below 2" });
            }
            let body = bytes.get(2..len).ok_or(WireError::Malformed { what: "TCP option runs past the header" })?;
            match kind {
                kind::MSS => {
                    let [a, b] = body else {
                        return Err(WireError::Malformed { what: "TCP MSS option not 4 bytes" });
                    };
                    options.max_seg_size = Some(u16::from_be_bytes([*a, *b]));
                }
                kind::WINDOW_SCALE => {
                    let [shift] = body else {
                        return Err(WireError::Malformed { what: "TCP window scale option not 3 bytes" });
                    };
                    options.window_scale = Some(*shift);
                }
                kind::SACK_PERMITTED => {
                    if !body.is_empty() {
                        return Err(WireError::Malformed { what: "TCP SACK-permitted option not 2 bytes" });
                    }
                    options.sack_permitted = true;
                }
                kind::SACK => {
                    if body.is_empty() || body.len() % 8 != 0 {
                        return Err(WireError::Malformed { what: "TCP SACK option not 2 + 8n bytes" });
                    }
                    let mut blocks = SackBlocks::EMPTY;
                    for block in body.chunks_exact(8) {
                        blocks.push(SeqNumber(read_u32(block, 0)), SeqNumber(read_u32(block, 4)));
                    }
                    options.sack_blocks = blocks;
                }
                kind::TIMESTAMP => {
                    if body.len() != 8 {
                        return Err(WireError::Malformed { what: "TCP timestamps option not 10 bytes" });
                    }
                    options.timestamp = Some(TcpTimestamp { value: read_u32(body, 0), echo: read_u32(body, 4) });
                }
                _ => {}
            }
            bytes = &bytes[len..];
        }
        Ok(options)
    }

    /// How many of the SACK blocks fit beside the other options in the 40
    /// option bytes; [`Self::emit`] writes only those.
    pub fn sack_blocks_that_fit(&self) -> usize {
        let room = 40 - self.len_without_sack();
        let fit = room.saturating_sub(self.nops() + 2) / 8;
        self.sack_blocks.len().min(fit)
    }

    /// Bytes of the options only a SYN carries (MSS, window scale,
    /// SACK-Permitted), packed one after the other.
    fn syn_len(&self) -> usize {
        let mut len = 0;
        if self.max_seg_size.is_some() {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 3;
        }
        if self.sack_permitted {
            len += 2;
        }
        len
    }

    /// NOPs put before Timestamps and SACK: two when no SYN option comes
    /// first, so that every option of a segment after the handshake starts
    /// 2 bytes into a word and its 32-bit fields are word-aligned, the
    /// layout RFC 7323 Appendix A suggests (and Linux and BSD send); no
    /// padding is needed after them then. A SYN keeps its options packed.
    fn nops(&self) -> usize {
        if self.syn_len() == 0 {
            2
        } else {
            0
        }
    }

    fn len_without_sack(&self) -> usize {
        let ts = if self.timestamp.is_some() { self.nops() + 10 } else { 0 };
        self.syn_len() + ts
    }

    /// Bytes the options take, padded to a multiple of 4 (at most 40).
    pub fn buffer_len(&self) -> usize {
        if self.sack_blocks.is_empty() && self.syn_len() == 0 {
            // Every segment after the handshake but those with SACK blocks
            // (asked for several times per segment).
            return if self.timestamp.is_some() { 12 } else { 0 };
        }
        let sack = self.sack_blocks_that_fit();
        let len = self.len_without_sack() + if sack > 0 { self.nops() + 2 + 8 * sack } else { 0 };
        len.div_ceil(4) * 4
    }

    /// Writes the options into `out` (exactly [`Self::buffer_len`] bytes),
    /// padding with End-of-Option-List bytes.
    ///
    /// Panics (a bug in the caller) if `out` has another length.
    pub fn emit(&self, out: &mut [u8]) {
        assert_eq!(out.len(), self.buffer_len(), "TCP options buffer of the wrong length");
        self.write(out);
    }

    /// [`Self::emit`] into an `out` known to be [`Self::buffer_len`] bytes
    /// long (slicing panics otherwise).
    #[inline]
    fn write(&self, out: &mut [u8]) {
        if out.len() == 12 && self.sack_blocks.is_empty() && self.syn_len() == 0 {
            if let (Some(ts), Some(words)) = (self.timestamp, out.first_chunk_mut()) {
                // Nearly every segment after the handshake, inline.
                *words = timestamp_words(ts);
                return;
            }
        }
        self.write_each(out);
    }

    /// [`Self::write`], one option at a time.
    fn write_each(&self, out: &mut [u8]) {
        let nops = self.nops();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.max_seg_size {
            let [a, b] = mss.to_be_bytes();
            put(&[kind::MSS, 4, a, b]);
        }
        if let Some(shift) = self.window_scale {
            put(&[kind::WINDOW_SCALE, 3, shift]);
        }
        if self.sack_permitted {
            put(&[kind::SACK_PERMITTED, 2]);
        }
        let padding = &[kind::NOP, kind::NOP][..nops];
        if let Some(ts) = self.timestamp {
            put(&timestamp_words(ts)[2 - nops..]);
        }
        let sack = self.sack_blocks_that_fit();
        if sack > 0 {
            put(padding);
            put(&[kind::SACK, (2 + 8 * sack) as u8]);
            for (left, right) in &self.sack_blocks.as_slice()[..sack] {
                put(&left.0.to_be_bytes());
                put(&right.0.to_be_bytes());
            }
        }
        if at < out.len() {
            out[at..].fill(kind::END);
        }
    }
}

/// NOP, NOP and the Timestamps option (RFC 7323 §3.2, Appendix A).
fn timestamp_words(ts: TcpTimestamp) -> [u8; 12] {
    let [v0, v1, v2, v3] = ts.value.to_be_bytes();
    let [e0, e1, e2, e3] = ts.echo.to_be_bytes();
    [kind::NOP, kind::NOP, kind::TIMESTAMP, 10, v0, v1, v2, v3, e0, e1, e2, e3]
}

/// A decoded TCP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// The source port.
    pub src_port: u16,
    /// The destination port.
    pub dst_port: u16,
    /// The sequence number of the first byte (or of the SYN).
    pub seq_number: SeqNumber,
    /// The acknowledgment number; meaningful only if `flags` has ACK.
    pub ack_number: SeqNumber,
    /// The control bits.
    pub flags: TcpFlags,
    /// The window field, unscaled.
    pub window_len: u16,
    /// The options understood.
    pub options: TcpOptions,
    /// Bytes of payload.
    pub payload_len: usize,
}

impl TcpRepr {
    /// Decodes a checked segment that came from `src` to `dst`.
    ///
    /// `Ok` means the checksum is right and the options are well formed.
    /// Errors with [`WireError::BadChecksum`] (RFC 9293 §3.1: drop),
    /// [`WireError::Malformed`] for a port 0 or a malformed option.
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<TcpRepr, WireError> {
        let bytes = packet.buffer.as_ref();
        // `new_checked` made sure of the fixed header; read it as one array
        // (one length check, not one per field).
        let Some(header) = bytes.first_chunk::<TCP_HEADER_LEN>() else {
            return Err(WireError::Truncated { what: "TCP header", len: bytes.len(), needed: TCP_HEADER_LEN });
        };
        let [s0, s1, d0, d1, q0, q1, q2, q3, a0, a1, a2, a3, offset, flags, w0, w1, ..] = *header;
        let (src_port, dst_port) = (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]));
        if src_port == 0 || dst_port == 0 {
            return Err(WireError::Malformed { what: "TCP port 0" });
        }
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum { what: "TCP segment" });
        }
        let header_len = usize::from(offset >> 4) * 4;
        let options = bytes.get(TCP_HEADER_LEN..header_len).ok_or(WireError::Malformed { what: "TCP data offset" })?;
        Ok(TcpRepr {
            src_port,
            dst_port,
            seq_number: SeqNumber(u32::from_be_bytes([q0, q1, q2, q3])),
            ack_number: SeqNumber(u32::from_be_bytes([a0, a1, a2, a3])),
            flags: TcpFlags(flags),
            window_len: u16::from_be_bytes([w0, w1]),
            options: TcpOptions::parse(options)?,
            payload_len: bytes.len() - header_len,
        })
    }

    /// The header's length with its options.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.buffer_len()
    }

    /// Bytes the segment takes: header, options and payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// The sequence space the segment occupies: payload, SYN and FIN
    /// (RFC 9293 §3.4, SEG.LEN).
    pub fn segment_len(&self) -> usize {
        self.payload_len + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Writes the header, lets `fill_payload` write the payload (exactly
    /// `payload_len` bytes, initial contents unspecified), then writes the
    /// checksum for a segment from `src` to `dst`. Returns what
    /// `fill_payload` returns.
    ///
    /// Panics (a bug in the caller) if the buffer is not exactly
    /// [`Self::buffer_len`] bytes or that exceeds 65 535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>, R>(
        &self,
        packet: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        fill_payload: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        let header_len = self.header_len();
        let out = packet.buffer.as_mut();
        assert_eq!(out.len(), header_len + self.payload_len, "TCP segment buffer of the wrong length");
        let [s0, s1] = self.src_port.to_be_bytes();
        let [d0, d1] = self.dst_port.to_be_bytes();
        let [q0, q1, q2, q3] = self.seq_number.0.to_be_bytes();
        let [a0, a1, a2, a3] = self.ack_number.0.to_be_bytes();
        let [w0, w1] = self.window_len.to_be_bytes();
        // The data offset, reserved bits clear; checksum and urgent
        // pointer 0 (the checksum is filled in below).
        let offset = ((header_len / 4) as u8) << 4;
        let header = [s0, s1, d0, d1, q0, q1, q2, q3, a0, a1, a2, a3, offset, self.flags.0, w0, w1, 0, 0, 0, 0];
        let (fixed, rest) = out.split_at_mut(TCP_HEADER_LEN);
        fixed.copy_from_slice(&header);
        let (options, payload) = rest.split_at_mut(header_len - TCP_HEADER_LEN);
        self.options.write(options);
        let result = fill_payload(payload);
        packet.fill_checksum(src, dst);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    // A SYN (10.0.0.1:40000 → 10.0.0.2:80) laid out byte by byte from RFC
    // 9293 §3.1 and RFC 7323 in the option order Linux uses: MSS 1460,
    // SACK-permitted, timestamps, NOP, window scale 7. The checksum field is
    // left 0 here and filled by `with_checksum`.
    const LINUX_SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x3b, 0x9a, 0xca, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x00, 0x00,
        0x00, 0x00, // fixed header, checksum filled in below by the test
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    fn with_checksum(mut bytes: [u8; 40]) -> [u8; 40] {
        TcpPacket::new_unchecked(&mut bytes[..]).fill_checksum(SRC, DST);
        bytes
    }

    #[test]
    fn seq_numbers_compare_across_the_wrap() {
        // RFC 9293 §3.4: comparisons are modulo 2^32.
        let near_end = SeqNumber(u32::MAX - 10);
        let wrapped = near_end + 20;
        assert_eq!(wrapped, SeqNumber(9));
        assert!(near_end < wrapped);
        assert!(wrapped >= near_end);
        assert_eq!(wrapped - near_end, 20);
        assert_eq!(near_end - wrapped, 0);
        assert_eq!(wrapped.distance_from(near_end), 20);
        assert!(SeqNumber(5).in_range(near_end, wrapped));
        assert!(!wrapped.in_range(near_end, wrapped));
        assert_eq!(near_end.max(wrapped), wrapped);
        assert_eq!(near_end.min(wrapped), near_end);
        assert_eq!(SeqNumber(3).sub_len(5), SeqNumber(u32::MAX - 1));
    }

    #[test]
    fn parses_a_linux_syn() {
        let bytes = with_checksum(LINUX_SYN);
        let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
        let repr = TcpRepr::parse(&packet, SRC, DST).unwrap();
        assert_eq!(repr.src_port, 40000);
        assert_eq!(repr.dst_port, 80);
        assert_eq!(repr.seq_number, SeqNumber(1_000_000_000));
        assert_eq!(repr.flags, TcpFlags::SYN);
        assert_eq!(repr.window_len, 64240);
        assert_eq!(repr.options.max_seg_size, Some(1460));
        assert_eq!(repr.options.window_scale, Some(7));
        assert!(repr.options.sack_permitted);
        assert_eq!(repr.options.timestamp, Some(TcpTimestamp { value: 123_456, echo: 0 }));
        assert_eq!(repr.payload_len, 0);
        assert_eq!(repr.segment_len(), 1);
        // Another address fails the pseudo-header sum.
        assert_eq!(
            TcpRepr::parse(&packet, Ipv4Addr::new(10, 0, 0, 3), DST),
            Err(WireError::BadChecksum { what: "TCP segment" })
        );
    }

    #[test]
    fn malformed_options_are_errors_and_unknown_ones_are_skipped() {
        for (options, ok) in [
            (&[2u8, 4, 5][..], false),   // MSS cut short
            (&[2, 3, 5, 0][..], false),  // MSS of the wrong length
            (&[30, 1, 0, 0][..], false), // length below 2
            (&[30][..], false),          // no length byte
            (&[5, 6, 0, 0, 0, 0][..], false),
            (&[30, 4, 9, 9, 2, 4, 1, 0][..], true), // unknown kind 30 skipped, then MSS 256
            (&[1, 1, 0, 77][..], true),             // NOPs, then End: the rest is ignored
        ] {
            let parsed = TcpOptions::parse(options);
            assert_eq!(parsed.is_ok(), ok, "{options:?} gave {parsed:?}");
        }
        assert_eq!(TcpOptions::parse(&[30, 4, 9, 9, 2, 4, 1, 0]).unwrap().max_seg_size, Some(256));
    }

    #[test]
    fn header_length_checks() {
        let bytes = with_checksum(LINUX_SYN);
        assert!(matches!(TcpPacket::new_checked(&bytes[..19]), Err(WireError::Truncated { needed: 20, .. })));
        assert!(matches!(TcpPacket::new_checked(&bytes[..39]), Err(WireError::Truncated { needed: 40, .. })));
        let mut short = bytes;
        short[12] = 0x40;
        assert!(matches!(TcpPacket::new_checked(&short[..]), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn emitting_reproduces_the_capture() {
        let expected = with_checksum(LINUX_SYN);
        let repr = TcpRepr::parse(&TcpPacket::new_checked(&expected[..]).unwrap(), SRC, DST).unwrap();
        let mut out = [0xa5u8; 40];
        repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), SRC, DST, |_| ());
        // Our option order differs from Linux's, so compare decoded values
        // and the checksum's validity rather than bytes.
        let packet = TcpPacket::new_checked(&out[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
        assert_eq!(TcpRepr::parse(&packet, SRC, DST).unwrap(), repr);
    }

    #[test]
    fn sack_blocks_beyond_the_option_space_are_not_emitted() {
        // RFC 2018 §3: with timestamps, at most 3 blocks fit.
        let mut blocks = SackBlocks::EMPTY;
        for i in 0..4u32 {
            assert!(blocks.push(SeqNumber(i * 100), SeqNumber(i * 100 + 50)));
        }
        assert!(!blocks.push(SeqNumber(0), SeqNumber(1)));
        let options = TcpOptions { sack_blocks: blocks, ..TcpOptions::default() };
        assert_eq!(options.sack_blocks_that_fit(), 4);
        let with_ts =
            TcpOptions { timestamp: Some(TcpTimestamp { value: 1, echo: 2 }), sack_blocks: blocks, ..options };
        assert_eq!(with_ts.sack_blocks_that_fit(), 3);
        assert!(with_ts.buffer_len() <= 40);
    }

    #[test]
    fn options_after_the_handshake_are_word_aligned() {
        // RFC 7323 Appendix A: NOP, NOP before Timestamps and SACK.
        let ts = Some(TcpTimestamp { value: 0x0102_0304, echo: 0x0506_0708 });
        let mut blocks = SackBlocks::EMPTY;
        blocks.push(SeqNumber(0x1112_1314), SeqNumber(0x1516_1718));
        let cases: [(TcpOptions, &[u8]); 3] = [
            (TcpOptions { timestamp: ts, ..TcpOptions::default() }, &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]),
            (
                TcpOptions { timestamp: ts, sack_blocks: blocks, ..TcpOptions::default() },
                &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 5, 10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18],
            ),
            (
                TcpOptions { sack_blocks: blocks, ..TcpOptions::default() },
                &[1, 1, 5, 10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18],
            ),
        ];
        for (options, expected) in cases {
            let mut out = vec![0xa5u8; options.buffer_len()];
            options.emit(&mut out);
            assert_eq!(out, expected);
            assert_eq!(TcpOptions::parse(&out).unwrap(), options);
        }
        // A SYN's options stay packed: 4 + 3 + 2 + 10 bytes, then End.
        let syn = TcpOptions {
            max_seg_size: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: ts,
            ..TcpOptions::default()
        };
        let mut out = vec![0xa5u8; syn.buffer_len()];
        syn.emit(&mut out);
        assert_eq!(out, [2, 4, 5, 0xb4, 3, 3, 7, 4, 2, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0]);
    }

    fn options_strategy() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..15),
            any::<bool>(),
            proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
            proptest::option::of((any::<u32>(), any::<u32>())),
        )
            .prop_map(|(mss, ws, sack_permitted, blocks, ts)| {
                let mut sack_blocks = SackBlocks::EMPTY;
                for (l, r) in blocks {
                    sack_blocks.push(SeqNumber(l), SeqNumber(r));
                }
                let mut options = TcpOptions {
                    max_seg_size: mss,
                    window_scale: ws,
                    sack_permitted,
                    sack_blocks,
                    timestamp: ts.map(|(value, echo)| TcpTimestamp { value, echo }),
                };
                // Only what fits survives emission; the round trip compares that.
                options.sack_blocks.truncate(options.sack_blocks_that_fit());
                options
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            src_port in 1u16..,
            dst_port in 1u16..,
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window_len in any::<u16>(),
            options in options_strategy(),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let repr = TcpRepr {
                src_port, dst_port, seq_number: SeqNumber(seq), ack_number: SeqNumber(ack),
                flags: TcpFlags(flags), window_len, options, payload_len: payload.len(),
            };
            let mut bytes = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut TcpPacket::new_unchecked(&mut bytes[..]), SRC, DST, |p| p.copy_from_slice(&payload));
            let packet = TcpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(TcpRepr::parse(&packet, SRC, DST).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100), offset in 5u8..16) {
            let mut bytes = bytes;
            if bytes.len() > 12 && offset % 2 == 0 {
                // Steer half the inputs to a data offset that may fit.
                bytes[12] = offset << 4;
            }
            if let Ok(p) = TcpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.header_len(), p.flags());
                let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.options(), p.payload());
                let _ = p.verify_checksum(SRC, DST);
                let _ = TcpRepr::parse(&p, SRC, DST);
                let _ = TcpOptions::parse(p.options());
            }
            let _ = TcpOptions::parse(&bytes);
        }
    }
}
