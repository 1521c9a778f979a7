//! The sans-IO DHCPv4 client, [`DhcpClient`]: see the [module docs](super).

use alloc::collections::VecDeque;
use core::net::Ipv4Addr;
use core::time::Duration;

use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::MacAddress;
use mirage_types::time::Instant;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::arp::ProbeConfig;
use crate::ipv4::Ipv4Config;
use crate::wire::dhcp::{AddressList, MAX_DNS_SERVERS};
use crate::wire::{DhcpMessageType, DhcpRepr};

/// Events waiting for [`DhcpClient::poll_event`] at most; the oldest is
/// dropped beyond it. One transition queues at most two, and the driver
/// drains the queue after every call, so the bound is never reached by a
/// working driver.
pub const MAX_EVENTS: usize = 8;

/// Options asked for in the parameter request list (RFC 2132 §9.8):
/// subnet mask, router, DNS servers, lease time, server identifier, T1, T2.
const PARAMETER_REQUEST_LIST: &[u8] = &[1, 3, 6, 51, 54, 58, 59];

/// Lease time meaning "infinite" (RFC 2131 §3.3).
const INFINITE_LEASE: u32 = 0xffff_ffff;

/// Timers and bounds of a [`DhcpClient`]. `Default` gives RFC 2131's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    /// First retransmission interval (RFC 2131 §4.1: 4 s).
    pub initial_retransmit: Duration,
    /// Largest retransmission interval (RFC 2131 §4.1: 64 s).
    pub max_retransmit: Duration,
    /// Each interval is randomized by a uniform amount in
    /// [-jitter, +jitter] (RFC 2131 §4.1: 1 s).
    pub jitter: Duration,
    /// REQUESTs sent in REQUESTING before starting over (default 4: the
    /// last goes unanswered about a minute after the first).
    pub request_attempts: u32,
    /// Shortest retransmission interval in RENEWING and REBINDING (RFC 2131
    /// §4.4.5: 60 s).
    pub min_renew_retransmit: Duration,
    /// Wait after a DECLINE before starting again (RFC 2131 §3.1 step 5:
    /// at least 10 s).
    pub decline_delay: Duration,
    /// Shortest lease honoured; a shorter one is timed as this long
    /// (default 10 s).
    pub min_lease: Duration,
    /// Largest random wait before the first DISCOVER. RFC 2131 §4.4.1
    /// suggests 1 to 10 s so hosts powered on together do not all send at
    /// once; the default is zero because a unikernel is usually started
    /// alone and wants its address at once.
    pub initial_delay: Duration,
    /// The conflict check run on an acknowledged address before using it
    /// (RFC 5227 §2.1.1); `None` skips it.
    pub probe: Option<ProbeConfig>,
    /// The largest DHCP message we accept, sent as option 57 (RFC 2132
    /// §9.10; at least 576). Default 1500.
    pub max_message_size: u16,
}

impl Default for DhcpConfig {
    fn default() -> DhcpConfig {
        DhcpConfig {
            initial_retransmit: Duration::from_secs(4),
            max_retransmit: Duration::from_secs(64),
            jitter: Duration::from_secs(1),
            request_attempts: 4,
            min_renew_retransmit: Duration::from_secs(60),
            decline_delay: Duration::from_secs(10),
            min_lease: Duration::from_secs(10),
            initial_delay: Duration::ZERO,
            probe: Some(ProbeConfig::default()),
            max_message_size: 1500,
        }
    }
}

/// The client's state (RFC 2131 Figure 5, plus the address probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhcpState {
    /// Waiting to start (at boot, after a NAK, a DECLINE or expiry).
    Init,
    /// DISCOVER sent, waiting for an offer.
    Selecting,
    /// REQUEST sent for an offer, waiting for ACK or NAK.
    Requesting,
    /// Acknowledged; checking by ARP that nobody else uses the address.
    Probing,
    /// The address is ours until T1.
    Bound,
    /// Past T1: asking the server that gave the lease to extend it.
    Renewing,
    /// Past T2: asking any server to extend the lease.
    Rebinding,
}

impl core::fmt::Display for DhcpState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DhcpState::Init => "INIT",
            DhcpState::Selecting => "SELECTING",
            DhcpState::Requesting => "REQUESTING",
            DhcpState::Probing => "PROBING",
            DhcpState::Bound => "BOUND",
            DhcpState::Renewing => "RENEWING",
            DhcpState::Rebinding => "REBINDING",
        })
    }
}

/// A lease: the configuration a server gave and how long it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Our address and the on-link prefix (option 1; the address's class
    /// prefix when the server sent no mask).
    pub address: Ipv4Cidr,
    /// The first router of option 3, if any.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers (option 6) in the server's order of preference.
    pub dns_servers: AddressList<MAX_DNS_SERVERS>,
    /// The server that granted the lease (option 54).
    pub server: Ipv4Addr,
    /// The lease time (option 51); `None` for an infinite lease.
    pub duration: Option<Duration>,
    /// When the REQUEST this lease answers was sent; the times below count
    /// from it (RFC 2131 §4.4.1).
    pub obtained: Instant,
    /// T1: when renewal starts; `None` for an infinite lease.
    pub renew_at: Option<Instant>,
    /// T2: when rebinding starts; `None` for an infinite lease.
    pub rebind_at: Option<Instant>,
    /// When the address must stop being used; `None` for an infinite lease.
    pub expires_at: Option<Instant>,
}

impl Lease {
    /// The interface configuration this lease gives.
    pub fn ipv4_config(&self) -> Ipv4Config {
        Ipv4Config { address: self.address, gateway: self.gateway }
    }
}

impl core::fmt::Display for Lease {
    /// One log line: `10.0.0.5/24 gateway 10.0.0.1 DNS [10.0.0.1] from
    /// 10.0.0.1 for 3600 s`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.address)?;
        if let Some(gw) = self.gateway {
            write!(f, " gateway {gw}")?;
        }
        if !self.dns_servers.is_empty() {
            write!(f, " DNS {:?}", self.dns_servers.as_slice())?;
        }
        write!(f, " from {}", self.server)?;
        match self.duration {
            Some(d) => write!(f, " for {} s", d.as_secs()),
            None => write!(f, " for ever"),
        }
    }
}

/// Why a lease stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseLost {
    /// It expired without being extended.
    Expired,
    /// A server refused to extend it (DHCPNAK).
    Nak,
    /// The server extended it with another address, which is probed before
    /// use.
    AddressChanged,
}

/// What the client asks of the layer that drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpEvent {
    /// Check by ARP probe whether another host uses this address, and
    /// report with [`DhcpClient::handle_probe_result`].
    Probe(Ipv4Addr),
    /// Configure the interface from this lease (new, or extended: compare
    /// with the current configuration).
    Bound(Lease),
    /// Remove the lease's address from the interface.
    Unbound(LeaseLost),
}

/// A message for the driver to send: UDP from port 68 at `src` to port 67
/// at `dst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpTransmit {
    /// IP source: 0.0.0.0 until we hold a lease, then its address.
    pub src: Ipv4Addr,
    /// IP destination: 255.255.255.255, or the server when renewing.
    pub dst: Ipv4Addr,
    message_type: DhcpMessageType,
    transaction_id: u32,
    secs: u16,
    broadcast: bool,
    mac: MacAddress,
    client_ip: Ipv4Addr,
    requested_ip: Option<Ipv4Addr>,
    server_identifier: Option<Ipv4Addr>,
    client_identifier: [u8; 7],
    max_message_size: u16,
}

impl DhcpTransmit {
    /// The message, to emit with [`DhcpRepr::emit`].
    pub fn repr(&self) -> DhcpRepr<'_> {
        // RFC 2131 Table 5: DECLINE carries no parameter requests.
        let asks = self.message_type != DhcpMessageType::Decline;
        DhcpRepr {
            message_type: self.message_type,
            transaction_id: self.transaction_id,
            secs: self.secs,
            broadcast: self.broadcast,
            client_hardware_addr: self.mac,
            client_ip: self.client_ip,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            subnet_mask: None,
            routers: AddressList::new(),
            dns_servers: AddressList::new(),
            requested_ip: self.requested_ip,
            lease_duration: None,
            server_identifier: self.server_identifier,
            parameter_request_list: asks.then_some(PARAMETER_REQUEST_LIST),
            max_message_size: asks.then_some(self.max_message_size),
            renew_duration: None,
            rebind_duration: None,
            client_identifier: Some(&self.client_identifier),
        }
    }

    /// The message type.
    pub fn message_type(&self) -> DhcpMessageType {
        self.message_type
    }
}

/// Counters of a [`DhcpClient`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhcpStats {
    /// Messages queued for sending.
    pub sent: u64,
    /// Messages handled that matched our transaction and state.
    pub accepted: u64,
    /// Messages ignored: another transaction or client, a type unexpected
    /// in the state, or an unusable offer or ACK.
    pub ignored: u64,
    /// Times the client went back to INIT after having started.
    pub restarts: u64,
    /// Addresses declined after a conflicting probe.
    pub declines: u64,
}

/// The offer being requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Init { at: Instant },
    Selecting { attempt: u32, next: Instant },
    Requesting { offer: Offer, attempt: u32, next: Instant, first_sent: Instant },
    Probing { lease: Lease },
    Bound { lease: Lease },
    Renewing { lease: Lease, next: Instant, first_sent: Instant },
    Rebinding { lease: Lease, next: Instant, first_sent: Instant },
}

/// Uniform in `0..=max` nanoseconds, from the client's generator
/// (SplitMix64, seeded by the caller from the platform's CSPRNG: the core
/// draws transaction IDs and jitter from it without reading a global RNG).
fn up_to(rng: &mut SplitMix64, max: Duration) -> Duration {
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.next_u64() % max.saturating_add(1).max(1))
}

/// The DHCP client state machine for one interface (sans-IO).
///
/// Drive it with [`DhcpClient::handle_timeout`] at
/// [`DhcpClient::poll_deadline`], [`DhcpClient::handle_message`] for every
/// DHCP message received on port 68, and [`DhcpClient::handle_probe_result`]
/// after each [`DhcpEvent::Probe`]; after each call, send what
/// [`DhcpClient::poll_transmit`] gives and act on
/// [`DhcpClient::poll_event`].
#[derive(Debug)]
pub struct DhcpClient {
    config: DhcpConfig,
    mac: MacAddress,
    rng: SplitMix64,
    phase: Phase,
    xid: u32,
    /// When the current acquisition began (the `secs` field counts from it).
    started: Instant,
    /// Failed acquisitions since the last lease, for the restart backoff.
    failures: u32,
    broadcast: bool,
    transmit: Option<DhcpTransmit>,
    events: VecDeque<DhcpEvent>,
    stats: DhcpStats,
}

impl DhcpClient {
    /// A client for the interface with address `mac`, in INIT; it sends its
    /// first DISCOVER at the first [`Self::handle_timeout`] at or after
    /// `now` plus a random wait up to [`DhcpConfig::initial_delay`].
    ///
    /// `seed` drives transaction IDs and jitter: take it from the
    /// platform's random source, so that hosts booted together differ.
    pub fn new(mac: MacAddress, config: DhcpConfig, seed: u64, now: Instant) -> DhcpClient {
        let mut rng = SplitMix64::seed_from_u64(seed);
        let at = now + up_to(&mut rng, config.initial_delay);
        DhcpClient {
            config,
            mac,
            rng,
            phase: Phase::Init { at },
            xid: 0,
            started: now,
            failures: 0,
            broadcast: false,
            transmit: None,
            events: VecDeque::new(),
            stats: DhcpStats::default(),
        }
    }

    /// The current state.
    pub fn state(&self) -> DhcpState {
        match self.phase {
            Phase::Init { .. } => DhcpState::Init,
            Phase::Selecting { .. } => DhcpState::Selecting,
            Phase::Requesting { .. } => DhcpState::Requesting,
            Phase::Probing { .. } => DhcpState::Probing,
            Phase::Bound { .. } => DhcpState::Bound,
            Phase::Renewing { .. } => DhcpState::Renewing,
            Phase::Rebinding { .. } => DhcpState::Rebinding,
        }
    }

    /// The lease in use (BOUND, RENEWING, REBINDING), if any.
    pub fn lease(&self) -> Option<Lease> {
        match self.phase {
            Phase::Bound { lease } | Phase::Renewing { lease, .. } | Phase::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DhcpStats {
        self.stats
    }

    /// The configuration the client was made with.
    pub fn config(&self) -> &DhcpConfig {
        &self.config
    }

    /// Asks servers to broadcast their replies (the BOOTP broadcast flag,
    /// RFC 2131 §4.1) from the next message on. Set it while the interface
    /// has an address that is not from DHCP (a static fallback), because
    /// then a reply unicast to the offered address would be dropped.
    pub fn set_broadcast_replies(&mut self, broadcast: bool) {
        self.broadcast = broadcast;
    }

    /// The next instant [`Self::handle_timeout`] has work, or `None` while
    /// waiting only for a probe result or with an infinite lease.
    pub fn poll_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Init { at } => Some(at),
            Phase::Selecting { next, .. } | Phase::Requesting { next, .. } => Some(next),
            Phase::Probing { .. } => None,
            Phase::Bound { lease } => lease.renew_at,
            Phase::Renewing { next, .. } | Phase::Rebinding { next, .. } => Some(next),
        }
    }

    /// The message to send now, if any. Only the latest is kept: a message
    /// not taken before the next one is replaced, as a retransmission
    /// would replace it anyway.
    pub fn poll_transmit(&mut self) -> Option<DhcpTransmit> {
        self.transmit.take()
    }

    /// The next thing the driver must do, if any.
    pub fn poll_event(&mut self) -> Option<DhcpEvent> {
        self.events.pop_front()
    }

    /// Runs the timers due at `now`: the first DISCOVER, retransmissions,
    /// T1, T2 and expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Init { at } if at <= now => {
                self.xid = self.rng.next_u64() as u32;
                self.started = now;
                self.send_discover(now);
                let next = now + self.retransmit_delay(0);
                self.phase = Phase::Selecting { attempt: 0, next };
            }
            Phase::Selecting { attempt, next } if next <= now => {
                self.send_discover(now);
                let attempt = attempt.saturating_add(1);
                let next = now + self.retransmit_delay(attempt);
                self.phase = Phase::Selecting { attempt, next };
            }
            Phase::Requesting { offer, attempt, next, first_sent } if next <= now => {
                let attempt = attempt.saturating_add(1);
                // RFC 2131 §4.4.1: no answer after the retransmissions
                // means starting over.
                if attempt >= self.config.request_attempts {
                    self.restart(now, Duration::ZERO);
                } else {
                    self.send_select_request(now, offer);
                    let next = now + self.retransmit_delay(attempt);
                    self.phase = Phase::Requesting { offer, attempt, next, first_sent };
                }
            }
            Phase::Bound { lease } | Phase::Renewing { lease, .. } | Phase::Rebinding { lease, .. }
                if lease.expires_at.is_some_and(|t| t <= now) =>
            {
                // RFC 2131 §4.4.5: at expiry, stop using the address and
                // start over.
                self.push_event(DhcpEvent::Unbound(LeaseLost::Expired));
                self.failures = 0;
                self.restart(now, Duration::ZERO);
            }
            Phase::Bound { lease } | Phase::Renewing { lease, .. } if lease.rebind_at.is_some_and(|t| t <= now) => {
                self.enter_rebinding(now, lease);
            }
            Phase::Bound { lease } if lease.renew_at.is_some_and(|t| t <= now) => {
                // RFC 2131 §4.4.5: at T1, unicast a REQUEST to the server
                // that granted the lease, with a new transaction.
                self.xid = self.rng.next_u64() as u32;
                self.started = now;
                self.send_extend_request(now, lease, lease.server);
                let next = self.renew_retransmit(now, lease.rebind_at);
                self.phase = Phase::Renewing { lease, next, first_sent: now };
            }
            Phase::Renewing { lease, next, first_sent } if next <= now => {
                self.send_extend_request(now, lease, lease.server);
                let next = self.renew_retransmit(now, lease.rebind_at);
                self.phase = Phase::Renewing { lease, next, first_sent };
            }
            Phase::Rebinding { lease, next, first_sent } if next <= now => {
                self.send_extend_request(now, lease, Ipv4Addr::BROADCAST);
                let next = self.renew_retransmit(now, lease.expires_at);
                self.phase = Phase::Rebinding { lease, next, first_sent };
            }
            _ => {}
        }
    }

    /// Handles a DHCP message received on port 68 at `now`. Messages for
    /// another transaction or client, of a type not expected in the current
    /// state, or offering something unusable are ignored and counted.
    pub fn handle_message(&mut self, now: Instant, message: &DhcpRepr<'_>) {
        if message.transaction_id != self.xid || message.client_hardware_addr != self.mac {
            self.stats.ignored += 1;
            return;
        }
        let accepted = match (self.phase, message.message_type) {
            (Phase::Selecting { .. }, DhcpMessageType::Offer) => self.handle_offer(now, message),
            (Phase::Requesting { offer, first_sent, .. }, DhcpMessageType::Ack) => {
                // The ACK must come from the server we chose, for the address
                // it offered.
                let usable =
                    message.server_identifier.is_none_or(|s| s == offer.server) && message.your_ip == offer.address;
                match self.lease_from(message, first_sent, Some(offer.server)) {
                    Some(lease) if usable => {
                        self.use_lease(lease);
                        true
                    }
                    _ => false,
                }
            }
            (Phase::Requesting { offer, .. }, DhcpMessageType::Nak)
                if message.server_identifier.is_none_or(|s| s == offer.server) =>
            {
                self.fail(now, Duration::ZERO);
                true
            }
            (
                Phase::Renewing { lease, first_sent, .. } | Phase::Rebinding { lease, first_sent, .. },
                DhcpMessageType::Ack,
            ) => match self.lease_from(message, first_sent, None) {
                Some(new) if new.address.address() == lease.address.address() => {
                    self.phase = Phase::Bound { lease: new };
                    self.failures = 0;
                    self.push_event(DhcpEvent::Bound(new));
                    true
                }
                Some(new) => {
                    self.push_event(DhcpEvent::Unbound(LeaseLost::AddressChanged));
                    self.use_lease(new);
                    true
                }
                None => false,
            },
            (Phase::Renewing { .. } | Phase::Rebinding { .. }, DhcpMessageType::Nak) => {
                // RFC 2131 §4.4.5: a NAK means the address is no longer ours.
                self.push_event(DhcpEvent::Unbound(LeaseLost::Nak));
                self.fail(now, Duration::ZERO);
                true
            }
            _ => false,
        };
        if accepted {
            self.stats.accepted += 1;
        } else {
            self.stats.ignored += 1;
        }
    }

    /// Reports the probe asked for by [`DhcpEvent::Probe`]: `conflict` is
    /// true if another host uses the address. On a conflict the client
    /// sends DHCPDECLINE and starts over after
    /// [`DhcpConfig::decline_delay`]; otherwise it is BOUND. Ignored in any
    /// other state than PROBING.
    pub fn handle_probe_result(&mut self, now: Instant, conflict: bool) {
        let Phase::Probing { lease } = self.phase else { return };
        if !conflict {
            self.phase = Phase::Bound { lease };
            self.failures = 0;
            self.push_event(DhcpEvent::Bound(lease));
            return;
        }
        // RFC 2131 §3.1 step 5 and Table 5: DECLINE is broadcast with the
        // address and the server, ciaddr zero, and the same transaction.
        self.queue(DhcpTransmit {
            secs: 0,
            requested_ip: Some(lease.address.address()),
            server_identifier: Some(lease.server),
            ..self.message(now, DhcpMessageType::Decline, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        });
        self.stats.declines += 1;
        let delay = self.config.decline_delay;
        self.fail(now, delay);
    }

    fn handle_offer(&mut self, now: Instant, offer: &DhcpRepr<'_>) -> bool {
        // RFC 2131 Table 3: an offer carries a lease time and a server
        // identifier; the address must be one a host can use.
        let Some(server) = offer.server_identifier else { return false };
        if offer.lease_duration.is_none() || !usable_host_address(offer.your_ip) || prefix_len(offer).is_none() {
            return false;
        }
        let offer = Offer { address: offer.your_ip, server };
        self.send_select_request(now, offer);
        let next = now + self.retransmit_delay(0);
        self.phase = Phase::Requesting { offer, attempt: 0, next, first_sent: now };
        true
    }

    /// Builds the lease an ACK grants, its times counted from `sent`; `None`
    /// if the ACK is unusable (no usable address, no lease time, a
    /// non-contiguous mask, or no server to renew from).
    fn lease_from(&self, ack: &DhcpRepr<'_>, sent: Instant, server: Option<Ipv4Addr>) -> Option<Lease> {
        if !usable_host_address(ack.your_ip) {
            return None;
        }
        let address = Ipv4Cidr::new(ack.your_ip, prefix_len(ack)?)?;
        let server = ack.server_identifier.or(server)?;
        let secs = ack.lease_duration?;
        let gateway = ack.routers.as_slice().first().copied().filter(|gw| address.contains(*gw));
        let mut lease = Lease {
            address,
            gateway,
            dns_servers: ack.dns_servers,
            server,
            duration: None,
            obtained: sent,
            renew_at: None,
            rebind_at: None,
            expires_at: None,
        };
        if secs != INFINITE_LEASE {
            let duration = Duration::from_secs(secs.into()).max(self.config.min_lease);
            // RFC 2131 §4.4.5: T1 defaults to half the lease and T2 to 7/8;
            // values from the server are used only if T1 ≤ T2 ≤ lease.
            let t1 = ack.renew_duration.map(|s| Duration::from_secs(s.into()));
            let t2 = ack.rebind_duration.map(|s| Duration::from_secs(s.into()));
            let t2 = t2.filter(|&t2| t2 <= duration).unwrap_or(duration * 7 / 8);
            let t1 = t1.filter(|&t1| t1 <= t2).unwrap_or((duration / 2).min(t2));
            lease.duration = Some(duration);
            lease.renew_at = Some(sent + t1);
            lease.rebind_at = Some(sent + t2);
            lease.expires_at = Some(sent + duration);
        }
        Some(lease)
    }

    /// An acknowledged address: probe it first if configured to.
    fn use_lease(&mut self, lease: Lease) {
        if self.config.probe.is_some() {
            self.phase = Phase::Probing { lease };
            self.push_event(DhcpEvent::Probe(lease.address.address()));
        } else {
            self.phase = Phase::Bound { lease };
            self.failures = 0;
            self.push_event(DhcpEvent::Bound(lease));
        }
    }

    fn enter_rebinding(&mut self, now: Instant, lease: Lease) {
        // RFC 2131 §4.4.5: at T2, broadcast the REQUEST so any server can
        // extend the lease.
        self.xid = self.rng.next_u64() as u32;
        self.started = now;
        self.send_extend_request(now, lease, Ipv4Addr::BROADCAST);
        let next = self.renew_retransmit(now, lease.expires_at);
        self.phase = Phase::Rebinding { lease, next, first_sent: now };
    }

    /// Back to INIT after a failed acquisition, waiting at least `min_delay`
    /// and, after repeated failures, an exponentially growing delay.
    fn fail(&mut self, now: Instant, min_delay: Duration) {
        self.failures = self.failures.saturating_add(1);
        let backoff = match self.failures {
            0 | 1 => Duration::ZERO,
            n => self.backoff(n - 2),
        };
        self.restart(now, backoff.max(min_delay));
    }

    fn restart(&mut self, now: Instant, delay: Duration) {
        self.stats.restarts += 1;
        self.phase = Phase::Init { at: now + delay };
    }

    /// RFC 2131 §4.1: 4 s, 8 s, ... up to 64 s.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.config.initial_retransmit.saturating_mul(factor).min(self.config.max_retransmit)
    }

    /// The backoff randomized by ±jitter (RFC 2131 §4.1), never below zero.
    fn retransmit_delay(&mut self, attempt: u32) -> Duration {
        let base = self.backoff(attempt);
        let jitter = self.config.jitter;
        let draw = up_to(&mut self.rng, jitter.saturating_mul(2));
        if draw >= jitter {
            base + (draw - jitter)
        } else {
            base.saturating_sub(jitter - draw)
        }
    }

    /// RFC 2131 §4.4.5: retransmit after half the time left until `limit`,
    /// at least [`DhcpConfig::min_renew_retransmit`], but not past `limit`
    /// (where the next state takes over).
    fn renew_retransmit(&self, now: Instant, limit: Option<Instant>) -> Instant {
        let Some(limit) = limit else { return now + self.config.min_renew_retransmit };
        let half = (limit - now) / 2;
        (now + half.max(self.config.min_renew_retransmit)).min(limit).max(now)
    }

    fn send_discover(&mut self, now: Instant) {
        let message = self.message(now, DhcpMessageType::Discover, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        self.queue(message);
    }

    /// RFC 2131 Table 5, REQUEST in SELECTING: ciaddr zero, the offered
    /// address and the chosen server as options, broadcast.
    fn send_select_request(&mut self, now: Instant, offer: Offer) {
        self.queue(DhcpTransmit {
            requested_ip: Some(offer.address),
            server_identifier: Some(offer.server),
            ..self.message(now, DhcpMessageType::Request, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        });
    }

    /// RFC 2131 Table 5, REQUEST in RENEWING or REBINDING: ciaddr set, no
    /// requested address or server identifier.
    fn send_extend_request(&mut self, now: Instant, lease: Lease, dst: Ipv4Addr) {
        let address = lease.address.address();
        self.queue(DhcpTransmit {
            client_ip: address,
            broadcast: false,
            ..self.message(now, DhcpMessageType::Request, address, dst)
        });
    }

    fn message(&self, now: Instant, message_type: DhcpMessageType, src: Ipv4Addr, dst: Ipv4Addr) -> DhcpTransmit {
        let mut client_identifier = [1u8; 7];
        client_identifier[1..].copy_from_slice(&self.mac.0);
        DhcpTransmit {
            src,
            dst,
            message_type,
            transaction_id: self.xid,
            secs: u16::try_from((now - self.started).as_secs()).unwrap_or(u16::MAX),
            broadcast: self.broadcast,
            mac: self.mac,
            client_ip: Ipv4Addr::UNSPECIFIED,
            requested_ip: None,
            server_identifier: None,
            // RFC 2132 §9.14: type 1 (Ethernet) and the hardware address.
            client_identifier,
            max_message_size: self.config.max_message_size.max(576),
        }
    }

    fn queue(&mut self, message: DhcpTransmit) {
        self.stats.sent += 1;
        self.transmit = Some(message);
    }

    fn push_event(&mut self, event: DhcpEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// Whether a host may use `ip` as its address.
fn usable_host_address(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() || ip.octets()[0] >= 240)
}

/// The prefix length of a message's subnet mask (option 1), or the
/// address's class prefix without one (RFC 1122 §3.3.1.1 leaves the
/// default to the host; the classful mask is what BOOTP clients used).
/// `None` for a non-contiguous mask.
fn prefix_len(message: &DhcpRepr<'_>) -> Option<u8> {
    match message.subnet_mask {
        Some(mask) => {
            let bits = u32::from(mask);
            let ones = bits.leading_ones();
            (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
        }
        None => Some(match message.your_ip.octets()[0] {
            0..=127 => 8,
            128..=191 => 16,
            _ => 24,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DhcpPacket;
    use std::vec::Vec;

    const MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
    const LEASE_SECS: u32 = 1000;

    fn at(secs: f64) -> Instant {
        Instant::from_nanos((secs * 1e9) as u64)
    }

    fn client() -> DhcpClient {
        DhcpClient::new(MAC, DhcpConfig::default(), 42, Instant::ZERO)
    }

    /// A server's answer to what the client last sent.
    fn reply(to: &DhcpTransmit, message_type: DhcpMessageType, your_ip: Ipv4Addr) -> DhcpRepr<'static> {
        DhcpRepr {
            message_type,
            transaction_id: to.transaction_id,
            secs: 0,
            broadcast: false,
            client_hardware_addr: MAC,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip,
            server_ip: Ipv4Addr::UNSPECIFIED,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            routers: AddressList::from_slice(&[SERVER]),
            dns_servers: AddressList::from_slice(&[SERVER, Ipv4Addr::new(9, 9, 9, 9)]),
            requested_ip: None,
            lease_duration: Some(LEASE_SECS),
            server_identifier: Some(SERVER),
            parameter_request_list: None,
            max_message_size: None,
            renew_duration: None,
            rebind_duration: None,
            client_identifier: None,
        }
    }

    fn sent(c: &mut DhcpClient) -> DhcpTransmit {
        c.poll_transmit().expect("a message to send")
    }

    fn events(c: &mut DhcpClient) -> Vec<DhcpEvent> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// Runs the client from INIT to BOUND at time 0 (probe without
    /// conflict) and returns the lease.
    fn bound() -> (DhcpClient, Lease) {
        let mut c = client();
        c.handle_timeout(Instant::ZERO);
        let discover = sent(&mut c);
        c.handle_message(Instant::ZERO, &reply(&discover, DhcpMessageType::Offer, OFFERED));
        let request = sent(&mut c);
        c.handle_message(Instant::ZERO, &reply(&request, DhcpMessageType::Ack, OFFERED));
        assert_eq!(events(&mut c), [DhcpEvent::Probe(OFFERED)]);
        c.handle_probe_result(Instant::ZERO, false);
        let [DhcpEvent::Bound(lease)] = events(&mut c)[..] else { panic!("not bound") };
        (c, lease)
    }

    mod selecting {
        use super::*;

        #[test]
        fn discover_is_broadcast_from_zero_with_client_id_rfc_2131_table_5() {
            let mut c = client();
            assert_eq!(c.poll_deadline(), Some(Instant::ZERO));
            c.handle_timeout(Instant::ZERO);
            let m = sent(&mut c);
            assert_eq!((m.src, m.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
            let repr = m.repr();
            assert_eq!(repr.message_type, DhcpMessageType::Discover);
            assert_eq!(repr.client_ip, Ipv4Addr::UNSPECIFIED);
            assert_eq!(repr.client_identifier, Some(&[1, 2, 0, 0, 0, 0, 1][..]));
            assert_eq!(repr.parameter_request_list, Some(PARAMETER_REQUEST_LIST));
            assert_eq!((repr.requested_ip, repr.server_identifier), (None, None));
            assert_eq!(c.state(), DhcpState::Selecting);
        }

        #[test]
        fn retransmissions_back_off_4_to_64_s_within_1_s_rfc_2131_4_1() {
            let mut c = client();
            c.handle_timeout(Instant::ZERO);
            sent(&mut c);
            let mut last = Instant::ZERO;
            for expected in [4u64, 8, 16, 32, 64, 64, 64] {
                let next = c.poll_deadline().unwrap();
                let gap = next - last;
                let lo = Duration::from_secs(expected - 1);
                let hi = Duration::from_secs(expected + 1);
                assert!(gap >= lo && gap <= hi, "gap {gap:?} for {expected} s");
                // Nothing is sent before the deadline.
                c.handle_timeout(Instant::from_nanos(next.as_nanos() - 1_000_000));
                assert!(c.poll_transmit().is_none());
                c.handle_timeout(next);
                let m = sent(&mut c);
                assert_eq!(m.repr().message_type, DhcpMessageType::Discover);
                assert_eq!(m.repr().secs, (next - Instant::ZERO).as_secs() as u16, "secs counts from the start");
                last = next;
            }
        }

        #[test]
        fn offers_of_other_transactions_clients_or_without_server_are_ignored() {
            let mut c = client();
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            let mut wrong_xid = reply(&discover, DhcpMessageType::Offer, OFFERED);
            wrong_xid.transaction_id ^= 1;
            let mut wrong_mac = reply(&discover, DhcpMessageType::Offer, OFFERED);
            wrong_mac.client_hardware_addr = MacAddress([2, 0, 0, 0, 0, 2]);
            let mut no_server = reply(&discover, DhcpMessageType::Offer, OFFERED);
            no_server.server_identifier = None;
            let mut bad_mask = reply(&discover, DhcpMessageType::Offer, OFFERED);
            bad_mask.subnet_mask = Some(Ipv4Addr::new(255, 0, 255, 0));
            let broadcast = reply(&discover, DhcpMessageType::Offer, Ipv4Addr::BROADCAST);
            let ack = reply(&discover, DhcpMessageType::Ack, OFFERED);
            for m in [wrong_xid, wrong_mac, no_server, bad_mask, broadcast, ack] {
                c.handle_message(Instant::ZERO, &m);
                assert_eq!(c.state(), DhcpState::Selecting, "{m:?}");
                assert!(c.poll_transmit().is_none());
            }
            assert_eq!(c.stats().ignored, 6);
        }

        #[test]
        fn first_offer_is_requested_with_server_id_rfc_2131_4_4_1() {
            let mut c = client();
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            c.handle_message(at(0.5), &reply(&discover, DhcpMessageType::Offer, OFFERED));
            let request = sent(&mut c);
            let repr = request.repr();
            assert_eq!(repr.message_type, DhcpMessageType::Request);
            assert_eq!(repr.transaction_id, discover.transaction_id, "same transaction as the offer");
            assert_eq!((repr.requested_ip, repr.server_identifier), (Some(OFFERED), Some(SERVER)));
            assert_eq!(
                (request.src, request.dst, repr.client_ip),
                (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, Ipv4Addr::UNSPECIFIED)
            );
            assert_eq!(c.state(), DhcpState::Requesting);
        }
    }

    mod requesting {
        use super::*;

        fn requesting() -> (DhcpClient, DhcpTransmit) {
            let mut c = client();
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&discover, DhcpMessageType::Offer, OFFERED));
            let request = sent(&mut c);
            (c, request)
        }

        #[test]
        fn unanswered_requests_restart_after_the_retransmissions_rfc_2131_4_4_1() {
            let (mut c, _) = requesting();
            for _ in 1..DhcpConfig::default().request_attempts {
                let next = c.poll_deadline().unwrap();
                c.handle_timeout(next);
                assert_eq!(sent(&mut c).repr().message_type, DhcpMessageType::Request);
            }
            let next = c.poll_deadline().unwrap();
            c.handle_timeout(next);
            assert_eq!(c.state(), DhcpState::Init);
            assert!(c.poll_transmit().is_none());
            c.handle_timeout(next);
            assert_eq!(sent(&mut c).repr().message_type, DhcpMessageType::Discover);
        }

        #[test]
        fn nak_restarts_and_repeated_naks_back_off_rfc_2131_3_1_4() {
            let (mut c, request) = requesting();
            c.handle_message(Instant::ZERO, &reply(&request, DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED));
            assert_eq!(c.state(), DhcpState::Init);
            assert_eq!(c.poll_deadline(), Some(Instant::ZERO), "first NAK: start over at once");
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&discover, DhcpMessageType::Offer, OFFERED));
            let request = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&request, DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED));
            assert_eq!(c.poll_deadline(), Some(at(4.0)), "second NAK in a row: back off");
            assert!(events(&mut c).is_empty(), "nothing was configured, nothing to remove");
        }

        #[test]
        fn nak_or_ack_from_another_server_is_ignored() {
            let (mut c, request) = requesting();
            let mut nak = reply(&request, DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED);
            nak.server_identifier = Some(Ipv4Addr::new(10, 0, 0, 2));
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            ack.server_identifier = Some(Ipv4Addr::new(10, 0, 0, 2));
            let other_address = reply(&request, DhcpMessageType::Ack, Ipv4Addr::new(10, 0, 0, 51));
            for m in [nak, ack, other_address] {
                c.handle_message(Instant::ZERO, &m);
                assert_eq!(c.state(), DhcpState::Requesting);
            }
        }

        #[test]
        fn ack_is_probed_then_bound_with_times_from_the_request_rfc_2131_4_4_1() {
            let (mut c, request) = requesting();
            c.handle_message(at(2.0), &reply(&request, DhcpMessageType::Ack, OFFERED));
            assert_eq!(c.state(), DhcpState::Probing);
            assert_eq!(events(&mut c), [DhcpEvent::Probe(OFFERED)]);
            assert_eq!(c.poll_deadline(), None);
            assert_eq!(c.lease(), None, "not ours before the probe");
            c.handle_probe_result(at(7.0), false);
            let lease = c.lease().unwrap();
            assert_eq!(events(&mut c), [DhcpEvent::Bound(lease)]);
            assert_eq!(lease.address, Ipv4Cidr::new(OFFERED, 24).unwrap());
            assert_eq!(lease.gateway, Some(SERVER));
            assert_eq!(lease.dns_servers.as_slice(), [SERVER, Ipv4Addr::new(9, 9, 9, 9)]);
            // RFC 2131 §4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease,
            // counted from the REQUEST (sent at 0), not the ACK.
            assert_eq!(lease.renew_at, Some(at(500.0)));
            assert_eq!(lease.rebind_at, Some(at(875.0)));
            assert_eq!(lease.expires_at, Some(at(1000.0)));
            assert_eq!(c.poll_deadline(), lease.renew_at);
        }

        #[test]
        fn conflict_declines_and_restarts_after_10_s_rfc_2131_3_1_5() {
            let (mut c, request) = requesting();
            c.handle_message(Instant::ZERO, &reply(&request, DhcpMessageType::Ack, OFFERED));
            events(&mut c);
            c.handle_probe_result(at(5.0), true);
            let decline = sent(&mut c);
            let repr = decline.repr();
            assert_eq!(repr.message_type, DhcpMessageType::Decline);
            assert_eq!((repr.requested_ip, repr.server_identifier), (Some(OFFERED), Some(SERVER)));
            assert_eq!((decline.src, decline.dst), (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST));
            assert_eq!(repr.parameter_request_list, None);
            assert_eq!(c.state(), DhcpState::Init);
            assert_eq!(c.poll_deadline(), Some(at(15.0)));
            assert!(events(&mut c).is_empty());
            assert_eq!(c.stats().declines, 1);
        }

        #[test]
        fn without_probing_the_ack_binds_at_once() {
            let config = DhcpConfig { probe: None, ..DhcpConfig::default() };
            let mut c = DhcpClient::new(MAC, config, 1, Instant::ZERO);
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&discover, DhcpMessageType::Offer, OFFERED));
            let request = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&request, DhcpMessageType::Ack, OFFERED));
            assert_eq!(c.state(), DhcpState::Bound);
            assert!(matches!(events(&mut c)[..], [DhcpEvent::Bound(_)]));
        }
    }

    mod bound {
        use super::*;

        #[test]
        fn renewing_at_t1_unicasts_to_the_server_and_ack_extends_rfc_2131_4_4_5() {
            let (mut c, lease) = bound();
            c.handle_timeout(at(499.0));
            assert!(c.poll_transmit().is_none());
            c.handle_timeout(at(500.0));
            let request = sent(&mut c);
            let repr = request.repr();
            assert_eq!(c.state(), DhcpState::Renewing);
            assert_eq!((request.src, request.dst), (OFFERED, SERVER));
            assert_eq!(repr.client_ip, OFFERED);
            assert_eq!((repr.requested_ip, repr.server_identifier), (None, None));
            // Half of the 375 s left until T2.
            assert_eq!(c.poll_deadline(), Some(at(687.5)));
            c.handle_message(at(500.5), &reply(&request, DhcpMessageType::Ack, OFFERED));
            let extended = c.lease().unwrap();
            assert_eq!(events(&mut c), [DhcpEvent::Bound(extended)]);
            assert_eq!(extended.address, lease.address);
            assert_eq!(extended.expires_at, Some(at(1500.0)), "counted from the renewing REQUEST");
            assert_eq!(c.state(), DhcpState::Bound);
        }

        #[test]
        fn renewal_retransmits_no_faster_than_60_s_then_rebinds_at_t2_then_expires() {
            let (mut c, _) = bound();
            c.handle_timeout(at(500.0));
            sent(&mut c);
            let mut now = at(500.0);
            let mut renewals = 1;
            while c.state() == DhcpState::Renewing {
                let next = c.poll_deadline().unwrap();
                assert!(next - now >= Duration::from_secs(60) || next == at(875.0), "{now} → {next}");
                now = next;
                c.handle_timeout(now);
                let m = sent(&mut c);
                renewals += 1;
                assert!(renewals < 10, "renewals are bounded");
                if c.state() == DhcpState::Renewing {
                    assert_eq!(m.dst, SERVER);
                }
            }
            assert_eq!((c.state(), now), (DhcpState::Rebinding, at(875.0)));
            for _ in 0..10 {
                let next = c.poll_deadline().unwrap();
                now = next;
                c.handle_timeout(now);
                if c.state() != DhcpState::Rebinding {
                    break;
                }
                let m = sent(&mut c);
                assert_eq!((m.src, m.dst, m.repr().client_ip), (OFFERED, Ipv4Addr::BROADCAST, OFFERED));
            }
            assert_eq!(now, at(1000.0));
            assert_eq!(events(&mut c), [DhcpEvent::Unbound(LeaseLost::Expired)]);
            assert_eq!((c.state(), c.lease()), (DhcpState::Init, None));
        }

        #[test]
        fn rebinding_ack_from_another_server_takes_over_rfc_2131_4_4_5() {
            let (mut c, _) = bound();
            c.handle_timeout(at(875.0));
            assert_eq!(c.state(), DhcpState::Rebinding);
            let request = sent(&mut c);
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            ack.server_identifier = Some(Ipv4Addr::new(10, 0, 0, 2));
            c.handle_message(at(876.0), &ack);
            let lease = c.lease().unwrap();
            assert_eq!(lease.server, Ipv4Addr::new(10, 0, 0, 2), "renewals now go to the new server");
            assert_eq!(c.state(), DhcpState::Bound);
        }

        #[test]
        fn nak_while_renewing_unbinds_and_restarts() {
            let (mut c, _) = bound();
            c.handle_timeout(at(500.0));
            let request = sent(&mut c);
            c.handle_message(at(501.0), &reply(&request, DhcpMessageType::Nak, Ipv4Addr::UNSPECIFIED));
            assert_eq!(events(&mut c), [DhcpEvent::Unbound(LeaseLost::Nak)]);
            assert_eq!(c.state(), DhcpState::Init);
            c.handle_timeout(at(501.0));
            assert_eq!(sent(&mut c).repr().message_type, DhcpMessageType::Discover);
        }

        #[test]
        fn ack_with_another_address_unbinds_and_probes_it() {
            let (mut c, _) = bound();
            c.handle_timeout(at(500.0));
            let request = sent(&mut c);
            let other = Ipv4Addr::new(10, 0, 0, 60);
            c.handle_message(at(501.0), &reply(&request, DhcpMessageType::Ack, other));
            assert_eq!(events(&mut c), [DhcpEvent::Unbound(LeaseLost::AddressChanged), DhcpEvent::Probe(other)]);
        }

        #[test]
        fn server_t1_t2_are_used_when_consistent_and_tiny_leases_are_clamped() {
            let (mut c, _) = bound();
            c.handle_timeout(at(500.0));
            let request = sent(&mut c);
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            ack.renew_duration = Some(10);
            ack.rebind_duration = Some(20);
            c.handle_message(at(500.0), &ack);
            let lease = c.lease().unwrap();
            assert_eq!((lease.renew_at, lease.rebind_at), (Some(at(510.0)), Some(at(520.0))));
            // A 1 s lease is timed as the 10 s minimum; T2 = 3 s fits in
            // it, T1 = 9 s is past T2 and falls back to half the lease,
            // capped at T2.
            c.handle_timeout(at(510.0));
            let request = sent(&mut c);
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            (ack.lease_duration, ack.renew_duration, ack.rebind_duration) = (Some(1), Some(9), Some(3));
            c.handle_message(at(510.0), &ack);
            let lease = c.lease().unwrap();
            assert_eq!((lease.renew_at, lease.rebind_at), (Some(at(513.0)), Some(at(513.0))));
            assert_eq!(lease.expires_at, Some(at(520.0)));
            // T2 past the lease is ignored too: defaults 5 s and 8.75 s.
            c.handle_timeout(at(513.0));
            let request = sent(&mut c);
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            (ack.lease_duration, ack.renew_duration, ack.rebind_duration) = (Some(10), None, Some(11));
            c.handle_message(at(513.0), &ack);
            let lease = c.lease().unwrap();
            assert_eq!((lease.renew_at, lease.rebind_at), (Some(at(518.0)), Some(at(521.75))));
        }

        #[test]
        fn infinite_lease_never_renews() {
            let mut c = client();
            c.handle_timeout(Instant::ZERO);
            let discover = sent(&mut c);
            c.handle_message(Instant::ZERO, &reply(&discover, DhcpMessageType::Offer, OFFERED));
            let request = sent(&mut c);
            let mut ack = reply(&request, DhcpMessageType::Ack, OFFERED);
            ack.lease_duration = Some(INFINITE_LEASE);
            c.handle_message(Instant::ZERO, &ack);
            c.handle_probe_result(Instant::ZERO, false);
            assert_eq!(c.lease().unwrap().expires_at, None);
            assert_eq!(c.poll_deadline(), None);
        }
    }

    #[test]
    fn prefix_comes_from_the_mask_or_the_class() {
        let mut m = reply(
            &client().message(Instant::ZERO, DhcpMessageType::Discover, SERVER, SERVER),
            DhcpMessageType::Ack,
            OFFERED,
        );
        assert_eq!(prefix_len(&m), Some(24));
        m.subnet_mask = Some(Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(prefix_len(&m), Some(32));
        m.subnet_mask = Some(Ipv4Addr::UNSPECIFIED);
        assert_eq!(prefix_len(&m), Some(0));
        m.subnet_mask = Some(Ipv4Addr::new(255, 255, 0, 255));
        assert_eq!(prefix_len(&m), None);
        m.subnet_mask = None;
        assert_eq!(prefix_len(&m), Some(8), "10/8 is class A");
        m.your_ip = Ipv4Addr::new(192, 168, 1, 5);
        assert_eq!(prefix_len(&m), Some(24));
    }

    #[test]
    fn emitted_messages_parse_back() {
        let (mut c, _) = bound();
        c.handle_timeout(at(500.0));
        let m = sent(&mut c);
        let repr = m.repr();
        let mut bytes = std::vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut bytes[..]));
        let parsed = DhcpRepr::parse(&DhcpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(parsed, repr);
    }
}
