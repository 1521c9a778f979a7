//! The ping example as a Linux process, with mirage-rs's own network stack
//! on a TAP device:
//!
//! ```text
//! ping-unix --net net0=tap:IFACE [--ipv4 ADDR/PREFIX [--ipv4-gateway GW]] [-l LEVEL] \
//!     -- ADDRESS [-c COUNT] [-i SECONDS] [-s SIZE] [-W SECONDS]
//! ```
//!
//! Without `--ipv4` the stack asks DHCP for its address and waits up to
//! [`DHCP_WAIT`] for a lease. Exit status 0 when any reply came, 1 when
//! none did or the stack could not start, 2 for a usage error.

use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::stack::StackBuilder;
use mirage_types::platform::Platform;

/// How long to wait for a DHCP lease before giving up.
const DHCP_WAIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    mirage_platform_unix::run("ping", |platform, devices| async move {
        let config = ping::Config::from_args(platform.args())?;
        let builder = StackBuilder::new(devices.tap("net0")?, platform.clone());
        let stack = Rc::new(builder.ipv4_or_dhcp(devices.ipv4(), devices.ipv4_gateway()).build().await?);
        stack.spawn_input_loop("net0");
        stack.wait_for_address(DHCP_WAIT).await.map_err(|e| format!("net0: {e}"))?;
        let summary = ping::start(platform, &*stack, &devices.console(), &config).await;
        if summary.exit_status() != 0 {
            return Err(format!("no reply from {}", config.target).into());
        }
        Ok(())
    })
}
