//! blkfront (in progress).

pub mod ring;
