//! The www example as a Xen PVH guest: the generic web server over
//! mirage-rs's own TCP/IP stack on the domain's vif (netfront).
//!
//! Built with `cargo build -p www-xen --profile kernel`; the image is
//! `target/kernel/www-xen`, booted by `cargo xtask xen domu IMAGE -- --
//! --ipv4 10.0.0.2/24` (dom0's end of the vif is 10.0.0.1/24). Command
//! line (the xl config's `cmdline`):
//!
//! ```text
//! [-l FILTER] -- [--vif ID] [--ipv4 ADDR/PREFIX [--ipv4-gateway GW]]
//!     [--port N] [--max-connections N] [--idle-timeout SECONDS]
//! ```
//!
//! Without `--ipv4` the stack asks DHCP for its address and waits up to
//! [`DHCP_WAIT`] for a lease. It serves the files that were in
//! `examples/www/htdocs/` when it was built, on port 8080 by default, and
//! logs `serving http on ADDR:PORT` once it listens. Built in any other
//! profile, it is a host program that says how to build the image.

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
    use mirage_types::platform::Platform;

    type Error = Box<dyn core::error::Error>;

    mirage_platform_xen::run(boot, |platform| async move {
        let (flags, rest) = NetFlags::take(platform.args())?;
        let config = www::Config::from_args(&rest)?;
        let store = Xenstore::connect()?;
        let net = NetFront::open_flagged(store, &flags).await?;
        let builder = StackBuilder::new(net, platform.clone()).ipv4_or_dhcp(flags.ipv4, flags.ipv4_gateway);
        let stack = Rc::new(builder.build().await?);
        stack.spawn_input_loop("vif");
        let address = stack.wait_for_address(DHCP_WAIT).await.map_err(|e| format!("vif: {e}"))?;
        log::info!("serving http on {}:{}", address.address.address(), config.port);
        match www::start(platform, &*stack, www::CrunchKv::new(), config).await {
            Ok(never) => match never {},
            Err(e) => Err::<(), Error>(format!("cannot serve HTTP on port {}: {e}", config.port).into()),
        }
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("www-xen is a kernel image: build it with `cargo build -p www-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
