//! The www example as a Linux process, on the host's sockets:
//!
//! ```text
//! www-unix [-l LEVEL] [--block htdocs=SITE.tar[:ro]] [-- [--port N] [--max-connections N] [--idle-timeout SECONDS]]
//! ```
//!
//! It serves the files that were in `examples/www/htdocs/` when it was
//! built (see `www::CrunchKv`), by default on port 8080 of every local
//! IPv4 address. Given a block device named `htdocs` holding a tar archive
//! (`tar -cf site.tar -C DIR .`), it serves the archive instead, through
//! `mirage_block::TarKv`: the same generic server, another store.

use std::process::ExitCode;

use mirage_block::TarKv;
use mirage_types::platform::Platform;

/// The block device a site archive is read from, when given.
const SITE_DEVICE: &str = "htdocs";

fn main() -> ExitCode {
    mirage_platform_unix::run("www", |platform, devices| async move {
        let config = www::Config::from_args(platform.args())?;
        let stack = devices.socket_stack()?;
        let served = if devices.block_names().any(|name| name == SITE_DEVICE) {
            let archive = devices.block(SITE_DEVICE)?;
            let store = TarKv::mount(archive)
                .await
                .map_err(|e| format!("cannot read the site archive on block device {SITE_DEVICE}: {e}"))?;
            log::info!("serving the tar archive on block device {SITE_DEVICE}");
            www::start(platform, &stack, store, config).await
        } else {
            www::start(platform, &stack, www::CrunchKv::new(), config).await
        };
        match served {
            Ok(never) => match never {},
            Err(e) => Err(format!("cannot serve HTTP on port {}: {e}", config.port).into()),
        }
    })
}
