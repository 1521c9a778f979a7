//! The block example as a unikernel image: overwrites every sector of a
//! virtio-blk device with a test pattern, reads it back and verifies it.
//! Destroys what the device held.
//!
//! Built with `cargo build -p block-virtio --profile kernel` (or `cargo
//! xtask build block --platform virtio`); command line (`-append`):
//! `--block disk[=virtio:N] [-l FILTER] [-- selftest]`. Built in any other
//! profile, it is a host program that says how to build the image.
//!
//! The application argument `selftest` runs, instead of the block example,
//! a test of the virtio-blk driver the host boot test relies on: many
//! reads in flight at once return the right data, and reads cancelled
//! mid-flight neither corrupt memory nor disturb later requests.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
extern crate alloc;

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use mirage_types::platform::Platform;

    mirage_platform_virtio::run(boot, "block", |platform, devices| async move {
        let disk = devices.block("disk")?;
        if platform.args().iter().any(|arg| arg == "selftest") {
            return selftest::run(&platform, &disk).await;
        }
        block_app::start(platform, disk).await?;
        Ok(())
    })
}

#[cfg(panic = "abort")]
mod selftest {
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::pin::pin;
    use core::time::Duration;

    use mirage_platform_virtio::{VirtioBlock, VirtioPlatform};
    use mirage_types::block::BlockDevice;
    use mirage_types::time::Sleep;

    type Error = Box<dyn core::error::Error>;

    /// Sectors the test writes (1 MiB).
    const SECTORS: u64 = 2048;
    /// Concurrent reads.
    const READS: usize = 64;
    /// Sectors per read.
    const READ_SECTORS: u64 = 16;
    /// Reads to cancel while in flight, and the most tries for that.
    const CANCELLED: u64 = 8;
    const MAX_CANCEL_ROUNDS: u64 = 64;

    fn byte(generation: u8, sector: u64, i: usize) -> u8 {
        generation ^ (sector as u8) ^ ((sector >> 8) as u8).wrapping_mul(7) ^ (i as u8).wrapping_mul(31)
    }

    fn pattern(generation: u8, start: u64, sectors: u64) -> Vec<u8> {
        let mut data = vec![0u8; sectors as usize * 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = byte(generation, start + (i / 512) as u64, i % 512);
        }
        data
    }

    fn check(what: &str, generation: u8, start: u64, data: &[u8]) -> Result<(), Error> {
        let expected = pattern(generation, start, (data.len() / 512) as u64);
        match data.iter().zip(&expected).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(at) => Err(format!("{what}: wrong byte {at} in the read at sector {start}").into()),
        }
    }

    pub async fn run(platform: &VirtioPlatform, disk: &VirtioBlock) -> Result<(), Error> {
        disk.write(0, &pattern(1, 0, SECTORS)).await?;
        disk.flush().await?;

        // Many reads at once, joined in one task; the driver records how
        // many requests the device held at once.
        let reads = (0..READS).map(|i| async move {
            let start = (i as u64 * 37 % (SECTORS / READ_SECTORS)) * READ_SECTORS;
            let mut buf = vec![0u8; READ_SECTORS as usize * 512];
            disk.read(start, &mut buf).await.map(|()| (start, buf))
        });
        for result in futures::future::join_all(reads).await {
            let (start, buf) = result?;
            check("concurrent reads", 1, start, &buf)?;
        }
        log::info!("selftest: {READS} concurrent reads verified, at most {} in flight", disk.most_in_flight());

        // Reads dropped after submission: the device still completes them,
        // into the driver's buffers, not into these freed ones. Whether a
        // piece is still in flight at the drop depends on how fast the VMM
        // is (QEMU often completes a request before the guest polls again),
        // so rounds go on until enough were (bounded); the count is logged,
        // and the checks below hold however many there were.
        let mut abandoned = 0;
        for round in 0..MAX_CANCEL_ROUNDS {
            if abandoned >= CANCELLED {
                break;
            }
            let before = disk.requests_in_flight();
            let mut buf = vec![0u8; 1 << 20];
            let mut read = pin!(disk.read((round % 8) * 64, &mut buf));
            if futures::poll!(read.as_mut()).is_pending() && disk.requests_in_flight() > before {
                abandoned += 1;
            }
        }
        // Fresh allocations likely reuse the freed buffers; they must keep
        // what is written here while the abandoned requests complete.
        let canaries: Vec<Vec<u8>> = (0..CANCELLED).map(|_| vec![0x5a; 64 * 512]).collect();
        // Overwrite the cancelled reads' sectors while they may still run.
        disk.write(0, &pattern(2, 0, CANCELLED * 64)).await?;
        for _ in 0..500 {
            if disk.requests_in_flight() == 0 {
                break;
            }
            platform.sleep(Duration::from_millis(10)).await;
        }
        if disk.requests_in_flight() != 0 {
            return Err(format!("{} abandoned requests never completed", disk.requests_in_flight()).into());
        }
        if canaries.iter().any(|c| c.iter().any(|&b| b != 0x5a)) {
            return Err("memory freed by a cancelled read was written".into());
        }
        let mut back = vec![0u8; (CANCELLED * 64) as usize * 512];
        disk.read(0, &mut back).await?;
        check("after cancelled reads", 2, 0, &back)?;
        log::info!("selftest: cancelled reads ({abandoned} of them in flight) left no trace");
        Ok(())
    }
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("block-virtio is a kernel image: build it with `cargo build -p block-virtio --profile kernel`");
    std::process::ExitCode::from(2)
}
