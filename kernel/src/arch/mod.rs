//! The x86_64 hardware the kernel drives, one small module per mechanism.
//!
//! Nearly every `unsafe` block of the kernel is in these modules; the rest
//! is the image support (boot and interrupt assembly, memory functions,
//! the heap). Each module wraps its mechanism in a safe interface, and
//! where an access could break memory safety the constructor carries the
//! contract ([`port::Port::new`]).

pub mod cmos;
pub mod cpu;
pub mod descriptors;
pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod port;
pub mod power;
pub mod serial;
pub mod xen;
