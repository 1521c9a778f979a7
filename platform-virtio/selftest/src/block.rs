//! `-- block`: the virtio-blk driver with many reads in flight at once,
//! and with reads dropped while the device still holds them.
//!
//! The test writes a pattern over the first MiB of the disk, reads it back
//! with [`READS`] reads joined in one task (the driver records how many
//! requests the device held at once: the host test wants more than one),
//! then starts reads of a MiB and drops them after their first poll. The
//! device still completes those into the driver's buffers, not into the
//! freed ones: canaries allocated in their place must keep their bytes,
//! the requests must all complete, and a write and read after them must
//! see the disk as written. Every wait is bounded.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::pin;
use core::time::Duration;

use futures::future::{self, Either};
use mirage_platform_virtio::{VirtioBlock, VirtioPlatform};
use mirage_types::block::BlockDevice;
use mirage_types::platform::AppError;
use mirage_types::time::Sleep;

/// Bytes per sector (virtio-blk's).
const SECTOR: usize = 512;
/// Sectors the pattern is written over (1 MiB).
const SECTORS: u64 = 2048;
/// Concurrent reads.
const READS: usize = 64;
/// Sectors per concurrent read.
const READ_SECTORS: u64 = 16;
/// Reads to drop while in flight, and the most tries for that.
const CANCELLED: u64 = 8;
const MAX_CANCEL_ROUNDS: u64 = 64;
/// A dropped read: a MiB, starting at one of 8 offsets this many sectors apart.
const CANCEL_STRIDE: u64 = 64;
const CANCEL_READ_SECTORS: u64 = 2048;
/// The sectors the test reaches: the last dropped read's end.
const TOUCHED: u64 = 7 * CANCEL_STRIDE + CANCEL_READ_SECTORS;
/// How long one disk operation may take (QEMU answers in milliseconds;
/// TCG on a loaded host is much slower, but not this slow).
const OPERATION_LIMIT: Duration = Duration::from_secs(30);
/// How often, and how many times, the test looks whether the dropped
/// reads have completed.
const DRAIN_POLL: Duration = Duration::from_millis(10);
const DRAIN_POLLS: u32 = 500;

/// The pattern of `generation` for `sectors` sectors from `start`: each
/// sector is the test kit's pattern of its own seed, so a sector read from
/// the wrong place or from an older generation shows.
fn sector_pattern(generation: u8, start: u64, sectors: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(sectors as usize * SECTOR);
    for sector in start..start + sectors {
        // Odd, one per generation and sector (`pattern` ignores bit 0).
        let seed = (u64::from(generation) << 48) | (sector << 1) | 1;
        data.extend_from_slice(&mirage_testkit::pattern(seed, SECTOR));
    }
    data
}

/// Fails unless `data`, read from `start`, is the pattern of `generation`.
fn check(what: &str, generation: u8, start: u64, data: &[u8]) -> Result<(), AppError> {
    let expected = sector_pattern(generation, start, (data.len() / SECTOR) as u64);
    match data.iter().zip(&expected).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(at) => Err(format!("{what}: wrong byte {at} in the read at sector {start}").into()),
    }
}

/// `operation`'s result, or an error naming `what` if it is not done
/// within [`OPERATION_LIMIT`] (the operation is then dropped).
async fn bounded<T, E: Into<AppError>>(
    platform: &VirtioPlatform,
    what: &str,
    operation: impl Future<Output = Result<T, E>>,
) -> Result<T, AppError> {
    match future::select(pin!(operation), pin!(platform.sleep(OPERATION_LIMIT))).await {
        Either::Left((result, _)) => result.map_err(|e| format!("{what}: {}", e.into()).into()),
        Either::Right(((), _)) => Err(format!("{what}: not done after {OPERATION_LIMIT:?}").into()),
    }
}

/// Runs the test on `disk` (see the module documentation); destroys the
/// first [`TOUCHED`] sectors' contents.
pub(crate) async fn run(platform: &VirtioPlatform, disk: &VirtioBlock) -> Result<(), AppError> {
    let info = disk.info();
    if info.sector_size as usize != SECTOR || info.sector_count < TOUCHED || !info.read_write {
        return Err(format!(
            "the disk has {} read-{} sectors of {} bytes; the test needs {TOUCHED} writable ones of {SECTOR}",
            info.sector_count,
            if info.read_write { "write" } else { "only" },
            info.sector_size
        )
        .into());
    }
    bounded(platform, "writing the pattern", disk.write(0, &sector_pattern(1, 0, SECTORS))).await?;
    bounded(platform, "flush", disk.flush()).await?;

    // Many reads at once, joined in one task.
    let reads = (0..READS).map(|i| async move {
        let start = (i as u64 * 37 % (SECTORS / READ_SECTORS)) * READ_SECTORS;
        let mut buf = vec![0u8; READ_SECTORS as usize * SECTOR];
        disk.read(start, &mut buf).await.map(|()| (start, buf))
    });
    let joined = async { Ok::<_, AppError>(future::join_all(reads).await) };
    for result in bounded(platform, "concurrent reads", joined).await? {
        let (start, buf) = result?;
        check("concurrent reads", 1, start, &buf)?;
    }
    log::info!("selftest: {READS} concurrent reads verified, at most {} in flight", disk.most_in_flight());

    // Reads dropped after submission. Whether one is still in flight at
    // the drop depends on how fast the VMM is (QEMU often completes a
    // request before the guest polls again), so rounds go on until enough
    // were (bounded); the count is logged, and the checks below hold
    // however many there were.
    let mut abandoned = 0;
    for round in 0..MAX_CANCEL_ROUNDS {
        if abandoned >= CANCELLED {
            break;
        }
        let before = disk.requests_in_flight();
        let mut buf = vec![0u8; CANCEL_READ_SECTORS as usize * SECTOR];
        let mut read = pin!(disk.read((round % 8) * CANCEL_STRIDE, &mut buf));
        if futures::poll!(read.as_mut()).is_pending() && disk.requests_in_flight() > before {
            abandoned += 1;
        }
    }
    // Fresh allocations likely reuse the freed buffers; they must keep
    // what is written here while the abandoned requests complete.
    let canaries: Vec<Vec<u8>> = (0..CANCELLED).map(|_| vec![0x5a; CANCEL_STRIDE as usize * SECTOR]).collect();
    // Overwrite the dropped reads' first sectors while they may still run.
    let rewritten = CANCELLED * CANCEL_STRIDE;
    bounded(platform, "writing over the dropped reads", disk.write(0, &sector_pattern(2, 0, rewritten))).await?;
    for _ in 0..DRAIN_POLLS {
        if disk.requests_in_flight() == 0 {
            break;
        }
        platform.sleep(DRAIN_POLL).await;
    }
    if disk.requests_in_flight() != 0 {
        return Err(format!("{} abandoned requests never completed", disk.requests_in_flight()).into());
    }
    if canaries.iter().any(|c| c.iter().any(|&b| b != 0x5a)) {
        return Err("memory freed by a cancelled read was written".into());
    }
    let mut back = vec![0u8; rewritten as usize * SECTOR];
    bounded(platform, "reading back after the dropped reads", disk.read(0, &mut back)).await?;
    check("after cancelled reads", 2, 0, &back)?;
    log::info!("selftest: cancelled reads ({abandoned} of them in flight) left no trace");
    Ok(())
}
