//! The mirage-rs TCP/IP stack.
//!
//! `#![no_std]` + `alloc`, no unsafe code, so it links into the unikernel
//! platforms unchanged. See the crate's README for what is implemented and,
//! as plainly, what is not.
//!
//! # Modules
//!
//! - [`wire`]: zero-copy views of Ethernet II, ARP, IPv4, ICMPv4, UDP and
//!   DHCP packets with `parse`/`emit` of their decoded headers, and the
//!   Internet checksum. Parsing never panics on any input.
//! - [`dhcp`]: the DHCPv4 client (RFC 2131) with an ARP conflict probe
//!   before using an address; [`stack::StackBuilder::dhcp`] turns it on.
//!
//! # Cargo features
//!
//! - `test-utils`: exports the in-memory virtual switch and virtual time
//!   (`switch`) that other crates' tests use, and the raw UDP reflector
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
