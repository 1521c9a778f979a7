//! The interface of the whole mirage-rs operating system.
//!
//! An application is ordinary async Rust written against the traits in this
//! crate. At compile time it is wired to one platform: a Linux process
//! (`mirage-platform-unix`), a bare-metal virtio unikernel
//! (`mirage-platform-virtio`) or a Xen guest (`mirage-platform-xen`). The
//! libraries in between (`mirage-net-stack`, `mirage-block`,
//! `mirage-console`) implement the higher traits on top of the lower ones, and
//! so does any user who writes a device of their own.
//!
//! The module list below is the whole surface of the OS:
//!
//! | module | what it describes |
//! |---|---|
//! | [`time`] | monotonic clock, wall clock, sleeping until a deadline |
//! | [`random`] | a cryptographically secure random source |
//! | [`platform`] | the one handle an application receives: time, randomness, tasks, arguments, exit; [`platform::App`], what a platform starts |
//! | [`devices`] | the other value it receives: its devices by name (stack, block devices, key-value stores, console), and the command line every platform takes |
//! | [`flow`] | a reliable byte stream (TCP connections, consoles) |
//! | [`console`] | the console device |
//! | [`block`] | block devices: fixed-size sectors, scatter-gather I/O, flush |
//! | [`net`] | network devices: Ethernet frames in and out |
//! | [`ethernet`], [`arp`], [`ip`], [`icmp`] | the layers of a TCP/IP stack, so they can be composed and replaced |
//! | [`udp`], [`tcp`], [`stack`] | what applications use to talk to the network |
//! | [`kv`] | key-value stores, read-only and read-write |
//!
//! # General conventions
//!
//! These hold for every trait in this crate unless its documentation says
//! otherwise. Implementations must follow them; users may rely on them.
//!
//! ## Execution model
//!
//! A mirage-rs system runs one event loop on one CPU, as MirageOS does: no
//! preemptive threads, no locks. Trait methods are native `async fn`s, so
//! calls are statically dispatched and allocate nothing; their futures are
//! not `Send`, and nothing here needs them to be. Concurrency comes from
//! several futures being polled by the same loop (spawned with
//! [`platform::Platform::spawn`] or joined in one task).
//!
//! ## Handles and flows
//!
//! Devices and protocol layers (a block device, a network device, a TCP
//! stack) are *handles*: their methods take `&self`, they keep their mutable
//! state inside, and any number of tasks may hold a reference to the same
//! handle. Forwarding impls for `&T`, `Box<T>` and `Rc<T>` let a handle be
//! passed into generic code however it is owned.
//!
//! *Flows* (a TCP connection, see [`flow`]) are owned values: their I/O
//! methods take `&mut self`, and dropping a flow releases it.
//!
//! Constructing a device is never part of a trait. Each implementation has
//! its own constructor; code that is given a device cannot open another.
//!
//! ## Results and panics
//!
//! Everything that can fail because of the outside world (a disk, a peer, a
//! packet, a configuration value) returns `Result`. Nothing in an
//! implementation may panic on input that comes from outside. Panics are
//! reserved for broken invariants inside the program itself.
//!
//! Each trait family has an error *kind* (a `#[non_exhaustive]` enum such as
//! [`block::ErrorKind`]) that generic code matches on, an `Error` trait that
//! every implementation error implements to report its kind, and a ready-made
//! error type (such as [`block::BlockError`]) that implementations may use.
//! Messages say what failed and where, e.g. "write of 8 sectors at sector
//! 1020 goes past the end of a 1024-sector device".
//!
//! ## What `Ok` means
//!
//! Every I/O method documents its guarantee. The common ones:
//!
//! - a block `write` that returns `Ok` is visible to later reads, but is
//!   *durable* only once a later `flush` has returned `Ok`;
//! - a flow `write` that returns `Ok(n)` has accepted `n` bytes into the
//!   send path; it says nothing about the peer having received them;
//! - a key-value `set` that returns `Ok` is durable.
//!
//! When a method returns `Err`, its documentation says which effects may
//! have happened anyway (a failed multi-sector write may have written some
//! sectors, for example).
//!
//! ## Cancellation
//!
//! Dropping a future before it completes cancels the operation. Every async
//! method says whether it is *cancel-safe*: a cancel-safe method has either
//! not started its effect or finished it when the future is dropped, so it
//! can be used in a `select` loop and retried. Methods that are not
//! cancel-safe leave the resource usable but say which effects may be
//! partial.
//!
//! ## Buffers
//!
//! Received data arrives as [`bytes::Bytes`]: layers slice the same frame
//! without copying, and the receiver may keep it as long as it likes.
//! Transmission is "fill a buffer": the caller asks the device or the lower
//! layer for a buffer of a given size and writes headers and payload into
//! it, so the steady-state send path allocates nothing. Borrowed buffers
//! (`&[u8]`, `&mut [u8]`) passed to a method may be reused as soon as its
//! future completes or is dropped.
//!
//! ## Dynamic dispatch
//!
//! The static traits are the primary API. Where a device is chosen at run
//! time (a block device named by a flag, a list of network interfaces), the
//! object-safe `Dyn…` counterparts ([`block::DynBlockDevice`],
//! [`net::DynNetworkDevice`], [`kv::DynKvRead`], [`kv::DynKvWrite`],
//! [`console::DynConsole`]) are implemented for every implementation of the
//! static trait, and `dyn Dyn…` implements the static trait again, so a boxed
//! device can be passed back into generic code. Their errors are the
//! family's ready-made error type.
//!
//! # Cargo features
//!
//! This crate has no Cargo features. It is `#![no_std]` and needs only
//! `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

/// Implements a trait for pointer types by forwarding every item to the
/// pointee: `(**self)` reaches `T` from `&&T`, `&Box<T>`, `&Rc<T>` and
/// `&mut &mut T` alike, so one body serves every pointer type.
macro_rules! forward {
    ($Trait:ident for [$($ptr:ty),*] $body:tt) => {
        $( impl<T: $Trait + ?Sized> $Trait for $ptr $body )*
    };
}

/// Forwarding impls for a handle trait (methods take `&self`).
macro_rules! forward_handle {
    ($Trait:ident $body:tt) => {
        forward!($Trait for [&T, alloc::boxed::Box<T>, alloc::rc::Rc<T>] $body);
    };
}

/// Forwarding impls for a flow trait (I/O takes `&mut self`).
macro_rules! forward_flow {
    ($Trait:ident $body:tt) => {
        forward!($Trait for [&mut T, alloc::boxed::Box<T>] $body);
    };
}

/// Declares a family's error kind and its `Error` trait (see "Results and
/// panics" above). Each variant carries its doc and its display text.
macro_rules! error_family {
    ($family:literal { $( $(#[$vdoc:meta])* $Variant:ident => $msg:literal, )* }) => {
        #[doc = concat!("What went wrong in a ", $family, " operation, for generic code to act on.")]
        ///
        /// New kinds may be added in minor releases: match with a wildcard arm.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$vdoc])* $Variant, )*
        }

        impl core::fmt::Display for ErrorKind {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(match self {
                    $( ErrorKind::$Variant => $msg, )*
                })
            }
        }

        impl core::error::Error for ErrorKind {}

        #[doc = concat!("An error from a ", $family, " implementation.")]
        ///
        /// Implementations define their own error types with messages that say
        /// what failed and where; this trait lets generic code learn the kind.
        pub trait Error: core::error::Error {
            /// The kind of failure.
            fn kind(&self) -> ErrorKind;
        }

        /// A bare kind is itself an error, for implementations with nothing
        /// more to say.
        impl Error for ErrorKind {
            fn kind(&self) -> ErrorKind {
                *self
            }
        }
    };
}

pub mod arp;
pub mod block;
pub mod console;
pub mod devices;
pub mod ethernet;
pub mod flow;
pub mod icmp;
pub mod ip;
pub mod kv;
pub mod net;
pub mod platform;
pub mod random;
pub mod stack;
pub mod tcp;
pub mod time;
pub mod udp;

#[cfg(test)]
mod testing;

pub use bytes::{Bytes, BytesMut};
