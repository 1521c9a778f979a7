//! The sans-IO ARP core, [`ArpCache`]: see the [module docs](super).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use mirage_types::arp::ArpError;
use mirage_types::net::MacAddress;
use mirage_types::time::Instant;

use crate::wire::{ArpOperation, ArpRepr};

/// Limits and timers of an [`ArpCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// Resolved entries kept at most (like Linux's `gc_thresh3`); see the
    /// module documentation for which entry makes room. Default 256.
    pub max_entries: usize,
    /// Resolutions in progress or remembered as failed at most; a new one
    /// replaces the one that has had its chance the longest ago. Default
    /// 256 (a /24's worth; about 20 KiB).
    pub max_pending: usize,
    /// Tasks waiting for one address at most (RFC 1122 §2.3.2.2 asks to
    /// queue at least one packet); more fail with [`ArpError::QueueFull`].
    /// Default 16.
    pub max_waiters: usize,
    /// How long a resolved entry is trusted after it was learned or
    /// confirmed (RFC 1122 §2.3.2.1). Default 60 s.
    pub entry_lifetime: Duration,
    /// Time between requests for one address; RFC 1122 §2.3.2.1 asks for at
    /// most one per second. Default 1 s.
    pub retry_interval: Duration,
    /// Requests sent before a resolution fails with
    /// [`ArpError::Timeout`], and unicast polls sent before an expired
    /// entry in use is removed. Default 5.
    pub max_attempts: u32,
    /// How long a failed resolution is remembered: resolutions of the same
    /// address in that time fail at once instead of flooding the link.
    /// Default 1 s.
    pub failure_hold: Duration,
    /// Requests (broadcast and unicast) sent per second at most on the
    /// link, in the long run; 0 counts as 1. Default 256.
    pub request_rate: u32,
    /// Requests that may go out back to back before `request_rate` holds.
    /// Default 64.
    pub request_burst: u32,
    /// Announcements sent when an address is added (RFC 5227
    /// ANNOUNCE_NUM). Default 2.
    pub announce_count: u32,
    /// Time between announcements (RFC 5227 ANNOUNCE_INTERVAL). Default 2 s.
    pub announce_interval: Duration,
}

impl Default for ArpConfig {
    fn default() -> ArpConfig {
        ArpConfig {
            max_entries: 256,
            max_pending: 256,
            max_waiters: 16,
            entry_lifetime: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_attempts: 5,
            failure_hold: Duration::from_secs(1),
            request_rate: 256,
            request_burst: 64,
            announce_count: 2,
            announce_interval: Duration::from_secs(2),
        }
    }
}

/// What the cache knows about an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Resolved.
    Resolved(MacAddress),
    /// A request is out (or waits for the rate limit); wait for a reply or
    /// the next deadline.
    Waiting,
    /// The last resolution got no reply after this many requests.
    Failed {
        /// Requests sent.
        attempts: u32,
    },
}

/// Counters of an [`ArpCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArpStats {
    /// Broadcast requests sent (resolutions, retries).
    pub requests_sent: u64,
    /// Unicast polls sent to expired entries in use (RFC 1122 §2.3.2.1).
    pub polls_sent: u64,
    /// Requests sent by unicast, while the link's budget was spent, to the
    /// MAC address a frame from the resolved address came from (see
    /// "Asking the sender").
    pub sender_requests_sent: u64,
    /// Replies sent to requests for our addresses.
    pub replies_sent: u64,
    /// Announcements and probes sent.
    pub announcements_sent: u64,
    /// Resolved entries evicted because the table was full.
    pub evicted: u64,
    /// Resolutions that got no answer after `max_attempts` requests.
    pub resolutions_failed: u64,
    /// Resolutions evicted because the pending table was full (their
    /// waiters failed).
    pub pending_evicted: u64,
    /// Packets addressed to us whose unknown sender was not learned because
    /// every entry was in use.
    pub not_learned: u64,
    /// Times a request had to wait for the link-wide rate limit.
    pub rate_limited: u64,
    /// Packets claiming one of our addresses from another MAC address.
    pub conflicts: u64,
    /// Packets that were neither for us nor about an address we know.
    pub ignored: u64,
    /// Outgoing packets dropped because the transmit queue was full.
    pub transmit_dropped: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: MacAddress,
    /// Trusted until then; afterwards polled if in use, else removed.
    expires: Instant,
    /// The last lookup that returned it (or confirmation); `None` if never.
    last_used: Option<Instant>,
    /// Unicast polls sent since it expired.
    polls: u32,
    /// When the next poll is due (or, after the last, when to give up).
    poll_at: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    /// Tells this resolution from a later one of the same address, so a
    /// waiter notices when its resolution was evicted.
    id: u64,
    started: Instant,
    /// Requests sent; 0 while the first waits for the rate limit.
    attempts: u32,
    /// When to send the next request, or (once failed) when to forget the
    /// failure.
    deadline: Instant,
    failed: bool,
    waiters: usize,
}

#[derive(Clone, Copy, Debug)]
struct Announcement {
    ip: Ipv4Addr,
    remaining: u32,
    at: Instant,
}

/// Requests waiting for the rate limit, in the order they get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// A unicast poll of an entry in use, oldest due first.
    Poll(Instant, Ipv4Addr),
    /// The first request of a resolution, newest first.
    First(core::cmp::Reverse<Instant>, Ipv4Addr),
    /// A retry, oldest due first.
    Retry(Instant, Ipv4Addr),
}

/// The sans-IO ARP core for one interface: cache, resolutions in
/// progress, announcements and conflict watching.
#[derive(Debug)]
pub struct ArpCache {
    config: ArpConfig,
    mac: MacAddress,
    addresses: Vec<Ipv4Addr>,
    entries: BTreeMap<Ipv4Addr, Entry>,
    pending: BTreeMap<Ipv4Addr, Pending>,
    next_pending_id: u64,
    /// Token bucket of the link-wide request limit, in nanoseconds of
    /// credit (one request costs `1 s / request_rate`).
    credit: u64,
    credit_at: Instant,
    announcements: Vec<Announcement>,
    /// Addresses being probed (RFC 5227 §2.1) and whether a conflict was
    /// seen for each.
    probes: BTreeMap<Ipv4Addr, bool>,
    transmit: VecDeque<(MacAddress, ArpRepr)>,
    /// Recent senders of frames that ask for an answer, with the MAC
    /// address the frame came from and when; at most `max_pending`.
    sender_hints: VecDeque<SenderHint>,
    stats: ArpStats,
}

#[derive(Clone, Copy, Debug)]
struct SenderHint {
    ip: Ipv4Addr,
    mac: MacAddress,
    at: Instant,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl ArpCache {
    /// Outgoing packets queued at most; a caller that never drains
    /// [`ArpCache::poll_transmit`] loses the excess (counted).
    pub const MAX_TRANSMIT_QUEUE: usize = 64;

    /// Addresses probed at once at most (probes come from local code such
    /// as the DHCP client).
    pub const MAX_PROBES: usize = 8;

    /// A cache for the interface with MAC address `mac`, answering for no
    /// address yet.
    pub fn new(mac: MacAddress, config: ArpConfig) -> ArpCache {
        let mut cache = ArpCache {
            config,
            mac,
            addresses: Vec::new(),
            entries: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_pending_id: 0,
            credit: 0,
            credit_at: Instant::ZERO,
            announcements: Vec::new(),
            probes: BTreeMap::new(),
            transmit: VecDeque::new(),
            sender_hints: VecDeque::new(),
            stats: ArpStats::default(),
        };
        cache.credit = cache.credit_cap();
        cache
    }

    /// The configuration.
    pub fn config(&self) -> &ArpConfig {
        &self.config
    }

    /// Replaces the configuration (timers apply from the next event) and
    /// evicts, as a full table would, what is beyond the new bounds.
    /// Returns whether a resolution was evicted, so waiters can look again.
    pub fn set_config(&mut self, now: Instant, config: ArpConfig) -> bool {
        self.refill(now);
        self.config = config;
        self.credit = self.credit.min(self.credit_cap());
        while self.entries.len() > config.max_entries && self.evict_entry(now, true) {}
        let mut evicted = false;
        while self.pending.len() > config.max_pending && self.evict_pending() {
            evicted = true;
        }
        let stale_hints = self.sender_hints.len().saturating_sub(config.max_pending);
        self.sender_hints.drain(..stale_hints);
        evicted
    }

    /// Counters so far.
    pub fn stats(&self) -> ArpStats {
        self.stats
    }

    /// Resolved entries held (expired ones included until the next
    /// [`ArpCache::handle_timeout`], and those being polled); at most
    /// `max_entries`.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Resolutions in progress or remembered as failed; at most
    /// `max_pending`.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Tasks waiting on resolutions, in all; at most `max_pending ×
    /// max_waiters`.
    pub fn waiter_count(&self) -> usize {
        self.pending.values().map(|p| p.waiters).sum()
    }

    /// The addresses we answer for.
    pub fn addresses(&self) -> &[Ipv4Addr] {
        &self.addresses
    }

    /// The resolved entries, for display (`ip neigh` style).
    pub fn entries(&self) -> impl Iterator<Item = (Ipv4Addr, MacAddress)> + '_ {
        self.entries.iter().map(|(ip, e)| (*ip, e.mac))
    }

    /// Replaces our addresses; each new one is announced `announce_count`
    /// times (RFC 5227 §2.3), the first at once.
    pub fn set_addresses(&mut self, now: Instant, addresses: &[Ipv4Addr]) {
        let old = core::mem::take(&mut self.addresses);
        self.addresses = addresses.iter().copied().filter(|a| !a.is_unspecified()).collect();
        self.addresses.dedup();
        self.announcements.retain(|a| addresses.contains(&a.ip));
        for &ip in &self.addresses {
            if !old.contains(&ip) && self.config.announce_count > 0 {
                self.announcements.push(Announcement { ip, remaining: self.config.announce_count, at: now });
            }
        }
        self.handle_timeout(now);
    }

    /// Looks `ip` up to send to it, starting a resolution (and a request,
    /// or a place in the rate limiter's queue) if it is unknown. A full
    /// pending table makes room (see the module documentation), so this
    /// fails only with `max_pending` 0.
    pub fn lookup(&mut self, now: Instant, ip: Ipv4Addr) -> Result<Lookup, ArpError> {
        if let Some(mac) = self.use_entry(now, ip) {
            return Ok(Lookup::Resolved(mac));
        }
        // A failure is held only until its deadline. Forget an expired one
        // here rather than waiting for `handle_timeout`: the caller's input
        // loop may be asleep until a frame arrives, and a peer with nothing
        // to send would otherwise stay unreachable for good.
        if self.pending.get(&ip).is_some_and(|p| p.failed && p.deadline <= now) {
            self.pending.remove(&ip);
        }
        if let Some(p) = self.pending.get(&ip) {
            return Ok(if p.failed { Lookup::Failed { attempts: p.attempts } } else { Lookup::Waiting });
        }
        if self.pending.len() >= self.config.max_pending && !self.evict_pending() {
            return Err(ArpError::QueueFull { ip, waiting: self.pending.len() });
        }
        let id = self.next_pending_id;
        self.next_pending_id += 1;
        let mut p = Pending { id, started: now, attempts: 0, deadline: now, failed: false, waiters: 0 };
        if self.take_credit(now) {
            p.attempts = 1;
            p.deadline = now + self.config.retry_interval;
            self.queue_request(ip, MacAddress::BROADCAST);
            self.stats.requests_sent += 1;
        } else {
            p.deadline = self.next_credit(now);
            self.stats.rate_limited += 1;
            // Besides its place in the queue, ask the station the address
            // last spoke from.
            if let Some(mac) = self.take_sender_hint(now, ip) {
                self.queue_request(ip, mac);
                self.stats.sender_requests_sent += 1;
            }
        }
        self.pending.insert(ip, p);
        Ok(Lookup::Waiting)
    }

    /// The resolution of `ip` in progress, to follow with
    /// [`ArpCache::poll_resolution`].
    pub fn resolution(&self, ip: Ipv4Addr) -> Option<u64> {
        self.pending.get(&ip).map(|p| p.id)
    }

    /// Looks `ip` up for a task waiting on resolution `id` (from
    /// [`ArpCache::resolution`]), without starting another: fails with
    /// [`ArpError::QueueFull`] if that resolution was evicted to make room.
    pub fn poll_resolution(&mut self, now: Instant, ip: Ipv4Addr, id: u64) -> Result<Lookup, ArpError> {
        if let Some(mac) = self.use_entry(now, ip) {
            return Ok(Lookup::Resolved(mac));
        }
        match self.pending.get(&ip) {
            Some(p) if p.id == id && p.failed => Ok(Lookup::Failed { attempts: p.attempts }),
            Some(p) if p.id == id => Ok(Lookup::Waiting),
            _ => Err(ArpError::QueueFull { ip, waiting: self.config.max_pending }),
        }
    }

    /// Records one more task waiting on resolution `id` of `ip`; fails
    /// with [`ArpError::QueueFull`] when `max_waiters` already wait.
    pub fn add_waiter(&mut self, ip: Ipv4Addr, id: u64) -> Result<(), ArpError> {
        let max = self.config.max_waiters;
        if let Some(p) = self.pending.get_mut(&ip).filter(|p| p.id == id) {
            if p.waiters >= max {
                return Err(ArpError::QueueFull { ip, waiting: p.waiters });
            }
            p.waiters += 1;
        }
        Ok(())
    }

    /// Forgets one waiter of resolution `id` of `ip` (the task got its
    /// answer or gave up).
    pub fn remove_waiter(&mut self, ip: Ipv4Addr, id: u64) {
        if let Some(p) = self.pending.get_mut(&ip).filter(|p| p.id == id) {
            p.waiters = p.waiters.saturating_sub(1);
        }
    }

    /// An upper layer saw `ip` make progress (a TCP ACK that advanced
    /// SND.UNA, say): its entry, if any, is trusted for another
    /// `entry_lifetime` without asking. Creates nothing.
    pub fn confirm(&mut self, now: Instant, ip: Ipv4Addr) {
        if let Some(e) = self.entries.get_mut(&ip) {
            e.expires = now + self.config.entry_lifetime;
            e.polls = 0;
            e.last_used = Some(now);
        }
    }

    /// A frame from `mac` brought an IP packet from the on-link address
    /// `ip` that may need an answer: if `ip` is unknown, a resolution of it
    /// started within `retry_interval` while the request budget is spent
    /// asks `mac` (see "Asking the sender" in the module documentation).
    /// Learns nothing.
    pub fn note_sender(&mut self, now: Instant, ip: Ipv4Addr, mac: MacAddress) {
        if !mac.is_unicast() || mac == self.mac || self.entries.contains_key(&ip) || self.config.max_pending == 0 {
            return;
        }
        if let Some(hint) = self.sender_hints.iter_mut().rev().find(|h| h.ip == ip) {
            *hint = SenderHint { ip, mac, at: now };
            return;
        }
        if self.sender_hints.len() >= self.config.max_pending {
            self.sender_hints.pop_front();
        }
        self.sender_hints.push_back(SenderHint { ip, mac, at: now });
    }

    /// Handles a received packet, following RFC 826's reception algorithm
    /// with RFC 5227's conflict checks. Returns whether the cache changed
    /// (an address got resolved or updated), so waiters can look again.
    pub fn handle_packet(&mut self, now: Instant, packet: &ArpRepr) -> bool {
        let spa = packet.source_protocol_addr;
        let sha = packet.source_hardware_addr;
        let tpa = packet.target_protocol_addr;
        if sha == self.mac {
            // Our own packet looped back (a hub, a mirror port).
            return false;
        }
        // RFC 5227 §2.1.1: while probing, any packet from the address, or a
        // probe for it by someone else, is a conflict.
        if let Some(conflict) = self.probes.get_mut(&spa) {
            *conflict = true;
        }
        if spa.is_unspecified() && packet.operation == ArpOperation::Request {
            if let Some(conflict) = self.probes.get_mut(&tpa) {
                *conflict = true;
            }
        }
        if self.addresses.contains(&spa) {
            // RFC 5227 §2.4: someone else claims our address. We keep it and
            // do not learn the bogus mapping; the announcement we send on
            // configuration is our defence.
            self.stats.conflicts += 1;
            return false;
        }
        if !sha.is_unicast() || spa.is_unspecified() || spa.is_broadcast() || spa.is_multicast() {
            // Nothing to learn from a probe or a bogus sender; still answer
            // a probe for our address below.
            if packet.operation == ArpOperation::Request && self.addresses.contains(&tpa) && sha.is_unicast() {
                self.queue_reply(packet);
            } else {
                self.stats.ignored += 1;
            }
            return false;
        }
        let expires = now + self.config.entry_lifetime;
        let mut changed = false;
        // RFC 826: "If the pair <protocol type, sender protocol address> is
        // already in my translation table, update the sender hardware
        // address field of the entry with the new information". Hearing
        // from it also answers a poll.
        if let Some(entry) = self.entries.get_mut(&spa) {
            entry.mac = sha;
            entry.expires = expires;
            entry.polls = 0;
            changed = true;
        }
        // A reply (or a request) from an address we are resolving answers us.
        if self.pending.remove(&spa).is_some() {
            self.insert_entry(now, spa, sha, true);
            changed = true;
        }
        // "Am I the target protocol address?" If so, add the sender (it is
        // about to talk to us) if that pushes out nothing in use, and answer
        // requests.
        if self.addresses.contains(&tpa) {
            if !changed {
                changed = self.insert_entry(now, spa, sha, false);
            }
            if packet.operation == ArpOperation::Request {
                self.queue_reply(packet);
            }
        } else if !changed {
            self.stats.ignored += 1;
        }
        changed
    }

    /// Advances timers to `now`: sends due requests and polls (as the rate
    /// limit allows), fails resolutions out of attempts, expires entries,
    /// sends due announcements. Returns whether some resolution failed, so
    /// waiters can look again.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut failed_any = false;
        let mut failed_count = 0;
        let mut due = Vec::new();
        let config = self.config;
        self.pending.retain(|&ip, p| {
            if p.deadline > now {
                return true;
            }
            if p.failed {
                return false;
            }
            // One still waiting for the rate limit fails after the time its
            // requests would have taken, so its waiters are not held longer
            // than those of a resolution that asked.
            let gave_up = now - p.started >= config.retry_interval * config.max_attempts;
            if p.attempts >= config.max_attempts || gave_up {
                p.failed = true;
                p.deadline = now + config.failure_hold;
                failed_any = true;
                failed_count += 1;
            } else if p.attempts == 0 {
                due.push(Due::First(core::cmp::Reverse(p.started), ip));
            } else {
                due.push(Due::Retry(p.deadline, ip));
            }
            true
        });
        self.stats.resolutions_failed += failed_count;
        self.entries.retain(|&ip, e| {
            if e.expires > now {
                return true;
            }
            let in_use = e.last_used.is_some_and(|used| now - used < config.entry_lifetime);
            if e.polls == 0 && in_use {
                // RFC 1122 §2.3.2.1 (2): poll it rather than drop it.
                e.poll_at = e.poll_at.max(e.expires);
            }
            if (e.polls == 0 && !in_use) || (e.polls >= config.max_attempts && e.poll_at <= now) {
                return false;
            }
            if e.poll_at <= now && e.polls < config.max_attempts {
                due.push(Due::Poll(e.poll_at, ip));
            }
            true
        });
        due.sort_unstable();
        for d in due {
            let sent = self.take_credit(now);
            if !sent {
                self.stats.rate_limited += 1;
            }
            let next = if sent { now + config.retry_interval } else { self.next_credit(now) };
            match d {
                Due::Poll(_, ip) => {
                    let Some(e) = self.entries.get_mut(&ip) else { continue };
                    e.poll_at = next;
                    if sent {
                        e.polls += 1;
                        let mac = e.mac;
                        self.queue_request(ip, mac);
                        self.stats.polls_sent += 1;
                    }
                }
                Due::First(_, ip) | Due::Retry(_, ip) => {
                    let Some(p) = self.pending.get_mut(&ip) else { continue };
                    p.deadline = next;
                    if sent {
                        p.attempts += 1;
                        self.queue_request(ip, MacAddress::BROADCAST);
                        self.stats.requests_sent += 1;
                    }
                }
            }
        }
        let mut announce = Vec::new();
        for a in &mut self.announcements {
            if a.at <= now {
                announce.push(a.ip);
                a.remaining -= 1;
                a.at = now + config.announce_interval;
            }
        }
        self.announcements.retain(|a| a.remaining > 0);
        for ip in announce {
            // RFC 5227 §2.3: an announcement is a request with sender and
            // target protocol addresses both set to the announced address.
            self.queue(
                MacAddress::BROADCAST,
                ArpRepr {
                    operation: ArpOperation::Request,
                    source_hardware_addr: self.mac,
                    source_protocol_addr: ip,
                    target_hardware_addr: MacAddress::UNSPECIFIED,
                    target_protocol_addr: ip,
                },
            );
            self.stats.announcements_sent += 1;
        }
        failed_any
    }

    /// The next instant [`ArpCache::handle_timeout`] has something to do.
    pub fn poll_deadline(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let entries = self.entries.values().map(|e| if e.polls == 0 { e.expires } else { e.poll_at });
        let announcements = self.announcements.iter().map(|a| a.at);
        pending.chain(entries).chain(announcements).min()
    }

    /// The next packet to send, with its Ethernet destination.
    pub fn poll_transmit(&mut self) -> Option<(MacAddress, ArpRepr)> {
        self.transmit.pop_front()
    }

    /// Starts watching `ip` for conflicts and queues one RFC 5227 probe for
    /// it (sender protocol address 0.0.0.0). Call again to send further
    /// probes. Fails with [`ArpError::QueueFull`] when
    /// [`ArpCache::MAX_PROBES`] other addresses are being probed.
    pub fn probe(&mut self, ip: Ipv4Addr) -> Result<(), ArpError> {
        if !self.probes.contains_key(&ip) && self.probes.len() >= Self::MAX_PROBES {
            return Err(ArpError::QueueFull { ip, waiting: self.probes.len() });
        }
        self.probes.entry(ip).or_insert(false);
        self.queue(
            MacAddress::BROADCAST,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.mac,
                source_protocol_addr: Ipv4Addr::UNSPECIFIED,
                target_hardware_addr: MacAddress::UNSPECIFIED,
                target_protocol_addr: ip,
            },
        );
        self.stats.announcements_sent += 1;
        Ok(())
    }

    /// Whether a conflict was seen for `ip` since probing started.
    pub fn probe_conflict(&self, ip: Ipv4Addr) -> bool {
        self.probes.get(&ip).copied().unwrap_or(false)
    }

    /// Stops watching `ip`.
    pub fn end_probe(&mut self, ip: Ipv4Addr) {
        self.probes.remove(&ip);
    }

    /// The MAC address of `ip` if an entry may be used to send now (trusted,
    /// or expired but still being polled), marking it in use.
    fn use_entry(&mut self, now: Instant, ip: Ipv4Addr) -> Option<MacAddress> {
        let max_attempts = self.config.max_attempts;
        let e = self.entries.get_mut(&ip)?;
        let gave_up = e.polls >= max_attempts && e.poll_at <= now;
        if e.expires <= now && gave_up {
            return None;
        }
        if e.expires <= now && e.polls == 0 {
            // Used after expiry before the timers saw it: in use now, so the
            // next `handle_timeout` polls it (Linux sends to a STALE
            // neighbour while it verifies it, too).
            e.poll_at = now;
        }
        e.last_used = Some(now);
        Some(e.mac)
    }

    /// Adds or replaces the entry of `ip`. `solicited`: it answers our
    /// request, and may push out the least recently used entry in use if
    /// nothing else can go. Returns whether the entry is now held.
    fn insert_entry(&mut self, now: Instant, ip: Ipv4Addr, mac: MacAddress, solicited: bool) -> bool {
        if self.config.max_entries == 0 {
            return false;
        }
        if !self.entries.contains_key(&ip)
            && self.entries.len() >= self.config.max_entries
            && !self.evict_entry(now, solicited)
        {
            self.stats.not_learned += 1;
            return false;
        }
        let expires = now + self.config.entry_lifetime;
        // A solicited entry is about to be used by whoever asked.
        let last_used = if solicited { Some(now) } else { None };
        self.entries.insert(ip, Entry { mac, expires, last_used, polls: 0, poll_at: expires });
        true
    }

    /// Removes one entry to make room: the oldest not in use, or, if
    /// `even_in_use`, the least recently used. Returns whether one went.
    fn evict_entry(&mut self, now: Instant, even_in_use: bool) -> bool {
        let lifetime = self.config.entry_lifetime;
        let in_use = |e: &Entry| e.last_used.is_some_and(|used| now - used < lifetime);
        let idle = self.entries.iter().filter(|(_, e)| !in_use(e)).min_by_key(|(_, e)| e.expires).map(|(ip, _)| *ip);
        let victim = idle.or_else(|| {
            even_in_use.then(|| self.entries.iter().min_by_key(|(_, e)| e.last_used).map(|(ip, _)| *ip)).flatten()
        });
        let Some(victim) = victim else { return false };
        self.entries.remove(&victim);
        self.stats.evicted += 1;
        true
    }

    /// Removes the resolution that has had its chance the longest ago: a
    /// failure, else the oldest that sent a request, else the oldest.
    /// Returns whether one went.
    fn evict_pending(&mut self) -> bool {
        let victim =
            self.pending.iter().min_by_key(|(_, p)| (!p.failed, p.attempts == 0, p.started)).map(|(ip, _)| *ip);
        let Some(victim) = victim else { return false };
        self.pending.remove(&victim);
        self.stats.pending_evicted += 1;
        true
    }

    /// Removes and returns the MAC address a recent frame from `ip` came
    /// from, if it came within `retry_interval`.
    fn take_sender_hint(&mut self, now: Instant, ip: Ipv4Addr) -> Option<MacAddress> {
        let at = self.sender_hints.iter().rposition(|h| h.ip == ip)?;
        let hint = self.sender_hints.remove(at)?;
        (now - hint.at < self.config.retry_interval).then_some(hint.mac)
    }

    /// The most credit the bucket holds: `request_burst` requests.
    fn credit_cap(&self) -> u64 {
        self.request_cost().saturating_mul(u64::from(self.config.request_burst))
    }

    fn request_cost(&self) -> u64 {
        NANOS_PER_SEC / u64::from(self.config.request_rate.max(1))
    }

    fn refill(&mut self, now: Instant) {
        let gained = u64::try_from((now - self.credit_at).as_nanos()).unwrap_or(u64::MAX);
        self.credit = self.credit.saturating_add(gained).min(self.credit_cap());
        self.credit_at = self.credit_at.max(now);
    }

    /// Takes the credit of one request if the bucket has it.
    fn take_credit(&mut self, now: Instant) -> bool {
        self.refill(now);
        let cost = self.request_cost();
        if self.credit < cost {
            return false;
        }
        self.credit -= cost;
        true
    }

    /// When the bucket next has the credit of one request.
    fn next_credit(&self, now: Instant) -> Instant {
        now + Duration::from_nanos(self.request_cost().saturating_sub(self.credit).max(1))
    }

    fn queue_request(&mut self, ip: Ipv4Addr, dst: MacAddress) {
        // RFC 826 leaves the source protocol address to the sender; ours
        // (or 0.0.0.0 while unconfigured, as in a probe) lets the target
        // learn us on the way.
        let source = self.addresses.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        let target_hardware_addr = if dst == MacAddress::BROADCAST { MacAddress::UNSPECIFIED } else { dst };
        self.queue(
            dst,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.mac,
                source_protocol_addr: source,
                target_hardware_addr,
                target_protocol_addr: ip,
            },
        );
    }

    fn queue_reply(&mut self, request: &ArpRepr) {
        self.queue(
            request.source_hardware_addr,
            ArpRepr {
                operation: ArpOperation::Reply,
                source_hardware_addr: self.mac,
                source_protocol_addr: request.target_protocol_addr,
                target_hardware_addr: request.source_hardware_addr,
                target_protocol_addr: request.source_protocol_addr,
            },
        );
        self.stats.replies_sent += 1;
    }

    fn queue(&mut self, dst: MacAddress, packet: ArpRepr) {
        if self.transmit.len() >= Self::MAX_TRANSMIT_QUEUE {
            self.stats.transmit_dropped += 1;
            return;
        }
        self.transmit.push_back((dst, packet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const PEER: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn cache() -> ArpCache {
        let mut c = ArpCache::new(US, ArpConfig::default());
        c.set_addresses(t(0), &[OUR_IP]);
        c
    }

    fn drain(c: &mut ArpCache) -> Vec<(MacAddress, ArpRepr)> {
        core::iter::from_fn(|| c.poll_transmit()).collect()
    }

    fn request(sha: MacAddress, spa: Ipv4Addr, tpa: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: MacAddress::UNSPECIFIED,
            target_protocol_addr: tpa,
        }
    }

    fn reply(sha: MacAddress, spa: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: US,
            target_protocol_addr: OUR_IP,
        }
    }

    #[test]
    fn setting_an_address_announces_it_twice_rfc_5227_2_3() {
        let mut c = cache();
        let first = drain(&mut c);
        assert_eq!(first.len(), 1);
        let (dst, a) = first[0];
        assert_eq!(dst, MacAddress::BROADCAST);
        assert_eq!((a.source_protocol_addr, a.target_protocol_addr), (OUR_IP, OUR_IP));
        assert_eq!(c.poll_deadline(), Some(t(2000)));
        c.handle_timeout(t(2000));
        assert_eq!(drain(&mut c).len(), 1);
        c.handle_timeout(t(4000));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_deadline(), None);
    }

    #[test]
    fn request_for_us_is_answered_and_sender_learned_rfc_826() {
        let mut c = cache();
        drain(&mut c);
        assert!(c.handle_packet(t(10), &request(PEER, PEER_IP, OUR_IP)));
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        let (dst, r) = out[0];
        assert_eq!(dst, PEER);
        assert_eq!(r.operation, ArpOperation::Reply);
        assert_eq!((r.source_hardware_addr, r.source_protocol_addr), (US, OUR_IP));
        assert_eq!((r.target_hardware_addr, r.target_protocol_addr), (PEER, PEER_IP));
        assert_eq!(c.lookup(t(20), PEER_IP).unwrap(), Lookup::Resolved(PEER));
    }

    #[test]
    fn request_for_another_host_creates_no_entry() {
        let mut c = cache();
        drain(&mut c);
        assert!(!c.handle_packet(t(10), &request(PEER, PEER_IP, Ipv4Addr::new(10, 0, 0, 3))));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.entry_count(), 0);
        assert_eq!(c.stats().ignored, 1);
    }

    #[test]
    fn unsolicited_reply_is_ignored_but_updates_a_known_entry() {
        let mut c = cache();
        let third = Ipv4Addr::new(10, 0, 0, 3);
        let mut r = reply(PEER, third);
        r.target_protocol_addr = Ipv4Addr::new(10, 0, 0, 4);
        assert!(!c.handle_packet(t(0), &r));
        assert_eq!(c.entry_count(), 0);
        c.handle_packet(t(0), &request(PEER, PEER_IP, OUR_IP));
        let moved = MacAddress([2, 0, 0, 0, 0, 7]);
        let mut r = reply(moved, PEER_IP);
        r.target_protocol_addr = Ipv4Addr::new(10, 0, 0, 4);
        assert!(c.handle_packet(t(5), &r), "RFC 826 merge: a known sender is updated");
        assert_eq!(c.lookup(t(6), PEER_IP).unwrap(), Lookup::Resolved(moved));
    }

    #[test]
    fn resolution_retries_each_interval_then_fails_rfc_1122_2_3_2_1() {
        let mut c = ArpCache::new(US, ArpConfig { announce_count: 0, ..ArpConfig::default() });
        c.set_addresses(t(0), &[OUR_IP]);
        assert_eq!(c.lookup(t(0), PEER_IP).unwrap(), Lookup::Waiting);
        assert_eq!(drain(&mut c).len(), 1);
        // A second lookup before the retry time sends nothing more.
        assert_eq!(c.lookup(t(500), PEER_IP).unwrap(), Lookup::Waiting);
        assert!(drain(&mut c).is_empty());
        for i in 1..5 {
            assert_eq!(c.poll_deadline(), Some(t(1000 * i)));
            c.handle_timeout(t(1000 * i));
            assert_eq!(drain(&mut c).len(), 1, "retry {i}");
        }
        assert!(c.handle_timeout(t(5000)));
        assert_eq!(c.lookup(t(5000), PEER_IP).unwrap(), Lookup::Failed { attempts: 5 });
        // The failure is remembered for failure_hold, then forgotten.
        c.handle_timeout(t(6000));
        assert_eq!(c.pending_count(), 0);
        assert_eq!(c.lookup(t(6000), PEER_IP).unwrap(), Lookup::Waiting);
    }

    #[test]
    fn an_expired_failure_is_retried_even_without_timer_processing() {
        // The input loop may never run the timers (no frame arrives); a
        // lookup after the hold must start a new resolution by itself.
        let mut c = ArpCache::new(US, ArpConfig { announce_count: 0, ..ArpConfig::default() });
        c.set_addresses(t(0), &[OUR_IP]);
        c.lookup(t(0), PEER_IP).unwrap();
        for i in 1..=5 {
            c.handle_timeout(t(1000 * i));
        }
        drain(&mut c);
        assert_eq!(c.lookup(t(5500), PEER_IP).unwrap(), Lookup::Failed { attempts: 5 }, "held");
        assert_eq!(c.lookup(t(6000), PEER_IP).unwrap(), Lookup::Waiting, "hold over: a new resolution");
        assert_eq!(drain(&mut c).len(), 1, "and its first request is queued");
    }

    #[test]
    fn reply_completes_a_resolution() {
        let mut c = cache();
        c.lookup(t(0), PEER_IP).unwrap();
        assert!(c.handle_packet(t(3), &reply(PEER, PEER_IP)));
        assert_eq!(c.lookup(t(4), PEER_IP).unwrap(), Lookup::Resolved(PEER));
        assert_eq!(c.pending_count(), 0);
        // RFC 1122 §2.3.2.1: entries time out; one nobody used for a
        // lifetime goes without a poll.
        c.handle_timeout(t(60_003));
        assert_eq!(c.entry_count(), 1, "used at 4 ms: still in use at expiry, so polled");
        let mut c = cache();
        c.lookup(t(0), PEER_IP).unwrap();
        c.handle_packet(t(3), &reply(PEER, PEER_IP));
        drain(&mut c);
        c.handle_timeout(t(120_003));
        assert_eq!(c.entry_count(), 0);
        assert_eq!(c.stats().polls_sent, 0, "no poll for an entry out of use");
    }

    /// A cache with `PEER_IP` learned at 0 and in use, and nothing queued.
    fn with_peer(config: ArpConfig) -> ArpCache {
        let mut c = ArpCache::new(US, ArpConfig { announce_count: 0, ..config });
        c.set_addresses(t(0), &[OUR_IP]);
        c.handle_packet(t(0), &request(PEER, PEER_IP, OUR_IP));
        assert_eq!(c.lookup(t(0), PEER_IP).unwrap(), Lookup::Resolved(PEER));
        drain(&mut c);
        c
    }

    fn spoofed(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_1000 + i)
    }

    #[test]
    fn an_entry_in_use_is_polled_at_expiry_and_stays_usable_rfc_1122_2_3_2_1() {
        let mut c = with_peer(ArpConfig { entry_lifetime: Duration::from_secs(10), ..ArpConfig::default() });
        c.lookup(t(9_000), PEER_IP).unwrap();
        assert_eq!(c.poll_deadline(), Some(t(10_000)));
        c.handle_timeout(t(10_000));
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        let (dst, poll) = out[0];
        assert_eq!(dst, PEER, "a unicast poll, not a broadcast");
        assert_eq!(
            (poll.operation, poll.target_protocol_addr, poll.target_hardware_addr),
            (ArpOperation::Request, PEER_IP, PEER)
        );
        assert_eq!(c.stats().polls_sent, 1);
        assert_eq!(c.lookup(t(10_500), PEER_IP).unwrap(), Lookup::Resolved(PEER), "usable while polled");
        assert_eq!(c.pending_count(), 0, "no resolution started");
        // The answer makes it trusted again, without another poll.
        assert!(c.handle_packet(t(10_600), &reply(PEER, PEER_IP)));
        c.handle_timeout(t(11_600));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_deadline(), Some(t(20_600)));
    }

    #[test]
    fn an_unanswered_entry_is_dropped_after_max_attempts_polls() {
        let mut c = with_peer(ArpConfig { entry_lifetime: Duration::from_secs(10), ..ArpConfig::default() });
        c.lookup(t(9_000), PEER_IP).unwrap();
        for i in 0..5 {
            c.handle_timeout(t(10_000 + 1000 * i));
            assert_eq!(drain(&mut c).len(), 1, "poll {i}");
            assert_eq!(c.entry_count(), 1);
        }
        c.handle_timeout(t(15_000));
        assert_eq!(c.entry_count(), 0, "the last poll's answer time is over");
        assert_eq!(c.stats().polls_sent, 5);
        // A new send resolves from scratch, by broadcast.
        assert_eq!(c.lookup(t(15_000), PEER_IP).unwrap(), Lookup::Waiting);
        assert_eq!(drain(&mut c)[0].0, MacAddress::BROADCAST);
    }

    #[test]
    fn confirmation_by_an_upper_layer_renews_an_entry_without_asking() {
        let mut c = with_peer(ArpConfig { entry_lifetime: Duration::from_secs(10), ..ArpConfig::default() });
        c.confirm(t(9_000), PEER_IP);
        c.handle_timeout(t(10_000));
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.poll_deadline(), Some(t(19_000)));
        // It creates nothing.
        c.confirm(t(9_000), spoofed(1));
        assert_eq!(c.entry_count(), 1);
    }

    #[test]
    fn a_flood_of_unresolved_destinations_leaves_a_resolved_neighbour_alone() {
        let mut c = with_peer(ArpConfig::default());
        let max = c.config().max_pending;
        for i in 0..10_000u32 {
            let now = t(u64::from(i / 10));
            assert_eq!(c.lookup(now, spoofed(i)).unwrap(), Lookup::Waiting);
            c.handle_timeout(now);
            drain(&mut c);
            assert!(c.pending_count() <= max);
            assert_eq!(c.lookup(now, PEER_IP).unwrap(), Lookup::Resolved(PEER));
        }
        assert_eq!(c.stats().pending_evicted, 10_000 - max as u64);
        assert_eq!(c.entry_count(), 1);
    }

    #[test]
    fn a_new_neighbour_is_resolved_in_the_middle_of_a_flood() {
        let mut c = with_peer(ArpConfig { max_pending: 64, ..ArpConfig::default() });
        let newcomer = Ipv4Addr::new(10, 0, 0, 77);
        let newcomer_mac = MacAddress([2, 0, 0, 0, 0, 77]);
        let mut resolved_at = None;
        // 200 new spoofed destinations a second (within the request budget
        // with their retries, far beyond the pending table) for 3 s; the
        // newcomer asks at 1.5 s and answers each request for it 1 ms later.
        let mut asked: Option<u64> = None;
        for ms in 0..3000u64 {
            if ms % 5 == 0 {
                c.lookup(t(ms), spoofed((ms / 5) as u32)).unwrap();
            }
            if ms == 1500 {
                assert_eq!(c.lookup(t(ms), newcomer).unwrap(), Lookup::Waiting);
            }
            if asked.is_some_and(|at| at < ms) {
                c.handle_packet(t(ms), &reply(newcomer_mac, newcomer));
                asked = None;
            }
            c.handle_timeout(t(ms));
            for (_, r) in drain(&mut c) {
                if r.target_protocol_addr == newcomer {
                    asked = Some(ms);
                }
            }
            if ms >= 1500
                && resolved_at.is_none()
                && c.lookup(t(ms), newcomer).unwrap() == Lookup::Resolved(newcomer_mac)
            {
                resolved_at = Some(ms);
            }
        }
        assert!(resolved_at.is_some(), "{:?}", c.stats());
        assert!(c.stats().pending_evicted > 0, "the flood filled the pending table: {:?}", c.stats());
        assert_eq!(c.lookup(t(3000), PEER_IP).unwrap(), Lookup::Resolved(PEER));
    }

    #[test]
    fn requests_on_the_link_are_rate_limited() {
        let config = ArpConfig { max_pending: 1000, request_rate: 10, request_burst: 5, ..ArpConfig::default() };
        let mut c = with_peer(config);
        for i in 0..100 {
            c.lookup(t(0), spoofed(i)).unwrap();
        }
        assert_eq!(drain(&mut c).len(), 5, "the burst");
        // Then one per 100 ms, whatever is due.
        let mut sent = 0;
        for ms in (10..=1000).step_by(10) {
            c.handle_timeout(t(ms));
            sent += drain(&mut c).len();
        }
        assert_eq!(sent, 10);
        assert_eq!(c.stats().requests_sent, 15);
        assert!(c.stats().rate_limited > 0);
    }

    #[test]
    fn rate_limited_requests_go_polls_first_then_newest_first() {
        let config = ArpConfig {
            entry_lifetime: Duration::from_secs(10),
            request_rate: 10,
            request_burst: 1,
            ..ArpConfig::default()
        };
        let mut c = with_peer(config);
        c.lookup(t(9_900), PEER_IP).unwrap();
        // The bucket is spent by the first destination; two more wait.
        c.lookup(t(9_900), spoofed(1)).unwrap();
        c.lookup(t(9_910), spoofed(2)).unwrap();
        c.lookup(t(9_920), spoofed(3)).unwrap();
        assert_eq!(drain(&mut c).len(), 1);
        // At 10 s the peer's poll is due too: it goes first...
        c.handle_timeout(t(10_000));
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.target_protocol_addr, PEER_IP);
        // ...then the newest destination, then the older one.
        let mut order = Vec::new();
        for ms in (10_010..=10_300).step_by(10) {
            c.handle_timeout(t(ms));
            order.extend(drain(&mut c).into_iter().map(|(_, r)| r.target_protocol_addr));
        }
        assert_eq!(order[..2], [spoofed(3), spoofed(2)]);
    }

    #[test]
    fn flooding_packets_for_us_cannot_evict_an_entry_in_use() {
        let config = ArpConfig { max_entries: 8, ..ArpConfig::default() };
        let mut c = with_peer(config);
        // Requests and replies addressed to us from 1000 spoofed senders.
        for i in 0..1000u32 {
            let mac = MacAddress::local_from_random([0, 0, 0, 1, (i >> 8) as u8, i as u8]);
            let now = t(u64::from(i));
            if i % 2 == 0 {
                c.handle_packet(now, &request(mac, spoofed(i), OUR_IP));
            } else {
                c.handle_packet(now, &reply(mac, spoofed(i)));
            }
            drain(&mut c);
            assert!(c.entry_count() <= 8);
            assert_eq!(c.lookup(now, PEER_IP).unwrap(), Lookup::Resolved(PEER));
        }
        // The spoofed senders took turns in the other seven places.
        assert_eq!(c.stats().evicted, 1000 - 7);
        // With every place in use, a packet for us is answered, not learned.
        for i in 0..7 {
            let ip = spoofed(1000 - 7 + i);
            assert!(matches!(c.lookup(t(1000), ip).unwrap(), Lookup::Resolved(_)));
        }
        c.handle_packet(t(1001), &request(MacAddress([2, 0, 0, 0, 0, 9]), spoofed(5000), OUR_IP));
        assert_eq!(c.stats().not_learned, 1);
        assert_eq!(drain(&mut c).len(), 1, "the request is still answered");
        // An answer to our own request may replace the least recently used.
        c.lookup(t(1002), PEER_IP).unwrap();
        c.lookup(t(1002), spoofed(6000)).unwrap();
        c.handle_packet(t(1003), &reply(MacAddress([2, 0, 0, 0, 0, 10]), spoofed(6000)));
        assert!(matches!(c.lookup(t(1004), spoofed(6000)).unwrap(), Lookup::Resolved(_)));
        assert_eq!(c.lookup(t(1004), PEER_IP).unwrap(), Lookup::Resolved(PEER));
    }

    #[test]
    fn replies_about_other_hosts_change_nothing() {
        let mut c = with_peer(ArpConfig::default());
        let third = Ipv4Addr::new(10, 0, 0, 3);
        for i in 0..100u32 {
            let mut r = reply(MacAddress([2, 0, 0, 0, 1, i as u8]), spoofed(i));
            r.target_protocol_addr = third;
            assert!(!c.handle_packet(t(1), &r));
        }
        assert_eq!(c.entry_count(), 1);
        assert_eq!(c.stats().ignored, 100);
    }

    #[test]
    fn shrinking_the_bounds_evicts_to_them() {
        let mut c = with_peer(ArpConfig::default());
        for i in 0..10 {
            c.lookup(t(1), spoofed(i)).unwrap();
        }
        assert!(c.set_config(t(2), ArpConfig { max_pending: 3, max_entries: 1, ..ArpConfig::default() }));
        assert_eq!(c.pending_count(), 3);
        assert_eq!(c.entry_count(), 1);
    }

    #[test]
    fn waiter_bound_per_resolution_rfc_1122_2_3_2_2() {
        let config = ArpConfig { max_waiters: 1, ..ArpConfig::default() };
        let mut c = ArpCache::new(US, config);
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        c.lookup(t(0), ip).unwrap();
        let id = c.resolution(ip).unwrap();
        c.add_waiter(ip, id).unwrap();
        assert!(matches!(c.add_waiter(ip, id), Err(ArpError::QueueFull { .. })));
        assert_eq!(c.waiter_count(), 1);
        c.remove_waiter(ip, id);
        c.add_waiter(ip, id).unwrap();
    }

    #[test]
    fn a_full_pending_table_evicts_the_oldest_unanswered_resolution() {
        let config = ArpConfig { max_pending: 2, ..ArpConfig::default() };
        let mut c = ArpCache::new(US, config);
        let (a, b, new) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6), Ipv4Addr::new(10, 0, 0, 7));
        c.lookup(t(0), a).unwrap();
        let id_a = c.resolution(a).unwrap();
        c.add_waiter(a, id_a).unwrap();
        c.lookup(t(10), b).unwrap();
        assert_eq!(c.lookup(t(20), new).unwrap(), Lookup::Waiting, "the newcomer gets a place");
        assert_eq!(c.pending_count(), 2);
        assert_eq!(c.stats().pending_evicted, 1);
        // `a` had its request out the longest; its waiter learns it lost.
        assert!(matches!(c.poll_resolution(t(20), a, id_a), Err(ArpError::QueueFull { .. })));
        assert!(c.resolution(b).is_some());
        // A later resolution of `a` is a new one: the old waiter's guard
        // does not touch its count.
        c.lookup(t(30), a).unwrap();
        let id_a2 = c.resolution(a).unwrap();
        assert_ne!(id_a, id_a2);
        c.add_waiter(a, id_a2).unwrap();
        c.remove_waiter(a, id_a);
        assert_eq!(c.waiter_count(), 1);
    }

    #[test]
    fn failures_are_evicted_before_resolutions_in_progress() {
        let config = ArpConfig { max_pending: 2, announce_count: 0, ..ArpConfig::default() };
        let mut c = ArpCache::new(US, config);
        let (dead, young, new) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6), Ipv4Addr::new(10, 0, 0, 7));
        c.lookup(t(0), dead).unwrap();
        for i in 1..=5 {
            c.handle_timeout(t(1000 * i));
        }
        assert_eq!(c.lookup(t(5000), dead).unwrap(), Lookup::Failed { attempts: 5 });
        c.lookup(t(5100), young).unwrap();
        c.lookup(t(5200), new).unwrap();
        assert!(c.resolution(dead).is_none(), "the remembered failure made room");
        assert!(c.resolution(young).is_some());
    }

    #[test]
    fn flood_of_requests_for_us_stays_within_max_entries() {
        let config = ArpConfig { max_entries: 8, ..ArpConfig::default() };
        let mut c = ArpCache::new(US, config);
        c.set_addresses(t(0), &[OUR_IP]);
        for i in 0..1000u32 {
            let spoofed = Ipv4Addr::from(0x0a01_0000 + i);
            let mac = MacAddress::local_from_random([0, 0, 0, 1, (i >> 8) as u8, i as u8]);
            c.handle_packet(t(u64::from(i)), &request(mac, spoofed, OUR_IP));
            drain(&mut c);
            assert!(c.entry_count() <= 8);
        }
        assert_eq!(c.stats().evicted, 992);
        // The newest senders are the ones kept.
        let newest = MacAddress::local_from_random([0, 0, 0, 1, 3, 0xe7]);
        assert_eq!(c.lookup(t(1000), Ipv4Addr::from(0x0a01_0000 + 999)).unwrap(), Lookup::Resolved(newest));
    }

    #[test]
    fn someone_claiming_our_address_is_a_conflict_not_an_entry_rfc_5227_2_4() {
        let mut c = cache();
        c.handle_packet(t(0), &request(PEER, OUR_IP, OUR_IP));
        assert_eq!(c.stats().conflicts, 1);
        assert_eq!(c.entry_count(), 0);
    }

    #[test]
    fn probe_detects_a_reply_or_a_competing_probe_rfc_5227_2_1_1() {
        let candidate = Ipv4Addr::new(10, 0, 0, 50);
        let mut c = ArpCache::new(US, ArpConfig::default());
        c.probe(candidate).unwrap();
        let (_, p) = drain(&mut c)[0];
        assert_eq!((p.source_protocol_addr, p.target_protocol_addr), (Ipv4Addr::UNSPECIFIED, candidate));
        assert!(!c.probe_conflict(candidate));
        c.handle_packet(t(0), &request(PEER, Ipv4Addr::UNSPECIFIED, candidate));
        assert!(c.probe_conflict(candidate));
        c.end_probe(candidate);
        c.probe(candidate).unwrap();
        c.handle_packet(t(0), &reply(PEER, candidate));
        assert!(c.probe_conflict(candidate));
    }

    #[test]
    fn probe_for_our_address_is_answered() {
        let mut c = cache();
        drain(&mut c);
        c.handle_packet(t(0), &request(PEER, Ipv4Addr::UNSPECIFIED, OUR_IP));
        let out = drain(&mut c);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.operation, ArpOperation::Reply);
        assert_eq!(c.entry_count(), 0);
    }

    #[test]
    fn a_noted_sender_is_asked_by_unicast_outside_the_spent_budget() {
        let config = ArpConfig { max_pending: 1000, request_rate: 10, request_burst: 1, ..ArpConfig::default() };
        let mut c = with_peer(config);
        // A flood spends the link's budget.
        for i in 0..50 {
            c.lookup(t(100), spoofed(i)).unwrap();
        }
        drain(&mut c);
        let newcomer = Ipv4Addr::new(10, 0, 0, 7);
        c.note_sender(t(100), newcomer, PEER);
        assert_eq!(c.entry_count(), 1, "a hint is not an entry");
        assert_eq!(c.lookup(t(110), newcomer).unwrap(), Lookup::Waiting);
        let out = drain(&mut c);
        assert_eq!(out.len(), 1, "asked at once despite the empty bucket");
        let (dst, r) = out[0];
        assert_eq!((dst, r.target_hardware_addr, r.target_protocol_addr), (PEER, PEER, newcomer));
        assert_eq!(c.stats().sender_requests_sent, 1);
        // Only its owner's answer resolves it.
        assert!(c.handle_packet(t(120), &reply(PEER, newcomer)));
        assert_eq!(c.lookup(t(120), newcomer).unwrap(), Lookup::Resolved(PEER));
    }

    #[test]
    fn a_sender_hint_is_used_once_only_while_fresh_and_only_when_the_budget_is_spent() {
        let config = ArpConfig { request_rate: 10, request_burst: 1, ..ArpConfig::default() };
        let mut c = with_peer(config);
        let [a, b, d] = [7, 8, 9].map(|host| Ipv4Addr::new(10, 0, 0, host));
        for ip in [a, b, d] {
            c.note_sender(t(0), ip, PEER);
        }
        // With budget to spare, the broadcast goes and the hint is not used.
        c.lookup(t(0), a).unwrap();
        assert_eq!(drain(&mut c).iter().map(|(dst, _)| *dst).collect::<Vec<_>>(), [MacAddress::BROADCAST]);
        // The budget is spent now: a fresh hint is asked at once.
        c.lookup(t(10), b).unwrap();
        assert_eq!(drain(&mut c).iter().map(|(dst, _)| *dst).collect::<Vec<_>>(), [PEER]);
        // One older than retry_interval is not.
        c.lookup(t(1000), d).unwrap();
        let sent: Vec<_> = drain(&mut c).iter().map(|(dst, r)| (*dst, r.target_protocol_addr)).collect();
        assert!(!sent.contains(&(PEER, d)), "{sent:?}");
        // b's broadcast follows from the queue; its retries never use the hint.
        for ms in (1000..=6000).step_by(100) {
            c.handle_timeout(t(ms));
            assert!(drain(&mut c).iter().all(|(dst, _)| *dst == MacAddress::BROADCAST));
        }
        assert_eq!(c.stats().sender_requests_sent, 1);
    }

    #[test]
    fn sender_hints_are_bounded_and_skip_known_and_bogus_senders() {
        let mut c = with_peer(ArpConfig { max_pending: 4, ..ArpConfig::default() });
        c.note_sender(t(0), PEER_IP, MacAddress([2, 0, 0, 0, 0, 9]));
        c.note_sender(t(0), spoofed(100), MacAddress::BROADCAST);
        c.note_sender(t(0), spoofed(101), US);
        for i in 0..10 {
            c.note_sender(t(0), spoofed(i), PEER);
        }
        assert_eq!(c.sender_hints.len(), 4);
        assert!(c.sender_hints.iter().all(|h| (6..10).any(|i| h.ip == spoofed(i))), "the newest stay");
        // With the budget spent, they are still asked by broadcast only.
        for i in 0..64 {
            c.lookup(t(0), spoofed(200 + i)).unwrap();
        }
        c.lookup(t(0), spoofed(100)).unwrap();
        c.lookup(t(0), spoofed(101)).unwrap();
        assert!(drain(&mut c).iter().all(|(dst, _)| *dst == MacAddress::BROADCAST));
        assert_eq!(c.stats().sender_requests_sent, 0);
        assert_eq!(c.lookup(t(0), PEER_IP).unwrap(), Lookup::Resolved(PEER), "a known entry is not re-pointed");
    }
}
