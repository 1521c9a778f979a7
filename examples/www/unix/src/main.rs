//! The www example as a Linux process, on the host's sockets:
//!
//! ```text
//! www-unix [-l LEVEL] [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! It serves the files that were in `examples/www/htdocs/` when it was
//! built (see `www::CrunchKv`), by default on port 8080 of every local
//! IPv4 address.

use std::process::ExitCode;

use mirage_types::platform::Platform;

fn main() -> ExitCode {
    mirage_platform_unix::run("www", |platform, devices| async move {
        let config = www::Config::from_args(platform.args())?;
        let stack = devices.socket_stack()?;
        match www::start(platform, &stack, www::CrunchKv::new(), config).await {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot serve HTTP on port {}: {e}", config.port).into()),
        }
    })
}
