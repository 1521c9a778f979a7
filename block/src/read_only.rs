//! A read-only view of a device.

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, Operation};

/// The device `B`, with every write refused.
///
/// [`BlockInfo::read_write`] is false, and writes fail with
/// [`BlockError::ReadOnly`] before reaching `B`. Reads and flushes go to
/// `B`; errors of `B` come back as [`BlockError::Other`] with `B`'s kind and
/// message.
#[derive(Debug)]
pub struct ReadOnly<B> {
    device: B,
}

impl<B: BlockDevice> ReadOnly<B> {
    /// A read-only view of `device`.
    pub fn new(device: B) -> ReadOnly<B> {
        ReadOnly { device }
    }

    /// Gives back the device below.
    pub fn into_device(self) -> B {
        self.device
    }
}

impl<B: BlockDevice> BlockDevice for ReadOnly<B> {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        BlockInfo { read_write: false, ..self.device.info() }
    }

    /// Reads from the device below; cancel-safe as it is.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.info().check_request(Operation::Read, start, bufs)?;
        self.device.read_vectored(start, bufs).await.map_err(|e| BlockError::from_error(&e))
    }

    /// Always `Err`: [`BlockError::ReadOnly`] for a valid request, or the
    /// error [`BlockInfo::check`] gives for an invalid one. No effect.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.info().check_request(Operation::Write, start, bufs)?;
        Err(BlockError::ReadOnly { op: Operation::Write })
    }

    /// Flushes the device below: writes made through other handles to it
    /// become durable, as a flush promises.
    async fn flush(&self) -> Result<(), BlockError> {
        self.device.flush().await.map_err(|e| BlockError::from_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemBlock;
    use futures::executor::block_on;
    use mirage_types::block::{Error as _, ErrorKind};

    #[test]
    fn refuses_writes_and_passes_reads() {
        let dev = MemBlock::new(512, 4).unwrap();
        block_on(dev.write(1, &[3; 512])).unwrap();
        let ro = ReadOnly::new(&dev);
        assert!(!ro.info().read_write);
        assert_eq!(ro.info().sector_count, 4);
        block_on(async {
            assert_eq!(ro.write(0, &[0; 512]).await.unwrap_err(), BlockError::ReadOnly { op: Operation::Write });
            let mut buf = [0u8; 512];
            ro.read(1, &mut buf).await.unwrap();
            assert_eq!(buf, [3; 512]);
            assert_eq!(ro.read(4, &mut buf).await.unwrap_err().kind(), ErrorKind::OutOfRange);
            ro.flush().await.unwrap();
        });
        assert_eq!(dev.snapshot()[0], 0);
    }
}
