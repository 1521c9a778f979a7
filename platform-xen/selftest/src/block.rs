//! The block step (`-- block`): blkfront with reads in flight together,
//! and the grants it gives back on close.
//!
//! The test connects the vbd named `disk`, writes a pattern over
//! [`READS`] regions of [`REGION_SECTORS`] sectors spread over the disk
//! (each sector carries its number and the run's seed, so neither a
//! misdirected read nor an earlier run's data passes), flushes, reads the
//! regions back with reads joined in one task, which the driver has in
//! flight together (the host test wants more than one at once), and
//! compares every byte. Then it closes the device: the grants in use must
//! be as many as before it was connected.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use futures::future;
use mirage_platform_xen::blkfront::BlockFront;
use mirage_platform_xen::{grant, XenDevices, XenPlatform};
use mirage_types::block::BlockDevice;
use mirage_types::devices::Devices;
use mirage_types::platform::AppError;
use mirage_types::random::Random;
use mirage_types::time::MonotonicClock;

use crate::bounded;

/// Concurrent reads, one per region.
const READS: u64 = 24;
/// Sectors per region (8 KiB with 512-byte sectors: one request each).
const REGION_SECTORS: u64 = 16;
/// How long connecting, one write, the flush, the reads together, or the
/// close may take: xenbus handshakes with dom0's backend take seconds
/// under TCG.
const LIMIT: Duration = Duration::from_secs(60);

/// The first sector of region `i` of a disk of `sectors` sectors: regions
/// spread over the whole disk (7919 is prime, so the regions differ while
/// the disk has at least [`READS`] of them).
fn region_start(i: u64, sectors: u64) -> u64 {
    (i * 7919 % (sectors / REGION_SECTORS)) * REGION_SECTORS
}

/// The contents of `count` sectors of `size` bytes from `start`: each
/// sector's number, the seed, then the test kit's pattern of a stream that
/// depends on both.
fn sector_pattern(seed: u64, start: u64, count: u64, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; count as usize * size];
    for (offset, sector) in data.chunks_mut(size).enumerate() {
        let number = start + offset as u64;
        sector[..8].copy_from_slice(&number.to_le_bytes());
        sector[8..16].copy_from_slice(&seed.to_le_bytes());
        // Odd, one per sector of a run (`pattern` ignores bit 0).
        let stream = (seed.rotate_left(32) ^ (number << 1)) | 1;
        sector[16..].copy_from_slice(&mirage_testkit::pattern(stream, size - 16));
    }
    data
}

/// Runs the step on the vbd `--block disk` names.
pub(crate) async fn run(platform: &XenPlatform, devices: &XenDevices) -> Result<(), AppError> {
    let grants_before = grant::in_use();
    let disk = bounded(platform, "connecting --block disk", LIMIT, devices.block("disk")).await?;
    log::info!("blkfront: {} connected, {} grants in use", disk.node(), grant::in_use());
    concurrent_reads(platform, &disk).await?;
    bounded(platform, "closing the device", LIMIT, disk.close()).await?;
    let grants_after = grant::in_use();
    log::info!("blkfront: closed; grants in use {grants_before} before open, {grants_after} after close");
    if grants_after != grants_before {
        return Err(format!("closing the device left {} grants behind", grants_after.abs_diff(grants_before)).into());
    }
    Ok(())
}

/// Writes the regions, then reads them back together and compares.
async fn concurrent_reads(platform: &XenPlatform, disk: &BlockFront) -> Result<(), AppError> {
    let info = disk.info();
    let (sectors, size) = (info.sector_count, info.sector_size as usize);
    if sectors < READS * REGION_SECTORS || !info.read_write || size < 16 {
        return Err(format!(
            "{}: {sectors} read-{} sectors of {size} bytes; the test needs {} writable ones",
            disk.node(),
            if info.read_write { "write" } else { "only" },
            READS * REGION_SECTORS
        )
        .into());
    }
    // A fresh seed per run; the clock where RDRAND fails.
    let seed = platform.next_u64().unwrap_or_else(|_| platform.now().as_nanos());
    for i in 0..READS {
        let start = region_start(i, sectors);
        let what = format!("writing sectors {start}..{}", start + REGION_SECTORS);
        bounded(platform, &what, LIMIT, disk.write(start, &sector_pattern(seed, start, REGION_SECTORS, size))).await?;
    }
    bounded(platform, "flush", LIMIT, disk.flush()).await?;

    let reads = (0..READS).map(|i| async move {
        let start = region_start(i, sectors);
        let mut buf = vec![0u8; REGION_SECTORS as usize * size];
        disk.read(start, &mut buf).await.map(|()| (start, buf))
    });
    let joined = async { Ok::<_, AppError>(future::join_all(reads).await) };
    for result in bounded(platform, "concurrent reads", LIMIT, joined).await? {
        let (start, buf) = result?;
        let expected = sector_pattern(seed, start, REGION_SECTORS, size);
        if let Some(at) = buf.iter().zip(&expected).position(|(a, b)| a != b) {
            let (sector, offset) = (start + (at / size) as u64, at % size);
            return Err(format!("concurrent read at sector {start}: wrong byte {offset} of sector {sector}").into());
        }
    }
    log::info!("blkfront: {READS} concurrent reads verified, at most {} requests in flight", disk.most_in_flight());
    Ok(())
}
