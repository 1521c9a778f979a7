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

    use mirage_net_stack::dhcp::DhcpConfig;
    use mirage_net_stack::ipv4::Ipv4Config;
    use mirage_net_stack::stack::StackBuilder;
    use mirage_platform_virtio::VirtioNet;
    use mirage_types::platform::Platform;
    use mirage_types::stack::Stack;
    use mirage_types::time::{MonotonicClock, Sleep};

    mirage_platform_virtio::run(boot, "echo", |platform, devices| async move {
        let config = echo::Config::from_args(platform.args())?;
        let net = VirtioNet::new(devices.net_device("net0")?)?;
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
