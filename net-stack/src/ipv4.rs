//! IPv4 over an [`Ethernet`] layer and an [`Arp`] layer.
//!
//! Reading list:
//! - RFC 791: the protocol, fragmentation.
//! - RFC 1122 §3.2.1 (what a host checks on receive; §3.2.1.3: which
//!   source addresses are invalid and silently discarded), §3.3.1
//!   (routing: on-link or via the gateway), §3.3.2 (reassembly), §3.3.6
//!   (broadcasts).
//! - RFC 1812 §5.3.7: martian addresses (loopback, class E) that never
//!   appear on a link as a source; §4.2.2.11 lists the special forms.
//! - RFC 2131 §4.1: a DHCP client sends from 0.0.0.0 before it has an
//!   address, and its server may unicast to the address it offers.
//! - RFC 6864: the identification field (only meaningful for fragments).
//! - RFC 5722, RFC 815, RFC 4963: reassembly (see [`reassembly`]).
//!
//! One interface, one address: [`Ipv4Config`] holds the address with its
//! prefix and an optional default gateway, set statically or by DHCP
//! ([`Ipv4Layer::configure`]).
//!
//! # What is received
//!
//! [`Ip::input`] checks the header (version, lengths, checksum) through
//! [`crate::wire`], then the source address, then the destination.
//!
//! A datagram is dropped without an answer, and counted in
//! [`Ipv4Stats::bad_source`], when its source is not a single host that
//! could be answered (RFC 1122 §3.2.1.3: "An IP host MUST silently discard
//! an incoming datagram containing an IP source address that is invalid"):
//! the limited broadcast 255.255.255.255 or our subnet's directed
//! broadcast (an answer would go to every host of the link), a multicast
//! address, a loopback (127/8) or class E (240/4) address (RFC 1812
//! §5.3.7), an address of the 0/8 "this network" block, or our own address
//! (the "land" attack: an answer to it is an answer to ourselves, which
//! made the stack resolve its own address by ARP; Linux drops these too
//! unless `accept_local` is set). One exception: source 0.0.0.0 to the
//! limited broadcast, which is how a host without an address yet (a DHCP
//! client, RFC 2131 §4.1) speaks; Linux accepts it too. Checking before
//! reassembly keeps such fragments out of the reassembly buffer as well.
//!
//! It keeps those addressed to our address, the limited broadcast, our
//! subnet's broadcast, the all-hosts group 224.0.0.1 and groups joined
//! with [`Ipv4Layer::join_multicast`]. While no address is configured it
//! also keeps unicast datagrams to any address, as a DHCP client must (RFC
//! 2131 §4.1: a server may unicast the offer to the address it offers).
//! Options are skipped, not interpreted. Fragments go to the
//! [`reassembly::Reassembler`], whose bounds give way to real traffic
//! under a flood.
//!
//! # What is sent
//!
//! [`Ip::write`] routes on-link or through the gateway, and refuses with
//! [`IpError::NoRoute`] destinations that are not a host on a link: 0/8,
//! loopback, class E (but the limited broadcast), and our own address
//! (there is no loopback interface; asking ARP for ourselves is what the
//! land attack achieved).

pub mod reassembly;

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use mirage_types::arp::{Arp, Error as _, ErrorKind as ArpErrorKind};
use mirage_types::ethernet::{EtherType, Ethernet};
use mirage_types::ip::{ErrorKind, Ip, IpError, IpPacket, IpProtocol, Ipv4Cidr, WriteOptions};
use mirage_types::time::{Instant, MonotonicClock};

use crate::wire::ipv4::{IPV4_MAX_TOTAL_LEN, IPV4_MIN_HEADER_LEN};
use crate::wire::{Ipv4Packet, Ipv4Repr};
use reassembly::{Reassembler, ReassemblyConfig, ReassemblyStats};

/// TTL of datagrams we send unless asked otherwise (RFC 1700's 64).
pub const DEFAULT_TTL: u8 = 64;

/// The all-hosts group every host belongs to (RFC 1112 §4).
pub const ALL_HOSTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// Largest payload of one IPv4 datagram with a minimal header.
pub const MAX_PAYLOAD: usize = IPV4_MAX_TOTAL_LEN - IPV4_MIN_HEADER_LEN;

/// An interface's IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Config {
    /// Our address and the on-link prefix.
    pub address: Ipv4Cidr,
    /// Where datagrams for other networks go; `None`: only on-link hosts
    /// are reachable.
    pub gateway: Option<Ipv4Addr>,
}

/// Counters of an [`Ipv4Layer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Stats {
    /// Datagrams handed up (after reassembly).
    pub delivered: u64,
    /// Packets dropped for a bad header (lengths, version, checksum).
    pub malformed: u64,
    /// Packets dropped as addressed to someone else.
    pub not_for_us: u64,
    /// Packets dropped for an invalid source address: broadcast,
    /// multicast, loopback, class E, 0/8 (but 0.0.0.0 to the limited
    /// broadcast), or our own (see the module documentation).
    pub bad_source: u64,
    /// Fragments received.
    pub fragments_in: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams sent in more than one fragment.
    pub fragmented: u64,
}

/// The IPv4 layer of one interface.
#[derive(Debug)]
pub struct Ipv4Layer<E, A, C> {
    eth: E,
    arp: A,
    clock: C,
    config: RefCell<Option<Ipv4Config>>,
    groups: RefCell<BTreeSet<Ipv4Addr>>,
    reassembler: RefCell<Reassembler>,
    next_ident: Cell<u16>,
    stats: Cell<Ipv4Stats>,
}

impl<E: Ethernet, A: Arp, C: MonotonicClock> Ipv4Layer<E, A, C> {
    /// Multicast groups joined at most (they come from local code).
    pub const MAX_GROUPS: usize = 32;

    /// An unconfigured layer. `ident_seed` starts the identification
    /// counter (give it a random value so fragments of a restarted stack do
    /// not mix with old ones in a peer's reassembly buffer).
    pub fn new(eth: E, arp: A, clock: C, ident_seed: u16, reassembly: ReassemblyConfig) -> Ipv4Layer<E, A, C> {
        Ipv4Layer {
            eth,
            arp,
            clock,
            config: RefCell::new(None),
            groups: RefCell::default(),
            reassembler: RefCell::new(Reassembler::new(reassembly)),
            next_ident: Cell::new(ident_seed),
            stats: Cell::default(),
        }
    }

    /// The ARP layer below.
    pub fn arp(&self) -> &A {
        &self.arp
    }

    /// The Ethernet layer below.
    pub fn ethernet(&self) -> &E {
        &self.eth
    }

    /// The current configuration.
    pub fn config(&self) -> Option<Ipv4Config> {
        *self.config.borrow()
    }

    /// Sets (or with `None` removes) the configuration and tells ARP the
    /// new address, which announces it. `Ok` means the configuration is in
    /// effect and announced; on `Err` it is in effect but the announcement
    /// could not be sent.
    pub async fn configure(&self, config: Option<Ipv4Config>) -> Result<(), IpError> {
        *self.config.borrow_mut() = config;
        let addresses: Vec<Ipv4Addr> = config.iter().map(|c| c.address.address()).collect();
        self.arp.set_addresses(&addresses).await.map_err(|e| IpError::Other {
            kind: ErrorKind::Device,
            message: alloc::format!("announcing {addresses:?} by ARP: {e}"),
        })
    }

    /// Receives datagrams sent to the multicast `group` from now on (the
    /// Ethernet layer must accept the group's MAC address too). Returns
    /// `false` if the group is not multicast or [`Self::MAX_GROUPS`] are
    /// joined.
    pub fn join_multicast(&self, group: Ipv4Addr) -> bool {
        let mut groups = self.groups.borrow_mut();
        if !group.is_multicast() || (!groups.contains(&group) && groups.len() >= Self::MAX_GROUPS) {
            return false;
        }
        groups.insert(group);
        true
    }

    /// Counters so far.
    pub fn stats(&self) -> Ipv4Stats {
        self.stats.get()
    }

    /// Reassembly counters, datagrams in progress and bytes buffered.
    pub fn reassembly_usage(&self) -> (ReassemblyStats, usize, usize) {
        let r = self.reassembler.borrow();
        (r.stats(), r.datagrams(), r.bytes())
    }

    /// When [`Self::handle_timers`] next has work (reassembly timeouts).
    pub fn poll_deadline(&self) -> Option<Instant> {
        self.reassembler.borrow().poll_deadline()
    }

    /// Expires incomplete datagrams whose time is up.
    pub fn handle_timers(&self) {
        self.reassembler.borrow_mut().handle_timeout(self.clock.now());
    }

    /// The oldest datagram whose reassembly timed out with its first
    /// fragment, to report to its sender ([`reassembly::Expired`]).
    pub fn take_expired(&self) -> Option<reassembly::Expired> {
        self.reassembler.borrow_mut().take_expired()
    }

    fn count(&self, f: impl FnOnce(&mut Ipv4Stats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn accepts(&self, dst: Ipv4Addr) -> bool {
        if dst.is_broadcast() {
            return true;
        }
        if dst.is_multicast() {
            return dst == ALL_HOSTS || self.groups.borrow().contains(&dst);
        }
        match *self.config.borrow() {
            Some(c) => dst == c.address.address() || (c.address.prefix_len() < 31 && dst == c.address.broadcast()),
            None => true,
        }
    }

    /// Whether `dst` is a broadcast address for us (limited, or our
    /// subnet's directed broadcast).
    fn is_broadcast(&self, dst: Ipv4Addr) -> bool {
        dst.is_broadcast()
            || self.config.borrow().is_some_and(|c| c.address.prefix_len() < 31 && dst == c.address.broadcast())
    }

    /// Whether `src` may be the source of a datagram to `dst` we accept
    /// (RFC 1122 §3.2.1.3; see the module documentation).
    fn valid_source(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if src.is_unspecified() {
            // RFC 1122 §3.2.1.3 (a): only "as part of an initialization
            // procedure by which the host learns its own IP address", which
            // broadcasts (RFC 2131 §4.1).
            return dst.is_broadcast();
        }
        if !is_host_address(src) {
            return false;
        }
        match *self.config.borrow() {
            Some(c) => src != c.address.address() && !(c.address.prefix_len() < 31 && src == c.address.broadcast()),
            None => true,
        }
    }

    /// Whether `addr` is another host on our link (so a frame from it came
    /// straight from its owner, not through the gateway).
    pub fn is_on_link(&self, addr: Ipv4Addr) -> bool {
        !addr.is_broadcast() && !addr.is_multicast() && self.next_hop(addr) == Some(addr)
    }

    /// The link-layer next hop toward `dst`, or `None` if unroutable.
    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if dst.is_broadcast() || dst.is_multicast() {
            return Some(dst);
        }
        let config = (*self.config.borrow())?;
        // Not hosts of any link: ours (no loopback interface), 0/8,
        // loopback, class E.
        if dst == config.address.address() || !is_host_address(dst) {
            return None;
        }
        if config.address.contains(dst) {
            Some(dst)
        } else {
            config.gateway
        }
    }

    fn take_ident(&self) -> u16 {
        let ident = self.next_ident.get();
        self.next_ident.set(ident.wrapping_add(1));
        ident
    }
}

/// Whether `addr` can name one host on a link: not 0/8 ("this network",
/// RFC 1122 §3.2.1.3 (a) and (b)), not loopback (127/8, (g)), not
/// multicast (224/4), not class E or the limited broadcast (240/4, RFC
/// 1812 §5.3.7). Subnet broadcasts need the prefix, which only the
/// [`Ipv4Layer`] knows.
pub fn is_host_address(addr: Ipv4Addr) -> bool {
    let first = addr.octets()[0];
    first != 0 && first != 127 && first < 224
}

fn device_error(e: impl core::fmt::Display) -> IpError {
    IpError::Other { kind: ErrorKind::Device, message: alloc::format!("link: {e}") }
}

impl<E: Ethernet, A: Arp, C: MonotonicClock> Ip for Ipv4Layer<E, A, C> {
    type Addr = Ipv4Addr;
    type Error = IpError;

    fn addresses(&self) -> Vec<Ipv4Addr> {
        self.config.borrow().iter().map(|c| c.address.address()).collect()
    }

    fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let config = (*self.config.borrow())?;
        self.next_hop(dst).map(|_| config.address.address())
    }

    fn mtu(&self, _dst: Ipv4Addr) -> usize {
        self.eth.mtu().saturating_sub(IPV4_MIN_HEADER_LEN)
    }

    fn input(&self, packet: Bytes) -> Option<IpPacket<Ipv4Addr>> {
        let parsed = Ipv4Packet::new_checked(&packet[..]).and_then(|p| Ipv4Repr::parse(&p));
        let Ok(header) = parsed else {
            self.count(|s| s.malformed += 1);
            return None;
        };
        // RFC 1122 §3.2.1.3: silently discard a datagram whose source is
        // invalid; before reassembly, so its fragments take no room.
        if !self.valid_source(header.src_addr, header.dst_addr) {
            self.count(|s| s.bad_source += 1);
            return None;
        }
        if !self.accepts(header.dst_addr) {
            self.count(|s| s.not_for_us += 1);
            return None;
        }
        // `new_checked` ensured header_len ≤ total length ≤ packet length;
        // slicing to the total length drops Ethernet padding.
        let payload = packet.slice(header.header_len..header.buffer_len());
        if !header.more_fragments && header.fragment_offset == 0 {
            self.count(|s| s.delivered += 1);
            return Some(IpPacket {
                src: header.src_addr,
                dst: header.dst_addr,
                protocol: header.protocol,
                ttl: header.ttl,
                payload,
            });
        }
        self.count(|s| s.fragments_in += 1);
        let whole = self.reassembler.borrow_mut().add(self.clock.now(), &header, &payload)?;
        self.count(|s| s.delivered += 1);
        Some(IpPacket {
            src: whole.src,
            dst: whole.dst,
            protocol: whole.protocol,
            ttl: whole.ttl,
            payload: whole.payload,
        })
    }

    /// Routes `dst` (on-link, else the gateway; broadcast and multicast go
    /// to their MAC addresses), resolves the next hop by ARP, and sends one
    /// datagram or, above the MTU, fragments of it.
    ///
    /// Errors: [`IpError::TooLarge`] above [`MAX_PAYLOAD`];
    /// [`IpError::NoRoute`] without a configuration or gateway (sending to
    /// 255.255.255.255 works unconfigured, from 0.0.0.0, for DHCP), or to
    /// an address that is no host of a link (0/8, loopback, class E, our
    /// own);
    /// [`IpError::WouldFragment`] when fragmenting is forbidden;
    /// [`IpError::HostUnreachable`] when ARP gets no answer; kind
    /// [`ErrorKind::Device`] if the link fails, in which case some
    /// fragments may have been sent. Cancel-safe until `fill` has run.
    async fn write<R>(
        &self,
        dst: Ipv4Addr,
        protocol: IpProtocol,
        options: WriteOptions<Ipv4Addr>,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, IpError> {
        if payload_len > MAX_PAYLOAD {
            return Err(IpError::TooLarge { len: payload_len, max: MAX_PAYLOAD });
        }
        let src = match options.src.or_else(|| self.source_for(dst)) {
            Some(src) => src,
            None if dst.is_broadcast() => Ipv4Addr::UNSPECIFIED,
            None => return Err(IpError::NoRoute(IpAddr::V4(dst))),
        };
        let next_hop = self.next_hop(dst).ok_or(IpError::NoRoute(IpAddr::V4(dst)))?;
        let link_mtu = self.eth.mtu();
        let max_unfragmented = link_mtu.saturating_sub(IPV4_MIN_HEADER_LEN);
        if payload_len > max_unfragmented && options.dont_fragment {
            return Err(IpError::WouldFragment { len: payload_len, mtu: max_unfragmented });
        }
        let mac = if self.is_broadcast(dst) {
            mirage_types::net::MacAddress::BROADCAST
        } else {
            self.arp.resolve(next_hop).await.map_err(|e| match e.kind() {
                ArpErrorKind::Timeout => IpError::HostUnreachable(IpAddr::V4(next_hop)),
                ArpErrorKind::Device => device_error(&e),
                _ => IpError::Other {
                    kind: ErrorKind::HostUnreachable,
                    message: alloc::format!("resolving {next_hop}: {e}"),
                },
            })?
        };
        let mut header = Ipv4Repr::new(src, dst, protocol, payload_len, options.ttl.unwrap_or(DEFAULT_TTL));
        header.ident = self.take_ident();
        header.dont_fragment = options.dont_fragment;
        if payload_len <= max_unfragmented {
            let r = self
                .eth
                .write(mac, EtherType::IPV4, header.buffer_len(), |buf| {
                    let (head, payload) = buf.split_at_mut(IPV4_MIN_HEADER_LEN);
                    let r = fill(payload);
                    header.emit(&mut Ipv4Packet::new_unchecked(head));
                    r
                })
                .await
                .map_err(device_error)?;
            self.count(|s| s.sent += 1);
            return Ok(r);
        }
        // RFC 791 §3.2: every fragment but the last carries a multiple of 8
        // bytes. `fill` runs once into a buffer the fragments are cut from.
        let chunk = max_unfragmented & !7;
        if chunk == 0 {
            return Err(IpError::WouldFragment { len: payload_len, mtu: max_unfragmented });
        }
        let mut whole = vec![0u8; payload_len];
        let r = fill(&mut whole);
        for (i, part) in whole.chunks(chunk).enumerate() {
            let offset = i * chunk;
            let mut frag = header;
            frag.payload_len = part.len();
            // offset < MAX_PAYLOAD < 65 536, checked above.
            frag.fragment_offset = offset as u16;
            frag.more_fragments = offset + part.len() < payload_len;
            self.eth
                .write(mac, EtherType::IPV4, frag.buffer_len(), |buf| {
                    let (head, payload) = buf.split_at_mut(IPV4_MIN_HEADER_LEN);
                    payload.copy_from_slice(part);
                    frag.emit(&mut Ipv4Packet::new_unchecked(head));
                })
                .await
                .map_err(device_error)?;
        }
        self.count(|s| {
            s.sent += 1;
            s.fragmented += 1;
        });
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::{ArpConfig, ArpLayer};
    use crate::ethernet::EthernetLayer;
    use crate::switch::{Simulation, SwitchPort, VirtualClock, VirtualSwitch};
    use core::time::Duration;
    use mirage_types::ip::Error as _;
    use mirage_types::net::{MacAddress, NetworkDevice};

    type Layer = Ipv4Layer<
        alloc::rc::Rc<EthernetLayer<SwitchPort>>,
        ArpLayer<alloc::rc::Rc<EthernetLayer<SwitchPort>>, VirtualClock>,
        VirtualClock,
    >;

    const A: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
    const RAW: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);

    fn layer(switch: &VirtualSwitch, clock: &VirtualClock, mac: MacAddress) -> Layer {
        let eth = alloc::rc::Rc::new(EthernetLayer::new(switch.add_port(mac)));
        let arp = ArpLayer::new(eth.clone(), clock.clone(), ArpConfig::default());
        Ipv4Layer::new(eth, arp, clock.clone(), 100, ReassemblyConfig::default())
    }

    fn config(addr: &str, gateway: Option<Ipv4Addr>) -> Option<Ipv4Config> {
        Some(Ipv4Config { address: addr.parse().unwrap(), gateway })
    }

    fn datagram(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8], tweak: impl FnOnce(&mut Ipv4Repr)) -> Bytes {
        let mut h = Ipv4Repr::new(src, dst, IpProtocol::EXPERIMENTAL, payload.len(), 64);
        tweak(&mut h);
        let mut buf = vec![0u8; h.buffer_len()];
        h.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        buf[h.header_len..].copy_from_slice(payload);
        Bytes::from(buf)
    }

    #[test]
    fn input_accepts_ours_broadcast_and_all_hosts_only() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let sim = Simulation::new(&clock);
        sim.run_until(ip.configure(config("10.0.0.1/24", None)), Duration::from_secs(1)).unwrap().unwrap();
        let peer = Ipv4Addr::new(10, 0, 0, 2);
        for dst in [[10, 0, 0, 1], [255, 255, 255, 255], [10, 0, 0, 255], [224, 0, 0, 1]] {
            assert!(ip.input(datagram(peer, Ipv4Addr::from(dst), b"x", |_| ())).is_some(), "{dst:?}");
        }
        for dst in [[10, 0, 0, 3], [224, 0, 0, 9]] {
            assert!(ip.input(datagram(peer, Ipv4Addr::from(dst), b"x", |_| ())).is_none(), "{dst:?}");
        }
        assert!(ip.join_multicast(Ipv4Addr::new(224, 0, 0, 9)));
        assert!(ip.input(datagram(peer, Ipv4Addr::new(224, 0, 0, 9), b"x", |_| ())).is_some());
        let us = Ipv4Addr::new(10, 0, 0, 1);
        assert!(ip.input(datagram(Ipv4Addr::BROADCAST, us, b"x", |_| ())).is_none(), "RFC 1122 §3.2.1.3");
        assert_eq!((ip.stats().not_for_us, ip.stats().bad_source), (2, 1));
    }

    #[test]
    fn input_drops_invalid_sources_rfc_1122_3_2_1_3() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let sim = Simulation::new(&clock);
        let us = Ipv4Addr::new(10, 0, 0, 1);
        let bogus = [
            [255, 255, 255, 255], // limited broadcast
            [10, 0, 0, 255],      // our subnet's broadcast
            [10, 0, 0, 1],        // ourselves: the land attack
            [224, 0, 0, 1],       // multicast
            [239, 255, 255, 250],
            [127, 0, 0, 1], // loopback, RFC 1122 §3.2.1.3 (g)
            [240, 0, 0, 1], // class E, RFC 1812 §5.3.7
            [0, 0, 0, 0],   // "this host", to a unicast address
            [0, 0, 0, 7],   // "this network"
        ];
        // Unconfigured (a DHCP client), only what is bogus anywhere is
        // refused: neither our address nor our subnet is known yet.
        for src in bogus {
            let known_only_once_configured = src == [10, 0, 0, 255] || src == [10, 0, 0, 1];
            let got = ip.input(datagram(Ipv4Addr::from(src), us, b"x", |_| ()));
            assert_eq!(got.is_some(), known_only_once_configured, "unconfigured, from {src:?}");
        }
        sim.run_until(ip.configure(config("10.0.0.1/24", None)), Duration::from_secs(1)).unwrap().unwrap();
        let before = ip.stats();
        for src in bogus {
            for dst in [us, Ipv4Addr::BROADCAST, Ipv4Addr::new(10, 0, 0, 255)] {
                let fragment = datagram(Ipv4Addr::from(src), dst, &[0; 8], |h| h.more_fragments = true);
                let whole = datagram(Ipv4Addr::from(src), dst, b"x", |_| ());
                let from_zero_to_all = src == [0, 0, 0, 0] && dst == Ipv4Addr::BROADCAST;
                assert_eq!(ip.input(whole).is_some(), from_zero_to_all, "{src:?} -> {dst}");
                assert!(ip.input(fragment).is_none());
            }
        }
        let (_, datagrams, _) = ip.reassembly_usage();
        assert_eq!(datagrams, 1, "only the fragment from 0.0.0.0 to 255.255.255.255 is held");
        assert_eq!(ip.stats().bad_source - before.bad_source, 9 * 3 * 2 - 2);
        // A real neighbour, and a host beyond a router, are fine.
        for src in [[10, 0, 0, 2], [192, 0, 2, 1], [223, 255, 255, 254]] {
            assert!(ip.input(datagram(Ipv4Addr::from(src), us, b"x", |_| ())).is_some(), "{src:?}");
        }
        // RFC 2131 §4.1: a DHCP client's broadcast from 0.0.0.0.
        let discover = datagram(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, b"x", |_| ());
        assert!(ip.input(discover).is_some());
    }

    #[test]
    fn write_refuses_destinations_that_are_no_host() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let raw = switch.add_port(RAW);
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                ip.configure(config("10.0.0.1/24", Some(Ipv4Addr::new(10, 0, 0, 254)))).await.unwrap();
                while raw.queued() > 0 {
                    raw.receive().await.unwrap();
                }
                for dst in [[10, 0, 0, 1], [0, 0, 0, 0], [0, 1, 2, 3], [127, 0, 0, 1], [240, 0, 0, 1]] {
                    let dst = Ipv4Addr::from(dst);
                    let e = ip.write(dst, IpProtocol::UDP, WriteOptions::default(), 1, |_| ()).await.unwrap_err();
                    assert_eq!(e, IpError::NoRoute(IpAddr::V4(dst)));
                }
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(raw.queued(), 0, "no ARP request for ourselves, nothing to the gateway");
    }

    #[test]
    fn input_drops_bad_headers_and_strips_padding() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let sim = Simulation::new(&clock);
        sim.run_until(ip.configure(config("10.0.0.1/24", None)), Duration::from_secs(1)).unwrap().unwrap();
        let (peer, us) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
        let mut bad_sum = datagram(peer, us, b"abc", |_| ()).to_vec();
        bad_sum[10] ^= 1;
        assert!(ip.input(Bytes::from(bad_sum)).is_none());
        let mut padded = datagram(peer, us, b"abc", |_| ()).to_vec();
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(&ip.input(Bytes::from(padded)).unwrap().payload[..], b"abc");
        for junk in [&[][..], &[0x45; 10][..], &[0x46, 0, 0, 20][..]] {
            assert!(ip.input(Bytes::copy_from_slice(junk)).is_none());
        }
        assert_eq!(ip.stats().malformed, 4);
    }

    #[test]
    fn write_refuses_what_it_cannot_route_or_fragment() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                let far = Ipv4Addr::new(192, 0, 2, 1);
                let e = ip.write(far, IpProtocol::UDP, WriteOptions::default(), 1, |_| ()).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NoRoute);
                ip.configure(config("10.0.0.1/24", None)).await.unwrap();
                let e = ip.write(far, IpProtocol::UDP, WriteOptions::default(), 1, |_| ()).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NoRoute, "no gateway");
                let df = WriteOptions { dont_fragment: true, ..WriteOptions::default() };
                let near = Ipv4Addr::new(10, 0, 0, 2);
                let e = ip.write(near, IpProtocol::UDP, df, 1481, |_| ()).await.unwrap_err();
                assert_eq!(e, IpError::WouldFragment { len: 1481, mtu: 1480 });
                let e = ip.write(near, IpProtocol::UDP, WriteOptions::default(), 65_516, |_| ()).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::TooLarge);
                // Nobody answers ARP for this one.
                let e = ip.write(near, IpProtocol::UDP, WriteOptions::default(), 1, |_| ()).await.unwrap_err();
                assert_eq!(e, IpError::HostUnreachable(IpAddr::V4(near)));
            },
            Duration::from_secs(60),
        )
        .unwrap();
    }

    #[test]
    fn large_write_is_fragmented_on_8_byte_boundaries_and_reassembles() {
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let ip = layer(&switch, &clock, A);
        let raw = switch.add_port(RAW);
        let receiver = layer(&VirtualSwitch::new(&clock, 2), &clock, RAW);
        let sim = Simulation::new(&clock);
        let payload: Vec<u8> = (0..4000u32).map(|i| (i * 7) as u8).collect();
        let frames = sim
            .run_until(
                async {
                    ip.configure(config("10.0.0.1/24", None)).await.unwrap();
                    receiver.configure(config("10.0.0.2/24", None)).await.unwrap();
                    // Broadcast skips ARP, so the raw port sees only our
                    // announcement and the fragments.
                    ip.write(Ipv4Addr::BROADCAST, IpProtocol::EXPERIMENTAL, WriteOptions::default(), 4000, |b| {
                        b.copy_from_slice(&payload)
                    })
                    .await
                    .unwrap();
                    let mut frames = Vec::new();
                    while raw.queued() > 0 {
                        frames.push(raw.receive().await.unwrap());
                    }
                    frames
                },
                Duration::from_secs(1),
            )
            .unwrap();
        let fragments: Vec<_> = frames.iter().filter(|f| f[12..14] == [8, 0]).collect();
        assert_eq!(fragments.len(), 3);
        let mut whole = None;
        for f in &fragments {
            let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
            let h = Ipv4Repr::parse(&p).unwrap();
            assert!(h.fragment_offset % 8 == 0 && h.buffer_len() <= 1500);
            whole = receiver.input(f.slice(14..)).or(whole);
        }
        let whole = whole.expect("the last fragment completes the datagram");
        assert_eq!(&whole.payload[..], &payload[..]);
        assert_eq!(ip.stats().fragmented, 1);
    }
}
