//! The hello example as a Linux process: `hello-unix [-l LEVEL]`.

use std::process::ExitCode;

fn main() -> ExitCode {
    mirage_platform_unix::run("hello", |platform, _devices| async move {
        hello::start(platform).await;
        Ok(())
    })
}
