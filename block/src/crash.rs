//! A block device that loses power on request, for crash-consistency tests.
//!
//! [`CrashBlock`] keeps two images: the *durable* one (what survives power
//! loss) and the *volatile* one (what reads see). A write updates the
//! volatile image at once and is remembered as *pending* until a flush
//! succeeds, which copies every pending write into the durable image.
//!
//! # Power-loss model
//!
//! Power is lost either when the test calls [`CrashBlock::crash`], or when
//! the request armed with [`CrashBlock::crash_at_write`] or
//! [`CrashBlock::crash_at_flush`] is issued. From then on every request
//! fails with [`ErrorKind::Io`], including the one that was interrupted.
//!
//! What the disk holds afterwards ([`CrashBlock::recovered_image`]) is the
//! durable image plus some of the pending writes, chosen by the
//! [`Persistence`] given at construction. [`Persistence::Random`] is at
//! least as harsh as a real disk with a volatile write cache:
//!
//! - every write whose flush returned `Ok` is kept;
//! - the pending writes (acknowledged or not, and the interrupted one) are
//!   cut into *atomic units* (by default one sector, see
//!   [`CrashBlock::with_atomic_unit`]); each unit independently ends up
//!   holding its durable contents or the contents of any one of the
//!   pending writes to it, chosen uniformly by a seeded PRNG. So unflushed
//!   writes persist in any order and any subset (a later write may survive
//!   where an earlier one is lost, and an older version of a unit may win
//!   over a newer one), multi-sector writes tear at unit boundaries, and a
//!   unit is never a mix of two versions;
//! - writes never issued are not there.
//!
//! The choice is a function of the seed and the sequence of requests only,
//! so a failing case can be replayed.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::mem::{check_sector_size, MemBlock};

/// Which pending (unflushed) writes survive power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Each atomic unit independently keeps its durable contents or one of
    /// its pending versions, uniformly chosen by a PRNG seeded with `seed`
    /// (see the [module documentation](self)).
    Random {
        /// Seed of the deterministic PRNG.
        seed: u64,
    },
    /// No pending write survives: the disk holds exactly what was flushed.
    DropUnflushed,
    /// Every acknowledged write survives, in order; the interrupted write,
    /// if any, does not.
    KeepUnflushed,
}

/// A RAM block device that can lose power; see the [module
/// documentation](self) for the model.
///
/// Writes are counted per *request* (one `write_vectored` call that passed
/// [`BlockInfo::check`], whatever its length), from 0. Refused requests are
/// not counted and have no effect. Every request completes without
/// suspending, so requests from several tasks never interleave.
///
/// Memory: the device keeps its image twice plus a copy of every write
/// since the last flush, without bound. It is a test device.
#[derive(Debug)]
pub struct CrashBlock {
    info: BlockInfo,
    state: RefCell<State>,
}

#[derive(Debug)]
struct State {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    /// Writes since the last successful flush, in issue order: (byte
    /// offset, bytes).
    pending: Vec<(usize, Vec<u8>)>,
    writes: u64,
    flushes: u64,
    crash_at_write: Option<u64>,
    crash_at_flush: Option<u64>,
    /// Set once power is lost: what happened, and the recovered image.
    crashed: Option<(String, Vec<u8>)>,
    persistence: Persistence,
    atomic_unit: usize,
}

impl CrashBlock {
    /// A zero-filled device of `sector_count` sectors of `sector_size`
    /// bytes, losing unflushed writes as `persistence` says.
    ///
    /// Errors as [`MemBlock::new`] does.
    pub fn new(sector_size: u32, sector_count: u64, persistence: Persistence) -> Result<CrashBlock, BlockError> {
        let image = MemBlock::new(sector_size, sector_count)?.into_vec();
        CrashBlock::from_image(sector_size, image, persistence)
    }

    /// A device whose durable (and visible) contents are `image`, for
    /// example the image recovered from an earlier crash, so that recovery
    /// itself can be crashed.
    ///
    /// Errors as [`MemBlock::from_vec`] does.
    pub fn from_image(sector_size: u32, image: Vec<u8>, persistence: Persistence) -> Result<CrashBlock, BlockError> {
        check_sector_size(sector_size)?;
        if image.len() % sector_size as usize != 0 {
            return Err(BlockError::Misaligned { op: Operation::Write, len: image.len(), sector_size });
        }
        let sector_count = (image.len() / sector_size as usize) as u64;
        let info = BlockInfo { sector_size, sector_count, read_write: true };
        let state = State {
            volatile: image.clone(),
            durable: image,
            pending: Vec::new(),
            writes: 0,
            flushes: 0,
            crash_at_write: None,
            crash_at_flush: None,
            crashed: None,
            persistence,
            atomic_unit: sector_size as usize,
        };
        Ok(CrashBlock { info, state: RefCell::new(state) })
    }

    /// Sets the atomic unit of writes to `bytes`, a power of two no larger
    /// than the sector size: under [`Persistence::Random`], a sector larger
    /// than the unit can be torn into a mix of old and new units (as a
    /// 4096-byte sector on a disk that writes 512 bytes atomically).
    ///
    /// Errors (kind [`ErrorKind::Other`]) if `bytes` is not acceptable.
    pub fn with_atomic_unit(self, bytes: usize) -> Result<CrashBlock, BlockError> {
        if bytes == 0 || !bytes.is_power_of_two() || bytes > self.info.sector_size as usize {
            return Err(BlockError::Other {
                kind: ErrorKind::Other,
                message: format!(
                    "atomic unit of {bytes} bytes is not a power of two dividing the {}-byte sector",
                    self.info.sector_size
                ),
            });
        }
        self.state.borrow_mut().atomic_unit = bytes;
        Ok(self)
    }

    /// Arms a power loss at the write request with 0-based index `index`:
    /// that request returns `Err`, any of its units may persist, and every
    /// later request fails. An index already passed never fires.
    pub fn crash_at_write(&self, index: u64) {
        self.state.borrow_mut().crash_at_write = Some(index);
    }

    /// Arms a power loss at the flush with 0-based index `index`: that
    /// flush returns `Err` and makes nothing durable; pending writes
    /// persist as the [`Persistence`] says.
    pub fn crash_at_flush(&self, index: u64) {
        self.state.borrow_mut().crash_at_flush = Some(index);
    }

    /// Loses power now, if it has not been lost already.
    pub fn crash(&self) {
        self.state.borrow_mut().lose_power(String::from("power loss requested by the test"), None);
    }

    /// Whether power has been lost.
    pub fn is_crashed(&self) -> bool {
        self.state.borrow().crashed.is_some()
    }

    /// Write requests issued so far (including an interrupted one).
    pub fn writes(&self) -> u64 {
        self.state.borrow().writes
    }

    /// Flushes issued so far (including an interrupted one).
    pub fn flushes(&self) -> u64 {
        self.state.borrow().flushes
    }

    /// What reads see now (before a crash): every completed write.
    pub fn visible_image(&self) -> Vec<u8> {
        self.state.borrow().volatile.clone()
    }

    /// What has been made durable by flushes so far.
    pub fn durable_image(&self) -> Vec<u8> {
        self.state.borrow().durable.clone()
    }

    /// The disk's contents after power loss, losing power now if it has not
    /// been lost yet. Calling it again returns the same image.
    pub fn recovered_image(&self) -> Vec<u8> {
        self.crash();
        match &self.state.borrow().crashed {
            Some((_, image)) => image.clone(),
            None => unreachable!("crash() has just lost power"),
        }
    }

    /// A fresh read-write [`MemBlock`] holding [`CrashBlock::recovered_image`],
    /// as the disk would be found after a reboot.
    pub fn recovered_device(&self) -> MemBlock {
        match MemBlock::from_vec(self.info.sector_size, self.recovered_image()) {
            Ok(dev) => dev,
            Err(_) => unreachable!("the image has this device's geometry, which was accepted"),
        }
    }

    fn failure(state: &State, op: Operation, sector: u64) -> Option<BlockError> {
        state.crashed.as_ref().map(|(why, _)| BlockError::Io { op, sector, message: why.clone() })
    }
}

impl State {
    fn lose_power(&mut self, why: String, interrupted: Option<(usize, Vec<u8>)>) {
        if self.crashed.is_some() {
            return;
        }
        let mut pending = core::mem::take(&mut self.pending);
        let image = match self.persistence {
            Persistence::DropUnflushed => self.durable.clone(),
            Persistence::KeepUnflushed => {
                let mut image = self.durable.clone();
                for (at, bytes) in &pending {
                    image[*at..*at + bytes.len()].copy_from_slice(bytes);
                }
                image
            }
            Persistence::Random { seed } => {
                pending.extend(interrupted);
                persist_randomly(&self.durable, &pending, self.atomic_unit, seed)
            }
        };
        self.volatile = Vec::new();
        self.crashed = Some((why, image));
    }
}

/// Applies to `durable` one uniformly chosen version (none, or one of the
/// pending writes to it) of each atomic unit that `pending` touches.
fn persist_randomly(durable: &[u8], pending: &[(usize, Vec<u8>)], unit: usize, seed: u64) -> Vec<u8> {
    // Per unit: (versions pending, version chosen, versions seen so far);
    // version 0 is the durable contents.
    let mut units: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
    for (at, bytes) in pending {
        for u in (at / unit)..((at + bytes.len()) / unit) {
            units.entry(u).or_default().0 += 1;
        }
    }
    // SplitMix64 (Steele, Lea, Flood 2014): tiny, and good enough to pick
    // crash outcomes reproducibly.
    let mut rng = SplitMix64::seed_from_u64(seed);
    for (versions, chosen, _) in units.values_mut() {
        // The modulo bias is irrelevant here.
        *chosen = rng.next_u64() % (*versions + 1);
    }
    let mut image = durable.to_vec();
    for (at, bytes) in pending {
        for (i, piece) in bytes.chunks_exact(unit).enumerate() {
            let u = at / unit + i;
            if let Some((_, chosen, seen)) = units.get_mut(&u) {
                *seen += 1;
                if *seen == *chosen {
                    image[u * unit..(u + 1) * unit].copy_from_slice(piece);
                }
            }
        }
    }
    image
}

impl BlockDevice for CrashBlock {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// `Ok`: `bufs` hold every completed write. `Err` of kind
    /// [`ErrorKind::Io`] once power is lost. Cancel-safe.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Read, start, bufs)?;
        let state = self.state.borrow();
        if let Some(e) = CrashBlock::failure(&state, Operation::Read, start) {
            return Err(e);
        }
        let mut at = start as usize * self.info.sector_size as usize;
        for buf in bufs.iter_mut() {
            buf.copy_from_slice(&state.volatile[at..at + buf.len()]);
            at += buf.len();
        }
        Ok(())
    }

    /// `Ok`: visible to reads, durable after the next successful flush.
    /// `Err` of kind [`ErrorKind::Io`] once power is lost (the interrupted
    /// request may have persisted any of its units). Cancel-safe.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Write, start, bufs)?;
        let mut state = self.state.borrow_mut();
        if let Some(e) = CrashBlock::failure(&state, Operation::Write, start) {
            return Err(e);
        }
        let index = state.writes;
        state.writes += 1;
        let at = start as usize * self.info.sector_size as usize;
        let bytes: Vec<u8> = bufs.concat();
        if state.crash_at_write == Some(index) {
            let why = format!("simulated power loss at write request {index}");
            state.lose_power(why, Some((at, bytes)));
            return Err(CrashBlock::failure(&state, Operation::Write, start).unwrap_or(BlockError::Disconnected));
        }
        state.volatile[at..at + bytes.len()].copy_from_slice(&bytes);
        state.pending.push((at, bytes));
        Ok(())
    }

    /// `Ok`: every write acknowledged before is durable. `Err` of kind
    /// [`ErrorKind::Io`] once power is lost; nothing was made durable.
    async fn flush(&self) -> Result<(), BlockError> {
        let mut state = self.state.borrow_mut();
        if let Some(e) = CrashBlock::failure(&state, Operation::Flush, 0) {
            return Err(e);
        }
        let index = state.flushes;
        state.flushes += 1;
        if state.crash_at_flush == Some(index) {
            state.lose_power(format!("simulated power loss at flush {index}"), None);
            return Err(CrashBlock::failure(&state, Operation::Flush, 0).unwrap_or(BlockError::Disconnected));
        }
        let state = &mut *state;
        for (at, bytes) in state.pending.drain(..) {
            state.durable[at..at + bytes.len()].copy_from_slice(&bytes);
        }
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

    const SECTORS: u64 = 16;

    /// One step of a workload.
    #[derive(Clone, Debug)]
    enum Op {
        Write { start: u64, sectors: u64, fill: u8 },
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..SECTORS, 1u64..4, 1u8..=255).prop_map(|(start, sectors, fill)| Op::Write {
                start: start.min(SECTORS - sectors),
                sectors,
                fill
            }),
            1 => Just(Op::Flush),
        ]
    }

    /// Runs `ops` until the first error; returns, per sector, the fill of
    /// the last write flushed before the crash (0 if none), and the fills
    /// of the writes issued to it since (acknowledged or not).
    fn run(dev: &CrashBlock, ops: &[Op]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut flushed = vec![0u8; SECTORS as usize];
        let mut unflushed: Vec<(u64, u64, u8)> = Vec::new();
        let mut issued = vec![Vec::new(); SECTORS as usize];
        block_on(async {
            for op in ops {
                match *op {
                    Op::Write { start, sectors, fill } => {
                        for s in start..start + sectors {
                            issued[s as usize].push(fill);
                        }
                        let data = vec![fill; (sectors * 512) as usize];
                        if dev.write(start, &data).await.is_err() {
                            return;
                        }
                        unflushed.push((start, sectors, fill));
                    }
                    Op::Flush => {
                        if dev.flush().await.is_err() {
                            return;
                        }
                        for (start, sectors, fill) in unflushed.drain(..) {
                            for s in start..start + sectors {
                                flushed[s as usize] = fill;
                            }
                        }
                        issued.iter_mut().for_each(Vec::clear);
                    }
                }
            }
        });
        (flushed, issued)
    }

    fn sector_fill(image: &[u8], s: usize) -> u8 {
        let sector = &image[s * 512..(s + 1) * 512];
        assert!(sector.iter().all(|&b| b == sector[0]), "sector {s} is torn");
        sector[0]
    }

    #[test]
    fn flushed_writes_survive_and_unflushed_ones_follow_the_persistence() {
        for (persistence, expect) in [(Persistence::DropUnflushed, [1u8, 0]), (Persistence::KeepUnflushed, [1, 2])] {
            let dev = CrashBlock::new(512, 2, persistence).unwrap();
            block_on(async {
                dev.write(0, &[1; 512]).await.unwrap();
                dev.flush().await.unwrap();
                dev.write(1, &[2; 512]).await.unwrap();
                let mut back = [0u8; 512];
                dev.read(1, &mut back).await.unwrap();
                assert_eq!(back, [2; 512], "an acknowledged write is visible");
            });
            let image = dev.recovered_image();
            assert_eq!([image[0], image[512]], expect, "{persistence:?}");
            assert_eq!(dev.recovered_image(), image, "the image is fixed once power is lost");
        }
    }

    #[test]
    fn every_request_fails_after_the_crash_with_a_message() {
        let dev = CrashBlock::new(512, 4, Persistence::Random { seed: 1 }).unwrap();
        dev.crash_at_write(1);
        block_on(async {
            dev.write(0, &[1; 512]).await.unwrap();
            let e = dev.write(1, &[2; 512]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Io);
            assert!(e.to_string().contains("simulated power loss at write request 1"), "{e}");
            assert_eq!(dev.read(0, &mut [0; 512]).await.unwrap_err().kind(), ErrorKind::Io);
            assert_eq!(dev.flush().await.unwrap_err().kind(), ErrorKind::Io);
            assert_eq!(dev.write(2, &[3; 512]).await.unwrap_err().kind(), ErrorKind::Io);
        });
        assert!(dev.is_crashed());
        assert_eq!(dev.writes(), 2, "requests after the crash are not counted");
    }

    #[test]
    fn crash_at_flush_makes_nothing_durable() {
        let dev = CrashBlock::new(512, 2, Persistence::DropUnflushed).unwrap();
        dev.crash_at_flush(1);
        block_on(async {
            dev.write(0, &[1; 512]).await.unwrap();
            dev.flush().await.unwrap();
            dev.write(1, &[2; 512]).await.unwrap();
            assert!(dev.flush().await.unwrap_err().to_string().contains("flush 1"));
        });
        let image = dev.recovered_device().into_vec();
        assert_eq!([image[0], image[512]], [1, 0]);
    }

    #[test]
    fn random_persistence_reorders_and_tears_multi_sector_writes() {
        // Over many seeds, a two-sector unflushed write must sometimes be
        // torn and a later write sometimes survive an earlier lost one.
        let (mut torn, mut reordered) = (false, false);
        for seed in 0..200 {
            let dev = CrashBlock::new(512, 3, Persistence::Random { seed }).unwrap();
            block_on(async {
                dev.write(0, &[1; 1024]).await.unwrap();
                dev.write(2, &[2; 512]).await.unwrap();
            });
            let image = dev.recovered_image();
            let fills: Vec<u8> = (0..3).map(|s| sector_fill(&image, s)).collect();
            torn |= fills[0] != fills[1];
            reordered |= fills[2] == 2 && fills[0] == 0;
        }
        assert!(torn && reordered, "torn {torn}, reordered {reordered}");
    }

    #[test]
    fn smaller_atomic_unit_tears_inside_a_sector() {
        let mut torn = false;
        for seed in 0..100 {
            let dev = CrashBlock::new(4096, 1, Persistence::Random { seed }).unwrap().with_atomic_unit(512).unwrap();
            block_on(dev.write(0, &[7; 4096])).unwrap();
            let image = dev.recovered_image();
            torn |= image.contains(&0) && image.contains(&7);
        }
        assert!(torn);
        let dev = CrashBlock::new(4096, 1, Persistence::DropUnflushed).unwrap();
        assert!(dev.with_atomic_unit(8192).unwrap_err().to_string().contains("8192"));
    }

    proptest! {
        /// Crash at every write index of a random workload: each sector of
        /// the recovered image holds what the last flush before the crash
        /// left there, or a value a write issued after that flush wrote;
        /// never a value written before that flush was overwritten, nor one
        /// from a write not issued.
        #[test]
        fn crash_at_every_write_keeps_flushed_data(ops in proptest::collection::vec(op(), 1..30), seed: u64) {
            let learn = CrashBlock::new(512, SECTORS, Persistence::Random { seed }).unwrap();
            run(&learn, &ops);
            let total = learn.writes();
            for crash in 0..=total {
                let dev = CrashBlock::new(512, SECTORS, Persistence::Random { seed: seed ^ crash }).unwrap();
                dev.crash_at_write(crash);
                let (flushed, issued) = run(&dev, &ops);
                let durable = dev.durable_image();
                let image = dev.recovered_image();
                for s in 0..SECTORS as usize {
                    prop_assert_eq!(sector_fill(&durable, s), flushed[s], "durable sector {}", s);
                    let got = sector_fill(&image, s);
                    prop_assert!(
                        got == flushed[s] || issued[s].contains(&got),
                        "sector {} holds {} after a crash at write {}", s, got, crash
                    );
                }
            }
        }
    }
}
