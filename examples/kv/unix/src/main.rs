//! The kv example as a Linux process:
//! `kv-unix --block store=PATH [-- KEY]`.
//!
//! Mounts the LogKv store on PATH (formatting it if PATH is all zeros),
//! prints the value of KEY if given, and counts `/boot/count` up by one.

use std::process::ExitCode;

fn main() -> ExitCode {
    mirage_platform_unix::run("kv", |platform, devices| async move {
        let store = devices.block("store")?;
        kv::start(platform, store).await?;
        Ok(())
    })
}
