//! The block example as a Xen PVH guest: overwrites every sector of the
//! domain's first virtual block device (`xvda` under `cargo xtask xen
//! domu`) with a test pattern through blkfront, reads it back and
//! verifies it. Destroys what the disk held.
//!
//! Built with `cargo build -p block-xen --profile kernel`; the image is
//! `target/kernel/block-xen`, booted by `cargo xtask xen domu IMAGE`.
//! Built in any other profile, it is a host program that says how to
//! build the image and fails.
//!
//! After the block example it checks what the host test relies on:
//! reads issued together from one task are in flight together and return
//! the pattern the example wrote (their sector headers), and closing the
//! device gives back every grant it took.

#![cfg_attr(panic = "abort", no_std, no_main)]

#[cfg(panic = "abort")]
extern crate alloc;

#[cfg(panic = "abort")]
mirage_kernel::entry!(main);

#[cfg(panic = "abort")]
fn main(boot: mirage_kernel::BootInfo) -> ! {
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::vec;

    use mirage_platform_xen::blkfront::BlockFront;
    use mirage_platform_xen::grant;
    use mirage_platform_xen::xenstore::Xenstore;
    use mirage_types::block::BlockDevice;

    type Error = Box<dyn core::error::Error>;

    /// Concurrent reads of the check, 16 sectors each.
    const READS: u64 = 24;

    mirage_platform_xen::run(boot, |platform| async move {
        let store = Xenstore::connect()?;
        let grants_before = grant::in_use();
        let disk = BlockFront::open_first(store).await?;
        log::info!("blkfront: {} connected, {} grants in use", disk.node(), grant::in_use());
        block_app::start(platform, &disk).await?;

        let sectors = disk.info().sector_count;
        let reads = (0..READS).map(|i| {
            let disk = &disk;
            async move {
                let start = (i * 7919 % (sectors / 16)) * 16;
                let mut buf = vec![0u8; 16 * 512];
                disk.read(start, &mut buf).await.map(|()| (start, buf))
            }
        });
        for result in futures::future::join_all(reads).await {
            let (start, buf) = result?;
            for (i, sector) in buf.chunks(512).enumerate() {
                let number = u64::from_le_bytes(sector[..8].try_into().unwrap_or_default());
                if number != start + i as u64 {
                    return Err::<(), Error>(format!("concurrent read at {start}: sector {i} says {number}").into());
                }
            }
        }
        log::info!("blkfront: {READS} concurrent reads verified, at most {} requests in flight", disk.most_in_flight());

        disk.close().await?;
        log::info!("blkfront: closed; grants in use {} before open, {} after close", grants_before, grant::in_use());
        if grant::in_use() != grants_before {
            return Err("closing the device left grants behind".into());
        }
        Ok(())
    })
}

#[cfg(not(panic = "abort"))]
fn main() -> std::process::ExitCode {
    eprintln!("block-xen is a kernel image: build it with `cargo build -p block-xen --profile kernel`");
    std::process::ExitCode::from(2)
}
