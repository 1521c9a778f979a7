//! The virtio platform's test image: a kernel that tests the platform
//! itself (the kernel's failure paths, the virtio-blk driver), not an
//! application. `tests/boot.rs` builds it and boots it under QEMU.
//!
//! The test to run is the application argument, after `--` on the kernel
//! command line (`-append`):
//!
//! | command line | what it checks | how it ends |
//! |---|---|---|
//! | `-- panic` | the kernel's panic handler | status 101 after `kernel panic: panic requested on the command line at platform-virtio/selftest/src/main.rs:LINE:COLUMN` |
//! | `-- breakpoint` | the CPU exception path (`int3`) | status 102 after `kernel exception: breakpoint (vector 3), ...` |
//! | `-- random` | the platform's DRBG: 32 bytes of `Random` | status 0 after `selftest: random HEX`; 1 with the error logged when no entropy source answers |
//! | `--block disk[=virtio:N] -- block` | the virtio-blk driver: reads in flight together return the right data; reads dropped mid-flight neither write freed memory nor disturb later requests | status 0 after two `selftest:` info lines; 1 with the failure logged |
//!
//! Anything else after `--` (or nothing) is a usage error (status 2). The
//! platform's own flags (`--block`, `-l`, ...) are those of every virtio
//! image ([`mirage_types::devices::CommandLine`]); `-- block` overwrites
//! the first MiB of the disk `disk` names, which needs at least 2496
//! sectors (1.22 MiB, what the dropped reads reach).
//!
//! Built as every image is (`--features mirage-rs/virtio`, a profile with
//! `panic = "abort"`, the kernel's link arguments: see the README), this
//! is a `#![no_std]` kernel. Built otherwise (`cargo build --workspace`),
//! it is a host program that says how to build the image and exits with 2;
//! the test code compiles there too, so clippy and the compiler check it.

#![cfg_attr(panic = "abort", no_std, no_main)]
// In the host build only the stub runs; the tests are compiled for checking.
#![cfg_attr(not(panic = "abort"), allow(dead_code))]

extern crate alloc;

use alloc::format;

use mirage_platform_virtio::{VirtioDevices, VirtioPlatform};
use mirage_types::console::Console;
use mirage_types::devices::{Devices, UsageError, USAGE_STATUS};
use mirage_types::platform::{AppError, Platform};
use mirage_types::random::Random;

mod block;

/// The name the image reports itself under.
const NAME: &str = "virtio-selftest";

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

/// The kernel's entry: the virtio platform runs [`selftest`].
#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    mirage_platform_virtio::run_with(boot, NAME, |platform: VirtioPlatform, devices: VirtioDevices| async move {
        selftest(platform, devices).await
    })
}

/// Runs the test the application argument names (see the crate
/// documentation).
async fn selftest(platform: VirtioPlatform, devices: VirtioDevices) -> Result<(), AppError> {
    match platform.args() {
        [test] if test == "panic" => panic!("panic requested on the command line"),
        [test] if test == "breakpoint" => {
            mirage_kernel::arch::cpu::breakpoint();
            Err("the breakpoint exception returned instead of stopping the kernel".into())
        }
        [test] if test == "block" => {
            let disk = devices.block("disk").await?;
            block::run(&platform, &disk).await
        }
        [test] if test == "random" => {
            let mut bytes = [0u8; 32];
            platform.fill(&mut bytes)?;
            let hex: alloc::string::String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            log::info!("selftest: random {hex}");
            Ok(())
        }
        args => {
            let message = format!(
                "say which test to run after `--`: panic, breakpoint, random or block (with --block disk); got {args:?}"
            );
            let text = format!("{NAME}: {}\n", UsageError::Bad(message));
            devices.console().write_diagnostic(text.as_bytes());
            platform.exit(USAGE_STATUS)
        }
    }
}

/// The host stub: this package is a kernel image.
#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "{NAME} is a kernel image of the virtio platform's tests, built with --features mirage-rs/virtio and \
         panic=abort (see platform-virtio/selftest/README.md); `cargo test -p {NAME}` builds it and boots it \
         under QEMU"
    );
    std::process::ExitCode::from(2)
}
