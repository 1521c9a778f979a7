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
//! The key-value stores implement `mirage-types`' [`kv`](mirage_types::kv)
//! traits on top: [`TarKv`] serves a tar archive read-only, and [`LogKv`]
//! is a crash-safe read-write store on any block device. [`devices`] mounts
//! them as every platform's `Devices::kv_ro`/`kv_rw` hand them out.
//!
//! # Example: LogKv, mount or format
//!
//! [`LogKv::mount_or_format`] mounts the store on a device, or formats the
//! device first when it is blank (a new disk image), so an application
//! opens its store the same way on every boot, and says which it did
//! ([`Opened`]). Here on a RAM disk of 64 sectors of 512 bytes:
//!
//! ```
//! use mirage_block::{FormatOptions, LogKv, MemBlock, Opened};
//! use mirage_types::kv::{Key, KvRead, KvWrite};
//! use mirage_types::time::{PosixTime, WallClock};
//!
//! /// A wall clock stopped at 2026-01-01 (a platform handle is the real one).
//! struct Clock;
//!
//! impl WallClock for Clock {
//!     fn wall_time(&self) -> PosixTime {
//!         PosixTime::new(1_767_225_600, 0).expect("in range")
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # futures::executor::block_on(async {
//! let disk = MemBlock::new(512, 64)?;
//! let (store, opened) = LogKv::mount_or_format(disk, Clock, FormatOptions::default()).await?;
//! assert_eq!(opened, Opened::Formatted);
//! let key = Key::parse("/config/greeting")?;
//! store.set(&key, b"hello").await?;
//! assert_eq!(&store.get(&key).await?[..], b"hello");
//!
//! // The next boot finds the store on the device and mounts it as it is.
//! let (store, opened) = LogKv::mount_or_format(store.into_device(), Clock, FormatOptions::default()).await?;
//! assert_eq!(opened, Opened::Mounted);
//! assert_eq!(&store.get(&key).await?[..], b"hello");
//! # Ok(())
//! # })
//! # }
//! ```
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
pub mod devices;
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
pub use log_kv::{CheckReport, FormatOptions, LogKv, Opened};
pub mod tar;
pub use tar::{TarKv, TarLimits, TarStats};

#[cfg(any(test, feature = "test-utils"))]
pub mod crash;
#[cfg(any(test, feature = "test-utils"))]
pub use crash::{CrashBlock, Persistence};
