//! IPv4 reassembly: fragments in, complete datagrams out, within bounds
//! that a flood cannot turn against other hosts.
//!
//! Reading list:
//! - RFC 791 §3.2 (fragmentation and reassembly: a datagram is identified
//!   by source, destination, protocol and identification) and RFC 815
//!   (reassembly by filling holes; here simpler, since overlaps are
//!   refused).
//! - RFC 1122 §3.3.2: reassembly is a MUST, with a timeout; EMTU_R, the
//!   largest datagram reassembled, must be at least 576 bytes and should
//!   be configurable (here `max_bytes_per_source`, by default enough for
//!   any datagram).
//! - RFC 5722 (written for IPv6, applied here to IPv4 as Linux does for
//!   IPv6 and smoltcp does for both): a datagram with overlapping fragments
//!   is discarded whole, and later fragments of it are discarded too.
//!   Exact duplicates (same offset, same bytes) are ignored instead, since
//!   links do duplicate frames.
//! - RFC 4963 (IPv4 reassembly errors at high data rates): an incomplete
//!   datagram kept long is both a buffer taken from others and a chance
//!   for a later datagram with the same identification to be mixed into
//!   it; neither is worth keeping one that has stopped making progress
//!   when others need the room.
//!
//! # Bounds, and who gives way under pressure
//!
//! [`ReassemblyConfig`] bounds what peers can make us hold: datagrams in
//! progress (`max_datagrams`), payload bytes buffered over all of them
//! (`max_bytes`; fragments are copied out of their frames, so the count is
//! exact, and besides the payload each fragment costs a small fixed
//! overhead: at most `max_datagrams × max_fragments` of them exist),
//! fragments per datagram (`max_fragments`), how long an incomplete
//! datagram lives (`timeout`), and what one source address may hold
//! (`max_datagrams_per_source`, `max_bytes_per_source`). Datagrams
//! discarded (for overlaps, or for a bound they exceed alone) are
//! remembered without their bytes until their timeout, so their later
//! fragments are dropped too; at most `max_datagrams` of them, and when
//! that is full the one expiring first is forgotten.
//!
//! A table that refused new datagrams when full would let 16
//! never-completed 8-byte fragments from spoofed sources lock every other
//! host's fragmented traffic out for the whole timeout. So a fragment that
//! needs room takes it (counted in [`ReassemblyStats::evicted`]):
//!
//! 1. *From its own source first.* A source at `max_datagrams_per_source`
//!    datagrams, or whose new fragment would take it past
//!    `max_bytes_per_source`, gives way itself: its own datagram that has
//!    gone longest without a new fragment is evicted. So a host that does
//!    not spoof, however fast it sends, holds at most a quarter of the
//!    table (by default), and once it does, evicts only its own datagrams.
//! 2. *Then from whoever has waited longest.* When the whole table is full
//!    (`max_datagrams`, or `max_bytes` for the new fragment), the datagram
//!    that has gone longest without a new fragment is evicted, whatever
//!    its source; the datagram the fragment belongs to never is. Spoofed
//!    sources defeat quotas, but not this rule: a flood's datagrams never
//!    progress, while a real one receives its fragments close together.
//!
//! What that guarantees: a datagram gives way to other sources only after
//! at least `max_datagrams − 1` other datagrams were started or received
//! a fragment (or `max_bytes` minus its own size arrived for others) since
//! its own last fragment; to its own source, once
//! `max_datagrams_per_source − 1` of that source's other datagrams did
//! (or its byte quota is reached likewise). Fragments
//! of one datagram usually leave their sender back to back, so on a LAN a
//! flood must bring more than 15 new datagrams (by default) in the
//! microseconds between two of them to evict it; a flood that can do that
//! fills any table of this size. A datagram alone larger than
//! `max_bytes_per_source` (or `max_bytes`), or needing more than
//! `max_fragments` fragments, is discarded.
//!
//! A spoofer who knows a real sender's address can do more harm to that
//! sender alone: `max_datagrams_per_source` fragments from it suffice to
//! evict its datagram, and one overlapping fragment with the right
//! identification discards it (RFC 5722); only integrity above IP helps
//! there (RFC 4963).
//!
//! A datagram that times out after its first fragment came is reported
//! ([`Reassembler::take_expired`]) so the stack can send its sender an
//! ICMP Time Exceeded (RFC 1122 §3.3.2); at most `max_datagrams` reports
//! wait, the oldest dropped first.
//!
//! Each fragment costs a pass over the datagrams held to expire old ones
//! (at most `max_datagrams`, and as many remembered discards), O(log n)
//! for the rest, and, when its source must give way, a look at that
//! source's datagrams.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use bytes::Bytes;
use mirage_types::ip::IpProtocol;
use mirage_types::time::Instant;

use crate::wire::ipv4::{IPV4_MAX_TOTAL_LEN, IPV4_MIN_HEADER_LEN};
use crate::wire::Ipv4Repr;

/// Limits of a [`Reassembler`] (see the [module documentation](self) for
/// what gives way when one is reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Datagrams being reassembled at once; a new one beyond it evicts the
    /// one that has gone longest without a fragment. Default 16.
    pub max_datagrams: usize,
    /// Payload bytes buffered over all datagrams; a fragment that would
    /// exceed it evicts other datagrams, longest without a fragment first.
    /// Default 256 KiB (four maximum-size datagrams at once).
    pub max_bytes: usize,
    /// Datagrams one source address may have in progress; a new one
    /// beyond it evicts that source's own datagram that has gone longest
    /// without a fragment. Default 4.
    pub max_datagrams_per_source: usize,
    /// Payload bytes one source address may have buffered; beyond it the
    /// source's own other datagrams are evicted, and a datagram larger
    /// than this alone is discarded. Default 64 KiB (one maximum-size
    /// datagram, 65 515 bytes, fits).
    pub max_bytes_per_source: usize,
    /// Fragments per datagram; a datagram that needs more is discarded.
    /// Default 64 (a 64 KiB datagram over a 1500-byte MTU needs 45).
    pub max_fragments: usize,
    /// Lifetime of an incomplete datagram from its first fragment
    /// (RFC 1122 §3.3.2). Default 30 s, as Linux's `ipfrag_time`.
    pub timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> ReassemblyConfig {
        ReassemblyConfig {
            max_datagrams: 16,
            max_bytes: 256 * 1024,
            max_datagrams_per_source: 4,
            max_bytes_per_source: 64 * 1024,
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
    /// Incomplete datagrams evicted to make room for others (see the
    /// [module documentation](self)).
    pub evicted: u64,
    /// Fragments dropped for a bound: those of evicted datagrams, and
    /// those of datagrams too large or in too many fragments for the
    /// bounds, discarded whole.
    pub dropped_bound: u64,
    /// Fragments dropped as malformed (length not a multiple of 8 with
    /// more to come, beyond 65 535 bytes) or for a discarded datagram.
    pub dropped_invalid: u64,
    /// Exact duplicates ignored.
    pub duplicates: u64,
}

/// Identifies a datagram (RFC 791 §3.2: source, destination, protocol and
/// identification). Ordered by source first, so one source's datagrams
/// are a range of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
}

impl Key {
    /// Every key of `src`, for a range of the table.
    fn range_of(src: Ipv4Addr) -> core::ops::RangeInclusive<Key> {
        Key { src, dst: Ipv4Addr::UNSPECIFIED, protocol: 0, ident: 0 }..=Key {
            src,
            dst: Ipv4Addr::BROADCAST,
            protocol: u8::MAX,
            ident: u16::MAX,
        }
    }
}

#[derive(Debug)]
struct Partial {
    expires: Instant,
    /// When it last received a new fragment, as a sequence number of the
    /// reassembler (instants tie; this does not): its key in `by_progress`.
    progress: u64,
    /// Fragments by offset; they never overlap.
    fragments: BTreeMap<usize, Bytes>,
    bytes: usize,
    /// Known once the last fragment (MF clear) arrived.
    total_len: Option<usize>,
    ttl: u8,
}

/// A datagram that timed out with its first fragment received: what an
/// ICMP Time Exceeded message (code 1) tells its sender (RFC 792; RFC 1122
/// §3.3.2 says a host SHOULD send one in that case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// Its sender.
    pub src: Ipv4Addr,
    /// Its destination (ours).
    pub dst: Ipv4Addr,
    /// Its protocol.
    pub protocol: IpProtocol,
    /// Its identification.
    pub ident: u16,
    /// The TTL of its first fragment.
    pub ttl: u8,
    /// The payload length of its first fragment.
    pub first_len: usize,
    /// The first bytes of its payload, `min(8, first_len)` of them.
    pub first_bytes: [u8; 8],
}

/// What one source address holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SourceUsage {
    datagrams: usize,
    bytes: usize,
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
    /// The keys of `partials` by their last progress, oldest first.
    by_progress: BTreeMap<u64, Key>,
    next_progress: u64,
    sources: BTreeMap<Ipv4Addr, SourceUsage>,
    /// Datagrams discarded for overlaps (RFC 5722 §4) or for a bound they
    /// alone exceed, with their expiry: their later fragments are dropped
    /// too.
    discarded: BTreeMap<Key, Instant>,
    /// Timed-out datagrams to report, oldest first; at most
    /// `max_datagrams` (older reports are dropped).
    expired: VecDeque<Expired>,
    bytes: usize,
    stats: ReassemblyStats,
}

impl Reassembler {
    /// An empty buffer with these limits.
    pub fn new(config: ReassemblyConfig) -> Reassembler {
        Reassembler {
            config,
            partials: BTreeMap::new(),
            by_progress: BTreeMap::new(),
            next_progress: 0,
            sources: BTreeMap::new(),
            discarded: BTreeMap::new(),
            expired: VecDeque::new(),
            bytes: 0,
            stats: ReassemblyStats::default(),
        }
    }

    /// Datagrams in progress; at most `max_datagrams`. (Datagrams
    /// discarded for overlaps, remembered without their bytes, are not
    /// counted.)
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

    /// When the oldest incomplete (or discarded) datagram expires; at once
    /// while timed-out datagrams wait to be reported.
    pub fn poll_deadline(&self) -> Option<Instant> {
        if !self.expired.is_empty() {
            return Some(Instant::ZERO);
        }
        self.partials.values().map(|p| p.expires).chain(self.discarded.values().copied()).min()
    }

    /// Drops datagrams whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<Key> = self.partials.iter().filter(|(_, p)| p.expires <= now).map(|(k, _)| *k).collect();
        for key in expired {
            let Some(partial) = self.remove(key) else { continue };
            self.stats.timed_out += 1;
            if let Some(first) = partial.fragments.get(&0) {
                let mut first_bytes = [0u8; 8];
                let quoted = first.len().min(8);
                first_bytes[..quoted].copy_from_slice(&first[..quoted]);
                if self.expired.len() >= self.config.max_datagrams.max(1) {
                    self.expired.pop_front();
                }
                self.expired.push_back(Expired {
                    src: key.src,
                    dst: key.dst,
                    protocol: IpProtocol(key.protocol),
                    ident: key.ident,
                    ttl: partial.ttl,
                    first_len: first.len(),
                    first_bytes,
                });
            }
        }
        self.discarded.retain(|_, expires| *expires > now);
    }

    /// The oldest datagram that timed out with its first fragment and is
    /// not reported yet (see [`Expired`]).
    pub fn take_expired(&mut self) -> Option<Expired> {
        self.expired.pop_front()
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
        if self.discarded.contains_key(&key) {
            self.stats.dropped_invalid += 1;
            return None;
        }
        if !self.partials.contains_key(&key) {
            self.make_room_for_datagram(key.src);
            let progress = self.take_progress();
            self.partials.insert(
                key,
                Partial {
                    expires: now + self.config.timeout,
                    progress,
                    fragments: BTreeMap::new(),
                    bytes: 0,
                    total_len: None,
                    ttl: header.ttl,
                },
            );
            self.by_progress.insert(progress, key);
            self.sources.entry(key.src).or_default().datagrams += 1;
        }
        let partial = self.partials.get(&key)?;
        if partial.fragments.get(&offset).is_some_and(|existing| existing[..] == *payload) {
            self.stats.duplicates += 1;
            return None;
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
        let own = partial.bytes + payload.len();
        if partial.fragments.len() >= self.config.max_fragments
            || own > self.config.max_bytes_per_source
            || own > self.config.max_bytes
        {
            // No eviction can make room for this datagram: it goes, and
            // its later fragments with it.
            self.stats.dropped_bound += 1 + partial.fragments.len() as u64;
            self.discard(key);
            return None;
        }
        self.make_room_for_bytes(key, payload.len());
        let progress = self.take_progress();
        let partial = self.partials.get_mut(&key)?;
        self.by_progress.remove(&partial.progress);
        self.by_progress.insert(progress, key);
        partial.progress = progress;
        if offset == 0 {
            partial.ttl = header.ttl;
        }
        if !header.more_fragments {
            partial.total_len = Some(end);
        }
        partial.fragments.insert(offset, Bytes::copy_from_slice(payload));
        partial.bytes += payload.len();
        self.bytes += payload.len();
        self.sources.entry(key.src).or_default().bytes += payload.len();
        // With no overlaps, the datagram is complete when its fragments add
        // up to its length.
        let total = partial.total_len?;
        if partial.bytes != total {
            return None;
        }
        let partial = self.remove(key)?;
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

    fn take_progress(&mut self) -> u64 {
        let progress = self.next_progress;
        self.next_progress += 1;
        progress
    }

    /// Makes room for one more datagram from `src`: its own stalest
    /// datagram gives way if it holds its quota, else the stalest of all if
    /// the table is full.
    fn make_room_for_datagram(&mut self, src: Ipv4Addr) {
        let held = self.sources.get(&src).map_or(0, |s| s.datagrams);
        if held >= self.config.max_datagrams_per_source.max(1) {
            if let Some(victim) = self.stalest_of(src, None) {
                self.evict(victim);
            }
        }
        // Once; the loop only matters if the bound was lowered.
        while self.partials.len() >= self.config.max_datagrams.max(1) {
            let Some((_, &victim)) = self.by_progress.first_key_value() else { break };
            self.evict(victim);
        }
    }

    /// Makes room for `len` more bytes of `key`'s datagram, which fits the
    /// bounds alone: its source's other datagrams give way first, stalest
    /// first, then the stalest of all others.
    fn make_room_for_bytes(&mut self, key: Key, len: usize) {
        while self.sources.get(&key.src).map_or(0, |s| s.bytes) + len > self.config.max_bytes_per_source {
            let Some(victim) = self.stalest_of(key.src, Some(key)) else { break };
            self.evict(victim);
        }
        while self.bytes + len > self.config.max_bytes {
            let Some(victim) = self.by_progress.values().copied().find(|&k| k != key) else { break };
            self.evict(victim);
        }
    }

    /// The datagram of `src` (other than `except`) that has gone longest
    /// without a fragment.
    fn stalest_of(&self, src: Ipv4Addr, except: Option<Key>) -> Option<Key> {
        self.partials
            .range(Key::range_of(src))
            .filter(|(k, _)| Some(**k) != except)
            .min_by_key(|(_, p)| p.progress)
            .map(|(k, _)| *k)
    }

    fn evict(&mut self, key: Key) {
        if let Some(p) = self.remove(key) {
            self.stats.evicted += 1;
            self.stats.dropped_bound += p.fragments.len() as u64;
        }
    }

    /// Takes a datagram out of the table and its accounts.
    fn remove(&mut self, key: Key) -> Option<Partial> {
        let partial = self.partials.remove(&key)?;
        self.by_progress.remove(&partial.progress);
        self.bytes -= partial.bytes;
        if let Some(usage) = self.sources.get_mut(&key.src) {
            usage.datagrams -= 1;
            usage.bytes -= partial.bytes;
            if usage.datagrams == 0 {
                self.sources.remove(&key.src);
            }
        }
        Some(partial)
    }

    /// Frees a datagram and remembers it as discarded until it expires, so
    /// its remaining fragments are dropped too (RFC 5722 §4; and a datagram
    /// too large for the bounds does not start over with its next
    /// fragment). At most
    /// `max_datagrams` are remembered; beyond that the one expiring first
    /// is forgotten.
    fn discard(&mut self, key: Key) {
        let Some(partial) = self.remove(key) else { return };
        if self.discarded.len() >= self.config.max_datagrams.max(1) {
            let first = self.discarded.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k);
            if let Some(first) = first {
                self.discarded.remove(&first);
            }
        }
        self.discarded.insert(key, partial.expires);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    fn frag_from(src: Ipv4Addr, ident: u16, offset: usize, len: usize, more: bool) -> (Ipv4Repr, Vec<u8>) {
        let mut h = Ipv4Repr::new(src, DST, IpProtocol::UDP, len, 64);
        h.ident = ident;
        h.fragment_offset = offset as u16;
        h.more_fragments = more;
        let data = (offset..offset + len).map(|i| (i % 251) as u8).collect();
        (h, data)
    }

    fn frag(ident: u16, offset: usize, len: usize, more: bool) -> (Ipv4Repr, Vec<u8>) {
        frag_from(SRC, ident, offset, len, more)
    }

    fn add(r: &mut Reassembler, ms: u64, f: (Ipv4Repr, Vec<u8>)) -> Option<Reassembled> {
        r.add(Instant::from_millis(ms), &f.0, &f.1)
    }

    /// A spoofed source: 198.51.100.0/24 then on.
    fn spoofed(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xc633_6400 + i)
    }

    impl Reassembler {
        /// The accounts agree with the table, and every bound holds.
        fn check(&self) {
            let c = &self.config;
            assert!(self.partials.len() <= c.max_datagrams && self.bytes <= c.max_bytes);
            assert!(self.discarded.len() <= c.max_datagrams);
            assert_eq!(self.bytes, self.partials.values().map(|p| p.bytes).sum::<usize>());
            assert_eq!(self.by_progress.len(), self.partials.len());
            for (key, p) in &self.partials {
                assert_eq!(self.by_progress.get(&p.progress), Some(key));
                assert_eq!(p.bytes, p.fragments.values().map(|f| f.len()).sum::<usize>());
                assert!(p.fragments.len() <= c.max_fragments);
            }
            let mut sources: BTreeMap<Ipv4Addr, (usize, usize)> = BTreeMap::new();
            for (key, p) in &self.partials {
                let s = sources.entry(key.src).or_default();
                s.0 += 1;
                s.1 += p.bytes;
            }
            assert_eq!(sources.len(), self.sources.len());
            for (src, (datagrams, bytes)) in sources {
                let usage = self.sources[&src];
                assert_eq!((usage.datagrams, usage.bytes), (datagrams, bytes));
                assert!(datagrams <= c.max_datagrams_per_source && bytes <= c.max_bytes_per_source);
            }
        }
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
        r.check();
    }

    #[test]
    fn overlap_discards_the_whole_datagram_rfc_5722() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(2, 0, 24, true));
        add(&mut r, 0, frag(2, 16, 16, true));
        assert_eq!(r.stats().discarded_overlap, 1);
        assert_eq!((r.datagrams(), r.bytes()), (0, 0));
        // Even fragments that would now complete it are dropped.
        assert!(add(&mut r, 0, frag(2, 24, 8, false)).is_none());
        assert!(add(&mut r, 0, frag(2, 0, 24, true)).is_none());
        assert_eq!(r.stats().dropped_invalid, 2);
        // Remembered until its timeout, then forgotten.
        assert_eq!(r.poll_deadline(), Some(Instant::from_millis(30_000)));
        r.handle_timeout(Instant::from_millis(30_000));
        assert_eq!(r.poll_deadline(), None);
        assert!(add(&mut r, 30_000, frag(2, 0, 8, true)).is_none());
        assert_eq!(r.datagrams(), 1);
        r.check();
    }

    #[test]
    fn inconsistent_last_fragment_discards() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(3, 0, 16, true));
        add(&mut r, 0, frag(3, 32, 8, false));
        add(&mut r, 0, frag(3, 40, 8, false));
        assert_eq!(r.stats().discarded_overlap, 1);
        r.check();
    }

    #[test]
    fn bounds_hold_under_a_flood_of_incomplete_datagrams() {
        let config = ReassemblyConfig { max_datagrams: 4, max_bytes: 4096, max_fragments: 3, ..Default::default() };
        let mut r = Reassembler::new(config);
        for ident in 0..1000u16 {
            add(&mut r, u64::from(ident), frag(ident, 8, 1024, true));
            assert!(r.datagrams() <= 4 && r.bytes() <= 4096);
        }
        r.check();
        // Each new datagram took the place of the stalest one.
        assert_eq!((r.stats().evicted, r.stats().dropped_bound), (996, 996));
        // Fragment-count bound: the datagram is discarded whole.
        let mut r = Reassembler::new(config);
        for i in 0..3 {
            add(&mut r, 0, frag(9, 8 + i * 8, 8, true));
        }
        add(&mut r, 0, frag(9, 64, 8, true));
        assert_eq!((r.datagrams(), r.bytes()), (0, 0));
        assert_eq!(r.stats().dropped_bound, 4);
        // Its later fragments do not start it over.
        add(&mut r, 0, frag(9, 80, 8, true));
        assert_eq!((r.datagrams(), r.stats().dropped_invalid), (0, 1));
        r.check();
    }

    #[test]
    fn only_timeouts_with_a_first_fragment_are_reported_and_reports_are_bounded() {
        let config = ReassemblyConfig { max_datagrams: 4, ..ReassemblyConfig::default() };
        let mut r = Reassembler::new(config);
        add(&mut r, 0, frag(1, 8, 8, true));
        r.handle_timeout(Instant::from_millis(30_000));
        assert_eq!(r.take_expired(), None, "nothing to quote without fragment zero");
        for i in 0..10 {
            add(&mut r, 40_000, frag_from(Ipv4Addr::new(10, 0, 0, 10 + i), 7, 0, 8, true));
        }
        r.handle_timeout(Instant::from_millis(70_000));
        let reports: Vec<_> = core::iter::from_fn(|| r.take_expired()).collect();
        assert_eq!(reports.len(), 4);
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
        // Reported, quoting its first fragment, and due at once until taken.
        assert_eq!(r.poll_deadline(), Some(Instant::ZERO));
        let expired = r.take_expired().expect("a report");
        assert_eq!((expired.ident, expired.first_len, expired.first_bytes), (4, 8, [0, 1, 2, 3, 4, 5, 6, 7]));
        assert_eq!((r.take_expired(), r.poll_deadline()), (None, None));
        r.check();
    }

    #[test]
    fn malformed_fragments_are_dropped() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag(5, 0, 7, true));
        add(&mut r, 0, frag(5, 65_528, 8, false));
        assert_eq!(r.stats().dropped_invalid, 2);
        assert_eq!(r.datagrams(), 0);
    }

    #[test]
    fn spoofed_incomplete_datagrams_do_not_lock_out_a_real_one() {
        // The attack: 16 never-completed 8-byte fragments from
        // spoofed sources used to fill the table for the whole timeout.
        let mut r = Reassembler::new(ReassemblyConfig::default());
        for i in 0..16 {
            add(&mut r, 0, frag_from(spoofed(i), i as u16, 0, 8, true));
        }
        assert_eq!(r.datagrams(), 16);
        // 1 s later a real 3000-byte datagram in three fragments.
        assert!(add(&mut r, 1000, frag(7, 0, 1480, true)).is_none());
        assert!(add(&mut r, 1000, frag(7, 1480, 1480, true)).is_none());
        let whole = add(&mut r, 1000, frag(7, 2960, 40, false)).expect("reassembled despite the flood");
        assert_eq!(whole.payload.len(), 3000);
        // It took the place of the first spoofed datagram, the stalest.
        assert_eq!(r.stats().evicted, 1);
        assert_eq!(r.datagrams(), 15);
        assert!(!r.partials.keys().any(|k| k.src == spoofed(0)));
        r.check();
    }

    #[test]
    fn the_victim_is_the_datagram_longest_without_a_fragment() {
        let config = ReassemblyConfig { max_datagrams: 3, ..Default::default() };
        let mut r = Reassembler::new(config);
        add(&mut r, 0, frag_from(spoofed(1), 1, 0, 8, true));
        add(&mut r, 0, frag_from(spoofed(2), 2, 0, 8, true));
        add(&mut r, 0, frag_from(spoofed(3), 3, 0, 8, true));
        // The oldest makes progress: the second is now the stalest.
        add(&mut r, 5, frag_from(spoofed(1), 1, 8, 8, true));
        // A duplicate is no progress.
        add(&mut r, 6, frag_from(spoofed(2), 2, 0, 8, true));
        add(&mut r, 10, frag_from(spoofed(4), 4, 0, 8, true));
        let held: Vec<Ipv4Addr> = r.partials.keys().map(|k| k.src).collect();
        assert_eq!(held, [spoofed(1), spoofed(3), spoofed(4)]);
        assert_eq!((r.stats().evicted, r.stats().dropped_bound), (1, 1));
        r.check();
    }

    #[test]
    fn a_source_over_its_quota_evicts_only_its_own_datagrams() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        for i in 0..8 {
            add(&mut r, 0, frag_from(spoofed(i), 0, 0, 8, true));
        }
        // One host (not spoofing) floods: it never holds more than its
        // quota, and nobody else loses a datagram.
        for ident in 0..1000 {
            add(&mut r, 1 + u64::from(ident), frag(ident, 0, 8, true));
            assert!(r.sources[&SRC].datagrams <= 4);
        }
        assert_eq!(r.datagrams(), 12);
        assert!((0..8).all(|i| r.sources.contains_key(&spoofed(i))));
        assert_eq!(r.stats().evicted, 996);
        // Its four are its latest.
        let idents: Vec<u16> = r.partials.range(Key::range_of(SRC)).map(|(k, _)| k.ident).collect();
        assert_eq!(idents, [996, 997, 998, 999]);
        r.check();
    }

    #[test]
    fn the_byte_bound_evicts_the_stalest_others_never_the_growing_datagram() {
        let config = ReassemblyConfig { max_bytes: 8 * 1480, ..Default::default() };
        let mut r = Reassembler::new(config);
        // Two spoofed sources hold 3 and 4 full fragments.
        for i in 0..3 {
            add(&mut r, 0, frag_from(spoofed(1), 1, i * 1480, 1480, true));
        }
        for i in 0..4 {
            add(&mut r, 1, frag_from(spoofed(2), 2, i * 1480, 1480, true));
        }
        // A real 3000-byte datagram needs more than the 1480 left: the
        // stalest (source 1's) goes, source 2's stays.
        add(&mut r, 2, frag(7, 0, 1480, true));
        add(&mut r, 2, frag(7, 1480, 1480, true));
        assert!(add(&mut r, 2, frag(7, 2960, 40, false)).is_some());
        assert_eq!(r.stats().evicted, 1);
        assert_eq!((r.datagrams(), r.bytes()), (1, 4 * 1480));
        assert_eq!(r.stats().dropped_bound, 3);
        r.check();
    }

    #[test]
    fn a_source_over_its_byte_quota_evicts_its_own_older_datagram() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, 0, frag_from(spoofed(1), 1, 0, 1480, true));
        for i in 0..30 {
            add(&mut r, 0, frag(1, i * 1480, 1480, true));
        }
        // 44 400 bytes held; a second datagram of the same source needs
        // more than its 64 KiB allow: its first goes, not the other
        // source's.
        for i in 0..20 {
            add(&mut r, 1, frag(2, i * 1480, 1480, true));
        }
        assert_eq!(r.stats().evicted, 1);
        assert_eq!(r.sources[&SRC], SourceUsage { datagrams: 1, bytes: 20 * 1480 });
        assert_eq!(r.sources[&spoofed(1)].bytes, 1480);
        r.check();
    }

    #[test]
    fn a_datagram_alone_over_the_per_source_bound_is_discarded() {
        let config = ReassemblyConfig { max_bytes_per_source: 4 * 1480, ..Default::default() };
        let mut r = Reassembler::new(config);
        for i in 0..5 {
            add(&mut r, 0, frag(1, i * 1480, 1480, true));
        }
        assert_eq!((r.datagrams(), r.bytes(), r.stats().dropped_bound), (0, 0, 5));
        assert_eq!(r.stats().evicted, 0);
        r.check();
    }

    #[test]
    fn discarded_datagrams_are_remembered_within_a_bound() {
        let config = ReassemblyConfig { max_datagrams: 4, ..Default::default() };
        let mut r = Reassembler::new(config);
        // Ten overlapped datagrams, one per second.
        for ident in 0..10u16 {
            let t = u64::from(ident) * 1000;
            add(&mut r, t, frag(ident, 0, 16, true));
            add(&mut r, t, frag(ident, 8, 16, true));
        }
        assert_eq!(r.stats().discarded_overlap, 10);
        assert_eq!((r.datagrams(), r.discarded.len()), (0, 4));
        // The last four are remembered; the first ones were forgotten.
        assert!(add(&mut r, 10_000, frag(9, 0, 8, true)).is_none());
        assert_eq!(r.datagrams(), 0);
        add(&mut r, 10_000, frag(0, 0, 8, true));
        assert_eq!(r.datagrams(), 1);
        r.check();
    }

    proptest! {
        /// Whatever fragments come, from few or many sources, every bound
        /// holds and the accounts stay exact; a datagram whose fragments
        /// come back to back is always reassembled.
        #[test]
        fn bounds_hold_and_back_to_back_datagrams_complete(
            frags in proptest::collection::vec((0u32..24, 0u16..8, 0usize..12, 1usize..4, any::<bool>(), 0u64..500), 0..300),
        ) {
            let config = ReassemblyConfig {
                max_datagrams: 6,
                max_bytes: 8 * 1024,
                max_datagrams_per_source: 2,
                max_bytes_per_source: 3 * 1024,
                max_fragments: 5,
                timeout: Duration::from_secs(1),
            };
            let mut r = Reassembler::new(config);
            let mut now = 0;
            for (i, (src, ident, block, blocks, more, dt)) in frags.into_iter().enumerate() {
                now += dt;
                add(&mut r, now, frag_from(spoofed(src), ident, block * 256, blocks * 256, more));
                r.check();
                if i % 10 == 0 {
                    // A real sender's 1000 bytes in three fragments.
                    let ident = 1000 + i as u16;
                    add(&mut r, now, frag(ident, 0, 400, true));
                    add(&mut r, now, frag(ident, 400, 400, true));
                    let whole = add(&mut r, now, frag(ident, 800, 200, false));
                    prop_assert_eq!(whole.map(|d| d.payload.len()), Some(1000));
                    r.check();
                }
            }
            r.handle_timeout(Instant::from_millis(now + 1000));
            prop_assert_eq!((r.datagrams(), r.bytes(), r.discarded.len()), (0, 0, 0));
        }
    }
}
