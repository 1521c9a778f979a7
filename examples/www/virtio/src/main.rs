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
    use mirage_net_stack::dhcp::DhcpConfig;
    use mirage_net_stack::ipv4::Ipv4Config;
    use mirage_net_stack::stack::StackBuilder;
    use mirage_platform_virtio::{DeviceError, VirtioNet};
    use mirage_types::platform::Platform;
    use mirage_types::stack::Stack;
    use mirage_types::time::{MonotonicClock, Sleep};

    mirage_platform_virtio::run(boot, "www", |platform, devices| async move {
        let config = www::Config::from_args(platform.args())?;
        let net = VirtioNet::new(devices.net_device("net0")?)?;
        let archive = match devices.block("htdocs") {
            Ok(block) => Some(TarKv::mount(block).await.map_err(|e| format!("mounting the tar archive htdocs: {e}"))?),
            Err(DeviceError::MissingBlock(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let builder = StackBuilder::new(net, platform.clone());
        let builder = match devices.ipv4() {
            Some(address) => builder.ipv4(Ipv4Config { address, gateway: devices.ipv4_gateway() }),
            None => builder.dhcp(DhcpConfig::default()),
        };
        let stack = Rc::new(builder.build().await?);
        let runner = stack.clone();
        platform.spawn(async move {
            if let Err(e) = runner.run().await {
                log::error!("network device net0 failed: {e}");
            }
        });
        if let Some(dhcp) = stack.dhcp() {
            let deadline = platform.now() + DHCP_WAIT;
            // Checked every 100 ms: the lease is a state the stack's task
            // sets, not an event one can wait on.
            while stack.addresses().is_empty() {
                if platform.now() >= deadline {
                    return Err(format!("no DHCP lease on net0 after {DHCP_WAIT:?} (state {})", dhcp.state()).into());
                }
                platform.sleep(core::time::Duration::from_millis(100)).await;
            }
            if let Some(lease) = dhcp.lease() {
                log::info!("DHCP lease: {lease}");
            }
        }
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
