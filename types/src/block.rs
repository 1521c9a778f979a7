//! Block devices: a fixed number of fixed-size sectors, read and written
//! whole, with `flush` as the durability barrier.
//!
//! # Semantics
//!
//! - I/O addresses whole sectors: a request starts at a sector number and
//!   covers the total length of its buffers, which must be a multiple of
//!   the sector size. The buffers are consecutive pieces of one request
//!   (scatter-gather): buffer `i + 1` continues where buffer `i` ends.
//! - A `write` that returns `Ok` is visible to every later `read`. It is
//!   *durable* (survives power loss) only once a `flush` issued after it
//!   has returned `Ok`.
//! - A `write` that fails, or whose future is dropped, may have written any
//!   subset of its sectors; each sector holds its old or its new contents,
//!   never a mix, on devices whose sector is their atomic write unit (the
//!   sector size is chosen so).
//! - Requests that are out of range, misaligned or writes to a read-only
//!   device are refused before any effect, with [`BlockError`] values that
//!   [`BlockInfo::check`] builds.
//!
//! # For implementors
//!
//! Implement [`BlockDevice::read_vectored`], [`BlockDevice::write_vectored`],
//! [`BlockDevice::flush`] and [`BlockDevice::info`]; validate each request
//! with [`BlockInfo::check_request`] (or [`BlockInfo::check`]) first.
//! [`scatter`] and [`gather`] copy between a request's buffers and one
//! contiguous buffer. Several requests may be in flight at once (from
//! different tasks); they may complete in any order, and a flush covers
//! every write that completed before the flush began.
//!
//! # For users
//!
//! ```
//! use mirage_types::block::BlockDevice;
//!
//! /// Copies sector `from` to sector `to` and makes the copy durable.
//! async fn copy_sector<B: BlockDevice>(dev: &B, from: u64, to: u64) -> Result<(), B::Error> {
//!     let mut sector = vec![0u8; dev.info().sector_size as usize];
//!     dev.read(from, &mut sector).await?;
//!     dev.write(to, &sector).await?;
//!     dev.flush().await
//! }
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

error_family!("block" {
    /// The request reaches past the last sector.
    OutOfRange => "request out of range",
    /// A buffer length is not a whole number of sectors.
    Misaligned => "length not a multiple of the sector size",
    /// A write or flush-with-data on a read-only device.
    ReadOnly => "device is read-only",
    /// The device went away (unplugged, backend closed).
    Disconnected => "device disconnected",
    /// The device reported a failure.
    Io => "I/O error",
    /// Anything else.
    Other => "block device failure",
});

/// Which operation a request or error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Reading sectors.
    Read,
    /// Writing sectors.
    Write,
    /// Flushing.
    Flush,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Flush => "flush",
        })
    }
}

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// See [`ErrorKind::OutOfRange`].
    #[error("{op} of {sectors} sectors at sector {start} goes past the end of a {capacity}-sector device")]
    OutOfRange {
        /// The operation.
        op: Operation,
        /// First sector of the request.
        start: u64,
        /// Sectors requested.
        sectors: u64,
        /// Sectors the device has.
        capacity: u64,
    },
    /// See [`ErrorKind::Misaligned`].
    #[error("{op} of {len} bytes is not a whole number of {sector_size}-byte sectors")]
    Misaligned {
        /// The operation.
        op: Operation,
        /// Total length of the request's buffers.
        len: usize,
        /// The device's sector size.
        sector_size: u32,
    },
    /// See [`ErrorKind::ReadOnly`].
    #[error("{op} refused: the device is read-only")]
    ReadOnly {
        /// The operation.
        op: Operation,
    },
    /// See [`ErrorKind::Disconnected`].
    #[error("block device disconnected")]
    Disconnected,
    /// See [`ErrorKind::Io`]; the message says what the device reported.
    #[error("{op} failed at sector {sector}: {message}")]
    Io {
        /// The operation.
        op: Operation,
        /// The sector at or near which it failed.
        sector: u64,
        /// What the device reported.
        message: String,
    },
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl BlockError {
    /// A ready-made error with the kind and message of any block error.
    pub fn from_error<E: Error + ?Sized>(e: &E) -> BlockError {
        BlockError::Other { kind: e.kind(), message: alloc::string::ToString::to_string(e) }
    }
}

impl Error for BlockError {
    fn kind(&self) -> ErrorKind {
        match self {
            BlockError::OutOfRange { .. } => ErrorKind::OutOfRange,
            BlockError::Misaligned { .. } => ErrorKind::Misaligned,
            BlockError::ReadOnly { .. } => ErrorKind::ReadOnly,
            BlockError::Disconnected => ErrorKind::Disconnected,
            BlockError::Io { .. } => ErrorKind::Io,
            BlockError::Other { kind, .. } => *kind,
        }
    }
}

/// What a block device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockInfo {
    /// Bytes per sector: a power of two, at least 512.
    pub sector_size: u32,
    /// Number of sectors.
    pub sector_count: u64,
    /// Whether writes are allowed.
    pub read_write: bool,
}

impl BlockInfo {
    /// Capacity in bytes (saturating).
    pub fn size_bytes(&self) -> u64 {
        self.sector_count.saturating_mul(u64::from(self.sector_size))
    }

    /// Validates a request of `len` bytes at sector `start` and returns
    /// the number of sectors it covers. Flushes are always valid (a flush
    /// of a read-only device has nothing to do).
    pub fn check(&self, op: Operation, start: u64, len: usize) -> Result<u64, BlockError> {
        if op == Operation::Write && !self.read_write {
            return Err(BlockError::ReadOnly { op });
        }
        let sector_size = self.sector_size as usize;
        if sector_size == 0 || len % sector_size != 0 {
            return Err(BlockError::Misaligned { op, len, sector_size: self.sector_size });
        }
        let sectors = (len / sector_size) as u64;
        match start.checked_add(sectors) {
            Some(end) if end <= self.sector_count => Ok(sectors),
            _ => Err(BlockError::OutOfRange { op, start, sectors, capacity: self.sector_count }),
        }
    }

    /// [`BlockInfo::check`] for a request whose data is `bufs`, taken
    /// together (scatter-gather): what every `read_vectored` and
    /// `write_vectored` does first.
    pub fn check_request<B: AsRef<[u8]>>(
        &self,
        op: Operation,
        start: u64,
        bufs: &[B],
    ) -> Result<RequestSize, BlockError> {
        // Saturating: a sum that overflows is misaligned or out of range,
        // never wrapped into a small valid length.
        let bytes = bufs.iter().fold(0usize, |n, b| n.saturating_add(b.as_ref().len()));
        let sectors = self.check(op, start, bytes)?;
        Ok(RequestSize { sectors, bytes })
    }
}

/// The size of a request [`BlockInfo::check_request`] accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSize {
    /// Sectors covered.
    pub sectors: u64,
    /// Total length of the buffers: `sectors` times the sector size.
    pub bytes: usize,
}

/// Copies `src` into the concatenation of `bufs`, starting `offset` bytes
/// into it; what does not fit is left out. The read side of a
/// scatter-gather request served from one contiguous buffer.
pub fn scatter(bufs: &mut [&mut [u8]], mut offset: usize, mut src: &[u8]) {
    for buf in bufs.iter_mut() {
        if src.is_empty() {
            return;
        }
        if offset >= buf.len() {
            offset -= buf.len();
            continue;
        }
        let n = (buf.len() - offset).min(src.len());
        buf[offset..offset + n].copy_from_slice(&src[..n]);
        src = &src[n..];
        offset = 0;
    }
}

/// Fills `dst` from the concatenation of `bufs`, starting `offset` bytes
/// into it; past the end of `bufs`, `dst` is left as it was. The write
/// side of a scatter-gather request sent from one contiguous buffer.
pub fn gather(bufs: &[&[u8]], mut offset: usize, mut dst: &mut [u8]) {
    for buf in bufs {
        if dst.is_empty() {
            return;
        }
        if offset >= buf.len() {
            offset -= buf.len();
            continue;
        }
        let n = (buf.len() - offset).min(dst.len());
        dst[..n].copy_from_slice(&buf[offset..offset + n]);
        dst = &mut dst[n..];
        offset = 0;
    }
}

/// A block device.
pub trait BlockDevice {
    /// The device's error.
    type Error: Error;

    /// Sector size, capacity and writability. Fixed for the device's life.
    fn info(&self) -> BlockInfo;

    /// Reads consecutive sectors starting at `start` into `bufs`, in order.
    ///
    /// On `Err`, the buffers' contents are unspecified. Cancel-safe (a read
    /// has no effect on the device).
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), Self::Error>;

    /// Writes `bufs`, in order, to consecutive sectors starting at `start`.
    ///
    /// `Ok`: visible to later reads, durable after the next `flush`. On
    /// `Err` or if dropped: any subset of the sectors may have been written.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), Self::Error>;

    /// Makes every write that completed before this call durable.
    ///
    /// Not cancel-safe: if dropped, durability is unknown; flush again.
    async fn flush(&self) -> Result<(), Self::Error>;

    /// Reads sectors starting at `start` into one buffer.
    async fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.read_vectored(start, &mut [buf]).await
    }

    /// Writes one buffer to sectors starting at `start`.
    async fn write(&self, start: u64, buf: &[u8]) -> Result<(), Self::Error> {
        self.write_vectored(start, &[buf]).await
    }
}

forward_handle!(BlockDevice {
    type Error = T::Error;
    fn info(&self) -> BlockInfo {
        (**self).info()
    }
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), Self::Error> {
        (**self).read_vectored(start, bufs).await
    }
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), Self::Error> {
        (**self).write_vectored(start, bufs).await
    }
    async fn flush(&self) -> Result<(), Self::Error> {
        (**self).flush().await
    }
});

/// The object-safe counterpart of [`BlockDevice`], for devices chosen at
/// run time. Every block device implements it; `dyn DynBlockDevice`
/// implements [`BlockDevice`] again.
#[async_trait::async_trait(?Send)]
pub trait DynBlockDevice {
    /// See [`BlockDevice::info`].
    fn info(&self) -> BlockInfo;
    /// See [`BlockDevice::read_vectored`].
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError>;
    /// See [`BlockDevice::write_vectored`].
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError>;
    /// See [`BlockDevice::flush`].
    async fn flush(&self) -> Result<(), BlockError>;
}

#[async_trait::async_trait(?Send)]
impl<B: BlockDevice> DynBlockDevice for B {
    fn info(&self) -> BlockInfo {
        BlockDevice::info(self)
    }
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        BlockDevice::read_vectored(self, start, bufs).await.map_err(|e| BlockError::from_error(&e))
    }
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        BlockDevice::write_vectored(self, start, bufs).await.map_err(|e| BlockError::from_error(&e))
    }
    async fn flush(&self) -> Result<(), BlockError> {
        BlockDevice::flush(self).await.map_err(|e| BlockError::from_error(&e))
    }
}

impl BlockDevice for dyn DynBlockDevice + '_ {
    type Error = BlockError;
    fn info(&self) -> BlockInfo {
        DynBlockDevice::info(self)
    }
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        DynBlockDevice::read_vectored(self, start, bufs).await
    }
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        DynBlockDevice::write_vectored(self, start, bufs).await
    }
    async fn flush(&self) -> Result<(), BlockError> {
        DynBlockDevice::flush(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const RW: BlockInfo = BlockInfo { sector_size: 512, sector_count: 1024, read_write: true };

    #[test]
    fn check_accepts_requests_inside_the_device() {
        assert_eq!(RW.check(Operation::Read, 0, 512 * 1024), Ok(1024));
        assert_eq!(RW.check(Operation::Write, 1023, 512), Ok(1));
        assert_eq!(RW.check(Operation::Read, 1024, 0), Ok(0));
        assert_eq!(RW.size_bytes(), 512 * 1024);
    }

    #[test]
    fn check_refuses_out_of_range_with_a_useful_message() {
        let e = RW.check(Operation::Write, 1020, 8 * 512).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(e.to_string(), "write of 8 sectors at sector 1020 goes past the end of a 1024-sector device");
        // Overflowing sector arithmetic is out of range, not a panic.
        assert_eq!(RW.check(Operation::Read, u64::MAX, 512).unwrap_err().kind(), ErrorKind::OutOfRange);
    }

    #[test]
    fn check_refuses_misaligned_and_read_only() {
        assert_eq!(RW.check(Operation::Read, 0, 100).unwrap_err().kind(), ErrorKind::Misaligned);
        let ro = BlockInfo { read_write: false, ..RW };
        let e = ro.check(Operation::Write, 0, 512).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
        assert_eq!(e.to_string(), "write refused: the device is read-only");
        assert_eq!(ro.check(Operation::Read, 0, 512), Ok(1));
    }

    #[test]
    fn check_request_sums_the_buffers() {
        let (a, b) = ([0u8; 512], [0u8; 1024]);
        assert_eq!(
            RW.check_request(Operation::Write, 10, &[&a[..], &b[..]]),
            Ok(RequestSize { sectors: 3, bytes: 1536 })
        );
        assert_eq!(RW.check_request::<&[u8]>(Operation::Read, 1024, &[]), Ok(RequestSize { sectors: 0, bytes: 0 }));
        let e = RW.check_request(Operation::Read, 0, &[&a[..100], &b[..]]).unwrap_err();
        assert_eq!(e.to_string(), "read of 1124 bytes is not a whole number of 512-byte sectors");
        let e = RW.check_request(Operation::Read, 1023, &[&a[..], &a[..]]).unwrap_err();
        assert_eq!(e.to_string(), "read of 2 sectors at sector 1023 goes past the end of a 1024-sector device");
        let ro = BlockInfo { read_write: false, ..RW };
        assert_eq!(ro.check_request(Operation::Write, 0, &[&a[..]]).unwrap_err().kind(), ErrorKind::ReadOnly);
    }

    #[test]
    fn gather_and_scatter_cross_buffer_boundaries() {
        let (a, b, c) = ([1u8, 2, 3], [4u8], [5u8, 6, 7, 8]);
        let bufs: [&[u8]; 3] = [&a, &b, &c];
        let mut out = [0u8; 4];
        gather(&bufs, 2, &mut out);
        assert_eq!(out, [3, 4, 5, 6]);
        let mut out = [0xa5u8; 2];
        gather(&bufs, 7, &mut out);
        assert_eq!(out, [8, 0xa5], "only what is there is copied");

        let (mut x, mut y, mut z) = ([0u8; 3], [0u8; 1], [0u8; 4]);
        {
            let mut bufs: [&mut [u8]; 3] = [&mut x, &mut y, &mut z];
            scatter(&mut bufs, 2, &[9, 10, 11]);
            scatter(&mut bufs, 7, &[12, 13]);
        }
        assert_eq!((x, y, z), ([0, 0, 9], [10], [11, 0, 0, 12]), "what does not fit is left out");
    }

    #[test]
    fn gather_then_scatter_round_trips_at_every_offset() {
        let source: alloc::vec::Vec<u8> = (0..64u8).collect();
        let (s1, rest) = source.split_at(5);
        let (s2, s3) = rest.split_at(40);
        let bufs: [&[u8]; 4] = [s1, &[], s2, s3];
        for offset in 0..64 {
            for len in 0..=(64 - offset) {
                let mut piece = alloc::vec![0u8; len];
                gather(&bufs, offset, &mut piece);
                assert_eq!(piece, source[offset..offset + len]);
                let mut back = [0u8; 64];
                {
                    let (b1, rest) = back.split_at_mut(7);
                    let (b2, b3) = rest.split_at_mut(30);
                    let mut outs: [&mut [u8]; 3] = [b1, b2, b3];
                    scatter(&mut outs, offset, &piece);
                }
                assert_eq!(back[offset..offset + len], source[offset..offset + len]);
            }
        }
    }

    #[test]
    fn dyn_device_round_trips_through_static_trait() {
        use crate::testing::MemBlock;
        let dev = MemBlock::new(512, 4);
        let boxed: Box<dyn DynBlockDevice> = Box::new(dev);
        futures::executor::block_on(async {
            let data = [7u8; 1024];
            BlockDevice::write(&boxed, 1, &data).await.unwrap();
            let mut back = [0u8; 1024];
            BlockDevice::read(&boxed, 1, &mut back).await.unwrap();
            assert_eq!(back, data);
            let e = BlockDevice::read(&boxed, 4, &mut back).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
            assert!(e.to_string().contains("4-sector device"), "{e}");
        });
    }
}
