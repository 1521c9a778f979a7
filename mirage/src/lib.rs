//! Write a mirage-rs application once; build it as a Linux process, a
//! virtio unikernel or a Xen guest.
//!
//! An application is one crate: its generic code, written against the
//! traits of `mirage-types` (re-exported here), and one entry line:
//!
//! ```ignore
//! // src/main.rs
//! #![cfg_attr(panic = "abort", no_std, no_main)]
//! mirage::main!(my_app::start);
//! ```
//!
//! where `start` is
//!
//! ```
//! use mirage::devices::Devices;
//! use mirage::platform::{AppError, Platform};
//!
//! pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<(), AppError> {
//!     let _stack = devices.stack("net0").await?;
//!     let _started = platform.wall_time();
//!     Ok(())
//! }
//! ```
//!
//! `start` may return `()`, `Result<(), E>` or `Result<Infallible, E>` for
//! any error `E` that converts into [`platform::AppError`] (see
//! [`platform::AppOutcome`]).
//!
//! # Targets
//!
//! | target | how it is built | what [`main!`] expands to |
//! |---|---|---|
//! | unix | `cargo build` / `cargo run`, any profile | `fn main` calling `mirage_platform_unix::run` |
//! | virtio | `cargo mirage build -t virtio`: feature `virtio`, `panic = "abort"`, the kernel link arguments | the kernel entry calling `mirage_platform_virtio::run` |
//! | xen | `cargo mirage build -t xen`: feature `xen`, the same profile | the kernel entry calling `mirage_platform_xen::run` |
//!
//! The line `#![cfg_attr(panic = "abort", no_std, no_main)]` is the one
//! thing the macro cannot write: crate attributes come before any item.
//! Under `panic = "abort"` a kernel image has no `std` and no C `main`. A
//! Linux build under `panic = "abort"` (a release profile that sets it)
//! works too: the macro then links `std` back in and defines the C `main`
//! itself.
//!
//! Every platform hands the application the same two values and takes the
//! same flags: see [`devices`].
//!
//! # Cargo features
//!
//! - `virtio`: the entry of a virtio unikernel image (pulls in
//!   `mirage-kernel` and `mirage-platform-virtio`).
//! - `xen`: the entry of a Xen PVH guest image (pulls in `mirage-kernel`
//!   and `mirage-platform-xen`).
//!
//! With neither, [`main!`] makes a Linux process. `cargo mirage` turns the
//! right one on; there is no need to name them in an application's
//! manifest.

#![no_std]
#![forbid(unsafe_code)]

pub use mirage_types::*;

/// The tutorial's code, compiled and run as doctests so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/tutorial.md")]
pub struct Tutorial;

/// What [`main!`]'s expansion reaches; not an API.
#[doc(hidden)]
pub mod __private {
    #[cfg(any(feature = "virtio", feature = "xen"))]
    pub use mirage_kernel::{entry, BootInfo};
    #[cfg(not(panic = "abort"))]
    pub use mirage_platform_unix as unix;
    #[cfg(feature = "virtio")]
    pub use mirage_platform_virtio as virtio;
    #[cfg(feature = "xen")]
    pub use mirage_platform_xen as xen;
}

/// Implements [`platform::App`] for the application's `start` function as
/// `__MirageApp`; the platform part of [`main!`] follows it.
#[doc(hidden)]
#[macro_export]
macro_rules! __app {
    ($start:path) => {
        struct __MirageApp;

        impl $crate::platform::App for __MirageApp {
            async fn start<P: $crate::platform::Platform, D: $crate::devices::Devices>(
                self,
                platform: P,
                devices: D,
            ) -> ::core::result::Result<(), $crate::platform::AppError> {
                $crate::platform::AppOutcome::into_result($start(platform, devices).await)
            }
        }
    };
}

/// The entry of a mirage-rs application: `mirage::main!(path::to::start)`,
/// with `start` an `async fn start<P: Platform, D: Devices>(P, D)`.
///
/// This is the Linux-process expansion (no target feature): `fn main`
/// runs the application with `mirage_platform_unix::run`, named after the
/// package.
#[cfg(not(any(feature = "virtio", feature = "xen")))]
#[macro_export]
macro_rules! main {
    ($start:path) => {
        $crate::__app!($start);

        #[cfg(not(panic = "abort"))]
        fn main() -> ::std::process::ExitCode {
            $crate::__private::unix::run(::core::env!("CARGO_PKG_NAME"), __MirageApp)
        }

        // A Linux build under `panic = "abort"`: the crate is `no_std` and
        // `no_main` (its first line), so std comes back here and the C
        // `main` is ours.
        #[cfg(panic = "abort")]
        extern crate std;

        #[cfg(panic = "abort")]
        #[no_mangle]
        extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
            $crate::__private::unix::run(::core::env!("CARGO_PKG_NAME"), __MirageApp).exit_process()
        }
    };
}

/// The entry of a mirage-rs application (see the Linux expansion's docs).
///
/// This is the virtio expansion: under `panic = "abort"` (the kernel
/// profile `cargo mirage build -t virtio` uses) the kernel's entry calls
/// `mirage_platform_virtio::run`; otherwise a host stub that says how to
/// build the image.
#[cfg(all(feature = "virtio", not(feature = "xen")))]
#[macro_export]
macro_rules! main {
    ($start:path) => {
        $crate::__app!($start);
        $crate::__kernel_entry!(virtio);
    };
}

/// The entry of a mirage-rs application (see the Linux expansion's docs).
///
/// This is the Xen expansion: under `panic = "abort"` (the kernel profile
/// `cargo mirage build -t xen` uses) the kernel's entry calls
/// `mirage_platform_xen::run`; otherwise a host stub that says how to
/// build the image.
#[cfg(all(feature = "xen", not(feature = "virtio")))]
#[macro_export]
macro_rules! main {
    ($start:path) => {
        $crate::__app!($start);
        $crate::__kernel_entry!(xen);
    };
}

/// Both target features: an image is for one target.
#[cfg(all(feature = "virtio", feature = "xen"))]
#[macro_export]
macro_rules! main {
    ($start:path) => {
        ::core::compile_error!(
            "mirage-rs is built with both the `virtio` and `xen` features: an image is for one target \
             (cargo mirage build -t virtio|xen turns on one)"
        );
    };
}

/// The kernel entry of an image for `$target` (`virtio` or `xen`).
#[doc(hidden)]
#[macro_export]
macro_rules! __kernel_entry {
    ($target:ident) => {
        #[cfg(panic = "abort")]
        $crate::__private::entry!(__mirage_kernel_main);

        #[cfg(panic = "abort")]
        fn __mirage_kernel_main(boot: $crate::__private::BootInfo) -> ! {
            $crate::__private::$target::run(boot, ::core::env!("CARGO_PKG_NAME"), __MirageApp)
        }

        #[cfg(not(panic = "abort"))]
        fn main() -> ::std::process::ExitCode {
            ::std::eprintln!(
                "{} was built for {} without the kernel profile; build the image with `cargo mirage build -t {}`",
                ::core::env!("CARGO_PKG_NAME"),
                ::core::stringify!($target),
                ::core::stringify!($target),
            );
            ::std::process::ExitCode::from(2)
        }
    };
}
