//! ARP: resolving IPv4 addresses to MAC addresses on one link.
//!
//! Reading list:
//! - RFC 826: the protocol and its packet-reception algorithm.
//! - RFC 1122 §2.3.2: cache timeout, flooding limit (at most one request
//!   per second per address), queueing packets while resolving.
//! - RFC 5227: address conflict detection (probes) and announcements.
//! - RFC 5944 §4.6 / RFC 5227 §3: gratuitous ARP.
//!
//! [`ArpCache`] is the sans-IO core: it takes `now` and received packets,
//! and yields packets to send ([`ArpCache::poll_transmit`]) and the next
//! deadline ([`ArpCache::poll_deadline`]). [`ArpLayer`] drives it over any
//! [`Ethernet`] and implements [`Arp`].
//!
//! # Bounds
//!
//! Everything a peer can make us store is bounded by [`ArpConfig`]:
//! resolved entries (`max_entries`, oldest evicted first), resolutions in
//! progress (`max_pending`, beyond which [`ArpError::QueueFull`]), tasks
//! waiting on one resolution (`max_waiters`), and queued outgoing packets
//! ([`ArpCache::MAX_TRANSMIT_QUEUE`]). Entries are created only from
//! packets addressed to us or answering our requests (RFC 826's "am I the
//! target?" test), so a flood of spoofed requests for other hosts stores
//! nothing.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::ToString;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::net::Ipv4Addr;
use core::task::{Poll, Waker};
use core::time::Duration;

use bytes::Bytes;
use futures::future::{self, Either};
use mirage_types::arp::{Arp, ArpError};
use mirage_types::ethernet::{EtherType, Ethernet};
use mirage_types::net::MacAddress;
use mirage_types::time::{Instant, Sleep};

use crate::wire::{ArpOperation, ArpPacket, ArpRepr};

/// Limits and timers of an [`ArpCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// Resolved entries kept at most; when full, the entry closest to
    /// expiry is evicted. Default 256.
    pub max_entries: usize,
    /// Addresses being resolved at once at most; more resolutions fail with
    /// [`ArpError::QueueFull`]. Default 64.
    pub max_pending: usize,
    /// Tasks waiting for one address at most (RFC 1122 §2.3.2.2 asks to
    /// queue at least one packet); more fail with [`ArpError::QueueFull`].
    /// Default 16.
    pub max_waiters: usize,
    /// How long a resolved entry is trusted (RFC 1122 §2.3.2.1). Default 60 s.
    pub entry_lifetime: Duration,
    /// Time between requests for one address; RFC 1122 §2.3.2.1 asks for at
    /// most one per second. Default 1 s.
    pub retry_interval: Duration,
    /// Requests sent before a resolution fails with
    /// [`ArpError::Timeout`]. Default 5.
    pub max_attempts: u32,
    /// How long a failed resolution is remembered: resolutions of the same
    /// address in that time fail at once instead of flooding the link.
    /// Default 1 s.
    pub failure_hold: Duration,
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
            max_pending: 64,
            max_waiters: 16,
            entry_lifetime: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_attempts: 5,
            failure_hold: Duration::from_secs(1),
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
    /// A request is out; wait for a reply or the next deadline.
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
    /// Requests sent (resolutions, retries).
    pub requests_sent: u64,
    /// Replies sent to requests for our addresses.
    pub replies_sent: u64,
    /// Announcements and probes sent.
    pub announcements_sent: u64,
    /// Entries evicted because the cache was full.
    pub evicted: u64,
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
    expires: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    attempts: u32,
    /// When to retry, or (once failed) when to forget the failure.
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

/// The sans-IO ARP core for one interface: cache, resolutions in
/// progress, announcements and conflict watching.
#[derive(Debug)]
pub struct ArpCache {
    config: ArpConfig,
    mac: MacAddress,
    addresses: Vec<Ipv4Addr>,
    entries: BTreeMap<Ipv4Addr, Entry>,
    pending: BTreeMap<Ipv4Addr, Pending>,
    announcements: Vec<Announcement>,
    /// Addresses being probed (RFC 5227 §2.1) and whether a conflict was
    /// seen for each.
    probes: BTreeMap<Ipv4Addr, bool>,
    transmit: VecDeque<(MacAddress, ArpRepr)>,
    stats: ArpStats,
}

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
        ArpCache {
            config,
            mac,
            addresses: Vec::new(),
            entries: BTreeMap::new(),
            pending: BTreeMap::new(),
            announcements: Vec::new(),
            probes: BTreeMap::new(),
            transmit: VecDeque::new(),
            stats: ArpStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ArpConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> ArpStats {
        self.stats
    }

    /// Resolved entries held (expired ones included until the next
    /// [`ArpCache::handle_timeout`]); at most `max_entries`.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Resolutions in progress or remembered as failed; at most
    /// `max_pending`.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
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

    /// Looks `ip` up, starting a resolution (and queueing a request) if it
    /// is unknown. Fails with [`ArpError::QueueFull`] when `max_pending`
    /// resolutions are already in progress.
    pub fn lookup(&mut self, now: Instant, ip: Ipv4Addr) -> Result<Lookup, ArpError> {
        if let Some(entry) = self.entries.get(&ip) {
            if entry.expires > now {
                return Ok(Lookup::Resolved(entry.mac));
            }
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
        if self.pending.len() >= self.config.max_pending {
            return Err(ArpError::QueueFull { ip, waiting: self.pending.len() });
        }
        let deadline = now + self.config.retry_interval;
        self.pending.insert(ip, Pending { attempts: 1, deadline, failed: false, waiters: 0 });
        self.queue_request(ip);
        Ok(Lookup::Waiting)
    }

    /// Records one more task waiting on the resolution of `ip`; fails with
    /// [`ArpError::QueueFull`] when `max_waiters` already wait.
    pub fn add_waiter(&mut self, ip: Ipv4Addr) -> Result<(), ArpError> {
        let max = self.config.max_waiters;
        if let Some(p) = self.pending.get_mut(&ip) {
            if p.waiters >= max {
                return Err(ArpError::QueueFull { ip, waiting: p.waiters });
            }
            p.waiters += 1;
        }
        Ok(())
    }

    /// Forgets one waiter of `ip` (the task got its answer or gave up).
    pub fn remove_waiter(&mut self, ip: Ipv4Addr) {
        if let Some(p) = self.pending.get_mut(&ip) {
            p.waiters = p.waiters.saturating_sub(1);
        }
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
        // address field of the entry with the new information".
        if let Some(entry) = self.entries.get_mut(&spa) {
            entry.mac = sha;
            entry.expires = expires;
            changed = true;
        }
        // A reply (or a request) from an address we are resolving answers us.
        if self.pending.remove(&spa).is_some() {
            self.insert_entry(spa, Entry { mac: sha, expires });
            changed = true;
        }
        // "Am I the target protocol address?" If so, add the sender (it is
        // about to talk to us) and answer requests.
        if self.addresses.contains(&tpa) {
            if !changed {
                self.insert_entry(spa, Entry { mac: sha, expires });
                changed = true;
            }
            if packet.operation == ArpOperation::Request {
                self.queue_reply(packet);
            }
        } else if !changed {
            self.stats.ignored += 1;
        }
        changed
    }

    /// Advances timers to `now`: retries requests, fails resolutions out of
    /// attempts, expires entries, sends due announcements. Returns whether
    /// some resolution failed, so waiters can look again.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let mut failed_any = false;
        let mut retry = Vec::new();
        let config = self.config;
        self.pending.retain(|&ip, p| {
            if p.deadline > now {
                return true;
            }
            if p.failed {
                return false;
            }
            if p.attempts >= config.max_attempts {
                p.failed = true;
                p.deadline = now + config.failure_hold;
                failed_any = true;
            } else {
                p.attempts += 1;
                p.deadline = now + config.retry_interval;
                retry.push(ip);
            }
            true
        });
        for ip in retry {
            self.queue_request(ip);
        }
        self.entries.retain(|_, e| e.expires > now);
        let mut due = Vec::new();
        for a in &mut self.announcements {
            if a.at <= now {
                due.push(a.ip);
                a.remaining -= 1;
                a.at = now + config.announce_interval;
            }
        }
        self.announcements.retain(|a| a.remaining > 0);
        for ip in due {
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
        let entries = self.entries.values().map(|e| e.expires);
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

    fn insert_entry(&mut self, ip: Ipv4Addr, entry: Entry) {
        if !self.entries.contains_key(&ip) && self.entries.len() >= self.config.max_entries {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.expires).map(|(ip, _)| *ip);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
                self.stats.evicted += 1;
            }
        }
        if self.config.max_entries > 0 {
            self.entries.insert(ip, entry);
        }
    }

    fn queue_request(&mut self, ip: Ipv4Addr) {
        // RFC 826 leaves the source protocol address to the sender; ours
        // (or 0.0.0.0 while unconfigured, as in a probe) lets the target
        // learn us on the way.
        let source = self.addresses.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED);
        self.queue(
            MacAddress::BROADCAST,
            ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: self.mac,
                source_protocol_addr: source,
                target_hardware_addr: MacAddress::UNSPECIFIED,
                target_protocol_addr: ip,
            },
        );
        self.stats.requests_sent += 1;
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

/// RFC 5227 probing parameters for [`ArpLayer::probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Probes sent (PROBE_NUM, 3).
    pub probes: u32,
    /// Time between probes. RFC 5227 draws it from PROBE_MIN..PROBE_MAX (1
    /// to 2 s) to desynchronise hosts booted together; this uses a fixed
    /// interval, 1 s by default.
    pub interval: Duration,
    /// Time to listen after the last probe (ANNOUNCE_WAIT, 2 s).
    pub wait: Duration,
}

impl Default for ProbeConfig {
    fn default() -> ProbeConfig {
        ProbeConfig { probes: 3, interval: Duration::from_secs(1), wait: Duration::from_secs(2) }
    }
}

/// ARP over an [`Ethernet`] layer: an [`ArpCache`] driven with the time of
/// `clock`.
///
/// [`ArpLayer::resolve`] drives retries itself while it waits; the stack's
/// input loop must call [`Arp::input`] with received ARP packets and
/// [`ArpLayer::handle_timers`] at [`ArpLayer::poll_deadline`] (for
/// announcements and expiry).
#[derive(Debug)]
pub struct ArpLayer<E, C> {
    eth: E,
    clock: C,
    cache: RefCell<ArpCache>,
    /// Tasks to wake when the cache changes; each waiting resolve keeps at
    /// most one entry, so the list is bounded by the waiter bounds.
    waiters: RefCell<Vec<Waker>>,
    generation: Cell<u64>,
}

impl<E: Ethernet, C: Sleep> ArpLayer<E, C> {
    /// An ARP layer over `eth`, answering for no address yet.
    pub fn new(eth: E, clock: C, config: ArpConfig) -> ArpLayer<E, C> {
        let cache = ArpCache::new(eth.mac(), config);
        ArpLayer { eth, clock, cache: RefCell::new(cache), waiters: RefCell::default(), generation: Cell::new(0) }
    }

    /// The Ethernet layer below.
    pub fn ethernet(&self) -> &E {
        &self.eth
    }

    /// Runs `f` on the cache (for counters and inspection).
    pub fn with_cache<R>(&self, f: impl FnOnce(&ArpCache) -> R) -> R {
        f(&self.cache.borrow())
    }

    /// The next instant [`ArpLayer::handle_timers`] has work.
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.cache.borrow().poll_deadline()
    }

    /// Advances the cache's timers to now and sends what they produced.
    pub async fn handle_timers(&self) -> Result<(), ArpError> {
        let failed = self.cache.borrow_mut().handle_timeout(self.clock.now());
        if failed {
            self.changed();
        }
        self.flush().await
    }

    /// Probes `ip` as RFC 5227 §2.1.1 describes and reports whether another
    /// host uses it (`Ok(true)`: conflict, do not use the address). Takes
    /// `probes × interval + wait` of time. Fails only if the link fails or
    /// too many probes run at once.
    pub async fn probe(&self, ip: Ipv4Addr, config: ProbeConfig) -> Result<bool, ArpError> {
        let result = self.probe_inner(ip, config).await;
        self.cache.borrow_mut().end_probe(ip);
        result
    }

    async fn probe_inner(&self, ip: Ipv4Addr, config: ProbeConfig) -> Result<bool, ArpError> {
        for i in 0..config.probes {
            self.cache.borrow_mut().probe(ip)?;
            self.flush().await?;
            let pause = if i + 1 == config.probes { config.wait } else { config.interval };
            self.clock.sleep(pause).await;
            if self.cache.borrow().probe_conflict(ip) {
                return Ok(true);
            }
        }
        Ok(self.cache.borrow().probe_conflict(ip))
    }

    /// Sends everything the cache queued.
    async fn flush(&self) -> Result<(), ArpError> {
        // Bounded by the transmit queue's bound plus what arrives while we
        // send, which is itself bounded per input.
        loop {
            let next = self.cache.borrow_mut().poll_transmit();
            let Some((dst, repr)) = next else { return Ok(()) };
            self.eth
                .write(dst, EtherType::ARP, repr.buffer_len(), |buf| repr.emit(&mut ArpPacket::new_unchecked(buf)))
                .await
                .map_err(|e| ArpError::Device(e.to_string()))?;
        }
    }

    fn changed(&self) {
        self.generation.set(self.generation.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes when the cache changed after `generation` was read.
    fn cache_changed(&self, generation: u64) -> impl Future<Output = ()> + '_ {
        future::poll_fn(move |cx| {
            if self.generation.get() != generation {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    async fn resolve_waiting(&self, ip: Ipv4Addr) -> Result<MacAddress, ArpError> {
        // Each pass waits for a cache change or the next deadline; the
        // resolution's attempts and failure hold bound the passes.
        loop {
            let generation = self.generation.get();
            let now = self.clock.now();
            let lookup = {
                let mut cache = self.cache.borrow_mut();
                if cache.handle_timeout(now) {
                    drop(cache);
                    self.changed();
                    cache = self.cache.borrow_mut();
                }
                cache.lookup(now, ip)?
            };
            self.flush().await?;
            match lookup {
                Lookup::Resolved(mac) => return Ok(mac),
                Lookup::Failed { attempts } => return Err(ArpError::Timeout { ip, attempts }),
                Lookup::Waiting => {}
            }
            let deadline = self.cache.borrow().poll_deadline();
            let changed = core::pin::pin!(self.cache_changed(generation));
            match deadline {
                Some(at) => {
                    let timer = core::pin::pin!(self.clock.sleep_until(at));
                    match future::select(changed, timer).await {
                        Either::Left(_) | Either::Right(_) => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Decrements a resolution's waiter count when the waiting task finishes
/// or is cancelled.
struct WaiterGuard<'a> {
    cache: &'a RefCell<ArpCache>,
    ip: Ipv4Addr,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.remove_waiter(self.ip);
        }
    }
}

impl<E: Ethernet, C: Sleep> Arp for ArpLayer<E, C> {
    type Error = ArpError;

    /// Resolves from the cache, or sends requests (one per
    /// `retry_interval`, `max_attempts` in all) until a reply comes.
    /// Broadcast and multicast addresses resolve to their MAC addresses
    /// without asking. Fails with [`ArpError::Timeout`] when no reply came
    /// (and, for `failure_hold` after that, at once),
    /// [`ArpError::QueueFull`] beyond the pending or waiter bounds, and
    /// [`ArpError::Device`] if the link fails. Cancel-safe.
    async fn resolve(&self, ip: Ipv4Addr) -> Result<MacAddress, ArpError> {
        if ip.is_broadcast() {
            return Ok(MacAddress::BROADCAST);
        }
        if ip.is_multicast() {
            return Ok(crate::ethernet::ipv4_multicast_mac(ip));
        }
        let now = self.clock.now();
        let first = self.cache.borrow_mut().lookup(now, ip)?;
        match first {
            Lookup::Resolved(mac) => return Ok(mac),
            Lookup::Failed { attempts } => return Err(ArpError::Timeout { ip, attempts }),
            Lookup::Waiting => {}
        }
        self.cache.borrow_mut().add_waiter(ip)?;
        let _guard = WaiterGuard { cache: &self.cache, ip };
        self.resolve_waiting(ip).await
    }

    /// Learns from the packet and answers it if it asks for one of our
    /// addresses; malformed packets are dropped. A failure to send the
    /// answer is dropped too (the asker will retry).
    async fn input(&self, packet: Bytes) {
        let Ok(repr) = ArpPacket::new_checked(&packet[..]).and_then(|p| ArpRepr::parse(&p)) else {
            return;
        };
        let changed = self.cache.borrow_mut().handle_packet(self.clock.now(), &repr);
        if changed {
            self.changed();
        }
        let _ = self.flush().await;
    }

    fn addresses(&self) -> Vec<Ipv4Addr> {
        self.cache.borrow().addresses().to_vec()
    }

    /// Replaces our addresses and sends the first announcement of each new
    /// one at once (the rest follow from [`ArpLayer::handle_timers`]).
    /// `Ok` means announcements were handed to the link; on `Err` the
    /// addresses are set but an announcement was not sent.
    async fn set_addresses(&self, addresses: &[Ipv4Addr]) -> Result<(), ArpError> {
        self.cache.borrow_mut().set_addresses(self.clock.now(), addresses);
        self.flush().await
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
        // RFC 1122 §2.3.2.1: entries time out.
        c.handle_timeout(t(60_003));
        assert_eq!(c.entry_count(), 0);
    }

    #[test]
    fn pending_and_waiter_bounds() {
        let config = ArpConfig { max_pending: 2, max_waiters: 1, ..ArpConfig::default() };
        let mut c = ArpCache::new(US, config);
        c.lookup(t(0), Ipv4Addr::new(10, 0, 0, 5)).unwrap();
        c.lookup(t(0), Ipv4Addr::new(10, 0, 0, 6)).unwrap();
        assert!(matches!(c.lookup(t(0), Ipv4Addr::new(10, 0, 0, 7)), Err(ArpError::QueueFull { .. })));
        c.add_waiter(Ipv4Addr::new(10, 0, 0, 5)).unwrap();
        assert!(c.add_waiter(Ipv4Addr::new(10, 0, 0, 5)).is_err());
        c.remove_waiter(Ipv4Addr::new(10, 0, 0, 5));
        c.add_waiter(Ipv4Addr::new(10, 0, 0, 5)).unwrap();
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
}
