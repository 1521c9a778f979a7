//! The block example as a Linux process: `block-unix --block disk=PATH`.
//!
//! Overwrites every sector of PATH (a file or a block device) with a test
//! pattern, reads it back and verifies it. Destroys what PATH held.

use std::process::ExitCode;

fn main() -> ExitCode {
    mirage_platform_unix::run("block", |platform, devices| async move {
        let disk = devices.block("disk")?;
        block_app::start(platform, disk).await?;
        Ok(())
    })
}
