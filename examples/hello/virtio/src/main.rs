//! The hello example as a unikernel image.
//!
//! Built with `cargo build -p hello-virtio --profile kernel`, whose
//! `panic = "abort"` makes this a `#![no_std]` kernel; the image is
//! `target/kernel/hello-virtio`, booted with
//! `qemu-system-x86_64 -M microvm -accel tcg -nodefaults -nographic -serial stdio
//! -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel target/kernel/hello-virtio`.
//! Built in any other profile (as `cargo build --workspace` does), it is a
//! host program that says how to build the image and fails.
//!
//! Command line (`-append`): `[-l FILTER] [-- panic|breakpoint]`; the
//! application arguments `panic` and `breakpoint` make it panic or raise a
//! CPU exception instead of greeting, to test those paths.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use mirage_types::platform::Platform;

    mirage_kernel::run(boot, |platform| async move {
        if platform.args().iter().any(|arg| arg == "panic") {
            panic!("panic requested on the command line");
        }
        if platform.args().iter().any(|arg| arg == "breakpoint") {
            mirage_kernel::arch::cpu::breakpoint();
        }
        hello::start(platform).await;
        Ok::<(), core::convert::Infallible>(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("hello-virtio is a kernel image: build it with `cargo build -p hello-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
