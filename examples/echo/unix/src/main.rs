//! The echo example as a Linux process, on the host's sockets:
//!
//! ```text
//! echo-unix [-l LEVEL] [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! The default port, 7, needs root (or `CAP_NET_BIND_SERVICE`); pass
//! `-- --port 7007` otherwise.

use std::process::ExitCode;

use mirage_types::platform::Platform;

fn main() -> ExitCode {
    mirage_platform_unix::run("echo", |platform, devices| async move {
        let config = echo::Config::from_args(platform.args())?;
        let stack = devices.socket_stack()?;
        match echo::start(platform, &stack, config).await {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot listen on TCP port {}: {e}", config.port).into()),
        }
    })
}
