//! Block layers for mirage-rs, each itself a
//! [`BlockDevice`](mirage_types::block::BlockDevice) that validates every
//! request with [`BlockInfo::check`](mirage_types::block::BlockInfo::check):
//!
//! | layer | what it is |
//! |---|---|
//! | [`MemBlock`] | a RAM disk |
//! | [`CrashBlock`] | a RAM disk that loses power on cue (feature `test-utils`) |
//! | [`Partition`] | a range of another device's sectors |
//! | [`Cache`] | a bounded write-back sector cache |
//! | [`ReadOnly`] | another device with writes refused |
//!
//! # Cargo features
//!
//! - `test-utils`: exports [`CrashBlock`] and its [`crash`] module, the
//!   power-loss simulator other crates run their crash-consistency tests
//!   on. Off by default.
//!
//! The crate is `#![no_std]` and needs only `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod cache;
mod exclusive;
mod mem;
mod partition;
mod read_only;
pub use cache::Cache;
pub use mem::MemBlock;
pub use partition::Partition;
pub use read_only::ReadOnly;

pub mod log_kv;
pub use log_kv::{CheckReport, FormatOptions, LogKv};

#[cfg(any(test, feature = "test-utils"))]
pub mod crash;
#[cfg(any(test, feature = "test-utils"))]
pub use crash::{CrashBlock, Persistence};
