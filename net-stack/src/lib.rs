//! The mirage-rs TCP/IP stack.
//!
//! `#![no_std]` + `alloc`, no unsafe code, so it links into the unikernel
//! platforms unchanged. See the crate's README for what is implemented and,
//! as plainly, what is not.
//!
//! # Modules
//!
//! The layers, bottom up; each protocol's state machine is sans-IO (it
//! takes `now` and packets, and yields packets and deadlines), with an
//! async driver beside it:
//!
//! - [`wire`]: zero-copy views of Ethernet II, ARP, IPv4, IPv6 (not used by
//!   the layers yet), ICMPv4, UDP, TCP and DHCP packets with `parse`/`emit` of their decoded headers, and the
//!   Internet checksum. Parsing never panics on any input.
//! - [`ethernet`]: the Ethernet layer over a network device (our MAC
//!   address, broadcast and joined multicast groups).
//! - [`arp`]: address resolution with bounded tables that a spoofed flood
//!   cannot turn against the neighbours in use.
//! - [`ipv4`]: routing to the link or the gateway, fragmentation, bounded
//!   reassembly, source address validation.
//! - [`icmp`]: echo replies, pings, port unreachable and reassembly time
//!   exceeded errors, rate-limited.
//! - [`udp`]: sockets with bounded receive queues.
//! - [`tcp`]: the TCP state machine, listeners with SYN cookies, and the
//!   async layer of streams and listeners.
//! - [`dhcp`]: the DHCPv4 client (RFC 2131) with an ARP conflict probe
//!   before using an address; [`stack::StackBuilder::dhcp`] turns it on.
//! - [`stack`]: the whole stack on one network device,
//!   [`NetStack`](stack::NetStack), built with
//!   [`StackBuilder`](stack::StackBuilder), implementing the
//!   [`Stack`](mirage_types::stack::Stack) trait.
//!
//! With the `test-utils` feature: `switch` (a virtual Ethernet switch with
//! seeded loss, duplication, reordering and corruption, in virtual time)
//! and `reflector` (sends UDP datagrams back with addresses and ports
//! swapped, for benchmarks that measure a stack against no stack), for
//! tests and benchmarks.
//!
//! # Example: a stack from a network device
//!
//! A stack runs on any [`NetworkDevice`](mirage_types::net::NetworkDevice)
//! (a TAP interface, virtio-net, Xen's netfront) with a handle for time and
//! randomness (a platform's). Its input loop,
//! [`NetStack::run`](stack::NetStack::run), must run as a task for it to
//! receive anything; everything else goes through the
//! [`Stack`](mirage_types::stack::Stack) trait. Here two stacks on the
//! virtual switch of the `test-utils` feature ping each other, in virtual
//! time:
//!
//! ```
//! use core::net::{IpAddr, Ipv4Addr};
//! use core::time::Duration;
//! use std::rc::Rc;
//!
//! use mirage_net_stack::ipv4::Ipv4Config;
//! use mirage_net_stack::stack::{BuildError, NetStack, StackBuilder};
//! use mirage_types::icmp::Icmp;
//! use mirage_types::ip::Ipv4Cidr;
//! use mirage_types::net::NetworkDevice;
//! use mirage_types::random::Random;
//! use mirage_types::stack::Stack;
//! use mirage_types::time::Sleep;
//!
//! /// A stack on `device` with the static address `ip`/24.
//! async fn stack_on<N: NetworkDevice, P: Sleep + Random + Clone>(
//!     device: N,
//!     platform: P,
//!     ip: Ipv4Addr,
//! ) -> Result<NetStack<N, P>, BuildError> {
//!     let address = Ipv4Cidr::new(ip, 24).expect("a valid prefix length");
//!     StackBuilder::new(device, platform).ipv4(Ipv4Config { address, gateway: None }).build().await
//! }
//!
//! # #[cfg(feature = "test-utils")]
//! # {
//! use mirage_net_stack::switch::{Simulation, VirtualClock, VirtualPlatform, VirtualSwitch};
//! use mirage_types::net::MacAddress;
//!
//! let clock = VirtualClock::new();
//! let sim = Simulation::new(&clock);
//! let switch = VirtualSwitch::new(&clock, 1);
//! let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
//! let port_a = switch.add_port(MacAddress([2, 0, 0, 0, 0, 1]));
//! let port_b = switch.add_port(MacAddress([2, 0, 0, 0, 0, 2]));
//! let reply = sim
//!     .run_until(
//!         async {
//!             let stack_a = Rc::new(stack_on(port_a, VirtualPlatform::new(&sim, 2), a).await.expect("stack A"));
//!             let stack_b = Rc::new(stack_on(port_b, VirtualPlatform::new(&sim, 3), b).await.expect("stack B"));
//!             for stack in [&stack_a, &stack_b] {
//!                 let stack = stack.clone();
//!                 sim.spawn(async move {
//!                     stack.run().await.expect("the virtual link never fails");
//!                 });
//!             }
//!             stack_a.icmp().ping(IpAddr::V4(b), 1, b"mirage", Duration::from_secs(1)).await
//!         },
//!         Duration::from_secs(10),
//!     )
//!     .expect("done before the time limit")
//!     .expect("an echo reply");
//! assert_eq!((reply.from, &reply.payload[..]), (IpAddr::V4(b), &b"mirage"[..]));
//! # }
//! ```
//!
//! # Cargo features
//!
//! - `test-utils`: exports the in-memory virtual switch (`switch`, with the
//!   virtual time of `mirage-testkit` it runs on re-exported) that other
//!   crates' tests use, and the raw UDP reflector
//!   (`reflector`) the benchmarks compare the stack with. Off by default.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod wire;

pub mod arp;
pub mod dhcp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod stack;
pub mod tcp;
pub mod udp;

#[cfg(any(test, feature = "test-utils"))]
pub mod reflector;
#[cfg(any(test, feature = "test-utils"))]
pub mod switch;
