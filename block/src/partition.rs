//! A window onto a range of another device's sectors.

use alloc::format;

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};

/// Sectors `[start, start + len)` of the device `B`, seen as a device of
/// `len` sectors numbered from 0.
///
/// Every request is checked against the partition's own size before it
/// reaches `B`, so a partition can never read or write outside its range.
/// Errors of `B` come back as [`BlockError::Other`] with `B`'s kind and
/// message. Each method is exactly as cancel-safe as the same method of `B`.
#[derive(Debug)]
pub struct Partition<B> {
    device: B,
    start: u64,
    info: BlockInfo,
}

impl<B: BlockDevice> Partition<B> {
    /// The partition of `device` starting at sector `start`, `len` sectors
    /// long.
    ///
    /// Errors with kind [`ErrorKind::OutOfRange`] if the range does not lie
    /// inside `device`.
    pub fn new(device: B, start: u64, len: u64) -> Result<Partition<B>, BlockError> {
        let outer = device.info();
        match start.checked_add(len) {
            Some(end) if end <= outer.sector_count => {}
            _ => {
                return Err(BlockError::Other {
                    kind: ErrorKind::OutOfRange,
                    message: format!(
                        "partition of {len} sectors at sector {start} goes past the end of a {}-sector device",
                        outer.sector_count
                    ),
                })
            }
        }
        Ok(Partition { device, start, info: BlockInfo { sector_count: len, ..outer } })
    }

    /// The first sector of the partition on the device below.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The device below.
    pub fn device(&self) -> &B {
        &self.device
    }

    /// Gives back the device below.
    pub fn into_device(self) -> B {
        self.device
    }
}

impl<B: BlockDevice> BlockDevice for Partition<B> {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// Reads from the device below. `Ok` and `Err` mean what they mean
    /// there; requests outside the partition are refused first.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Read, start, bufs)?;
        // `check` bounded `start` by the partition's length, which `new`
        // bounded by the device's size, so the sum cannot overflow.
        self.device.read_vectored(self.start + start, bufs).await.map_err(|e| BlockError::from_error(&e))
    }

    /// Writes to the device below. `Ok`: visible, durable after `flush`;
    /// on `Err` any subset of the sectors may have been written. Requests
    /// outside the partition are refused first, without effect.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Write, start, bufs)?;
        self.device.write_vectored(self.start + start, bufs).await.map_err(|e| BlockError::from_error(&e))
    }

    /// Flushes the whole device below (a device has one write cache).
    async fn flush(&self) -> Result<(), BlockError> {
        self.device.flush().await.map_err(|e| BlockError::from_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBlock;
    use alloc::string::ToString;
    use alloc::vec;
    use futures::executor::block_on;
    use mirage_types::block::Error as _;
    use proptest::prelude::*;

    #[test]
    fn partition_outside_the_device_is_refused() {
        let dev = MemBlock::new(512, 100).unwrap();
        let e = Partition::new(&dev, 90, 20).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        assert_eq!(e.to_string(), "partition of 20 sectors at sector 90 goes past the end of a 100-sector device");
        assert!(Partition::new(&dev, u64::MAX, 2).is_err());
        assert!(Partition::new(&dev, 100, 0).is_ok());
        assert_eq!(Partition::new(&dev, 10, 90).unwrap().info().sector_count, 90);
    }

    #[test]
    fn requests_are_shifted_and_bounded() {
        let dev = MemBlock::new(512, 10).unwrap();
        let part = Partition::new(&dev, 4, 3).unwrap();
        block_on(async {
            part.write(0, &[1; 512 * 3]).await.unwrap();
            let e = part.write(2, &[2; 1024]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::OutOfRange);
            assert!(e.to_string().contains("3-sector device"), "{e}");
            assert_eq!(part.read(3, &mut [0; 512]).await.unwrap_err().kind(), ErrorKind::OutOfRange);
            part.flush().await.unwrap();
        });
        let image = dev.snapshot();
        for s in 0..10 {
            let expect = if (4..7).contains(&s) { 1 } else { 0 };
            assert!(image[s * 512..(s + 1) * 512].iter().all(|&b| b == expect), "sector {s}");
        }
    }

    #[test]
    fn errors_of_the_device_below_keep_their_kind() {
        let dev = MemBlock::read_only(512, vec![0; 4 * 512]).unwrap();
        let part = Partition::new(&dev, 1, 2).unwrap();
        assert!(!part.info().read_write);
        let e = block_on(part.write(0, &[0; 512])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ReadOnly);
    }

    proptest! {
        /// No request through a partition ever touches a sector outside it.
        #[test]
        fn never_escapes(start in 0u64..16, len in 0u64..16, writes in proptest::collection::vec((0u64..20, 0usize..4), 0..20)) {
            let dev = MemBlock::new(512, 16).unwrap();
            let Ok(part) = Partition::new(&dev, start, len) else {
                prop_assert!(start + len > 16);
                return Ok(());
            };
            for (at, sectors) in writes {
                let r = block_on(part.write(at, &vec![0xff; sectors * 512]));
                prop_assert_eq!(r.is_ok(), at + sectors as u64 <= len);
            }
            let image = dev.into_vec();
            for (s, sector) in image.chunks(512).enumerate() {
                let inside = (start..start + len).contains(&(s as u64));
                prop_assert!(inside || sector.iter().all(|&b| b == 0), "sector {} written", s);
            }
        }
    }
}
