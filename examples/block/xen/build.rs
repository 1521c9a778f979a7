//! Links the binary as a freestanding kernel image when it is built with
//! the `kernel` profile (`cargo build -p block-xen --profile kernel`);
//! any other profile builds the host stub, linked normally.

fn main() {
    mirage_kernel_host::emit_kernel_link_args();
}
