//! The kv example as a Xen PVH guest: mounts the LogKv store on the
//! domain's first virtual block device through blkfront (formatting it if
//! it is all zeros), prints the value of KEY if given, and counts
//! `/boot/count` up by one.
//!
//! Built with `cargo build -p kv-xen --profile kernel`; the image is
//! `target/kernel/kv-xen`, booted by `cargo xtask xen domu IMAGE [--runs
//! N] [-- [-l FILTER] [KEY]]`. Built in any other profile, it is a host
//! program that says how to build the image and fails.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
extern crate alloc;

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use alloc::boxed::Box;

    use mirage_platform_xen::blkfront::BlockFront;
    use mirage_platform_xen::xenstore::Xenstore;

    mirage_platform_xen::run(boot, |platform| async move {
        let store = Xenstore::connect()?;
        let disk = BlockFront::open_first(store).await?;
        kv::start(platform, &disk).await?;
        // The count is durable (kv flushed); closing tells blkback we are done.
        disk.close().await?;
        Ok::<(), Box<dyn core::error::Error>>(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("kv-xen is a kernel image: build it with `cargo build -p kv-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
