//! The ping example as a Xen PVH guest: ICMP echo requests from
//! mirage-rs's own TCP/IP stack on the domain's vif (netfront), replies
//! printed on the PV console.
//!
//! Built with `cargo build -p ping-xen --profile kernel`; the image is
//! `target/kernel/ping-xen`, booted by `cargo xtask xen domu IMAGE -- --
//! --ipv4 10.0.0.2/24 10.0.0.1 -c 3` (dom0's end of the vif is
//! 10.0.0.1/24). Command line (the xl config's `cmdline`):
//!
//! ```text
//! [-l FILTER] -- [--vif ID] [--ipv4 ADDR/PREFIX [--ipv4-gateway GW]]
//!     ADDRESS [-c COUNT] [-i SECONDS] [-s SIZE] [-W SECONDS]
//! ```
//!
//! Without `--ipv4` the stack asks DHCP for its address and waits up to
//! [`DHCP_WAIT`] for a lease. The domain powers off (status 0) when any
//! reply came, crashes (status 1) when none did or the stack could not
//! start, or for a usage error. Built in any other profile, it is a host
//! program that says how to build the image.

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
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::rc::Rc;

    use mirage_net_stack::stack::StackBuilder;
    use mirage_platform_xen::netfront::{NetFlags, NetFront};
    use mirage_platform_xen::xenstore::Xenstore;
    use mirage_platform_xen::DomainConsole;
    use mirage_types::platform::Platform;

    type Error = Box<dyn core::error::Error>;

    mirage_platform_xen::run(boot, |platform| async move {
        let (flags, rest) = NetFlags::take(platform.args())?;
        let config = ping::Config::from_args(&rest)?;
        let store = Xenstore::connect()?;
        let net = NetFront::open_flagged(store, &flags).await?;
        let builder = StackBuilder::new(net, platform.clone()).ipv4_or_dhcp(flags.ipv4, flags.ipv4_gateway);
        let stack = Rc::new(builder.build().await?);
        stack.spawn_input_loop("vif");
        stack.wait_for_address(DHCP_WAIT).await.map_err(|e| format!("vif: {e}"))?;
        let summary = ping::start(platform, &*stack, &DomainConsole::detect(), &config).await;
        if summary.exit_status() != 0 {
            return Err::<(), Error>(format!("no reply from {}", config.target).into());
        }
        Ok(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("ping-xen is a kernel image: build it with `cargo build -p ping-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
