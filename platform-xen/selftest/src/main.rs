//! The Xen platform's test image: a PVH guest that tests the platform
//! itself (the hypervisor interfaces, the xenstore client, blkfront), not
//! an application. `tests/boot.rs` builds it and boots it through the
//! project's Xen harness, as Xen's dom0 and as a domU.
//!
//! Every run, in order:
//!
//! 1. **probe**: [`mirage_platform_xen::probe::probe`] uses each
//!    hypervisor interface once (version, an event channel looped back
//!    and notified, a page granted and ended, the HVM parameters of the
//!    console and xenstore rings) and the image logs `xen probe: ...`; a
//!    failed step is the error.
//! 2. **xenstore**: where the domain has a xenstore ring (a domU), through
//!    the domain's one connection ([`XenDevices::xenstore`]): reads its
//!    `name` and `domid`, lists `device` and each kind's ids, writes and
//!    reads back `data/mirage-test`, runs a transaction on
//!    `data/mirage-count`, watches `data/mirage-watch` and sees it fire on
//!    a write under it, and logs one `xenstore: ...` line. As dom0 without
//!    a toolstack it logs that xenstore is absent and goes on.
//! 3. **block**, with the application argument `-- block` and the vbd
//!    named `disk` (`--block disk[=xen:ID]`): blkfront reads issued
//!    together from one task are in flight together and return what was
//!    written, and closing the device gives back every grant it took
//!    (see `block.rs`). Destroys what the vbd held where it writes.
//!
//! It powers off with 0 when every step passed, with 1 after logging the
//! failure otherwise, with 2 on a usage error (anything else after `--`).
//! Every wait is bounded. The platform's flags are those of every Xen
//! image ([`mirage_types::devices::CommandLine`], `xen:ID` backings).
//!
//! Built as every image is (`--features mirage-rs/xen`, a profile with
//! `panic = "abort"`, the kernel's link arguments: see the README), this
//! is a `#![no_std]` kernel. Built otherwise (`cargo build --workspace`),
//! it is a host program that says how to build the image and exits with 2;
//! the test code compiles there too, so clippy and the compiler check it.

#![cfg_attr(panic = "abort", no_std, no_main)]
// In the host build only the stub runs; the tests are compiled for checking.
#![cfg_attr(not(panic = "abort"), allow(dead_code))]

extern crate alloc;

use alloc::format;
use alloc::string::ToString;
use core::future::Future;
use core::pin::pin;
use core::time::Duration;

use futures::future::{self, Either};
use mirage_platform_xen::xenstore::XenstoreError;
use mirage_platform_xen::{XenDevices, XenPlatform};
use mirage_types::console::Console;
use mirage_types::devices::{Devices, UsageError, USAGE_STATUS};
use mirage_types::platform::{AppError, Platform};
use mirage_types::time::Sleep;

mod block;
mod xenstore;

/// The name the image reports itself under.
const NAME: &str = "xen-selftest";

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

/// The kernel's entry: the Xen platform runs [`selftest`].
#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    mirage_platform_xen::run_with(boot, NAME, |platform: XenPlatform, devices: XenDevices| async move {
        selftest(platform, devices).await
    })
}

/// Runs the steps (see the crate documentation).
async fn selftest(platform: XenPlatform, devices: XenDevices) -> Result<(), AppError> {
    let block = match platform.args() {
        [] => false,
        [test] if test == "block" => true,
        args => {
            let message = format!("the only test to ask for after `--` is block (with --block disk); got {args:?}");
            let text = format!("{NAME}: {}\n", UsageError::Bad(message));
            devices.console().write_diagnostic(text.as_bytes());
            platform.exit(USAGE_STATUS)
        }
    };
    let probe = mirage_platform_xen::probe::probe().map_err(|e| AppError::from(e.to_string()))?;
    log::info!("xen probe: {probe}");
    match devices.xenstore() {
        Ok(store) => {
            let report = bounded(&platform, "xenstore check", xenstore::LIMIT, xenstore::check(&store)).await?;
            log::info!("xenstore: {report}");
        }
        Err(XenstoreError::Absent) => {
            log::info!("xenstore: absent (this domain has no xenstore ring), going on without it")
        }
        Err(e) => return Err(format!("xenstore: {e}").into()),
    }
    if block {
        block::run(&platform, &devices).await?;
    }
    Ok(())
}

/// `operation`'s result, or an error naming `what` if it is not done
/// within `limit` (the operation is then dropped).
async fn bounded<T, E: Into<AppError>>(
    platform: &XenPlatform,
    what: &str,
    limit: Duration,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, AppError> {
    match future::select(pin!(operation), pin!(platform.sleep(limit))).await {
        Either::Left((result, _)) => result.map_err(|e| format!("{what}: {}", e.into()).into()),
        Either::Right(((), _)) => Err(format!("{what}: not done after {limit:?}").into()),
    }
}

/// The host stub: this package is a kernel image.
#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "{NAME} is a kernel image of the Xen platform's tests, built with --features mirage-rs/xen and \
         panic=abort (see platform-xen/selftest/README.md); `cargo test -p {NAME}` builds it and boots it \
         under Xen"
    );
    std::process::ExitCode::from(2)
}
