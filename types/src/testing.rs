//! Minimal in-memory devices for this crate's own tests. Other crates use
//! the real ones (`mirage-block`'s `MemBlock`, `mirage-net-stack`'s
//! virtual switch) behind their `test-utils` features.
//!
//! They cannot come from `mirage-testkit` or those crates: a unit test of
//! this crate is built against its own copy of the traits, which a
//! dependency's devices do not implement.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use bytes::Bytes;

use crate::block::{BlockDevice, BlockError, BlockInfo, Operation};
use crate::net::{MacAddress, NetError, NetStats, NetworkDevice, ETHERNET_HEADER_LEN};

pub struct MemBlock {
    info: BlockInfo,
    data: RefCell<Vec<u8>>,
}

impl MemBlock {
    pub fn new(sector_size: u32, sector_count: u64) -> MemBlock {
        let info = BlockInfo { sector_size, sector_count, read_write: true };
        MemBlock { info, data: RefCell::new(vec![0; info.size_bytes() as usize]) }
    }
}

impl BlockDevice for MemBlock {
    type Error = BlockError;
    fn info(&self) -> BlockInfo {
        self.info
    }
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.info.check(Operation::Read, start, len)?;
        let data = self.data.borrow();
        let mut at = (start * u64::from(self.info.sector_size)) as usize;
        for buf in bufs.iter_mut() {
            buf.copy_from_slice(&data[at..at + buf.len()]);
            at += buf.len();
        }
        Ok(())
    }
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.info.check(Operation::Write, start, len)?;
        let mut data = self.data.borrow_mut();
        let mut at = (start * u64::from(self.info.sector_size)) as usize;
        for buf in bufs {
            data[at..at + buf.len()].copy_from_slice(buf);
            at += buf.len();
        }
        Ok(())
    }
    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// Frames transmitted are received again.
#[derive(Default)]
pub struct LoopbackNet {
    queue: RefCell<VecDeque<Bytes>>,
}

impl NetworkDevice for LoopbackNet {
    type Error = NetError;
    fn mac(&self) -> MacAddress {
        MacAddress([2, 0, 0, 0, 0, 1])
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn stats(&self) -> NetStats {
        NetStats::default()
    }
    async fn receive(&self) -> Result<Bytes, NetError> {
        Ok(self.queue.borrow_mut().pop_front().expect("test receives only after transmitting"))
    }
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        let max = self.mtu() + ETHERNET_HEADER_LEN;
        if len > max {
            return Err(NetError::FrameTooLarge { len, max });
        }
        let mut frame = vec![0u8; len];
        let r = fill(&mut frame);
        self.queue.borrow_mut().push_back(Bytes::from(frame));
        Ok(r)
    }
}
