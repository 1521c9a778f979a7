//! The block example: write a pattern over a whole block device, read it
//! back, verify it and report throughput.
//!
//! Every sector gets content unique to this run and this sector: its
//! number, a random seed drawn at start, then a pseudo-random stream
//! derived from both. Data left by an earlier run (a lost write) or written
//! to the wrong place (a misdirected write) therefore cannot pass, and the
//! error says which of the two it saw.

#![no_std]

extern crate alloc;

use alloc::vec;
use core::fmt;
use core::time::Duration;

use mirage::block::{self, BlockDevice, Operation};
use mirage::devices::Devices;
use mirage::platform::{AppError, Platform};
use mirage::random::RandomError;

/// The block device the example overwrites.
pub const DISK_DEVICE: &str = "disk";

/// Runs the example on the block device [`DISK_DEVICE`]: see [`check`].
/// Destroys what the device held.
pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<(), AppError> {
    let disk = devices.block(DISK_DEVICE).await?;
    check(platform, disk).await?;
    Ok(())
}

/// The most bytes one request moves, and the size of the one buffer the
/// test allocates (less for a smaller device, one sector for a device whose
/// sectors are larger).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// The bytes at the start of each sector that name it: sector number and
/// seed, both little-endian `u64`s.
const HEADER_LEN: usize = 16;

/// What a successful run measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// Sectors written and verified: the whole device.
    pub sectors: u64,
    /// Bytes written and verified.
    pub bytes: u64,
    /// Time to write every sector and flush.
    pub write_time: Duration,
    /// Time to read every sector back (verification included).
    pub read_time: Duration,
}

/// Why the test failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockTestError<E> {
    /// The device is read-only; the test must write.
    ReadOnly,
    /// No seed could be drawn.
    Random(RandomError),
    /// The device failed a request.
    Io {
        /// The operation.
        op: Operation,
        /// The first sector of the failed request.
        sector: u64,
        /// What the device said.
        source: E,
    },
    /// A sector read back differs from what was written to it.
    Mismatch {
        /// The first bad sector.
        sector: u64,
        /// What the sector held instead, as far as can be told.
        found: Found,
    },
}

/// What a bad sector held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The data this run wrote to another sector: a misdirected write.
    OtherSector(u64),
    /// Data this run did not write (an earlier run's, zeros, garbage): a
    /// lost write.
    NotThisRun,
    /// The right header but a corrupted body, first differing at this byte
    /// of the sector.
    CorruptAt(usize),
}

impl<E: fmt::Display> fmt::Display for BlockTestError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockTestError::ReadOnly => {
                f.write_str("refusing to test a read-only block device: the test overwrites every sector")
            }
            BlockTestError::Random(e) => write!(f, "cannot draw a seed for the test pattern: {e}"),
            BlockTestError::Io { op, sector, source } => write!(f, "{op} at sector {sector} failed: {source}"),
            BlockTestError::Mismatch { sector, found } => {
                write!(f, "verification failed at sector {sector}: ")?;
                match found {
                    Found::OtherSector(other) => {
                        write!(f, "it holds the data written to sector {other} (a misdirected write)")
                    }
                    Found::NotThisRun => f.write_str("it does not hold data written by this run (a lost write)"),
                    Found::CorruptAt(at) => write!(f, "its contents differ from what was written from byte {at} on"),
                }
            }
        }
    }
}

impl<E: block::Error + 'static> core::error::Error for BlockTestError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BlockTestError::Io { source, .. } => Some(source),
            BlockTestError::Random(e) => Some(e),
            _ => None,
        }
    }
}

/// Fills `sector` with the pattern of sector number `number` for `seed`.
fn fill_sector(sector: &mut [u8], number: u64, seed: u64) {
    let (header, body) = sector.split_at_mut(HEADER_LEN);
    header[..8].copy_from_slice(&number.to_le_bytes());
    header[8..].copy_from_slice(&seed.to_le_bytes());
    // SplitMix64 (Steele, Lea, Flood 2014): fast, and different for every
    // (seed, sector) pair. Not cryptographic; it only has to be unguessable
    // by stale data.
    let mut state = seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for word in body.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        word.copy_from_slice(&z.to_le_bytes()[..word.len()]);
    }
}

/// Checks `got` against the pattern of sector `number`, using `expected`
/// as scratch space.
fn check_sector(got: &[u8], expected: &mut [u8], number: u64, seed: u64) -> Result<(), Found> {
    fill_sector(expected, number, seed);
    if got == expected {
        return Ok(());
    }
    let header = |at: usize| got.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    match (header(0), header(8)) {
        (Some(n), Some(s)) if s == seed && n != number => Err(Found::OtherSector(n)),
        (Some(n), Some(s)) if s == seed && n == number => {
            Err(Found::CorruptAt(got.iter().zip(expected.iter()).position(|(a, b)| a != b).unwrap_or(0)))
        }
        _ => Err(Found::NotThisRun),
    }
}

/// MiB per second, for the report.
fn mib_per_sec(bytes: u64, time: Duration) -> f64 {
    let secs = time.as_secs_f64().max(1e-9);
    bytes as f64 / (1024.0 * 1024.0) / secs
}

/// Writes the pattern to every sector of `device` in requests of up to
/// [`CHUNK_BYTES`], flushes, reads everything back and verifies it. Logs
/// the write and read throughput at info level.
///
/// `Ok` means every sector was written, flushed and read back intact.
/// Errors: [`BlockTestError::ReadOnly`] before anything is written;
/// [`BlockTestError::Io`] for the first failed request (sectors before it
/// hold the pattern); [`BlockTestError::Mismatch`] for the first sector
/// that reads back wrong.
pub async fn check<P: Platform, B: BlockDevice>(platform: P, device: B) -> Result<Report, BlockTestError<B::Error>> {
    let info = device.info();
    if !info.read_write {
        return Err(BlockTestError::ReadOnly);
    }
    let seed = platform.next_u64().map_err(BlockTestError::Random)?;
    let sector_size = info.sector_size as usize;
    let chunk_sectors = (CHUNK_BYTES / sector_size).max(1) as u64;
    let buffer_sectors = chunk_sectors.min(info.sector_count);
    // At most CHUNK_BYTES, or one sector if sectors are larger.
    let mut buffer = vec![0u8; buffer_sectors as usize * sector_size];
    let mut expected = vec![0u8; sector_size];
    let bytes = info.size_bytes();
    log::info!(
        "testing {} sectors of {} bytes ({:.1} MiB) with seed {seed:#018x}",
        info.sector_count,
        sector_size,
        bytes as f64 / (1024.0 * 1024.0)
    );

    let write_start = platform.now();
    let mut sector = 0;
    while sector < info.sector_count {
        let count = chunk_sectors.min(info.sector_count - sector);
        let chunk = &mut buffer[..count as usize * sector_size];
        for (i, s) in chunk.chunks_mut(sector_size).enumerate() {
            fill_sector(s, sector + i as u64, seed);
        }
        device.write(sector, chunk).await.map_err(|source| BlockTestError::Io {
            op: Operation::Write,
            sector,
            source,
        })?;
        sector += count;
    }
    device.flush().await.map_err(|source| BlockTestError::Io { op: Operation::Flush, sector: 0, source })?;
    let write_time = platform.now() - write_start;
    log::info!("wrote and flushed in {:.3} s: {:.1} MiB/s", write_time.as_secs_f64(), mib_per_sec(bytes, write_time));

    let read_start = platform.now();
    let mut sector = 0;
    while sector < info.sector_count {
        let count = chunk_sectors.min(info.sector_count - sector);
        let chunk = &mut buffer[..count as usize * sector_size];
        device.read(sector, chunk).await.map_err(|source| BlockTestError::Io {
            op: Operation::Read,
            sector,
            source,
        })?;
        for (i, s) in chunk.chunks(sector_size).enumerate() {
            let number = sector + i as u64;
            check_sector(s, &mut expected, number, seed)
                .map_err(|found| BlockTestError::Mismatch { sector: number, found })?;
        }
        sector += count;
    }
    let read_time = platform.now() - read_start;
    log::info!(
        "read and verified in {:.3} s: {:.1} MiB/s; all {} sectors are intact",
        read_time.as_secs_f64(),
        mib_per_sec(bytes, read_time),
        info.sector_count
    );
    Ok(Report { sectors: info.sector_count, bytes, write_time, read_time })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::vec::Vec;
    use core::cell::{Cell, RefCell};
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};
    use core::time::Duration;

    use mirage::block::{BlockError, BlockInfo};
    use mirage_testkit::FakePlatform;

    use super::*;

    /// Runs a future that never waits (the fakes below never do).
    fn run<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the fakes never return Pending"),
        }
    }

    /// A platform whose clock advances 1 ms per reading, so the timings of
    /// the report are not zero although nothing sleeps.
    fn platform() -> FakePlatform {
        FakePlatform::new().advancing_per_reading(Duration::from_millis(1))
    }

    /// What a [`FaultyDisk`] does wrong.
    #[derive(Clone, Copy)]
    enum Fault {
        None,
        /// Writes to this sector are dropped.
        LoseWrite(u64),
        /// Writes to these two sectors land on each other.
        Swap(u64, u64),
        /// Reads of this sector come back with one byte flipped.
        FlipOnRead(u64, usize),
    }

    struct FaultyDisk {
        info: BlockInfo,
        data: RefCell<Vec<u8>>,
        fault: Fault,
        flushes: Cell<u32>,
    }

    impl FaultyDisk {
        fn new(sector_size: u32, sector_count: u64, fault: Fault) -> FaultyDisk {
            let info = BlockInfo { sector_size, sector_count, read_write: true };
            // Stale data from "an earlier run": not zeros, not this run's.
            let data = RefCell::new(vec![0xee; info.size_bytes() as usize]);
            FaultyDisk { info, data, fault, flushes: Cell::new(0) }
        }
        fn sector_range(&self, sector: u64) -> core::ops::Range<usize> {
            let size = self.info.sector_size as usize;
            sector as usize * size..(sector as usize + 1) * size
        }
    }

    impl BlockDevice for FaultyDisk {
        type Error = BlockError;
        fn info(&self) -> BlockInfo {
            self.info
        }
        async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
            assert_eq!(bufs.len(), 1, "the test reads with one buffer");
            let sectors = self.info.check(Operation::Read, start, bufs[0].len())?;
            let data = self.data.borrow();
            let size = self.info.sector_size as usize;
            for i in 0..sectors {
                let dst = &mut bufs[0][i as usize * size..(i as usize + 1) * size];
                dst.copy_from_slice(&data[self.sector_range(start + i)]);
                if let Fault::FlipOnRead(bad, byte) = self.fault {
                    if bad == start + i {
                        dst[byte] ^= 1;
                    }
                }
            }
            Ok(())
        }
        async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
            assert_eq!(bufs.len(), 1, "the test writes with one buffer");
            let sectors = self.info.check(Operation::Write, start, bufs[0].len())?;
            let mut data = self.data.borrow_mut();
            let size = self.info.sector_size as usize;
            for i in 0..sectors {
                let target = match self.fault {
                    Fault::LoseWrite(lost) if lost == start + i => continue,
                    Fault::Swap(a, b) if a == start + i => b,
                    Fault::Swap(a, b) if b == start + i => a,
                    _ => start + i,
                };
                let range = self.sector_range(target);
                data[range].copy_from_slice(&bufs[0][i as usize * size..(i as usize + 1) * size]);
            }
            Ok(())
        }
        async fn flush(&self) -> Result<(), BlockError> {
            self.flushes.set(self.flushes.get() + 1);
            Ok(())
        }
    }

    #[test]
    fn a_sound_device_passes_in_several_chunks() {
        // 300 sectors of 4 KiB: more than one 1 MiB chunk.
        let disk = FaultyDisk::new(4096, 300, Fault::None);
        let report = run(check(platform(), &disk)).expect("sound device");
        assert_eq!(report.sectors, 300);
        assert_eq!(report.bytes, 300 * 4096);
        assert_eq!(disk.flushes.get(), 1);
        // Every sector names itself.
        let data = disk.data.borrow();
        for n in 0..300u64 {
            let at = n as usize * 4096;
            assert_eq!(u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes")), n);
        }
    }

    #[test]
    fn sectors_differ_within_and_across_runs() {
        let (mut a, mut b, mut c) = (vec![0u8; 512], vec![0u8; 512], vec![0u8; 512]);
        fill_sector(&mut a, 1, 42);
        fill_sector(&mut b, 2, 42);
        fill_sector(&mut c, 1, 43);
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
        assert_ne!(a[HEADER_LEN..], c[HEADER_LEN..]);
    }

    #[test]
    fn a_lost_write_is_named() {
        let disk = FaultyDisk::new(512, 64, Fault::LoseWrite(37));
        let e = run(check(platform(), &disk)).expect_err("lost write");
        assert!(matches!(e, BlockTestError::Mismatch { sector: 37, found: Found::NotThisRun }), "{e}");
        assert_eq!(
            alloc::format!("{e}"),
            "verification failed at sector 37: it does not hold data written by this run (a lost write)"
        );
    }

    #[test]
    fn a_misdirected_write_is_named() {
        let disk = FaultyDisk::new(512, 64, Fault::Swap(5, 9));
        let e = run(check(platform(), &disk)).expect_err("misdirected writes");
        assert!(matches!(e, BlockTestError::Mismatch { sector: 5, found: Found::OtherSector(9) }), "{e}");
    }

    #[test]
    fn a_corrupt_byte_is_located() {
        let disk = FaultyDisk::new(512, 64, Fault::FlipOnRead(63, 300));
        let e = run(check(platform(), &disk)).expect_err("corruption");
        assert!(matches!(e, BlockTestError::Mismatch { sector: 63, found: Found::CorruptAt(300) }), "{e}");
    }

    #[test]
    fn a_read_only_device_is_refused_untouched() {
        let mut disk = FaultyDisk::new(512, 8, Fault::None);
        disk.info.read_write = false;
        let e = run(check(platform(), &disk)).expect_err("read-only");
        assert!(matches!(e, BlockTestError::ReadOnly));
        assert!(alloc::format!("{e}").contains("read-only"));
        assert!(disk.data.borrow().iter().all(|&b| b == 0xee));
    }

    #[test]
    fn an_empty_device_passes_trivially() {
        let disk = FaultyDisk::new(512, 0, Fault::None);
        let report = run(check(platform(), &disk)).expect("empty device");
        assert_eq!((report.sectors, report.bytes), (0, 0));
    }
}
