//! The x86_64 hardware the kernel drives, one small module per mechanism.
//!
//! Every `unsafe` block of the kernel is in these modules (and in the
//! boot, interrupt and memory-function assembly of the image support).
//! Each module wraps its mechanism in a safe interface whose constructor
//! carries the safety contract, as rust-vmm does.

pub mod cpu;
pub mod port;
pub mod power;
pub mod serial;
