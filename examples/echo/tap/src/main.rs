//! The echo example as a Linux process, with mirage-rs's own TCP/IP stack
//! on a TAP device:
//!
//! ```text
//! echo-tap --net net0=tap:IFACE --ipv4 ADDR/PREFIX [--ipv4-gateway GW] [-l LEVEL] \
//!     [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! The stack answers on ADDR (ARP, ICMP echo, TCP); the host reaches it
//! through the TAP interface. Port 7 needs no privilege here: the port is
//! our stack's, not the host's.

use std::process::ExitCode;
use std::rc::Rc;

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_types::platform::Platform;

fn main() -> ExitCode {
    mirage_platform_unix::run("echo", |platform, devices| async move {
        let config = echo::Config::from_args(platform.args())?;
        let tap = devices.tap("net0")?;
        let address = devices.ipv4().ok_or("echo-tap needs --ipv4 ADDR/PREFIX for its stack on net0")?;
        let stack = StackBuilder::new(tap, platform.clone())
            .ipv4(Ipv4Config { address, gateway: devices.ipv4_gateway() })
            .build()
            .await?;
        let stack = Rc::new(stack);
        stack.spawn_input_loop("net0");
        match echo::start(platform, &*stack, config).await {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot listen on TCP port {}: {e}", config.port).into()),
        }
    })
}
