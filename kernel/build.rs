//! Makes a change to the linker script rebuild this crate, so that every
//! kernel image linked with it (`cargo mirage build`) is linked again.

fn main() {
    println!("cargo:rerun-if-changed=kernel.ld");
}
