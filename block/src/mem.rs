//! A block device in RAM.

use alloc::format;
use alloc::vec::Vec;
use core::cell::RefCell;

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};

/// A block device whose sectors live in a `Vec<u8>` in memory.
///
/// Every write is immediately "durable" (there is nothing below to lose it),
/// so `flush` always succeeds. It is the device the other layers and the
/// key-value stores are tested on, and a RAM disk for unikernels.
///
/// Requests are validated with [`BlockInfo::check`]; a refused request has
/// no effect. Each request completes without suspending, so every method is
/// cancel-safe and requests from several tasks never interleave.
#[derive(Debug)]
pub struct MemBlock {
    info: BlockInfo,
    data: RefCell<Vec<u8>>,
}

impl MemBlock {
    /// A zero-filled read-write device of `sector_count` sectors of
    /// `sector_size` bytes.
    ///
    /// Errors (kind [`ErrorKind::Other`]) if `sector_size` is not a power of
    /// two of at least 512, or if the memory cannot be allocated.
    pub fn new(sector_size: u32, sector_count: u64) -> Result<MemBlock, BlockError> {
        check_sector_size(sector_size)?;
        let len = sector_count
            .checked_mul(u64::from(sector_size))
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| too_large(sector_size, sector_count))?;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| too_large(sector_size, sector_count))?;
        data.resize(len, 0);
        Ok(MemBlock { info: BlockInfo { sector_size, sector_count, read_write: true }, data: RefCell::new(data) })
    }

    /// A read-write device holding `image`, whose length must be a whole
    /// number of `sector_size`-byte sectors.
    ///
    /// Errors (kind [`ErrorKind::Misaligned`] or [`ErrorKind::Other`]) if the
    /// length or the sector size is not acceptable.
    pub fn from_vec(sector_size: u32, image: Vec<u8>) -> Result<MemBlock, BlockError> {
        check_sector_size(sector_size)?;
        if image.len() % sector_size as usize != 0 {
            return Err(BlockError::Misaligned { op: Operation::Write, len: image.len(), sector_size });
        }
        let sector_count = (image.len() / sector_size as usize) as u64;
        Ok(MemBlock { info: BlockInfo { sector_size, sector_count, read_write: true }, data: RefCell::new(image) })
    }

    /// Like [`MemBlock::from_vec`], but every write is refused with
    /// [`ErrorKind::ReadOnly`] and [`BlockInfo::read_write`] is false.
    pub fn read_only(sector_size: u32, image: Vec<u8>) -> Result<MemBlock, BlockError> {
        let mut dev = MemBlock::from_vec(sector_size, image)?;
        dev.info.read_write = false;
        Ok(dev)
    }

    /// The device's bytes, consuming it.
    pub fn into_vec(self) -> Vec<u8> {
        self.data.into_inner()
    }

    /// A copy of the device's bytes as they are now.
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.borrow().clone()
    }

    /// Calls `f` with the device's bytes, without copying them.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.data.borrow())
    }

    fn byte_offset(&self, sector: u64) -> usize {
        // The whole device fits in memory, and `check` has bounded `sector`
        // by its sector count, so the product fits in usize.
        (sector * u64::from(self.info.sector_size)) as usize
    }
}

/// Refuses sector sizes the block family does not allow (see
/// [`BlockInfo::sector_size`]).
pub(crate) fn check_sector_size(sector_size: u32) -> Result<(), BlockError> {
    if sector_size < 512 || !sector_size.is_power_of_two() {
        return Err(BlockError::Other {
            kind: ErrorKind::Other,
            message: format!("sector size {sector_size} is not a power of two of at least 512 bytes"),
        });
    }
    Ok(())
}

fn too_large(sector_size: u32, sector_count: u64) -> BlockError {
    BlockError::Other {
        kind: ErrorKind::Other,
        message: format!("cannot allocate {sector_count} sectors of {sector_size} bytes in memory"),
    }
}

impl BlockDevice for MemBlock {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// Copies the sectors out. `Ok`: `bufs` hold the sectors. Cancel-safe.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Read, start, bufs)?;
        let data = self.data.borrow();
        let mut at = self.byte_offset(start);
        for buf in bufs.iter_mut() {
            buf.copy_from_slice(&data[at..at + buf.len()]);
            at += buf.len();
        }
        Ok(())
    }

    /// Copies the sectors in. `Ok`: visible and durable at once. On `Err`
    /// nothing was written. Cancel-safe.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Write, start, bufs)?;
        let mut data = self.data.borrow_mut();
        let mut at = self.byte_offset(start);
        for buf in bufs {
            data[at..at + buf.len()].copy_from_slice(buf);
            at += buf.len();
        }
        Ok(())
    }

    /// Always `Ok`: every write is already as durable as memory gets.
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use futures::executor::block_on;
    use mirage_types::block::Error as _;
    use proptest::prelude::*;

    #[test]
    fn writes_are_read_back_across_scattered_buffers() {
        let dev = MemBlock::new(512, 8).unwrap();
        block_on(async {
            let a = [1u8; 512];
            let b = [2u8; 1024];
            dev.write_vectored(3, &[&a, &b]).await.unwrap();
            let mut x = [0u8; 1024];
            let mut y = [0u8; 512];
            dev.read_vectored(3, &mut [&mut x, &mut y]).await.unwrap();
            assert_eq!(x[..512], a);
            assert_eq!(x[512..], b[..512]);
            assert_eq!(y, b[512..]);
        });
        let image = dev.into_vec();
        assert_eq!(image.len(), 8 * 512);
        assert!(image[..3 * 512].iter().all(|&x| x == 0));
        assert_eq!(image[3 * 512], 1);
        assert_eq!(image[5 * 512], 2);
    }

    #[test]
    fn refuses_bad_requests_without_effect() {
        let dev = MemBlock::from_vec(512, vec![9; 4 * 512]).unwrap();
        block_on(async {
            let e = dev.write(3, &[0; 1024]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
            let e = dev.write(0, &[0; 100]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Misaligned);
            let e = dev.read(u64::MAX, &mut [0; 512]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
        });
        assert!(dev.snapshot().iter().all(|&x| x == 9));
    }

    #[test]
    fn read_only_device_refuses_writes() {
        let dev = MemBlock::read_only(4096, vec![5; 4096]).unwrap();
        assert!(!dev.info().read_write);
        block_on(async {
            assert_eq!(dev.write(0, &[0; 4096]).await.unwrap_err().kind(), ErrorKind::ReadOnly);
            let mut buf = [0u8; 4096];
            dev.read(0, &mut buf).await.unwrap();
            assert_eq!(buf, [5; 4096]);
            dev.flush().await.unwrap();
        });
    }

    #[test]
    fn constructors_refuse_bad_geometry() {
        assert!(MemBlock::new(500, 1).unwrap_err().to_string().contains("sector size 500"));
        assert!(MemBlock::new(256, 1).is_err());
        let e = MemBlock::new(512, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("cannot allocate"), "{e}");
        assert_eq!(MemBlock::from_vec(512, vec![0; 700]).unwrap_err().kind(), ErrorKind::Misaligned);
        assert_eq!(MemBlock::from_vec(512, Vec::new()).unwrap().info().sector_count, 0);
    }

    proptest! {
        /// The device behaves as a plain byte array under any sequence of
        /// in-range and out-of-range writes.
        #[test]
        fn matches_a_byte_array(ops in proptest::collection::vec((0u64..20, 0usize..4, any::<u8>()), 1..40)) {
            let dev = MemBlock::new(512, 16).unwrap();
            let mut model = vec![0u8; 16 * 512];
            block_on(async {
                for (start, sectors, fill) in ops {
                    let data = vec![fill; sectors * 512];
                    let r = dev.write(start, &data).await;
                    if start + sectors as u64 <= 16 {
                        prop_assert!(r.is_ok());
                        let at = start as usize * 512;
                        model[at..at + data.len()].copy_from_slice(&data);
                    } else {
                        prop_assert_eq!(r.unwrap_err().kind(), ErrorKind::OutOfRange);
                    }
                }
                let mut all = vec![0u8; 16 * 512];
                dev.read(0, &mut all).await.unwrap();
                prop_assert_eq!(&all, &model);
                Ok(())
            })?;
        }
    }
}
