//! ARP: resolving IPv4 addresses to MAC addresses on one link.
//!
//! Reading list:
//! - RFC 826: the protocol and its packet-reception algorithm.
//! - RFC 1122 §2.3.2: cache timeout (with the "unicast poll" option),
//!   flooding limit (at most one request per second per address),
//!   queueing packets while resolving.
//! - RFC 5227: address conflict detection (probes) and announcements.
//! - RFC 5944 §4.6 / RFC 5227 §3: gratuitous ARP.
//! - Linux `arp(7)`/`neighbour` for comparison: `gc_thresh1..3`,
//!   `ucast_solicit`, reachability confirmation by upper layers.
//!
//! [`ArpCache`] is the sans-IO core: it takes `now` and received packets,
//! and yields packets to send ([`ArpCache::poll_transmit`]) and the next
//! deadline ([`ArpCache::poll_deadline`]). [`ArpLayer`] drives it over any
//! [`Ethernet`] and implements [`Arp`].
//!
//! # Entries and their lifetime
//!
//! A resolved entry is trusted for `entry_lifetime` after it was learned or
//! last confirmed (by an ARP packet from its owner, or by
//! [`ArpCache::confirm`], which an upper layer calls when the peer shows
//! progress, as Linux's TCP confirms neighbours when an ACK advances). An
//! entry that was *in use* (looked up to send within the last
//! `entry_lifetime`) does not vanish at expiry: it stays usable while it is
//! polled with unicast requests (RFC 1122 §2.3.2.1 option 2; Linux's
//! `PROBE` state), up to `max_attempts` of them, one per `retry_interval`;
//! any packet from the owner refreshes it, and only after the last poll
//! goes unanswered is it removed. An entry nobody used just expires. So a
//! neighbour we are talking to is never dropped and re-resolved behind
//! other resolutions.
//!
//! # Learning (RFC 826)
//!
//! Entries are created only from packets answering a resolution of ours,
//! or addressed to us (RFC 826's "am I the target?"); a known entry is
//! updated by any packet from its address. Packets about other hosts
//! store nothing. A packet addressed to us from an unknown sender is
//! learned only if the table has room or holds an entry not in use to
//! replace; it never evicts an entry in use. So a flood of spoofed
//! requests or replies cannot push out the neighbours we talk to.
//!
//! # Bounds
//!
//! Everything a peer can make us store is bounded by [`ArpConfig`]:
//!
//! - resolved entries: `max_entries`. When full, an entry not in use goes
//!   first (the oldest); an answer to our own request may also replace the
//!   least recently used entry in use; a packet merely addressed to us may
//!   not (it is then answered but not learned, counted in
//!   [`ArpStats::not_learned`]);
//! - resolutions in progress or remembered as failed: `max_pending`. When
//!   full, a new resolution replaces the one that has had its chance the
//!   longest ago: a failure first, then the oldest that has sent a request
//!   and got no answer, then the oldest still waiting for its first
//!   request. Its waiters fail with [`ArpError::QueueFull`]. So spoofed
//!   destinations, which never answer, cannot keep a real neighbour from
//!   being resolved; the cost of a flood is each unresolved destination's
//!   time in the table, which shrinks as the flood grows;
//! - tasks waiting on one resolution: `max_waiters` (beyond it
//!   [`ArpError::QueueFull`]); the packets they carry are held by those
//!   tasks, so `max_pending × max_waiters` bounds them in all;
//! - requests sent: one per `retry_interval` per address (RFC 1122
//!   §2.3.2.1), and on the whole link at most `request_rate` per second
//!   with bursts of `request_burst` (a token bucket). When requests must
//!   wait for the bucket, polls of entries in use go first, then first
//!   requests for new destinations (newest first: under overload the
//!   newest is the one whose sender still waits), then retries. Until a
//!   destination answers, nothing tells a spoofed one from a real one: if
//!   new destinations come faster than `request_rate`, each gets its
//!   request with a probability of about `request_rate` over their rate
//!   (and again when its sender retries). Neighbours that talk to us are
//!   not in this race: a new client asks for our address first, and that
//!   request creates its entry; one that already knows our address is
//!   asked directly (see "Asking the sender" below);
//! - sender hints: `max_pending`, the newest replacing the oldest;
//! - outgoing packets queued: [`ArpCache::MAX_TRANSMIT_QUEUE`]; probes at
//!   once: [`ArpCache::MAX_PROBES`].

//!
//! # Asking the sender
//!
//! A client that already knows our MAC address (a second address of a
//! host we talk to, or one that kept our entry longer than we kept its)
//! opens a connection without asking for ours, and our answer needs a
//! resolution that, during a flood of spoofed sources, competes for the
//! link's request budget with theirs. The stack tells the cache which MAC
//! address a frame asking for an answer (a TCP SYN, a UDP datagram, an
//! ICMP message) came from ([`ArpCache::note_sender`]). A resolution of
//! that address started within `retry_interval` that finds the budget
//! spent sends, besides waiting for its broadcast, one request by unicast
//! to that MAC address, outside the budget. The frame's MAC address is
//! never learned as the entry: only an ARP answer from the owner creates
//! it, as before, so the hint cannot poison the cache. Such a request goes
//! only to a station that just sent us a frame, at most one per
//! resolution, so it amplifies nothing: a spoofing sender gets one
//! unanswered request per address it claims, at most one per frame it
//! sent. With budget to spare nothing changes: the broadcast goes at once.
//!
//! [`Ethernet`]: mirage_types::ethernet::Ethernet
//! [`Arp`]: mirage_types::arp::Arp
//! [`ArpError::QueueFull`]: mirage_types::arp::ArpError::QueueFull

mod cache;
mod layer;

pub use cache::{ArpCache, ArpConfig, ArpStats, Lookup};
pub use layer::{ArpLayer, ProbeConfig};
