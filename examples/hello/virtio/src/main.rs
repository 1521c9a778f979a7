//! The hello example as a unikernel image.
//!
//! Built with `cargo build -p hello-virtio --profile kernel`, whose
//! `panic = "abort"` makes this a `#![no_std]` kernel; the image is
//! `target/kernel/hello-virtio`, booted with
//! `qemu-system-x86_64 -M microvm -accel tcg -nodefaults -nographic -serial stdio -kernel target/kernel/hello-virtio`.
//! Built in any other profile (as `cargo build --workspace` does), it is a
//! host program that says how to build the image and fails.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use core::fmt::Write as _;
    use mirage_kernel::arch::serial::Uart16550;
    let _ = writeln!(Uart16550::com1(), "hello from mirage-rs, command line {:?}, heap {:x?}", boot.command_line, boot.heap);
    mirage_kernel::arch::power::power_off(0)
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("hello-virtio is a kernel image: build it with `cargo build -p hello-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
