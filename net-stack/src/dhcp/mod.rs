//! A DHCPv4 client: the sans-IO state machine [`DhcpClient`] and the async
//! [`DhcpDriver`] that a [`crate::stack::NetStack`] runs beside its input
//! loop.
//!
//! Reading list:
//! - RFC 2131 §3.1 (the client's exchange: DISCOVER, OFFER, REQUEST, ACK,
//!   DECLINE), §4.1 (retransmission: 4 s doubling to 64 s, randomized by
//!   ±1 s), §4.3.6 and §4.4.1 (Table 5: which fields each message carries),
//!   §4.4.5 (T1 = 0.5 × lease, T2 = 0.875 × lease; RENEWING unicasts to the
//!   server, REBINDING broadcasts; retransmit after half the remaining
//!   time, at least 60 s), §4.4.1 (the lease counts from when the REQUEST
//!   was sent).
//! - RFC 2132: the options (see [`crate::wire::dhcp`]).
//! - RFC 5227 §2.1: probe the address before using it; a conflict is
//!   answered with DHCPDECLINE (RFC 2131 §3.1 step 5), and the client waits
//!   at least ten seconds before starting again.
//!
//! # States
//!
//! ```text
//!  INIT ──DISCOVER──▶ SELECTING ──OFFER/REQUEST──▶ REQUESTING ──ACK──▶ PROBING
//!   ▲                                                   │ NAK, no answer   │ conflict: DECLINE
//!   ├───────────────────────────────────────────────────┴──────────────────┘ (after a delay)
//!   │                                                                       │ no conflict
//!   │ expiry, NAK                                                           ▼
//!  REBINDING ◀──T2── RENEWING ◀──T1── BOUND ◀───────────────────────────────┘
//!            └──ACK (same address) extends the lease, back to BOUND──┘
//! ```
//!
//! # Bounds
//!
//! The client holds one offer (the first acceptable one, as RFC 2131 §4.4.1
//! allows), one lease and one message to send; events wait in a queue of at
//! most [`MAX_EVENTS`]. Every exchange is bounded in time: DISCOVERs repeat
//! at most every [`DhcpConfig::max_retransmit`] (± jitter), a REQUEST is
//! sent [`DhcpConfig::request_attempts`] times before starting over, and
//! consecutive failures (NAK, DECLINE, unanswered REQUEST) back off the
//! restart exponentially up to the same cap, so a hostile server cannot
//! make the client send faster than that. Leases shorter than
//! [`DhcpConfig::min_lease`] are treated as that long, so a tiny lease
//! cannot make the client renew in a tight loop.
//!
//! # Not implemented
//!
//! INIT-REBOOT (leases are not stored across restarts), DHCPRELEASE and
//! DHCPINFORM, choosing among several offers (the first acceptable one
//! wins), relay agents, and the options [`crate::wire::dhcp`] leaves out
//! (host and domain names, static routes, option overload).

mod client;
mod driver;

pub use client::{DhcpClient, DhcpConfig, DhcpEvent, DhcpState, DhcpStats, DhcpTransmit, Lease, LeaseLost, MAX_EVENTS};
pub use driver::{DhcpDriver, StaticFallback, CLIENT_BIND_ADDR};
