//! The www example as a Linux process, with mirage-rs's own TCP/IP stack
//! on a TAP device:
//!
//! ```text
//! www-tap --net net0=tap:IFACE --ipv4 ADDR/PREFIX [--ipv4-gateway GW] [--block htdocs=FILE.tar] \
//!     [-l LEVEL] [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! It serves the files that were in `examples/www/htdocs/` when it was
//! built, or, given `--block htdocs=FILE.tar`, the files of that tar
//! archive (mounted read-only by `mirage-block`'s `TarKv`), on port 8080
//! of ADDR by default.

use std::process::ExitCode;
use std::rc::Rc;

use mirage_block::tar::TarKv;
use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::StackBuilder;
use mirage_types::platform::Platform;

fn main() -> ExitCode {
    mirage_platform_unix::run("www", |platform, devices| async move {
        let config = www::Config::from_args(platform.args())?;
        let tap = devices.tap("net0")?;
        let address = devices.ipv4().ok_or("www-tap needs --ipv4 ADDR/PREFIX for its stack on net0")?;
        let archive = match devices.block_names().any(|name| name == "htdocs") {
            true => {
                let block = devices.block("htdocs")?;
                Some(TarKv::mount(block).await.map_err(|e| format!("mounting the tar archive htdocs: {e}"))?)
            }
            false => None,
        };
        let stack = StackBuilder::new(tap, platform.clone())
            .ipv4(Ipv4Config { address, gateway: devices.ipv4_gateway() })
            .build()
            .await?;
        let stack = Rc::new(stack);
        stack.spawn_input_loop("net0");
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
