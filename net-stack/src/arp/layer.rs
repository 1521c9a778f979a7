//! [`ArpLayer`], the async driver of an [`ArpCache`] over an [`Ethernet`] layer.

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

use crate::wire::{ArpPacket, ArpRepr};

use super::{ArpCache, ArpConfig, Lookup};

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

    /// Replaces the cache's bounds and timers ([`ArpCache::set_config`]).
    pub fn set_config(&self, config: ArpConfig) {
        let evicted = self.cache.borrow_mut().set_config(self.clock.now(), config);
        if evicted {
            self.changed();
        }
    }

    /// An upper layer saw `ip` make progress ([`ArpCache::confirm`]): its
    /// entry is trusted for another lifetime without asking. TCP calls it
    /// when an ACK from the peer advances SND.UNA.
    pub fn confirm(&self, ip: Ipv4Addr) {
        self.cache.borrow_mut().confirm(self.clock.now(), ip);
    }

    /// See [`ArpCache::note_sender`].
    pub fn note_sender(&self, ip: Ipv4Addr, mac: MacAddress) {
        self.cache.borrow_mut().note_sender(self.clock.now(), ip, mac);
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

    async fn resolve_waiting(&self, ip: Ipv4Addr, id: u64) -> Result<MacAddress, ArpError> {
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
                cache.poll_resolution(now, ip, id)?
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
    id: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut cache) = self.cache.try_borrow_mut() {
            cache.remove_waiter(self.ip, self.id);
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
    /// [`ArpError::QueueFull`] beyond the waiter bound or when the
    /// resolution was evicted to make room for a newer one, and
    /// [`ArpError::Device`] if the link fails. Cancel-safe.
    async fn resolve(&self, ip: Ipv4Addr) -> Result<MacAddress, ArpError> {
        if ip.is_broadcast() {
            return Ok(MacAddress::BROADCAST);
        }
        if ip.is_multicast() {
            return Ok(crate::ethernet::ipv4_multicast_mac(ip));
        }
        let now = self.clock.now();
        let (first, evicted, id) = {
            let mut cache = self.cache.borrow_mut();
            let evicted_before = cache.stats().pending_evicted;
            let first = cache.lookup(now, ip)?;
            (first, cache.stats().pending_evicted != evicted_before, cache.resolution(ip))
        };
        if evicted {
            // The waiters of the resolution that made room must learn it.
            self.changed();
        }
        match first {
            Lookup::Resolved(mac) => return Ok(mac),
            Lookup::Failed { attempts } => return Err(ArpError::Timeout { ip, attempts }),
            Lookup::Waiting => {}
        }
        // `lookup` said Waiting, so a resolution is in the table.
        let id = id.ok_or(ArpError::QueueFull { ip, waiting: 0 })?;
        self.cache.borrow_mut().add_waiter(ip, id)?;
        let _guard = WaiterGuard { cache: &self.cache, ip, id };
        self.resolve_waiting(ip, id).await
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
