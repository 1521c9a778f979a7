//! Run mirage-rs applications as x86_64 unikernels on virtio devices: the
//! device half of the virtio platform, on top of `mirage-kernel`.
//!
//! | item | what it is |
//! |---|---|
//! | [`run`], [`run_with`] | the entry point: command-line flags, device discovery, the application on the kernel's event loop |
//! | [`VirtioPlatform`] | `mirage_types::platform::Platform`: the kernel's clocks and executor, a DRBG seeded from virtio-rng, RDSEED and RDRAND |
//! | [`VirtioDevices`] | `mirage_types::devices::Devices`: virtio-blk devices, our stack on virtio-net, the serial console |
//! | [`VirtioBlock`] | virtio-blk as `mirage_types::block::BlockDevice`, requests in flight together |
//! | [`VirtioNet`] | virtio-net as `mirage_types::net::NetworkDevice`, driver-owned recycled buffers, frames in flight |
//! | [`rng`] | virtio-rng as an entropy source of the DRBG |
//! | [`flags`] | what `--block NAME[=virtio:N]` and `--net NAME[=virtio:N]` name |
//! | [`discovery`] | finds virtio devices: virtio-mmio slots on QEMU microvm, PCI bus 0 on q35, each with its interrupt line |
//! | [`hal`] | [`hal::KernelHal`], virtio-drivers' `Hal`: DMA from the heap, physical = virtual |
//! | [`pci`] | [`pci::PortCam`], PCI configuration through ports 0xcf8/0xcfc |
//! | [`acpi`] | [`acpi::find_ecam`]: the PCI ECAM window from ACPI's MCFG, a bounded, checksummed walk |
//!
//! # Interrupts and transports: the API drivers build on
//!
//! A driver takes a [`discovery::VirtioDevice`] (its `transport`, its
//! `gsi`), builds the virtio-drivers device over the transport with
//! [`hal::KernelHal`], and claims the line with
//! [`mirage_kernel::interrupt::InterruptLine::claim`]`(device.gsi)`. To wait
//! for the device, a future's `poll`:
//!
//! 1. acknowledges the interrupt at the device (`ack_interrupt()`);
//! 2. takes what the device completed (`peek_used`/`pop_used`, or the
//!    device's `complete_*` calls);
//! 3. if its own request is not among them, calls
//!    [`InterruptLine::arm`](mirage_kernel::interrupt::InterruptLine::arm)
//!    with its waker and returns `Pending`.
//!
//! Lines are level-triggered and masked by the kernel when they fire until
//! the next `arm`, so this order loses no completion
//! (`mirage_kernel::interrupt` explains why). Buffers given to the device
//! must be owned by the driver, not by a future: a dropped future's request
//! still completes into its buffer (see `blk` for the pattern).
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
//!     mirage_platform_virtio::run(boot, "hello", Hello)
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
//! hardware access compiles on the host (so clippy, rustdoc and the unit
//! tests of its pure parts run there) but only works in a kernel image.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod blk;
pub mod discovery;
pub mod flags;
pub mod hal;
pub mod net;
pub mod pci;
mod platform;
pub mod rng;

pub use blk::VirtioBlock;
pub use net::VirtioNet;
pub use platform::{run, run_with, VirtioDevices, VirtioPlatform, VirtioStack};
