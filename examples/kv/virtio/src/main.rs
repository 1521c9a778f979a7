//! The kv example as a unikernel image: mounts the LogKv store on a
//! virtio-blk device (formatting it if it is all zeros), prints the value
//! of KEY if given, and counts `/boot/count` up by one.
//!
//! Built with `cargo build -p kv-virtio --profile kernel` (or `cargo xtask
//! build kv --platform virtio`); command line (`-append`):
//! `--block store[=virtio:N] [-l FILTER] [-- KEY]`. Built in any other
//! profile, it is a host program that says how to build the image.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
extern crate alloc;

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    mirage_platform_virtio::run(boot, "kv", |platform, devices| async move {
        let store = devices.block("store")?;
        kv::start(platform, store).await?;
        Ok(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("kv-virtio is a kernel image: build it with `cargo build -p kv-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
