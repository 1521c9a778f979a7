//! [`DhcpDriver`], which runs a [`DhcpClient`] over a UDP socket and applies its leases.

use core::cell::{Cell, RefCell};
use core::convert::Infallible;
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::time::Duration;

use futures::future::{self, Either};
use mirage_types::arp::Arp;
use mirage_types::ethernet::Ethernet;
use mirage_types::ip::{Ip, IpProtocol, WriteOptions};
use mirage_types::time::{Instant, Sleep};
use mirage_types::udp::UdpSocket;

use crate::arp::ArpLayer;
use crate::ipv4::{Ipv4Config, Ipv4Layer};
use crate::wire::dhcp::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use crate::wire::{DhcpPacket, DhcpRepr, UdpPacket, UdpRepr};

use super::{DhcpClient, DhcpEvent, DhcpState, DhcpStats, DhcpTransmit, Lease};

/// A static configuration applied when DHCP has given no lease `after` the
/// driver started (and again whenever a lease is lost after that), until a
/// lease replaces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticFallback {
    /// The configuration to fall back to.
    pub config: Ipv4Config,
    /// How long to wait for a first lease.
    pub after: Duration,
}

/// Runs a [`DhcpClient`] over a UDP socket bound to port 68 and applies
/// what it decides to an [`Ipv4Layer`]: the async half of DHCP.
///
/// [`crate::stack::NetStack`] builds one when asked for DHCP and runs
/// [`DhcpDriver::run`] inside [`crate::stack::NetStack::run`].
pub struct DhcpDriver<S> {
    client: RefCell<DhcpClient>,
    socket: S,
    fallback: Option<(StaticFallback, Instant)>,
    fallback_active: Cell<bool>,
    send_errors: Cell<u64>,
}

impl<S> core::fmt::Debug for DhcpDriver<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhcpDriver")
            .field("client", &self.client)
            .field("fallback", &self.fallback)
            .field("fallback_active", &self.fallback_active.get())
            .finish_non_exhaustive()
    }
}

impl<S: UdpSocket> DhcpDriver<S> {
    /// A driver for `client` receiving on `socket` (bound to 0.0.0.0:68:
    /// servers answer to port 68 at the offered address or broadcast),
    /// with an optional static fallback counted from `now`.
    pub fn new(client: DhcpClient, socket: S, fallback: Option<StaticFallback>, now: Instant) -> DhcpDriver<S> {
        DhcpDriver {
            client: RefCell::new(client),
            socket,
            fallback: fallback.map(|f| (f, now + f.after)),
            fallback_active: Cell::new(false),
            send_errors: Cell::new(0),
        }
    }

    /// The client's state.
    pub fn state(&self) -> DhcpState {
        self.client.borrow().state()
    }

    /// The lease in use, if any.
    pub fn lease(&self) -> Option<Lease> {
        self.client.borrow().lease()
    }

    /// The client's counters.
    pub fn stats(&self) -> DhcpStats {
        self.client.borrow().stats()
    }

    /// Messages that could not be sent (no route to the server, link
    /// failure); the retransmission timers try again.
    pub fn send_errors(&self) -> u64 {
        self.send_errors.get()
    }

    /// Whether the static fallback is the configuration in effect.
    pub fn fallback_active(&self) -> bool {
        self.fallback_active.get()
    }

    /// Runs the client for ever: sends its messages, receives the
    /// servers', probes acknowledged addresses with `arp`, and configures
    /// `ip` with each lease (or the fallback, or nothing when a lease is
    /// lost). Failures to send are logged and counted
    /// ([`Self::send_errors`]); the client's own timers retry.
    ///
    /// `clock` must be the clock the layers use. Cancel-safe between
    /// messages: dropping the future loses at most a message being sent.
    pub async fn run<E, A, C, E2, C2>(
        &self,
        ip: &Ipv4Layer<E, A, C>,
        arp: &ArpLayer<E2, C2>,
        clock: &impl Sleep,
    ) -> Infallible
    where
        E: Ethernet,
        A: Arp,
        C: mirage_types::time::MonotonicClock,
        E2: Ethernet,
        C2: Sleep,
    {
        loop {
            self.apply_fallback(ip, clock.now()).await;
            self.flush(ip, arp, clock).await;
            let deadline = {
                let client = self.client.borrow();
                let fallback =
                    self.fallback.filter(|_| !self.fallback_active.get() && client.lease().is_none()).map(|(_, at)| at);
                match (client.poll_deadline(), fallback) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let received = {
                let receive = pin!(self.socket.recv_from());
                let timer = pin!(async {
                    match deadline {
                        Some(at) => clock.sleep_until(at).await,
                        None => future::pending().await,
                    }
                });
                match future::select(receive, timer).await {
                    Either::Left((Ok(datagram), _)) => Some(datagram),
                    Either::Left((Err(_), _)) | Either::Right(_) => None,
                }
            };
            let now = clock.now();
            let Some(datagram) = received else {
                self.client.borrow_mut().handle_timeout(now);
                continue;
            };
            if datagram.src.port() != DHCP_SERVER_PORT {
                continue;
            }
            let parsed = DhcpPacket::new_checked(&datagram.payload[..]).and_then(|p| DhcpRepr::parse(&p));
            match parsed {
                Ok(message) => self.client.borrow_mut().handle_message(now, &message),
                Err(e) => log::debug!("DHCP: dropping a message from {}: {e}", datagram.src),
            }
        }
    }

    /// Applies the fallback once its time has come without a lease.
    async fn apply_fallback<E: Ethernet, A: Arp, C>(&self, ip: &Ipv4Layer<E, A, C>, now: Instant)
    where
        C: mirage_types::time::MonotonicClock,
    {
        let Some((fallback, at)) = self.fallback else { return };
        if self.fallback_active.get() || now < at || self.client.borrow().lease().is_some() {
            return;
        }
        log::info!("DHCP: no lease after {:?}; using the static fallback {}", fallback.after, fallback.config.address);
        self.fallback_active.set(true);
        self.client.borrow_mut().set_broadcast_replies(true);
        if let Err(e) = ip.configure(Some(fallback.config)).await {
            log::warn!("DHCP: applying the static fallback: {e}");
        }
    }

    /// Sends what the client queued and carries out its events, until it
    /// has nothing more to do. Ends: each event handled queues at most one
    /// more message and one more event, and only a probe result does.
    async fn flush<E, A, C, E2, C2>(&self, ip: &Ipv4Layer<E, A, C>, arp: &ArpLayer<E2, C2>, clock: &impl Sleep)
    where
        E: Ethernet,
        A: Arp,
        C: mirage_types::time::MonotonicClock,
        E2: Ethernet,
        C2: Sleep,
    {
        loop {
            let transmit = self.client.borrow_mut().poll_transmit();
            if let Some(message) = transmit {
                if let Err(e) = send(ip, &message).await {
                    self.send_errors.set(self.send_errors.get() + 1);
                    log::warn!("DHCP: sending {:?} to {}: {e}", message.message_type(), message.dst);
                }
                continue;
            }
            let event = self.client.borrow_mut().poll_event();
            match event {
                None => return,
                Some(DhcpEvent::Probe(address)) => {
                    let probe = self.client.borrow().config().probe.unwrap_or_default();
                    let conflict = arp.probe(address, probe).await.unwrap_or_else(|e| {
                        // The probe is a safety check, not a gate: without
                        // it the address is used as DHCP gave it.
                        log::warn!("DHCP: cannot probe {address} for conflicts: {e}");
                        false
                    });
                    if conflict {
                        log::warn!("DHCP: {address} is in use by another host; declining it");
                    }
                    self.client.borrow_mut().handle_probe_result(clock.now(), conflict);
                }
                Some(DhcpEvent::Bound(lease)) => {
                    self.fallback_active.set(false);
                    self.client.borrow_mut().set_broadcast_replies(false);
                    if ip.config() != Some(lease.ipv4_config()) {
                        log::info!("DHCP: bound {lease}");
                        if let Err(e) = ip.configure(Some(lease.ipv4_config())).await {
                            log::warn!("DHCP: configuring {}: {e}", lease.address);
                        }
                    } else {
                        log::debug!("DHCP: lease extended: {lease}");
                    }
                }
                Some(DhcpEvent::Unbound(reason)) => {
                    let fallback = self.fallback.filter(|(_, at)| clock.now() >= *at).map(|(f, _)| f.config);
                    log::warn!("DHCP: lease lost ({reason:?})");
                    self.fallback_active.set(fallback.is_some());
                    self.client.borrow_mut().set_broadcast_replies(fallback.is_some());
                    if let Err(e) = ip.configure(fallback).await {
                        log::warn!("DHCP: removing the lost address: {e}");
                    }
                }
            }
        }
    }
}

/// Sends one client message as a UDP datagram from port 68 to port 67,
/// from the message's own source (0.0.0.0 before a lease, even with a
/// static fallback configured).
async fn send<I: Ip<Addr = Ipv4Addr>>(ip: &I, message: &DhcpTransmit) -> Result<(), I::Error> {
    let repr = message.repr();
    let udp = UdpRepr { src_port: DHCP_CLIENT_PORT, dst_port: DHCP_SERVER_PORT, payload_len: repr.buffer_len() };
    let options = WriteOptions { src: Some(message.src), ..WriteOptions::default() };
    ip.write(message.dst, IpProtocol::UDP, options, udp.buffer_len(), |buf| {
        udp.emit(&mut UdpPacket::new_unchecked(buf), message.src, message.dst, |payload| {
            repr.emit(&mut DhcpPacket::new_unchecked(payload))
        })
    })
    .await
}

/// The UDP address DHCP clients receive on: 0.0.0.0:68.
pub const CLIENT_BIND_ADDR: SocketAddr =
    SocketAddr::V4(core::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DHCP_CLIENT_PORT));
