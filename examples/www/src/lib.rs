//! The www example: a static web server written once against the traits of
//! `mirage-types`, so the same code serves from a Linux process on the
//! host's sockets or from a unikernel with its own TCP/IP stack.
//!
//! [`start`] takes the stack `net0` and the read-only store `htdocs` (a tar
//! archive on a block device, else the files compiled in) from the
//! platform's devices; [`listen`] listens on any
//! [`Stack`](mirage::stack::Stack) and serves the values of any read-only
//! key-value store ([`KvRead`](mirage::kv::KvRead)) over HTTP/1.1: `GET` and `HEAD`,
//! persistent connections, `Content-Type` from the extension, `index.html`
//! for directories. [`CrunchKv`] is the store of the files that were in
//! `examples/www/htdocs/` at build time.
//!
//! # Bounds
//!
//! Everything a client can make the server hold is bounded (see [`Config`]
//! for the values and the flags that change them, and the README's
//! "Bounds" for the memory per connection, measured):
//!
//! - connections: at most [`Config::max_connections`] at once, and
//!   [`Config::max_connections_per_address`] from one (non-loopback) peer
//!   address; from three quarters of the limit on, a new connection
//!   evicts the one that has waited longest for a request; one over the
//!   limits with nothing to evict gets a 503 with `Retry-After`;
//! - memory per connection: a request head of at most
//!   [`Config::head_limit`] bytes (a longer one is answered with 431 and
//!   the connection closed), a response head with a body of at most
//!   16 KiB, or one chunk of [`Config::chunk_size`] bytes of a larger value
//!   in flight; on our own stack, the stack's send and receive buffers
//!   besides;
//! - time: a request head must be complete within
//!   [`Config::head_timeout`] however slowly it trickles in; a connection
//!   that starts no next request, or accepts no response bytes, for
//!   [`Config::idle_timeout`] is closed; the lingering close after an
//!   answer that ends a connection lasts at most 5 s.
//!
//! Request framing is parsed strictly (RFC 9112), so that no proxy in front
//! reads other request boundaries than the server does: a bare LF line
//! ending, conflicting `Content-Length`s, or `Transfer-Encoding` with
//! `Content-Length` get a 400 and the connection closed.
//!
//! # What it does not do
//!
//! No request bodies (a request that has one is answered and the
//! connection ended, after reading and discarding what follows), no
//! ranges, no conditional requests, no compression, no TLS, no directory
//! listings, no HTTP/2.
//!
//! # Cargo features
//!
//! None. The crate is `#![no_std]` and needs only `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod config;
mod crunch;
mod http;
mod server;

pub use config::{Config, ConfigError};
pub use crunch::CrunchKv;
pub use server::{listen, serve, start, NET_DEVICE, SITE_DEVICE};
