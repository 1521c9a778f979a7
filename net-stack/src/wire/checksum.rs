//! The Internet checksum.
//!
//! Reading list:
//! - RFC 1071, "Computing the Internet Checksum": the one's-complement sum
//!   and the properties the fast path relies on (§2: byte-order
//!   independence, parallel summation, deferred carries).
//! - RFC 1624: incremental update (why a computed sum is never 0 in
//!   one's-complement arithmetic except for all-zero data).
//! - RFC 768 and RFC 9293 §3.1: the IPv4 pseudo-header of UDP and TCP.
//!
//! The functions here return the *sum* (folded to 16 bits, not
//! complemented); a header's checksum field holds its complement:
//! `!combine(&[pseudo_header_v4(..), data(segment)])`. A receiver that
//! sums the whole header including its checksum field gets `0xffff` when
//! the checksum is right.
//!
//! # Speed
//!
//! [`data`] adds the buffer as native-endian 64-bit words into 128-bit
//! accumulators, four at a time, and folds the carries once at the end
//! (RFC 1071 §2(C) "deferred carries"). Summing native-endian words and
//! swapping the bytes of the result is the same as summing big-endian words
//! (RFC 1071 §2(B)), so no byte is swapped in the loop. `examples/checksum_bench.rs`
//! measures it against a copy of the same buffer. Buffers under 64 bytes
//! (headers, small segments) take one 64-bit accumulator with end-around
//! carries instead, since the four lanes' setup and folds cost more than
//! such a buffer's few words.

use core::net::Ipv4Addr;

use mirage_types::ip::IpProtocol;

/// Folds a wide one's-complement sum to 16 bits with end-around carries.
pub const fn fold(mut sum: u64) -> u16 {
    // Each step halves the width; the carry out of the top is added back
    // at the bottom, as one's-complement addition requires (RFC 1071 §1).
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The one's-complement sum of `data` read as big-endian 16-bit words, a
/// final odd byte padded with a zero byte on the right (RFC 1071 §1).
pub fn data(data: &[u8]) -> u16 {
    let sum = if data.len() < SMALL { small(data) } else { large(data) };
    // The sum of native-endian words is the byte-swapped sum of big-endian
    // words (RFC 1071 §2(B)).
    u16::from_be(fold(sum))
}

/// Below this many bytes (headers, the segments of a request/response
/// exchange) one 64-bit accumulator beats the four-lane loop, whose setup
/// and final folds cost more than the few words it would add.
const SMALL: usize = 64;

/// The sum of a short buffer: 64-bit words with end-around carries (RFC
/// 1071 §2(A): any word size works if the carry out of the top is added
/// back at the bottom), then the tail.
fn small(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let (s, carry) = sum.overflowing_add(u64::from_ne_bytes(word_array(word)));
        sum = s + u64::from(carry);
    }
    add_carry(sum, tail(words.remainder()))
}

/// The four-lane sum of a longer buffer, folded to 64 bits.
fn large(data: &[u8]) -> u64 {
    const BLOCK: usize = 32;
    let mut acc = [0u128; 4];
    let mut blocks = data.chunks_exact(BLOCK);
    for block in &mut blocks {
        // Four independent accumulators let the additions overlap. A u128
        // cannot overflow from u64 additions in any buffer that fits in
        // memory, so carries are folded once, after the loop.
        for (lane, word) in acc.iter_mut().zip(block.chunks_exact(8)) {
            *lane += u128::from(u64::from_ne_bytes(word_array(word)));
        }
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        acc[0] += u128::from(u64::from_ne_bytes(word_array(word)));
    }
    acc[1] += u128::from(tail(words.remainder()));
    let total = acc.iter().fold(0u128, |sum, &lane| sum + fold128(lane) as u128);
    fold128(total)
}

/// The sum of the last 0 to 7 bytes, read as native-endian words of 4, 2
/// and 1 bytes without a copy (a copy into a zeroed word calls `memcpy`).
/// A final odd byte is padded with a zero byte on the right, which keeps
/// every byte at its offset's parity, so it lands in the right half of
/// its 16-bit word whatever the machine's byte order; where a 16-bit word
/// lands in the 64-bit sum does not matter, since the fold adds them all.
fn tail(rest: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut rest = rest;
    if let Some((word, more)) = rest.split_first_chunk::<4>() {
        sum += u64::from(u32::from_ne_bytes(*word));
        rest = more;
    }
    if let Some((word, more)) = rest.split_first_chunk::<2>() {
        sum += u64::from(u16::from_ne_bytes(*word));
        rest = more;
    }
    if let Some(&byte) = rest.first() {
        sum += u64::from(u16::from_ne_bytes([byte, 0]));
    }
    sum
}

/// `a + b` in one's-complement arithmetic on 64-bit words.
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Folds a 128-bit accumulator to a 64-bit one's-complement sum.
fn fold128(sum: u128) -> u64 {
    let (low, carry) = (sum as u64).overflowing_add((sum >> 64) as u64);
    // `sum >> 64` is below 2^64 and so is `low`, so at most one carry.
    low + u64::from(carry)
}

/// The 8 bytes of `word`, which `chunks_exact(8)` guarantees has 8.
fn word_array(word: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(word);
    out
}

/// The one's-complement sum of several partial sums.
///
/// The sum of a buffer split at an *even* offset is the combination of the
/// sums of its parts; at an odd offset it is not (the second part's bytes
/// would shift halves).
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The sum of the IPv4 pseudo-header that UDP (RFC 768) and TCP (RFC 9293
/// §3.1) include in their checksums: source, destination, a zero byte, the
/// protocol and the length of the UDP or TCP header plus data.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, length: u16) -> u16 {
    let words = |a: Ipv4Addr| {
        let v = u32::from(a);
        u64::from(v >> 16) + u64::from(v & 0xffff)
    };
    fold(words(src) + words(dst) + u64::from(protocol.0) + u64::from(length))
}

/// The value of a checksum field: the complement of the sum of `sums`.
pub fn checksum_field(sums: &[u16]) -> u16 {
    !combine(sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// RFC 1071 §4.1's reference algorithm, word by word.
    fn reference(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < bytes.len() {
            sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        }
        if i < bytes.len() {
            sum += u32::from(bytes[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(checksum_field(&[data(&bytes)]), !0xddf2);
    }

    #[test]
    fn odd_length_pads_on_the_right() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(data(&[]), 0);
    }

    #[test]
    fn carries_wrap_around() {
        // 0xffff + 0x0001 = 0x0001 with the end-around carry.
        assert_eq!(data(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
        // Many all-ones words stay all-ones (negative zero), not zero.
        assert_eq!(data(&[0xff; 4096]), 0xffff);
        // The same in the short-buffer path, whose 64-bit words carry out.
        assert_eq!(data(&[0xff; 63]), reference(&[0xff; 63]));
        assert_eq!(data(&[0xff; 56]), 0xffff);
    }

    #[test]
    fn ipv4_header_from_a_capture() {
        // A captured IPv4 header (the example in Wikipedia's "IPv4 header checksum") with its checksum b861 in place: the sum
        // over the whole header is 0xffff.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(data(&header), 0xffff);
        let mut zeroed = header;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum_field(&[data(&zeroed)]), 0xb861);
    }

    #[test]
    fn pseudo_header_sums_its_words() {
        let src = Ipv4Addr::new(192, 168, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17, 0x01, 0x2c]);
        assert_eq!(pseudo_header_v4(src, dst, IpProtocol::UDP, 300), reference(&bytes));
    }

    proptest! {
        #[test]
        fn matches_reference_at_any_length_and_alignment(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            skip in 0usize..16,
        ) {
            let slice = &bytes[skip.min(bytes.len())..];
            prop_assert_eq!(data(slice), reference(slice));
        }

        #[test]
        fn even_split_combines(bytes in proptest::collection::vec(any::<u8>(), 0..512), at in 0usize..256) {
            let at = (at * 2).min(bytes.len() & !1);
            let (a, b) = bytes.split_at(at);
            prop_assert_eq!(combine(&[data(a), data(b)]), reference(&bytes));
        }

        #[test]
        fn filled_checksum_verifies(mut bytes in proptest::collection::vec(any::<u8>(), 2..512)) {
            bytes[0] = 0;
            bytes[1] = 0;
            let field = checksum_field(&[data(&bytes)]);
            bytes[..2].copy_from_slice(&field.to_be_bytes());
            prop_assert_eq!(data(&bytes), 0xffff);
        }
    }
}
