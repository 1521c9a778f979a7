//! Block layers for mirage-rs, each itself a
//! [`BlockDevice`](mirage_types::block::BlockDevice) that validates every
//! request with [`BlockInfo::check`](mirage_types::block::BlockInfo::check):
//!
//! | layer | what it is |
//! |---|---|
//! | [`MemBlock`] | a RAM disk |
//! | `CrashBlock` | a RAM disk that loses power on cue (feature `test-utils`) |
//! | [`Partition`] | a range of another device's sectors |
//! | [`Cache`] | a bounded write-back sector cache |
//! | [`ReadOnly`] | another device with writes refused |
//!
//! and the partition tables that say where partitions are: [`mbr`] (the
//! classic four primary entries) and [`gpt`] (the GUID Partition Table of
//! UEFI), each with a reader that never panics on any disk contents and a
//! writer whose images Linux's `sgdisk` and `sfdisk` accept.
//!
//! # Cargo features
//!
//! - `test-utils`: exports `CrashBlock` and its `crash` module, the
//!   power-loss simulator other crates run their crash-consistency tests
//!   on. Off by default.
//!
//! The crate is `#![no_std]` and needs only `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod cache;
mod exclusive;
pub mod gpt;
pub mod mbr;
mod mem;
mod partition;
mod read_only;
pub use cache::Cache;
pub use gpt::{Gpt, GptPartition, GptRead, Guid};
pub use mbr::{Mbr, MbrPartition, TableError};
pub use mem::MemBlock;
pub use partition::Partition;
pub use read_only::ReadOnly;

pub mod log_kv;
pub use log_kv::{CheckReport, FormatOptions, LogKv};
pub mod tar;
pub use tar::{TarKv, TarLimits, TarStats};

#[cfg(any(test, feature = "test-utils"))]
pub mod crash;
#[cfg(any(test, feature = "test-utils"))]
pub use crash::{CrashBlock, Persistence};
