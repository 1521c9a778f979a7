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

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    mirage_platform_xen::run(boot, |platform| async move {
        let probe = mirage_platform_xen::probe::probe()?;
        log::info!("xen probe: {probe}");
        hello::start(platform).await;
        Ok::<(), mirage_platform_xen::probe::ProbeError>(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("hello-xen is a kernel image: build it with `cargo build -p hello-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
