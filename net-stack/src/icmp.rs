//! ICMPv4: answering echo requests, pinging, reporting closed ports and
//! reassemblies that timed out.
//!
//! Reading list:
//! - RFC 792: the messages.
//! - RFC 1122 §3.2.2: what a host must send and must not (no error about
//!   a broadcast or multicast datagram, nor about one whose source "does
//!   not define a single host", §3.2.2; echo to a broadcast address may be
//!   ignored, §3.2.2.6), and that error rate limiting is allowed (§4.3.2.8
//!   of RFC 1812 describes the token bucket used here).
//! - RFC 1122 §3.2.1.3: datagrams from invalid sources never get here (the
//!   IP layer drops them, see [`crate::ipv4`]); this layer still answers
//!   nobody whose address is not a host's ([`crate::ipv4::is_host_address`]),
//!   in case it runs over another IP layer.
//!
//! [`IcmpLayer`] answers echo requests (at most
//! [`IcmpConfig::echo_replies_per_second`] on average), matches echo
//! replies and unreachable errors to [`Icmp::ping`] calls (at most
//! [`IcmpConfig::max_pings`] outstanding), and sends port-unreachable
//! errors for the UDP layer and reassembly Time Exceeded errors for the IP
//! layer (RFC 1122 §3.3.2; together at most
//! [`IcmpConfig::errors_per_second`]).

use alloc::collections::BTreeMap;
use alloc::string::ToString;
use alloc::vec;
use core::cell::{Cell, RefCell};
use core::net::{IpAddr, Ipv4Addr};
use core::task::{Poll, Waker};
use core::time::Duration;

use futures::future::{self, Either};
use mirage_types::icmp::{EchoReply, ErrorKind, Icmp, IcmpError};
use mirage_types::ip::{Error as _, ErrorKind as IpErrorKind, Ip, IpPacket, IpProtocol, WriteOptions};
use mirage_types::time::{Instant, Sleep};

use crate::ipv4::is_host_address;
use crate::ipv4::reassembly::Expired;
use crate::wire::icmpv4::Icmpv4TimeExceeded;
use crate::wire::ipv4::IPV4_MIN_HEADER_LEN;
use crate::wire::{Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr};

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    rate: u32,
    burst: u32,
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket { rate, burst, tokens: burst, last: Instant::ZERO }
    }

    /// Takes a token if one is left at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.rate > 0 {
            let per_token = Duration::from_secs(1) / self.rate;
            let elapsed = now.saturating_duration_since(self.last);
            let new = (elapsed.as_nanos() / per_token.as_nanos().max(1)).min(u128::from(self.burst)) as u32;
            if new > 0 {
                self.tokens = (self.tokens + new).min(self.burst);
                self.last = now;
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Rate limits and bounds of an [`IcmpLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpConfig {
    /// Echo replies per second on average. Default 100.
    pub echo_replies_per_second: u32,
    /// Echo replies sent back to back before the rate applies. Default 100.
    pub echo_burst: u32,
    /// Error messages (port unreachable) per second. Default 10.
    pub errors_per_second: u32,
    /// Errors sent back to back before the rate applies. Default 10.
    pub error_burst: u32,
    /// [`Icmp::ping`] calls waiting for replies at once; more fail at once.
    /// Default 64.
    pub max_pings: usize,
}

impl Default for IcmpConfig {
    fn default() -> IcmpConfig {
        IcmpConfig {
            echo_replies_per_second: 100,
            echo_burst: 100,
            errors_per_second: 10,
            error_burst: 10,
            max_pings: 64,
        }
    }
}

/// Counters of an [`IcmpLayer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpStats {
    /// Echo requests answered.
    pub echo_replies_sent: u64,
    /// Echo requests not answered because of the rate limit.
    pub echo_rate_limited: u64,
    /// Destination-unreachable errors sent.
    pub errors_sent: u64,
    /// Errors not sent because of the rate limit.
    pub errors_rate_limited: u64,
    /// Messages dropped: malformed, bad checksum, unsupported, unmatched.
    pub dropped: u64,
}

struct PingWait {
    result: Option<Result<EchoReply, IcmpError>>,
    waker: Option<Waker>,
}

/// ICMPv4 over an [`Ip`] layer.
pub struct IcmpLayer<I, C> {
    ip: I,
    clock: C,
    config: IcmpConfig,
    ident: u16,
    echo_bucket: Cell<TokenBucket>,
    error_bucket: Cell<TokenBucket>,
    pings: RefCell<BTreeMap<(Ipv4Addr, u16), PingWait>>,
    stats: Cell<IcmpStats>,
}

impl<I, C> core::fmt::Debug for IcmpLayer<I, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IcmpLayer").field("ident", &self.ident).field("stats", &self.stats.get()).finish()
    }
}

impl<I: Ip<Addr = Ipv4Addr>, C: Sleep> IcmpLayer<I, C> {
    /// A layer over `ip`; `ident` is the echo identifier of its pings
    /// (random, so replies meant for another stack are not taken).
    pub fn new(ip: I, clock: C, ident: u16, config: IcmpConfig) -> IcmpLayer<I, C> {
        IcmpLayer {
            ip,
            clock,
            config,
            ident,
            echo_bucket: Cell::new(TokenBucket::new(config.echo_replies_per_second, config.echo_burst)),
            error_bucket: Cell::new(TokenBucket::new(config.errors_per_second, config.error_burst)),
            pings: RefCell::default(),
            stats: Cell::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> IcmpStats {
        self.stats.get()
    }

    /// Pings waiting for a reply.
    pub fn pending_pings(&self) -> usize {
        self.pings.borrow().len()
    }

    fn count(&self, f: impl FnOnce(&mut IcmpStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn take_token(&self, bucket: &Cell<TokenBucket>) -> bool {
        let mut b = bucket.get();
        let ok = b.take(self.clock.now());
        bucket.set(b);
        ok
    }

    fn complete_ping(&self, key: (Ipv4Addr, u16), result: Result<EchoReply, IcmpError>) -> bool {
        let mut pings = self.pings.borrow_mut();
        let Some(wait) = pings.get_mut(&key) else { return false };
        if wait.result.is_none() {
            wait.result = Some(result);
        }
        if let Some(w) = wait.waker.take() {
            w.wake();
        }
        true
    }

    /// Handles a received ICMP datagram: answers echo requests, completes
    /// pings. Malformed and unmatched messages are dropped and counted; a
    /// reply that cannot be sent is dropped too (the peer will retry).
    pub async fn input(&self, packet: &IpPacket<Ipv4Addr>) {
        let parsed = Icmpv4Packet::new_checked(&packet.payload[..]).and_then(|p| Icmpv4Repr::parse(&p));
        let Ok(repr) = parsed else {
            self.count(|s| s.dropped += 1);
            return;
        };
        match repr {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                // RFC 1122 §3.2.2.6: an echo to a broadcast or multicast
                // address may be ignored; answering invites amplification.
                // Nor is one answered that would go to no single host.
                if packet.dst.is_broadcast()
                    || packet.dst.is_multicast()
                    || !is_host_address(packet.src)
                    || !self.ip.addresses().contains(&packet.dst)
                {
                    self.count(|s| s.dropped += 1);
                    return;
                }
                if !self.take_token(&self.echo_bucket) {
                    self.count(|s| s.echo_rate_limited += 1);
                    return;
                }
                let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                let options = WriteOptions { src: Some(packet.dst), ..WriteOptions::default() };
                let sent = self
                    .ip
                    .write(packet.src, IpProtocol::ICMP, options, reply.buffer_len(), |buf| {
                        reply.emit(&mut Icmpv4Packet::new_unchecked(buf))
                    })
                    .await;
                if sent.is_ok() {
                    self.count(|s| s.echo_replies_sent += 1);
                }
            }
            Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                let reply = EchoReply {
                    from: IpAddr::V4(packet.src),
                    seq: seq_no,
                    ttl: Some(packet.ttl),
                    payload: bytes::Bytes::copy_from_slice(data),
                };
                if ident != self.ident || !self.complete_ping((packet.src, seq_no), Ok(reply)) {
                    self.count(|s| s.dropped += 1);
                }
            }
            Icmpv4Repr::DstUnreachable { reason, quoted, .. } => {
                // A ping of ours that could not be delivered: the quoted
                // datagram is our echo request.
                let matched = Ipv4Repr::parse_quoted(quoted).ok().and_then(|(header, inner)| {
                    if header.protocol != IpProtocol::ICMP || inner.len() < 8 || inner[0] != 8 {
                        return None;
                    }
                    let ident = u16::from_be_bytes([inner[4], inner[5]]);
                    let seq = u16::from_be_bytes([inner[6], inner[7]]);
                    (ident == self.ident).then_some((header.dst_addr, seq))
                });
                let done = matched.is_some_and(|(dst, seq)| {
                    let reason = alloc::format!("{} reports {reason:?}", packet.src);
                    self.complete_ping((dst, seq), Err(IcmpError::Unreachable { dst: IpAddr::V4(dst), reason }))
                });
                if !done {
                    self.count(|s| s.dropped += 1);
                }
            }
            Icmpv4Repr::TimeExceeded { .. } => self.count(|s| s.dropped += 1),
        }
    }

    /// Tells the sender of `packet` that its destination port is closed
    /// (RFC 792 type 3 code 3), quoting its IP header and first 8 payload
    /// bytes, within the error rate limit. Nothing is sent about datagrams
    /// to broadcast or multicast addresses, nor from an address that is not
    /// one host's (RFC 1122 §3.2.2).
    ///
    /// The quoted header is rebuilt from the delivered datagram (the IP
    /// layer hands up addresses, protocol, TTL and payload, not the raw
    /// header): identification and options are not the original's, which
    /// is enough for the sender to match the error to its socket.
    pub async fn send_port_unreachable(&self, packet: &IpPacket<Ipv4Addr>) {
        if packet.dst.is_broadcast()
            || packet.dst.is_multicast()
            || !is_host_address(packet.src)
            || !self.ip.addresses().contains(&packet.dst)
        {
            return;
        }
        if !self.take_token(&self.error_bucket) {
            self.count(|s| s.errors_rate_limited += 1);
            return;
        }
        let header = Ipv4Repr::new(packet.src, packet.dst, packet.protocol, packet.payload.len(), packet.ttl);
        let quoted_payload = &packet.payload[..packet.payload.len().min(8)];
        let mut quoted = vec![0u8; IPV4_MIN_HEADER_LEN + quoted_payload.len()];
        header.emit(&mut Ipv4Packet::new_unchecked(&mut quoted[..]));
        quoted[IPV4_MIN_HEADER_LEN..].copy_from_slice(quoted_payload);
        let repr = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::PortUnreachable,
            next_hop_mtu: 0,
            quoted: &quoted,
        };
        let options = WriteOptions { src: Some(packet.dst), ..WriteOptions::default() };
        let sent = self
            .ip
            .write(packet.src, IpProtocol::ICMP, options, repr.buffer_len(), |buf| {
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf))
            })
            .await;
        if sent.is_ok() {
            self.count(|s| s.errors_sent += 1);
        }
    }
}

impl<I: Ip<Addr = Ipv4Addr>, C: Sleep> IcmpLayer<I, C> {
    /// Tells the sender of a datagram whose reassembly timed out (RFC 792
    /// type 11 code 1; RFC 1122 §3.3.2), quoting its first fragment's
    /// header (rebuilt, with its identification) and first 8 payload
    /// bytes, within the error rate limit. Only for a datagram addressed
    /// to one of our addresses from one host's.
    pub async fn send_reassembly_expired(&self, expired: &Expired) {
        if !is_host_address(expired.src) || !self.ip.addresses().contains(&expired.dst) {
            return;
        }
        if !self.take_token(&self.error_bucket) {
            self.count(|s| s.errors_rate_limited += 1);
            return;
        }
        let mut header = Ipv4Repr::new(expired.src, expired.dst, expired.protocol, expired.first_len, expired.ttl);
        header.ident = expired.ident;
        header.more_fragments = true;
        let quoted_len = expired.first_len.min(8);
        let mut quoted = vec![0u8; IPV4_MIN_HEADER_LEN + quoted_len];
        header.emit(&mut Ipv4Packet::new_unchecked(&mut quoted[..IPV4_MIN_HEADER_LEN]));
        quoted[IPV4_MIN_HEADER_LEN..].copy_from_slice(&expired.first_bytes[..quoted_len]);
        let repr = Icmpv4Repr::TimeExceeded { reason: Icmpv4TimeExceeded::FragReassemblyExpired, quoted: &quoted };
        let options = WriteOptions { src: Some(expired.dst), ..WriteOptions::default() };
        let sent = self
            .ip
            .write(expired.src, IpProtocol::ICMP, options, repr.buffer_len(), |buf| {
                repr.emit(&mut Icmpv4Packet::new_unchecked(buf))
            })
            .await;
        if sent.is_ok() {
            self.count(|s| s.errors_sent += 1);
        }
    }
}

/// Removes a ping's wait entry however the ping ends.
struct PingGuard<'a> {
    pings: &'a RefCell<BTreeMap<(Ipv4Addr, u16), PingWait>>,
    key: (Ipv4Addr, u16),
}

impl Drop for PingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut pings) = self.pings.try_borrow_mut() {
            pings.remove(&self.key);
        }
    }
}

impl<I: Ip<Addr = Ipv4Addr>, C: Sleep> Icmp for IcmpLayer<I, C> {
    type Error = IcmpError;

    /// Sends one echo request and waits up to `timeout` for the matching
    /// reply (same source, identifier and sequence number).
    ///
    /// Errors: [`IcmpError::TimedOut`]; [`IcmpError::Unreachable`] when
    /// there is no route, ARP gets no answer, or a destination-unreachable
    /// error quotes our request; kind [`ErrorKind::Other`] for an IPv6
    /// destination, a payload too large for IPv4, the same destination and
    /// sequence already being pinged, or more than
    /// [`IcmpConfig::max_pings`] pings at once. Cancel-safe.
    async fn ping(&self, dst: IpAddr, seq: u16, payload: &[u8], timeout: Duration) -> Result<EchoReply, IcmpError> {
        let IpAddr::V4(dst4) = dst else {
            return Err(IcmpError::Other { kind: ErrorKind::Other, message: "IPv6 is not supported".to_string() });
        };
        let deadline = self.clock.now() + timeout;
        let key = (dst4, seq);
        {
            let mut pings = self.pings.borrow_mut();
            if pings.contains_key(&key) {
                return Err(IcmpError::Other {
                    kind: ErrorKind::Other,
                    message: alloc::format!("a ping to {dst} with sequence {seq} is already waiting"),
                });
            }
            if pings.len() >= self.config.max_pings {
                return Err(IcmpError::Other {
                    kind: ErrorKind::Other,
                    message: alloc::format!("{} pings already wait for replies", pings.len()),
                });
            }
            pings.insert(key, PingWait { result: None, waker: None });
        }
        let _guard = PingGuard { pings: &self.pings, key };
        let request = Icmpv4Repr::EchoRequest { ident: self.ident, seq_no: seq, data: payload };
        let write = self.ip.write(dst4, IpProtocol::ICMP, WriteOptions::default(), request.buffer_len(), |buf| {
            request.emit(&mut Icmpv4Packet::new_unchecked(buf))
        });
        // ARP resolution counts against the timeout, as it does for ping(8).
        let write = core::pin::pin!(write);
        let timer = core::pin::pin!(self.clock.sleep_until(deadline));
        match future::select(write, timer).await {
            Either::Left((Ok(()), _)) => {}
            Either::Left((Err(e), _)) => {
                return Err(match e.kind() {
                    IpErrorKind::NoRoute | IpErrorKind::HostUnreachable => {
                        IcmpError::Unreachable { dst, reason: e.to_string() }
                    }
                    _ => IcmpError::Other { kind: ErrorKind::Other, message: alloc::format!("sending ping: {e}") },
                });
            }
            Either::Right(_) => return Err(IcmpError::TimedOut { dst, seq, timeout }),
        }
        let reply = future::poll_fn(|cx| {
            let mut pings = self.pings.borrow_mut();
            match pings.get_mut(&key) {
                Some(wait) => match wait.result.take() {
                    Some(result) => Poll::Ready(result),
                    None => {
                        wait.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                },
                None => Poll::Ready(Err(IcmpError::Other {
                    kind: ErrorKind::Other,
                    message: "ping wait entry vanished".to_string(),
                })),
            }
        });
        let reply = core::pin::pin!(reply);
        let timer = core::pin::pin!(self.clock.sleep_until(deadline));
        match future::select(reply, timer).await {
            Either::Left((result, _)) => result,
            Either::Right(_) => Err(IcmpError::TimedOut { dst, seq, timeout }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arp::{ArpConfig, ArpLayer};
    use crate::ethernet::EthernetLayer;
    use crate::ipv4::reassembly::ReassemblyConfig;
    use crate::ipv4::{Ipv4Config, Ipv4Layer};
    use crate::switch::{Simulation, VirtualClock, VirtualSwitch};
    use alloc::rc::Rc;
    use bytes::Bytes;
    use mirage_types::net::MacAddress;

    #[test]
    fn nothing_is_sent_to_a_source_that_is_no_host_rfc_1122_3_2_2() {
        // The IP layer drops these first (RFC 1122 §3.2.1.3); this layer
        // must not answer them either, over whatever IP layer it runs.
        let clock = VirtualClock::new();
        let switch = VirtualSwitch::new(&clock, 1);
        let eth = Rc::new(EthernetLayer::new(switch.add_port(MacAddress([2, 0, 0, 0, 0, 1]))));
        let arp = ArpLayer::new(eth.clone(), clock.clone(), ArpConfig { announce_count: 0, ..ArpConfig::default() });
        let ip = Ipv4Layer::new(eth, arp, clock.clone(), 1, ReassemblyConfig::default());
        let icmp = IcmpLayer::new(&ip, clock.clone(), 7, IcmpConfig::default());
        let raw = switch.add_port(MacAddress([2, 0, 0, 0, 0, 2]));
        let us = Ipv4Addr::new(10, 0, 0, 1);
        let request = Icmpv4Repr::EchoRequest { ident: 1, seq_no: 1, data: b"x" };
        let mut echo = vec![0u8; request.buffer_len()];
        request.emit(&mut Icmpv4Packet::new_unchecked(&mut echo[..]));
        let packet = |src: Ipv4Addr, protocol, payload: &[u8]| IpPacket {
            src,
            dst: us,
            protocol,
            ttl: 64,
            payload: Bytes::copy_from_slice(payload),
        };
        let sim = Simulation::new(&clock);
        sim.run_until(
            async {
                let config = Ipv4Config { address: "10.0.0.1/24".parse().unwrap(), gateway: None };
                ip.configure(Some(config)).await.unwrap();
                for src in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 1], [127, 0, 0, 1], [240, 0, 0, 1]] {
                    let src = Ipv4Addr::from(src);
                    icmp.input(&packet(src, IpProtocol::ICMP, &echo)).await;
                    icmp.send_port_unreachable(&packet(src, IpProtocol::UDP, &[0; 8])).await;
                }
            },
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(raw.queued(), 0, "something was sent");
        assert_eq!((icmp.stats().dropped, icmp.stats().errors_sent, icmp.stats().echo_replies_sent), (5, 0, 0));
        // A real neighbour is answered: first, its address is resolved.
        let neighbour = packet(Ipv4Addr::new(10, 0, 0, 2), IpProtocol::ICMP, &echo);
        let answer = core::pin::pin!(icmp.input(&neighbour));
        let pause = core::pin::pin!(clock.sleep(Duration::from_millis(10)));
        sim.run_until(future::select(answer, pause), Duration::from_secs(1)).unwrap();
        assert_eq!(raw.queued(), 1, "an ARP request for the neighbour");
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(10, 3);
        let t0 = Instant::from_millis(1000);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(!b.take(Instant::from_millis(1099)));
        assert!(b.take(Instant::from_millis(1100)));
        assert!(!b.take(Instant::from_millis(1100)));
        // A long pause refills to the burst, not beyond.
        let later = Instant::from_millis(60_000);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }
}
