//! IPv4 reassembly: fragments in, complete datagrams out, within bounds.
//!
//! Reading list:
//! - RFC 791 §3.2 (fragmentation and reassembly) and RFC 815 (reassembly
//!   by holes; here simpler, since overlaps are refused).
//! - RFC 1122 §3.3.2: a reassembly timeout (15 s to 60 s suggested).
//! - RFC 5722 (written for IPv6, applied here to IPv4 as Linux does for
//!   IPv6 and smoltcp does for both): a datagram with overlapping fragments
//!   is discarded whole, and later fragments of it are discarded too.
//!   Exact duplicates (same offset, same bytes) are ignored instead, since
//!   links do duplicate frames.
//!
//! # Bounds
//!
//! [`ReassemblyConfig`] bounds what a peer can make us hold: datagrams in
//! progress, payload bytes buffered over all of them (fragments are
//! copied out of their frames, so the count is exact), fragments per
//! datagram, and how long an incomplete datagram lives.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use bytes::Bytes;
use mirage_types::ip::IpProtocol;
use mirage_types::time::Instant;

use crate::wire::ipv4::{IPV4_MAX_TOTAL_LEN, IPV4_MIN_HEADER_LEN};
use crate::wire::Ipv4Repr;

/// Limits of a [`Reassembler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Datagrams being reassembled at once; fragments of further datagrams
    /// are dropped until one completes or times out. Default 16.
    pub max_datagrams: usize,
    /// Payload bytes buffered over all datagrams; a fragment that would
    /// exceed it is dropped with its datagram. Default 256 KiB (enough for
    /// four maximum-size datagrams at once).
    pub max_bytes: usize,
    /// Fragments per datagram; a datagram that needs more is dropped.
    /// Default 64 (a 64 KiB datagram over a 1500-byte MTU needs 45).
    pub max_fragments: usize,
    /// Lifetime of an incomplete datagram from its first fragment
    /// (RFC 1122 §3.3.2). Default 30 s.
    pub timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> ReassemblyConfig {
        ReassemblyConfig {
            max_datagrams: 16,
            max_bytes: 256 * 1024,
            max_fragments: 64,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of a [`Reassembler`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Datagrams completed.
    pub completed: u64,
    /// Datagrams that timed out incomplete.
    pub timed_out: u64,
    /// Datagrams discarded for overlapping or inconsistent fragments.
    pub discarded_overlap: u64,
    /// Fragments dropped for a bound (datagrams, bytes, fragments).
    pub dropped_bound: u64,
    /// Fragments dropped as malformed (length not a multiple of 8 with
    /// more to come, beyond 65 535 bytes) or for a discarded datagram.
    pub dropped_invalid: u64,
    /// Exact duplicates ignored.
    pub duplicates: u64,
}

/// Identifies a datagram (RFC 791 §3.2: source, destination, protocol and
/// identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

#[derive(Debug)]
struct Partial {
    expires: Instant,
    /// Fragments by offset; they never overlap.
    fragments: BTreeMap<usize, Bytes>,
    bytes: usize,
    /// Known once the last fragment (MF clear) arrived.
    total_len: Option<usize>,
    ttl: u8,
    /// Set by an overlap: the datagram is dead, its fragments dropped until
    /// it expires (RFC 5722 §4).
    discarded: bool,
}

/// A datagram completed by reassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub protocol: IpProtocol,
    /// TTL of the first fragment.
    pub ttl: u8,
    /// The whole payload.
    pub payload: Bytes,
}

/// The sans-IO reassembly buffer.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    partials: BTreeMap<Key, Partial>,
    bytes: usize,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// An empty buffer with these limits.
    pub fn new(config: ReassemblyConfig) -> Reassembler {
        Reassembler { config, partials: BTreeMap::new(), bytes: 0, stats: ReassemblyStats::default() }
    }

    /// Datagrams in progress (discarded ones waiting to expire included); at
    /// most `max_datagrams`.
    pub fn datagrams(&self) -> usize {
        self.partials.len()
    }

    /// Payload bytes buffered; at most `max_bytes`.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counters so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// When the oldest incomplete datagram expires.
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.partials.values().map(|p| p.expires).min()
    }

    /// Drops datagrams whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut freed = 0;
        let mut timed_out = 0;
        self.partials.retain(|_, p| {
            if p.expires > now {
                return true;
            }
            freed += p.bytes;
            if !p.discarded {
                timed_out += 1;
            }
            false
        });
        self.bytes -= freed;
        self.stats.timed_out += timed_out;
    }

    /// Adds a fragment (`header` with MF set or a non-zero offset) and
    /// returns the datagram if this fragment completes it.
    pub fn add(&mut self, now: Instant, header: &Ipv4Repr, payload: &[u8]) -> Option<Reassembled> {
        self.handle_timeout(now);
        let offset = usize::from(header.fragment_offset);
        let end = offset + payload.len();
        let key = Key { src: header.src_addr, dst: header.dst_addr, protocol: header.protocol.0, ident: header.ident };
        // RFC 791: every fragment but the last carries a multiple of 8
        // bytes; and the whole may not exceed the largest datagram.
        if (header.more_fragments && payload.len() % 8 != 0)
            || end > IPV4_MAX_TOTAL_LEN - IPV4_MIN_HEADER_LEN
            || payload.is_empty() && header.more_fragments
        {
            self.stats.dropped_invalid += 1;
            return None;
        }
        if !self.partials.contains_key(&key) {
            if self.partials.len() >= self.config.max_datagrams {
                self.stats.dropped_bound += 1;
                return None;
            }
            self.partials.insert(
                key,
                Partial {
                    expires: now + self.config.timeout,
                    fragments: BTreeMap::new(),
                    bytes: 0,
                    total_len: None,
                    ttl: header.ttl,
                    discarded: false,
                },
            );
        }
        let partial = self.partials.get_mut(&key)?;
        if partial.discarded {
            self.stats.dropped_invalid += 1;
            return None;
        }
        if let Some(existing) = partial.fragments.get(&offset) {
            if existing[..] == *payload {
                self.stats.duplicates += 1;
                return None;
            }
        }
        let overlaps = partial.fragments.range(..end).next_back().is_some_and(|(&o, b)| o + b.len() > offset);
        let inconsistent_end = match (header.more_fragments, partial.total_len) {
            (false, Some(total)) => total != end,
            (false, None) => partial.fragments.last_key_value().is_some_and(|(&o, b)| o + b.len() > end),
            (true, Some(total)) => end > total,
            (true, None) => false,
        };
        if overlaps || inconsistent_end {
            self.stats.discarded_overlap += 1;
            self.discard(key);
            return None;
        }
        if partial.fragments.len() >= self.config.max_fragments || self.bytes + payload.len() > self.config.max_bytes {
            self.stats.dropped_bound += 1;
            self.discard(key);
            return None;
        }
        if offset == 0 {
            partial.ttl = header.ttl;
        }
        if !header.more_fragments {
            partial.total_len = Some(end);
        }
        partial.fragments.insert(offset, Bytes::copy_from_slice(payload));
        partial.bytes += payload.len();
        self.bytes += payload.len();
        // With no overlaps, the datagram is complete when its fragments add
        // up to its length.
        let total = partial.total_len?;
        if partial.bytes != total {
            return None;
        }
        let partial = self.partials.remove(&key)?;
        self.bytes -= partial.bytes;
        let mut whole = Vec::with_capacity(total);
        for fragment in partial.fragments.values() {
            whole.extend_from_slice(fragment);
        }
        self.stats.completed += 1;
        Some(Reassembled {
            src: key.src,
            dst: key.dst,
            protocol: IpProtocol(key.protocol),
            ttl: partial.ttl,
            payload: Bytes::from(whole),
        })
    }

    /// Frees a datagram's fragments and remembers it as discarded until it
    /// expires, so its remaining fragments are dropped too.
    fn discard(&mut self, key: Key) {
        if let Some(p) = self.partials.get_mut(&key) {
            self.bytes -= p.bytes;
            p.bytes = 0;
            p.fragments.clear();
            p.discarded = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn frag(ident: u16, offset: usize, len: usize, more: bool) -> (Ipv4Repr, Vec<u8>) {
        let mut h = Ipv4Repr::new(SRC, DST, IpProtocol::UDP, len, 64);
        h.ident = ident;
        h.fragment_offset = offset as u16;
        h.more_fragments = more;
        let data = (offset..offset + len).map(|i| (i % 251) as u8).collect();
        (h, data)
    }

    fn add(r: &mut Reassembler, ms: u64, f: (Ipv4Repr, Vec<u8>)) -> Option<Reassembled> {
        r.add(Instant::from_millis(ms), &f.0, &f.1)
    }

    #[test]
    fn fragments_in_any_order_reassemble_rfc_791() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert!(add(&mut r, 0, frag(1, 16, 16, true)).is_none());
        assert!(add(&mut r, 0, frag(1, 32, 5, false)).is_none());
        assert!(add(&mut r, 0, frag(1, 16, 16, true)).is_none(), "exact duplicate ignored");
        let d = add(&mut r, 0, frag(1, 0, 16, true)).unwrap();
        assert_eq!(d.payload.len(), 37);
        assert!(d.payload.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!((r.datagrams(), r.bytes(), r.stats().duplicates), (0, 0, 1));
    }

    #[test]
    fn overlap_discards_the_whole_datagram_rfc_5722() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(2, 0, 24, true));
        add(&mut r, 0, frag(2, 16, 16, true));
        assert_eq!(r.stats().discarded_overlap, 1);
        assert_eq!(r.bytes(), 0);
        // Even fragments that would now complete it are dropped.
        assert!(add(&mut r, 0, frag(2, 24, 8, false)).is_none());
        assert!(add(&mut r, 0, frag(2, 0, 24, true)).is_none());
        r.handle_timeout(Instant::from_millis(30_000));
        assert_eq!(r.datagrams(), 0);
    }

    #[test]
    fn inconsistent_last_fragment_discards() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(3, 0, 16, true));
        add(&mut r, 0, frag(3, 32, 8, false));
        add(&mut r, 0, frag(3, 40, 8, false));
        assert_eq!(r.stats().discarded_overlap, 1);
    }

    #[test]
    fn bounds_hold_under_a_flood_of_incomplete_datagrams() {
        let config = ReassemblyConfig { max_datagrams: 4, max_bytes: 4096, max_fragments: 3, ..Default::default() };
        let mut r = Reassembler::new(config);
        for ident in 0..1000u16 {
            add(&mut r, u64::from(ident), frag(ident, 8, 1024, true));
            assert!(r.datagrams() <= 4 && r.bytes() <= 4096);
        }
        assert_eq!(r.stats().dropped_bound, 996);
        // Fragment-count bound.
        let mut r = Reassembler::new(config);
        for i in 0..3 {
            add(&mut r, 0, frag(9, 8 + i * 8, 8, true));
        }
        add(&mut r, 0, frag(9, 64, 8, true));
        assert_eq!(r.bytes(), 0);
        assert_eq!(r.stats().dropped_bound, 1);
    }

    #[test]
    fn incomplete_datagram_times_out_rfc_1122_3_3_2() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(4, 0, 8, true));
        assert_eq!(r.poll_deadline(), Some(Instant::from_millis(30_000)));
        r.handle_timeout(Instant::from_millis(29_999));
        assert_eq!(r.datagrams(), 1);
        r.handle_timeout(Instant::from_millis(30_000));
        assert_eq!((r.datagrams(), r.bytes(), r.stats().timed_out), (0, 0, 1));
    }

    #[test]
    fn malformed_fragments_are_dropped() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(5, 0, 7, true));
        add(&mut r, 0, frag(5, 65_528, 8, false));
        assert_eq!(r.stats().dropped_invalid, 2);
        assert_eq!(r.datagrams(), 0);
    }
}
