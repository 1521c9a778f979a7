//! The echo example as a unikernel image: the generic TCP echo server over
//! mirage-rs's own TCP/IP stack on a virtio-net device.
//!
//! Built with `cargo build -p echo-virtio --profile kernel` (or `cargo
//! xtask build echo --platform virtio`); command line (`-append`):
//!
//! ```text
//! --net net0[=virtio:N] [--ipv4 ADDR/PREFIX [--ipv4-gateway GW]] [-l FILTER]
//!     [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! Without `--ipv4` the stack asks DHCP for its address and waits up to
//! [`DHCP_WAIT`] for a lease. The stack answers ARP and ICMP echo too.
//! Built in any other profile, it is a host program that says how to build
//! the image.

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

    use mirage_net_stack::stack::StackBuilder;
    use mirage_types::platform::Platform;

    mirage_platform_virtio::run(boot, "echo", |platform, devices| async move {
        let config = echo::Config::from_args(platform.args())?;
        let builder = StackBuilder::new(devices.net("net0")?, platform.clone())
            .ipv4_or_dhcp(devices.ipv4(), devices.ipv4_gateway());
        let stack = Rc::new(builder.build().await?);
        stack.spawn_input_loop("net0");
        stack.wait_for_address(DHCP_WAIT).await.map_err(|e| format!("net0: {e}"))?;
        match echo::start(platform, &*stack, config).await {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot listen on TCP port {}: {e}", config.port).into()),
        }
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("echo-virtio is a kernel image: build it with `cargo build -p echo-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
