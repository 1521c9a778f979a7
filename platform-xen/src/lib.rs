//! Run mirage-rs applications as Xen PVH guests: the Xen half of the
//! unikernel platforms, on top of `mirage-kernel` (whose PVH entry Xen
//! boots directly).
//!
//! | item | what it is |
//! |---|---|
//! | [`run`], [`run_with`] | the entry point: Xen set-up, command line, logger on the Xen console, the application on the kernel's executor |
//! | [`XenDevices`] | `mirage_types::devices::Devices`: blkfront block devices, our stack on netfront, the domain's console |
//! | [`XenPlatform`] | `mirage_types::platform::Platform`: the kernel's clocks and executor, Xen's wall clock, shutdown by hypercall |
//! | [`XenConsole`] | `mirage_types::console::Console` through the `console_io` hypercall (dom0 only) |
//! | [`RingConsole`] | `Console` over a domU's PV console ring (`io/console.h`), read in dom0 by `xl console` |
//! | [`DomainConsole`] | the console [`run`] logs to: `console_io` where Xen allows it, else the ring |
//! | [`blkfront`] | [`blkfront::BlockFront`]: a Xen virtual block device (blkif ring, grant-reused bounce pages) as a `mirage_types::block::BlockDevice` |
//! | [`hypercall`] | Xen detection (CPUID), the hypercall page, raw calls |
//! | [`hypervisor`] | typed hypercalls: `console_io`, `sched_op`, `memory_op`, `hvm_op`, `event_channel_op`, `grant_table_op` |
//! | [`event`] | event channels as futures: bind, notify, wait; the dispatch of pending events to waiting tasks |
//! | [`grant`] | grant tables (v1): [`grant::Grant`] gives another domain access to a page; ending it parks entries still mapped |
//! | [`netfront`] | [`netfront::NetFront`]: a Xen virtual network interface (netif rx/tx rings, grant-reused page pools) as a `mirage_types::net::NetworkDevice` |
//! | [`page`] | [`page::SharedPage`]: a page shared with another domain, volatile accesses at checked offsets |
//! | [`ring`] | [`ring::FrontRing`]: the front half of an `io/ring.h` shared ring (slots, indices, notify rules, checks of what the backend writes), used by blkfront and netfront |
//! | [`shared_info`] | the shared info page: Xen system time, wall clock, event channel bitmaps |
//! | [`probe`] | a report of the interfaces reached, each used once |
//! | [`xenstore`] | [`xenstore::Xenstore`]: the xenstore client (read, write, directory, remove, watches, transactions) over the ring of HVM parameters 1 and 2 |
//! | [`xenbus`] | [`xenbus::Frontend`]: a PV device front-end's xenbus state machine (open, publish, wait for the backend, close) |
//! | [`abi`] | hypercall numbers and argument layouts from Xen's public headers |
//!
//! The kernel measures no TSC on Xen: it takes the frequency from Xen's
//! CPUID time leaf (a PVH guest has no PIT). Idling arms Xen's one-shot
//! timer and halts until the event channel upcall (a vector Xen injects,
//! see [`event`]), or blocks in `SCHEDOP_poll` where the upcall cannot be
//! set up: no timer device is needed. What is not done yet: see the
//! crate's README.
//!
//! # The entry
//!
//! An application's entry on this platform is what `mirage::main!` (crate
//! `mirage-rs`) writes; by hand, in a kernel binary built as `mirage-kernel` and
//! `cargo mirage build` describe:
//!
//! ```no_run
//! use mirage_types::devices::Devices;
//! use mirage_types::platform::{App, AppError, Platform};
//!
//! struct Hello;
//!
//! impl App for Hello {
//!     async fn start<P: Platform, D: Devices>(self, _platform: P, devices: D) -> Result<(), AppError> {
//!         let _stack = devices.stack("net0").await?;
//!         Ok(())
//!     }
//! }
//!
//! fn kernel_main(boot: mirage_kernel::BootInfo) -> ! {
//!     mirage_platform_xen::run(boot, "hello", Hello)
//! }
//!
//! // Expands to the kernel's entry symbol under `panic = "abort"`, to nothing
//! // in a host build.
//! mirage_kernel::entry!(kernel_main);
//! # fn main() {}
//! ```
//!
//! # Cargo features
//!
//! This crate has no Cargo features. It is `#![no_std]` + `alloc`; its
//! hypercalls compile on the host (so clippy, rustdoc and the unit tests
//! of the pure parts run there) but only work in a kernel image on Xen.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod abi;
pub mod blkfront;
mod console;
pub mod devices;
pub mod event;
pub mod grant;
pub mod hypercall;
pub mod hypervisor;
pub mod netfront;
pub mod page;
mod platform;
pub mod probe;
pub mod ring;
mod ring_console;
pub mod shared_info;
pub mod xenbus;
pub mod xenstore;

pub use console::{console_io_allowed, DomainConsole, XenConsole};
pub use devices::{XenDevices, XenStack};
pub use hypercall::XenError;
pub use platform::{exit, run, run_with, XenIdle, XenPlatform, XEN_SETUP_STATUS};
pub use ring_console::RingConsole;
