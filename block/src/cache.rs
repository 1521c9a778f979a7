//! A write-back sector cache.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use mirage_types::block::{gather, scatter, BlockDevice, BlockError, BlockInfo, Error as _, ErrorKind, Operation};

use crate::exclusive::{Exclusive, Guard};

/// The longest run of dirty sectors written back in one request, so that a
/// flush of a large cache is not one huge request to the device below.
const MAX_WRITE_BACK_RUN: usize = 256;

/// A write-back cache of at most `capacity` sectors of the device `B`,
/// evicting with the CLOCK algorithm (an approximation of LRU).
///
/// - Reads are served from the cache; missing sectors are read from `B`
///   in runs and then cached.
/// - A write that returns `Ok` is in the cache: visible to every later
///   read, but not yet on `B`, and durable only once [`Cache::flush`] has
///   returned `Ok`. Dirty sectors reach `B` when evicted or flushed.
/// - `flush` writes back every dirty sector, then flushes `B`, and returns
///   `Ok` only after both succeeded. A failed write-back leaves the sectors
///   dirty in the cache (nothing is lost) and returns the error; a later
///   flush tries again.
///
/// Memory is bounded by `capacity` sectors plus the buffers of requests in
/// progress. Requests are served one at a time (each holds the cache across
/// its I/O to `B`), so there is no parallelism below a cache. Errors of `B`
/// come back as [`BlockError::Other`] with `B`'s kind and a message saying
/// which cache operation failed.
///
/// Dropping a cache drops its dirty sectors: flush first.
#[derive(Debug)]
pub struct Cache<B> {
    device: B,
    info: BlockInfo,
    capacity: usize,
    state: Exclusive<State>,
}

#[derive(Debug)]
struct State {
    /// Grows up to the capacity, then slots are reused.
    slots: Vec<Slot>,
    /// Sector number to index in `slots`.
    index: BTreeMap<u64, usize>,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
}

#[derive(Debug)]
struct Slot {
    sector: u64,
    data: Box<[u8]>,
    dirty: bool,
    /// Used since the hand last passed (CLOCK's second chance).
    referenced: bool,
}

impl<B: BlockDevice> Cache<B> {
    /// A cache of at most `capacity` sectors over `device`. Memory is
    /// allocated as sectors are cached, not up front.
    ///
    /// Errors (kind [`ErrorKind::Other`]) if `capacity` is 0.
    pub fn new(device: B, capacity: usize) -> Result<Cache<B>, BlockError> {
        if capacity == 0 {
            return Err(BlockError::Other {
                kind: ErrorKind::Other,
                message: "a cache needs room for 1 sector".into(),
            });
        }
        let state = State { slots: Vec::new(), index: BTreeMap::new(), hand: 0 };
        Ok(Cache { info: device.info(), device, capacity, state: Exclusive::new(state) })
    }

    /// The device below. Writes made to it directly bypass (and may be
    /// hidden by) the cache.
    pub fn device(&self) -> &B {
        &self.device
    }

    /// The most sectors the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sectors written but not yet written back, waiting for any request in
    /// progress to finish first.
    pub async fn dirty_sectors(&self) -> usize {
        self.state.lock().await.slots.iter().filter(|s| s.dirty).count()
    }

    /// A slot holding `sector`, or a free one now assigned to it (contents
    /// unspecified, clean). May write back an evicted dirty sector; if that
    /// fails, nothing changed and the error is returned.
    async fn slot_for(&self, state: &mut Guard<'_, State>, sector: u64) -> Result<usize, BlockError> {
        if let Some(&i) = state.index.get(&sector) {
            return Ok(i);
        }
        let sector_size = self.info.sector_size as usize;
        if state.slots.len() < self.capacity {
            let i = state.slots.len();
            state.slots.push(Slot { sector, data: vec![0; sector_size].into(), dirty: false, referenced: false });
            state.index.insert(sector, i);
            return Ok(i);
        }
        // Every slot's bit is cleared on the first pass, so a victim is found
        // within two turns of the hand.
        let mut victim = state.hand;
        for _ in 0..2 * self.capacity {
            let hand = state.hand;
            state.hand = (hand + 1) % self.capacity;
            let slot = &mut state.slots[hand];
            if !slot.referenced {
                victim = hand;
                break;
            }
            slot.referenced = false;
        }
        let old = state.slots[victim].sector;
        if state.slots[victim].dirty {
            self.device.write(old, &state.slots[victim].data).await.map_err(|e| BlockError::Other {
                kind: e.kind(),
                message: format!("cache write-back of sector {old} (to make room) failed: {e}"),
            })?;
            state.slots[victim].dirty = false;
        }
        state.index.remove(&old);
        state.index.insert(sector, victim);
        state.slots[victim].sector = sector;
        Ok(victim)
    }

    /// Writes back every dirty sector in runs of consecutive sectors.
    async fn write_back(&self, state: &mut Guard<'_, State>) -> Result<(), BlockError> {
        let dirty: Vec<(u64, usize)> =
            state.index.iter().filter(|(_, &i)| state.slots[i].dirty).map(|(&s, &i)| (s, i)).collect();
        let mut at = 0;
        while at < dirty.len() {
            let first = dirty[at].0;
            let mut end = at + 1;
            while end < dirty.len() && end - at < MAX_WRITE_BACK_RUN && dirty[end].0 == first + (end - at) as u64 {
                end += 1;
            }
            let run = &dirty[at..end];
            let bufs: Vec<&[u8]> = run.iter().map(|&(_, i)| &*state.slots[i].data).collect();
            self.device.write_vectored(first, &bufs).await.map_err(|e| BlockError::Other {
                kind: e.kind(),
                message: format!("cache write-back of {} sectors at sector {first} failed: {e}", run.len()),
            })?;
            for &(_, i) in run {
                state.slots[i].dirty = false;
            }
            at = end;
        }
        Ok(())
    }
}

impl<B: BlockDevice> BlockDevice for Cache<B> {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// `Ok`: `bufs` hold the sectors, including every write made through
    /// the cache. Cancel-safe: sectors are cached only once read whole.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let sectors = self.info.check_request(Operation::Read, start, bufs)?.sectors;
        let sector_size = self.info.sector_size as usize;
        let mut state = self.state.lock().await;
        let mut s = 0;
        while s < sectors {
            if let Some(&i) = state.index.get(&(start + s)) {
                let slot = &mut state.slots[i];
                slot.referenced = true;
                scatter(bufs, s as usize * sector_size, &slot.data);
                s += 1;
                continue;
            }
            let mut end = s + 1;
            while end < sectors && !state.index.contains_key(&(start + end)) {
                end += 1;
            }
            let mut run = vec![0u8; (end - s) as usize * sector_size];
            self.device.read(start + s, &mut run).await.map_err(|e| BlockError::Other {
                kind: e.kind(),
                message: format!("cache read of {} sectors at sector {} failed: {e}", end - s, start + s),
            })?;
            scatter(bufs, s as usize * sector_size, &run);
            for (k, data) in run.chunks_exact(sector_size).enumerate() {
                // Caching is best effort: if making room needs a write-back
                // that fails, the dirty sector stays cached (and the next
                // flush reports the error), and this read still succeeds.
                if let Ok(i) = self.slot_for(&mut state, start + s + k as u64).await {
                    let slot = &mut state.slots[i];
                    if !slot.dirty {
                        slot.data.copy_from_slice(data);
                    }
                    slot.referenced = true;
                }
            }
            s = end;
        }
        Ok(())
    }

    /// `Ok`: the sectors are in the cache, visible to later reads, durable
    /// after the next `flush`. On `Err` (a write-back to make room failed)
    /// or if dropped, any prefix of the sectors may be in the cache.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let sectors = self.info.check_request(Operation::Write, start, bufs)?.sectors;
        let sector_size = self.info.sector_size as usize;
        let mut state = self.state.lock().await;
        for s in 0..sectors {
            let i = self.slot_for(&mut state, start + s).await?;
            let slot = &mut state.slots[i];
            gather(bufs, s as usize * sector_size, &mut slot.data);
            slot.dirty = true;
            slot.referenced = true;
        }
        Ok(())
    }

    /// Writes back every dirty sector, then flushes the device below.
    /// `Ok`: every write that completed before this call is durable. `Err`:
    /// sectors not written back are still dirty in the cache; flush again.
    /// Not cancel-safe (durability unknown), but nothing is lost.
    async fn flush(&self) -> Result<(), BlockError> {
        let mut state = self.state.lock().await;
        self.write_back(&mut state).await?;
        self.device.flush().await.map_err(|e| BlockError::Other {
            kind: e.kind(),
            message: format!("flush of the device below the cache failed: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CrashBlock, MemBlock, Persistence};
    use alloc::string::ToString;
    use core::cell::Cell;
    use futures::executor::block_on;
    use proptest::prelude::*;

    /// A RAM device whose writes fail while `failing` is set.
    struct FlakyBlock {
        mem: MemBlock,
        failing: Cell<bool>,
        writes: Cell<usize>,
    }

    impl BlockDevice for FlakyBlock {
        type Error = BlockError;
        fn info(&self) -> BlockInfo {
            self.mem.info()
        }
        async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
            self.mem.read_vectored(start, bufs).await
        }
        async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
            self.writes.set(self.writes.get() + 1);
            if self.failing.get() {
                return Err(BlockError::Io { op: Operation::Write, sector: start, message: "medium error".into() });
            }
            self.mem.write_vectored(start, bufs).await
        }
        async fn flush(&self) -> Result<(), BlockError> {
            Ok(())
        }
    }

    fn flaky(sectors: u64) -> FlakyBlock {
        FlakyBlock { mem: MemBlock::new(512, sectors).unwrap(), failing: Cell::new(false), writes: Cell::new(0) }
    }

    #[test]
    fn writes_stay_in_the_cache_until_flush() {
        let dev = flaky(8);
        let cache = Cache::new(&dev, 4).unwrap();
        block_on(async {
            cache.write(1, &[5; 1024]).await.unwrap();
            assert_eq!(dev.writes.get(), 0, "write-back cache");
            let mut back = [0u8; 1024];
            cache.read(1, &mut back).await.unwrap();
            assert_eq!(back, [5; 1024]);
            assert_eq!(cache.dirty_sectors().await, 2);
            cache.flush().await.unwrap();
            assert_eq!(dev.writes.get(), 1, "two consecutive dirty sectors go down in one request");
            assert_eq!(cache.dirty_sectors().await, 0);
        });
        assert_eq!(dev.mem.snapshot()[512..1536], [5; 1024]);
    }

    #[test]
    fn failed_write_back_keeps_the_data_dirty() {
        let dev = flaky(8);
        let cache = Cache::new(&dev, 2).unwrap();
        block_on(async {
            cache.write(0, &[1; 1024]).await.unwrap();
            dev.failing.set(true);
            let e = cache.flush().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io);
            assert!(e.to_string().contains("write-back of 2 sectors at sector 0"), "{e}");
            // Making room for another sector needs a write-back, which fails.
            assert_eq!(cache.write(5, &[2; 512]).await.unwrap_err().kind(), ErrorKind::Io);
            // A read that cannot be cached still succeeds.
            let mut other = [9u8; 512];
            cache.read(6, &mut other).await.unwrap();
            assert_eq!(other, [0; 512]);
            let mut back = [0u8; 1024];
            cache.read(0, &mut back).await.unwrap();
            assert_eq!(back, [1; 1024], "the data is still in the cache");
            dev.failing.set(false);
            cache.flush().await.unwrap();
        });
        assert_eq!(dev.mem.snapshot()[..1024], [1; 1024]);
    }

    #[test]
    fn flush_makes_writes_durable_below() {
        let dev = CrashBlock::new(512, 64, Persistence::DropUnflushed).unwrap();
        let cache = Cache::new(&dev, 8).unwrap();
        block_on(async {
            for s in 0..32u8 {
                cache.write(u64::from(s), &[s + 1; 512]).await.unwrap();
            }
            cache.flush().await.unwrap();
            cache.write(40, &[99; 512]).await.unwrap();
        });
        let image = dev.recovered_image();
        for s in 0..32 {
            assert_eq!(image[s * 512], s as u8 + 1, "sector {s}");
        }
        assert_eq!(image[40 * 512], 0, "not flushed, so lost");
    }

    #[test]
    fn zero_capacity_is_refused() {
        let dev = MemBlock::new(512, 1).unwrap();
        assert!(Cache::new(&dev, 0).unwrap_err().to_string().contains("1 sector"));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Read(u64, u64),
        Write(u64, u64, u8),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..24, 0u64..6).prop_map(|(s, n)| Op::Read(s, n)),
            (0u64..24, 0u64..6, any::<u8>()).prop_map(|(s, n, f)| Op::Write(s, n, f)),
            Just(Op::Flush),
        ]
    }

    proptest! {
        /// Through random reads, writes (some out of range) and flushes, a
        /// small cache reads like a plain array of every write, and after
        /// each flush the device below holds exactly that array.
        #[test]
        fn behaves_like_a_byte_array(capacity in 1usize..6, ops in proptest::collection::vec(op(), 1..60)) {
            const SECTORS: u64 = 20;
            let dev = MemBlock::new(512, SECTORS).unwrap();
            let cache = Cache::new(&dev, capacity).unwrap();
            let mut model = vec![0u8; SECTORS as usize * 512];
            block_on(async {
                for op in ops {
                    match op {
                        Op::Read(s, n) => {
                            // Two uneven buffers, to exercise scatter.
                            let mut a = vec![0u8; 256];
                            let mut b = vec![0u8; (n as usize * 512).saturating_sub(256)];
                            let r = cache.read_vectored(s, &mut [&mut a, &mut b]).await;
                            if n == 0 || s + n > SECTORS {
                                prop_assert!(n == 0 || r.is_err());
                                continue;
                            }
                            prop_assert!(r.is_ok());
                            let at = s as usize * 512;
                            prop_assert_eq!(&a[..], &model[at..at + 256]);
                            prop_assert_eq!(&b[..], &model[at + 256..at + n as usize * 512]);
                        }
                        Op::Write(s, n, f) => {
                            let data: Vec<u8> = (0..n as usize * 512).map(|i| f.wrapping_add((i / 512) as u8)).collect();
                            let (x, y) = data.split_at(data.len() / 3);
                            let r = cache.write_vectored(s, &[x, y]).await;
                            if s + n > SECTORS {
                                prop_assert!(r.is_err());
                                continue;
                            }
                            prop_assert!(r.is_ok());
                            let at = s as usize * 512;
                            model[at..at + data.len()].copy_from_slice(&data);
                        }
                        Op::Flush => {
                            cache.flush().await.unwrap();
                            prop_assert!(dev.with_bytes(|b| b == &model[..]));
                        }
                    }
                    prop_assert!(cache.state.lock().await.slots.len() <= capacity);
                }
                Ok(())
            })?;
        }
    }
}
