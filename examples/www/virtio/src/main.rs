//! The www example as a unikernel image: the generic web server over
//! mirage-rs's own TCP/IP stack on a virtio-net device.
//!
//! Built with `cargo build -p www-virtio --profile kernel` (or `cargo xtask
//! build www --platform virtio`); command line (`-append`):
//!
//! ```text
//! --net net0[=virtio:N] [--ipv4 ADDR/PREFIX [--ipv4-gateway GW]] [--block htdocs[=virtio:N]] [-l FILTER]
//!     [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! Without `--ipv4` the stack asks DHCP for its address and waits up to
//! [`DHCP_WAIT`] for a lease (under QEMU's user networking, slirp hands out
//! 10.0.2.15). It serves the files that were in `examples/www/htdocs/`
//! when it was built, or, given `--block htdocs`, the files of the tar
//! archive on that virtio-blk device (mounted read-only by `mirage-block`'s
//! `TarKv`), on port 8080 by default. Built in any other profile, it is a
//! host program that says how to build the image.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
extern crate alloc;

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

/// How long to wait for a DHCP lease before giving up.
#[cfg(panic = "abort")]
const DHCP_WAIT: core::time::Duration = core::time::Duration::from_secs(60);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use alloc::format;
    use alloc::rc::Rc;

    use mirage_block::tar::TarKv;
    use mirage_net_stack::stack::StackBuilder;
    use mirage_platform_virtio::DeviceError;
    use mirage_types::platform::Platform;

    mirage_platform_virtio::run(boot, "www", |platform, devices| async move {
        let config = www::Config::from_args(platform.args())?;
        let net = devices.net("net0")?;
        let archive = match devices.block("htdocs") {
            Ok(block) => Some(TarKv::mount(block).await.map_err(|e| format!("mounting the tar archive htdocs: {e}"))?),
            Err(DeviceError::MissingBlock(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let builder = StackBuilder::new(net, platform.clone()).ipv4_or_dhcp(devices.ipv4(), devices.ipv4_gateway());
        let stack = Rc::new(builder.build().await?);
        stack.spawn_input_loop("net0");
        stack.wait_for_address(DHCP_WAIT).await.map_err(|e| format!("net0: {e}"))?;
        let served = match archive {
            Some(tar) => www::start(platform, &*stack, tar, config).await,
            None => www::start(platform, &*stack, www::CrunchKv::new(), config).await,
        };
        match served {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot serve HTTP on port {}: {e}", config.port).into()),
        }
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("www-virtio is a kernel image: build it with `cargo build -p www-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
