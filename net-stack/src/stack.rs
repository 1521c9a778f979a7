//! The whole stack on one network device: Ethernet, ARP, IPv4, ICMP, UDP
//! and TCP, implementing [`mirage_types::stack::Stack`].
//!
//! Build it with [`StackBuilder`], then run [`NetStack::run`] (the input
//! loop: it receives frames, dispatches them, and drives the timers; and
//! the DHCP client, when the stack was built with one) as a task on the
//! platform's event loop. Everything else is used through the [`Stack`]
//! trait.
//!
//! # IPv4 configuration
//!
//! [`StackBuilder::ipv4`] gives a static address; [`StackBuilder::dhcp`]
//! runs the DHCP client ([`crate::dhcp`]) and configures each lease as it
//! comes (the stack has no address until then); and
//! [`StackBuilder::dhcp_with_fallback`] does the same but applies a static
//! configuration if no lease has come after a while. [`NetStack::dhcp`]
//! shows the client's state and lease.
//!
//! # TCP
//!
//! [`Stack::tcp`] is a [`TcpLayer`] (see [`crate::tcp`] for what it does
//! and its bounds), configured with [`StackBuilder::tcp_config`] and
//! [`StackBuilder::tcp_limits`]. [`NetStack::run`] feeds it the TCP
//! datagrams received and runs its sender and timers beside the input
//! loop. [`NetStack::usage`] counts its connections, so tests can check
//! that none leak.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::net::{IpAddr, Ipv4Addr};
use core::pin::Pin;
use core::time::Duration;

use futures::future::{self, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use mirage_types::arp::Arp;
use mirage_types::devices::{DeviceError, DeviceErrorKind};
use mirage_types::ethernet::{EtherType, Ethernet, EthernetError};
use mirage_types::ip::{Ip, IpError, IpPacket, IpProtocol, Ipv4Cidr};
use mirage_types::net::NetworkDevice;
use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::stack::Stack;
use mirage_types::time::{Instant, Sleep};
use mirage_types::udp::{Udp, UdpError};

use crate::arp::{ArpConfig, ArpLayer};
use crate::dhcp::{DhcpClient, DhcpConfig, DhcpDriver, DhcpState, StaticFallback, CLIENT_BIND_ADDR};
use crate::ethernet::EthernetLayer;
use crate::icmp::{IcmpConfig, IcmpLayer};
use crate::ipv4::reassembly::ReassemblyConfig;
use crate::ipv4::{Ipv4Config, Ipv4Layer};
use crate::tcp::{RecvMemory, TcpConfig, TcpLayer, TcpLimits};
use crate::udp::{UdpConfig, UdpInput, UdpLayer, UdpSocketHandle};
use crate::wire::tcp::{TcpFlags, TCP_HEADER_LEN};
use crate::wire::TcpPacket;

/// The Ethernet layer of a [`NetStack`].
pub type StackEthernet<N> = Rc<EthernetLayer<N>>;
/// The ARP layer of a [`NetStack`].
pub type StackArp<N, P> = Rc<ArpLayer<StackEthernet<N>, P>>;
/// The IPv4 layer of a [`NetStack`].
pub type StackIpv4<N, P> = Rc<Ipv4Layer<StackEthernet<N>, StackArp<N, P>, P>>;
/// The ICMP layer of a [`NetStack`].
pub type StackIcmp<N, P> = IcmpLayer<StackIpv4<N, P>, P>;
/// The UDP layer of a [`NetStack`].
pub type StackUdp<N, P> = UdpLayer<StackIpv4<N, P>, P>;
/// The TCP layer of a [`NetStack`].
pub type StackTcp<N, P> = TcpLayer<StackIpv4<N, P>, P>;
/// The DHCP client of a [`NetStack`].
pub type StackDhcp<N, P> = DhcpDriver<UdpSocketHandle<StackIpv4<N, P>, P>>;

/// Responses (ICMP replies, errors) being sent by the input loop at once
/// at most; beyond it, further ones are dropped and counted. Responses run
/// beside the loop because sending may wait for ARP, whose reply only the
/// loop can receive.
pub const MAX_RESPONSES_IN_FLIGHT: usize = 32;

/// Why a stack could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The platform's random source failed.
    #[error("building the network stack: {0}")]
    Random(#[from] RandomError),
    /// Applying the static IPv4 configuration failed.
    #[error("configuring IPv4: {0}")]
    Ip(#[from] IpError),
    /// The DHCP client could not bind UDP port 68.
    #[error("starting the DHCP client: {0}")]
    Dhcp(#[from] UdpError),
}

/// [`NetStack::wait_for_address`] gave up: the stack still had no IPv4
/// address when its time was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressTimeout {
    /// How long it waited.
    pub waited: Duration,
    /// The DHCP client's state at the end, when the stack has one.
    pub dhcp: Option<DhcpState>,
}

impl core::fmt::Display for AddressTimeout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.dhcp {
            Some(state) => write!(f, "no DHCP lease after {:?} (state {state})", self.waited),
            None => write!(f, "no IPv4 address after {:?}, and no DHCP client to get one", self.waited),
        }
    }
}

impl core::error::Error for AddressTimeout {}

/// How long [`NetStack::start`] waits for a DHCP lease.
pub const ADDRESS_WAIT: Duration = Duration::from_secs(60);

/// Why [`NetStack::start`] could not hand out a stack.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stack could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No address in time.
    #[error(transparent)]
    NoAddress(#[from] AddressTimeout),
}

impl StartError {
    /// The error `Devices::stack` returns for the network device `name`.
    pub fn for_device(self, name: &str) -> DeviceError {
        let kind = match self {
            StartError::NoAddress(_) => DeviceErrorKind::NoAddress,
            StartError::Build(_) => DeviceErrorKind::Setup,
        };
        DeviceError::new(kind, name, self)
    }
}

/// How often [`NetStack::wait_for_address`] looks for an address: the
/// address is a state the input loop sets, not an event one can wait on.
pub const ADDRESS_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How a [`NetStack`] gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Mode {
    /// A fixed address, prefix and gateway.
    Static(Ipv4Config),
    /// From DHCP; no address until the first lease.
    Dhcp(DhcpConfig),
    /// From DHCP, but `fallback.config` is applied if no lease has come
    /// `fallback.after` the stack was built (or when a lease is lost after
    /// that), until a lease replaces it.
    DhcpWithFallback {
        /// The DHCP client's timers.
        dhcp: DhcpConfig,
        /// The static configuration and when to apply it.
        fallback: StaticFallback,
    },
}

/// Configures and builds a [`NetStack`]. Defaults: no address (configure
/// one with [`StackBuilder::ipv4`] or later with [`NetStack::configure`]),
/// and each layer's default bounds.
#[derive(Debug)]
pub struct StackBuilder<N, P> {
    device: N,
    platform: P,
    ipv4: Option<Ipv4Mode>,
    arp: ArpConfig,
    reassembly: ReassemblyConfig,
    icmp: IcmpConfig,
    udp: UdpConfig,
    tcp: TcpConfig,
    tcp_limits: TcpLimits,
}

impl<N: NetworkDevice, P: Sleep + Random + Clone> StackBuilder<N, P> {
    /// A builder for a stack on `device`, taking time and randomness from
    /// `platform`.
    pub fn new(device: N, platform: P) -> StackBuilder<N, P> {
        StackBuilder {
            device,
            platform,
            ipv4: None,
            arp: ArpConfig::default(),
            reassembly: ReassemblyConfig::default(),
            icmp: IcmpConfig::default(),
            udp: UdpConfig::default(),
            tcp: TcpConfig::default(),
            tcp_limits: TcpLimits::default(),
        }
    }

    /// A static address, prefix and optional gateway (replaces an earlier
    /// IPv4 choice).
    pub fn ipv4(self, config: Ipv4Config) -> Self {
        self.ipv4_mode(Ipv4Mode::Static(config))
    }

    /// The address from DHCP (replaces an earlier IPv4 choice).
    pub fn dhcp(self, config: DhcpConfig) -> Self {
        self.ipv4_mode(Ipv4Mode::Dhcp(config))
    }

    /// `address` (with `gateway`) when given, DHCP with the default timers
    /// otherwise: the choice an `--ipv4 ADDR/PREFIX [--ipv4-gateway GW]`
    /// flag makes (replaces an earlier IPv4 choice).
    pub fn ipv4_or_dhcp(self, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) -> Self {
        match address {
            Some(address) => self.ipv4(Ipv4Config { address, gateway }),
            None => self.dhcp(DhcpConfig::default()),
        }
    }

    /// The address from DHCP, or `fallback` if no lease has come `after`
    /// the stack was built (replaces an earlier IPv4 choice).
    pub fn dhcp_with_fallback(self, config: DhcpConfig, fallback: Ipv4Config, after: Duration) -> Self {
        self.ipv4_mode(Ipv4Mode::DhcpWithFallback {
            dhcp: config,
            fallback: StaticFallback { config: fallback, after },
        })
    }

    /// How the stack gets its address (replaces an earlier IPv4 choice).
    pub fn ipv4_mode(mut self, mode: Ipv4Mode) -> Self {
        self.ipv4 = Some(mode);
        self
    }

    /// ARP bounds and timers.
    pub fn arp_config(mut self, config: ArpConfig) -> Self {
        self.arp = config;
        self
    }

    /// Reassembly bounds.
    pub fn reassembly_config(mut self, config: ReassemblyConfig) -> Self {
        self.reassembly = config;
        self
    }

    /// ICMP rate limits.
    pub fn icmp_config(mut self, config: IcmpConfig) -> Self {
        self.icmp = config;
        self
    }

    /// UDP receive-queue bounds.
    pub fn udp_config(mut self, config: UdpConfig) -> Self {
        self.udp = config;
        self
    }

    /// The settings every TCP connection starts from (its MTU is lowered
    /// to the device's when that is smaller).
    pub fn tcp_config(mut self, config: TcpConfig) -> Self {
        self.tcp = config;
        self
    }

    /// TCP connection, listener and backlog bounds.
    pub fn tcp_limits(mut self, limits: TcpLimits) -> Self {
        self.tcp_limits = limits;
        self
    }

    /// Builds the stack and applies the static configuration, announcing
    /// the address by ARP, or prepares the DHCP client (which starts when
    /// [`NetStack::run`] runs). Errors if the random source fails, the
    /// announcement cannot be sent, or the DHCP client cannot bind UDP port
    /// 68.
    pub async fn build(self) -> Result<NetStack<N, P>, BuildError> {
        let mut seeds = [0u8; 12];
        self.platform.fill(&mut seeds)?;
        let eth = Rc::new(EthernetLayer::new(self.device));
        let arp = Rc::new(ArpLayer::new(eth.clone(), self.platform.clone(), self.arp));
        let ip = Rc::new(Ipv4Layer::new(
            eth.clone(),
            arp.clone(),
            self.platform.clone(),
            u16::from_le_bytes([seeds[0], seeds[1]]),
            self.reassembly,
        ));
        let icmp =
            IcmpLayer::new(ip.clone(), self.platform.clone(), u16::from_le_bytes([seeds[2], seeds[3]]), self.icmp);
        let udp = UdpLayer::new(ip.clone(), self.platform.clone(), self.udp);
        let tcp = TcpLayer::new(ip.clone(), self.platform.clone(), self.tcp, self.tcp_limits)?;
        let stack =
            NetStack { eth, arp, ip, icmp, udp, tcp, dhcp: None, platform: self.platform, responses_dropped: 0.into() };
        let (dhcp, fallback) = match self.ipv4 {
            None => return Ok(stack),
            Some(Ipv4Mode::Static(config)) => {
                stack.configure(Some(config)).await?;
                return Ok(stack);
            }
            Some(Ipv4Mode::Dhcp(dhcp)) => (dhcp, None),
            Some(Ipv4Mode::DhcpWithFallback { dhcp, fallback }) => (dhcp, Some(fallback)),
        };
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&seeds[4..]);
        let now = stack.platform.now();
        let client = DhcpClient::new(stack.eth.mac(), dhcp, u64::from_le_bytes(seed), now);
        let socket = stack.udp.bind(CLIENT_BIND_ADDR).await?;
        Ok(NetStack { dhcp: Some(DhcpDriver::new(client, socket, fallback, now)), ..stack })
    }
}

/// A TCP/IP stack on one network device.
pub struct NetStack<N, P> {
    eth: StackEthernet<N>,
    arp: StackArp<N, P>,
    ip: StackIpv4<N, P>,
    icmp: StackIcmp<N, P>,
    udp: StackUdp<N, P>,
    tcp: StackTcp<N, P>,
    dhcp: Option<StackDhcp<N, P>>,
    platform: P,
    responses_dropped: core::cell::Cell<u64>,
}

impl<N, P> core::fmt::Debug for NetStack<N, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetStack").finish_non_exhaustive()
    }
}

/// Resource usage of a stack, to check its bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackUsage {
    /// Resolved ARP entries; at most [`ArpConfig::max_entries`].
    pub arp_entries: usize,
    /// ARP resolutions in progress (or remembered as failed); at most
    /// [`ArpConfig::max_pending`].
    pub arp_pending: usize,
    /// Tasks waiting on ARP resolutions, each with the packet it sends; at
    /// most `max_pending × max_waiters`.
    pub arp_waiters: usize,
    /// Datagrams being reassembled.
    pub reassembly_datagrams: usize,
    /// Bytes buffered for reassembly.
    pub reassembly_bytes: usize,
    /// Bound UDP sockets.
    pub udp_sockets: usize,
    /// Pings waiting for replies.
    pub pending_pings: usize,
    /// Responses dropped because [`MAX_RESPONSES_IN_FLIGHT`] were busy.
    pub responses_dropped: u64,
    /// TCP connections in the table, in any state (bounded by
    /// [`TcpLimits::max_connections`], together with `tcp_half_open` and
    /// `tcp_accept_queue`).
    pub tcp_connections: usize,
    /// Of `tcp_connections`, those in TIME-WAIT.
    pub tcp_time_wait: usize,
    /// TCP listeners open.
    pub tcp_listeners: usize,
    /// Half-open TCP connections held by listeners.
    pub tcp_half_open: usize,
    /// Established TCP connections waiting for `accept`.
    pub tcp_accept_queue: usize,
    /// What the TCP connections' receive sides hold, summed: data,
    /// frames kept alive by payloads held as slices of them, and memory
    /// allocated ([`crate::tcp::TcpConnection::recv_memory`]; bounds in
    /// [`crate::tcp`]'s module docs).
    pub tcp_recv: RecvMemory,
}

type Response<'a> = Pin<alloc::boxed::Box<dyn Future<Output = ()> + 'a>>;

impl<N: NetworkDevice, P: Sleep + Random + Clone> NetStack<N, P> {
    /// The Ethernet layer.
    pub fn ethernet(&self) -> &EthernetLayer<N> {
        &self.eth
    }

    /// The ARP layer.
    pub fn arp(&self) -> &ArpLayer<StackEthernet<N>, P> {
        &self.arp
    }

    /// The IPv4 layer.
    pub fn ipv4(&self) -> &Ipv4Layer<StackEthernet<N>, StackArp<N, P>, P> {
        &self.ip
    }

    /// The DHCP client, when the stack was built with one: its state,
    /// lease ([`DhcpDriver::lease`]) and counters.
    pub fn dhcp(&self) -> Option<&StackDhcp<N, P>> {
        self.dhcp.as_ref()
    }

    /// The platform handle the stack uses.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Waits until the stack has an IPv4 address, for at most `timeout`,
    /// and returns its configuration. With a static address it returns at
    /// once; with DHCP, once the first lease is in effect, which it logs
    /// (info level, `DHCP lease: ...`). Only the input loop
    /// ([`NetStack::run`], on another task) or [`NetStack::configure`] can
    /// give the stack an address, so one of them must be under way.
    ///
    /// It looks every [`ADDRESS_POLL_INTERVAL`]. Errors: `timeout` passed
    /// without an address; the error holds the DHCP client's state. Cancel
    /// safe: it changes nothing.
    pub async fn wait_for_address(&self, timeout: Duration) -> Result<Ipv4Config, AddressTimeout> {
        let started = self.platform.now();
        let deadline = started + timeout;
        loop {
            if let Some(config) = self.ip.config() {
                if let Some(lease) = self.dhcp().and_then(|dhcp| dhcp.lease()) {
                    log::info!("DHCP lease: {lease}");
                }
                return Ok(config);
            }
            let now = self.platform.now();
            if now >= deadline {
                return Err(AddressTimeout { waited: timeout, dhcp: self.dhcp().map(|dhcp| dhcp.state()) });
            }
            self.platform.sleep_until(deadline.min(now + ADDRESS_POLL_INTERVAL)).await;
        }
    }

    /// Sets or removes the IPv4 configuration (and announces a new address
    /// by ARP). `Ok` means in effect and announced; on `Err` it is in effect
    /// but the announcement failed.
    pub async fn configure(&self, config: Option<Ipv4Config>) -> Result<(), IpError> {
        self.ip.configure(config).await
    }

    /// What the stack holds now, against its documented bounds.
    pub fn usage(&self) -> StackUsage {
        let (arp_entries, arp_pending, arp_waiters) =
            self.arp.with_cache(|c| (c.entry_count(), c.pending_count(), c.waiter_count()));
        let (_, reassembly_datagrams, reassembly_bytes) = self.ip.reassembly_usage();
        let tcp = self.tcp.usage();
        StackUsage {
            arp_entries,
            arp_pending,
            arp_waiters,
            reassembly_datagrams,
            reassembly_bytes,
            udp_sockets: self.udp.socket_count(),
            pending_pings: self.icmp.pending_pings(),
            responses_dropped: self.responses_dropped.get(),
            tcp_connections: tcp.connections,
            tcp_time_wait: tcp.time_wait,
            tcp_listeners: tcp.listeners,
            tcp_half_open: tcp.half_open,
            tcp_accept_queue: tcp.accept_queue,
            tcp_recv: tcp.recv,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.arp.poll_deadline(), self.ip.poll_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The input loop: receives frames and dispatches them (ARP; IPv4 to
    /// ICMP, UDP and TCP, with port unreachable for closed UDP ports), and
    /// drives ARP and reassembly timers; beside it, TCP's sender and
    /// timers ([`TcpLayer::run`]) and the DHCP client if the stack has one.
    /// Runs until the device fails, which it returns. Spawn it once per
    /// stack.
    pub async fn run(&self) -> Result<(), EthernetError> {
        let input = core::pin::pin!(self.run_input());
        let tcp = core::pin::pin!(self.tcp.run());
        let input = async {
            match future::select(input, tcp).await {
                Either::Left((result, _)) => result,
                Either::Right((never, _)) => match never {},
            }
        };
        let Some(dhcp) = &self.dhcp else { return input.await };
        let input = core::pin::pin!(input);
        let dhcp = core::pin::pin!(dhcp.run(&self.ip, &self.arp, &self.platform));
        match future::select(input, dhcp).await {
            Either::Left((result, _)) => result,
            Either::Right((never, _)) => match never {},
        }
    }

    async fn run_input(&self) -> Result<(), EthernetError> {
        let mut responses: FuturesUnordered<Response<'_>> = FuturesUnordered::new();
        // Each pass handles one event: a frame, a timer, or a finished
        // response; it ends only on a device error.
        loop {
            let deadline = self.next_deadline();
            let event = {
                let receive = core::pin::pin!(self.eth.receive());
                let timer = core::pin::pin!(async {
                    match deadline {
                        Some(at) => self.platform.sleep_until(at).await,
                        None => future::pending().await,
                    }
                });
                let response = core::pin::pin!(async {
                    if responses.is_empty() {
                        future::pending::<()>().await;
                    }
                    responses.next().await;
                });
                match future::select(receive, future::select(timer, response)).await {
                    Either::Left((frame, _)) => Some(frame?),
                    Either::Right(_) => None,
                }
            };
            let Some(frame) = event else {
                self.handle_timers().await;
                // Each pass reports one datagram whose reassembly timed out;
                // the reassembler keeps at most `max_datagrams` reports.
                while let Some(expired) = self.ip.take_expired() {
                    if responses.len() >= MAX_RESPONSES_IN_FLIGHT {
                        self.responses_dropped.set(self.responses_dropped.get() + 1);
                        continue;
                    }
                    responses
                        .push(alloc::boxed::Box::pin(async move { self.icmp.send_reassembly_expired(&expired).await }));
                }
                continue;
            };
            match frame.ethertype {
                EtherType::ARP => self.arp.input(frame.payload).await,
                EtherType::IPV4 => {
                    let link_src = frame.src;
                    let Some(packet) = self.ip.input(frame.payload) else { continue };
                    if asks_for_answer(&packet) && self.ip.is_on_link(packet.src) {
                        self.arp.note_sender(packet.src, link_src);
                    }
                    let response: Option<Response<'_>> = match packet.protocol {
                        IpProtocol::ICMP => Some(alloc::boxed::Box::pin(async move { self.icmp.input(&packet).await })),
                        IpProtocol::TCP => {
                            self.tcp.input(&packet);
                            None
                        }
                        IpProtocol::UDP => {
                            match self.udp.input(&packet) {
                                UdpInput::PortUnreachable => Some(alloc::boxed::Box::pin(async move {
                                    self.icmp.send_port_unreachable(&packet).await
                                })),
                                UdpInput::Delivered | UdpInput::Dropped => None,
                            }
                        }
                        _ => None,
                    };
                    if let Some(response) = response {
                        if responses.len() >= MAX_RESPONSES_IN_FLIGHT {
                            self.responses_dropped.set(self.responses_dropped.get() + 1);
                        } else {
                            responses.push(response);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    async fn handle_timers(&self) {
        self.ip.handle_timers();
        // A failure to send an announcement is retried by nobody; the next
        // address change announces again.
        let _ = self.arp.handle_timers().await;
    }
}

/// Whether `packet` may make us answer a peer we have not talked to: a
/// TCP SYN, a UDP datagram, an ICMP message. Segments of established
/// connections are left out, so the check costs the TCP fast path a look
/// at the flags.
fn asks_for_answer(packet: &IpPacket<Ipv4Addr>) -> bool {
    match packet.protocol {
        IpProtocol::TCP => {
            packet.payload.len() >= TCP_HEADER_LEN && {
                let flags = TcpPacket::new_unchecked(&packet.payload[..]).flags();
                flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK)
            }
        }
        IpProtocol::UDP | IpProtocol::ICMP => true,
        _ => false,
    }
}

impl<N: NetworkDevice + 'static, P: Platform> NetStack<N, P> {
    /// What a platform does to hand an application a stack on `device`
    /// (the `Devices::stack` contract of `mirage-types`): builds it with
    /// the static `address` and `gateway` if given, else with DHCP; runs
    /// its input loop as a task (see [`NetStack::spawn_input_loop`];
    /// `name` names the device in logs); and waits up to [`ADDRESS_WAIT`]
    /// for an address, which it logs (info level, `NAME: ADDRESS/PREFIX`).
    ///
    /// Errors: the stack could not be built ([`StartError::Build`]), or no
    /// DHCP lease came in time ([`StartError::NoAddress`]; the input loop
    /// goes on, but the stack is dropped by the caller).
    pub async fn start(
        device: N,
        platform: P,
        name: &str,
        address: Option<Ipv4Cidr>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<Rc<Self>, StartError> {
        let stack = StackBuilder::new(device, platform).ipv4_or_dhcp(address, gateway).build().await?;
        let stack = Rc::new(stack);
        stack.spawn_input_loop(name);
        let config = stack.wait_for_address(ADDRESS_WAIT).await?;
        log::info!("{name}: {}", config.address);
        Ok(stack)
    }

    /// Runs [`NetStack::run`] as a task on the platform's event loop. The
    /// loop ends only when the network device fails; that is logged (error
    /// level, `network device DEVICE failed: ...`), and the stack receives
    /// nothing from then on.
    pub fn spawn_input_loop(self: &Rc<Self>, device: &str) {
        let stack = self.clone();
        let device = String::from(device);
        self.platform.spawn(async move {
            if let Err(e) = stack.run().await {
                log::error!("network device {device} failed: {e}");
            }
        });
    }
}

impl<N: NetworkDevice, P: Sleep + Random + Clone> Stack for NetStack<N, P> {
    type Udp = StackUdp<N, P>;
    type Tcp = StackTcp<N, P>;
    type Icmp = StackIcmp<N, P>;

    fn udp(&self) -> &Self::Udp {
        &self.udp
    }

    fn tcp(&self) -> &Self::Tcp {
        &self.tcp
    }

    fn icmp(&self) -> &Self::Icmp {
        &self.icmp
    }

    fn addresses(&self) -> Vec<IpAddr> {
        self.ip.addresses().into_iter().map(IpAddr::V4).collect()
    }
}
