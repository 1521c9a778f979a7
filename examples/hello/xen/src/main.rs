//! The hello example as a Xen PVH guest.
//!
//! Built with `cargo build -p hello-xen --profile kernel`, whose
//! `panic = "abort"` makes this a `#![no_std]` kernel; the image is
//! `target/kernel/hello-xen`, booted by `cargo xtask xen dom0 IMAGE` (as
//! Xen's PVH dom0 under QEMU) or `cargo xtask xen domu IMAGE`. Built in any
//! other profile (as `cargo build --workspace` does), it is a host program
//! that says how to build the image and fails.
//!
//! Before greeting it reports, at info level, what
//! `mirage_platform_xen::probe` found (Xen version, hypercall page, an
//! event channel looped back and notified, the grant table); a failed
//! probe is the application's error (exit status 1).
//!
//! Then, where the domain has a xenstore ring (a domU), it uses it once:
//! reads its `name` and `domid`, lists `device`, writes and reads back
//! `data/mirage-test`, runs a transaction, watches a path and sees the
//! watch fire, and logs one `xenstore: ...` line; a failure is the
//! application's error. As dom0 without a toolstack it logs that xenstore
//! is absent and goes on.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    mirage_platform_xen::run(boot, |platform| async move {
        let probe = mirage_platform_xen::probe::probe().map_err(AppError::Probe)?;
        log::info!("xen probe: {probe}");
        match xenstore_check().await {
            Ok(report) => log::info!("xenstore: {report}"),
            Err(AppError::Xenstore(XenstoreError::Absent)) => {
                log::info!("xenstore: absent (this domain has no xenstore ring), going on without it")
            }
            Err(e) => return Err(e),
        }
        hello::start(platform).await;
        Ok(())
    })
}

#[cfg(panic = "abort")]
use mirage_platform_xen::xenstore::{Xenstore, XenstoreError};

/// Why the application failed.
#[cfg(panic = "abort")]
enum AppError {
    Probe(mirage_platform_xen::probe::ProbeError),
    Xenstore(XenstoreError),
    /// xenstore answered, but not with what was written.
    Check(alloc::string::String),
}

#[cfg(panic = "abort")]
impl core::fmt::Display for AppError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AppError::Probe(e) => write!(f, "{e}"),
            AppError::Xenstore(e) => write!(f, "{e}"),
            AppError::Check(what) => write!(f, "xenstore check: {what}"),
        }
    }
}

#[cfg(panic = "abort")]
impl From<XenstoreError> for AppError {
    fn from(e: XenstoreError) -> AppError {
        AppError::Xenstore(e)
    }
}

#[cfg(panic = "abort")]
extern crate alloc;

/// Uses each xenstore operation once and describes what it saw.
#[cfg(panic = "abort")]
async fn xenstore_check() -> Result<alloc::string::String, AppError> {
    use alloc::format;
    let store = Xenstore::connect()?;
    let name = store.read("name").await?;
    let domid = store.read("domid").await?;
    let devices = store.directory("device").await?;
    let mut kinds = alloc::vec::Vec::new();
    for kind in &devices {
        let ids = mirage_platform_xen::xenbus::Frontend::list(&store, kind).await?;
        kinds.push(format!("{kind}={ids:?}"));
    }
    let value = format!("hello from domain {domid}");
    store.write("data/mirage-test", &value).await?;
    let back = store.read("data/mirage-test").await?;
    if back != value {
        return Err(AppError::Check(format!("wrote {value:?} to data/mirage-test, read back {back:?}")));
    }
    let mut runs = 0;
    let counted = store
        .transaction(|tx| {
            runs += 1;
            async move {
                let old = match tx.read("data/mirage-count").await {
                    Ok(v) => v.parse::<u64>().unwrap_or(0),
                    Err(e) if e.is_not_found() => 0,
                    Err(e) => return Err(e),
                };
                tx.write("data/mirage-count", &format!("{}", old + 1)).await?;
                Ok(old + 1)
            }
        })
        .await?;
    let mut watch = store.watch("data/mirage-watch").await?;
    let first = watch.changed().await?;
    store.write("data/mirage-watch/fired", "1").await?;
    let second = watch.changed().await?;
    drop(watch);
    store.remove("data/mirage-watch").await?;
    Ok(format!(
        "name={name} domid={domid} devices=[{}] ({}) data/mirage-test read back; transaction committed \
         (count {counted}, {runs} run(s)); watch fired on {first} then {second}",
        devices.join(", "),
        kinds.join(", ")
    ))
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("hello-xen is a kernel image: build it with `cargo build -p hello-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
