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

use mirage_net_stack::dhcp::DhcpConfig;
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_types::platform::Platform;
use mirage_types::stack::Stack;
use mirage_types::time::{MonotonicClock, Sleep};

/// How long to wait for a DHCP lease before giving up.
const DHCP_WAIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    mirage_platform_unix::run("ping", |platform, devices| async move {
        let config = ping::Config::from_args(platform.args())?;
        let tap = devices.tap("net0")?;
        let builder = StackBuilder::new(tap, platform.clone());
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
                platform.sleep(Duration::from_millis(100)).await;
            }
            if let Some(lease) = dhcp.lease() {
                log::info!("DHCP lease: {lease}");
            }
        }
        let summary = ping::start(platform, &*stack, &devices.console(), &config).await;
        if summary.exit_status() != 0 {
            return Err(format!("no reply from {}", config.target).into());
        }
        Ok(())
    })
}
