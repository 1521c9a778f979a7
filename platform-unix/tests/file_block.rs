//! `FileBlock` against real files (and a loop device when the host has one).

use std::path::{Path, PathBuf};
use std::process::Command;

use mirage_platform_unix::{FileBlock, FileBlockOptions, OpenError};
use mirage_test_env::skip;
use mirage_types::block::{BlockDevice, Error as _, ErrorKind};

const RW: FileBlockOptions = FileBlockOptions { read_only: false, sector_size: 512, direct: false };
const RO: FileBlockOptions = FileBlockOptions { read_only: true, sector_size: 512, direct: false };

/// A file of `len` bytes where byte `i` is `i % 251`, so every offset is
/// recognisable.
fn image(dir: &Path, len: usize) -> PathBuf {
    let path = dir.join("disk.img");
    std::fs::write(&path, (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).expect("write image");
    path
}

/// A directory on the target's file system (ext4 or similar, unlike a
/// tmpfs /tmp), so O_DIRECT has a chance.
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory")
}

#[tokio::test(flavor = "current_thread")]
async fn requests_outside_the_device_are_refused_with_the_mirage_errors() {
    let dir = disk_dir();
    let dev = FileBlock::open(image(dir.path(), 8 * 512), RW).expect("open");
    assert_eq!(dev.info().sector_count, 8);

    let mut buf = vec![0u8; 1024];
    let e = dev.read(7, &mut buf).await.expect_err("past the end");
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    assert_eq!(e.to_string(), "read of 2 sectors at sector 7 goes past the end of a 8-sector device");
    assert_eq!(dev.write(u64::MAX, &buf).await.expect_err("overflowing start").kind(), ErrorKind::OutOfRange);

    let e = dev.write(0, &buf[..100]).await.expect_err("misaligned");
    assert_eq!(e.kind(), ErrorKind::Misaligned);
    assert!(e.to_string().contains("100 bytes"), "{e}");

    // A refused write changed nothing.
    let mut back = vec![0u8; 512];
    dev.read(0, &mut back).await.expect("read");
    assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

#[tokio::test(flavor = "current_thread")]
async fn read_only_devices_refuse_writes_and_flush_trivially() {
    let dir = disk_dir();
    let path = image(dir.path(), 4 * 512);
    let dev = FileBlock::open(&path, RO).expect("open read-only");
    assert!(!dev.info().read_write);
    let e = dev.write(0, &[0u8; 512]).await.expect_err("read-only");
    assert_eq!(e.kind(), ErrorKind::ReadOnly);
    dev.flush().await.expect("flush of a read-only device");
    let mut buf = [0u8; 512];
    dev.read(3, &mut buf).await.expect("reads work");
    assert_eq!(buf[0], (3 * 512 % 251) as u8);
    assert_eq!(std::fs::read(&path).expect("reread").len(), 4 * 512);
}

#[tokio::test(flavor = "current_thread")]
async fn vectored_writes_land_at_the_right_offsets_and_read_back() {
    let dir = disk_dir();
    let path = image(dir.path(), 16 * 512);
    let dev = FileBlock::open(&path, RW).expect("open");
    // Three pieces that split sectors in odd places: 3 sectors in all.
    let (a, b, c) = (vec![0xa1u8; 100], vec![0xb2u8; 1000], vec![0xc3u8; 436]);
    dev.write_vectored(5, &[&a, &b, &c]).await.expect("write");
    dev.flush().await.expect("flush");

    let on_disk = std::fs::read(&path).expect("read file");
    let at = 5 * 512;
    assert_eq!(&on_disk[at..at + 100], &a[..]);
    assert_eq!(&on_disk[at + 100..at + 1100], &b[..]);
    assert_eq!(&on_disk[at + 1100..at + 1536], &c[..]);
    assert_eq!(on_disk[at - 1], ((at - 1) % 251) as u8, "the sector before is untouched");
    assert_eq!(on_disk[at + 1536], ((at + 1536) % 251) as u8, "the sector after is untouched");

    let (mut x, mut y) = (vec![0u8; 1500], vec![0u8; 36]);
    dev.read_vectored(5, &mut [&mut x, &mut y]).await.expect("read");
    let joined: Vec<u8> = x.iter().chain(&y).copied().collect();
    assert_eq!(&joined[..], &on_disk[at..at + 1536]);
}

#[tokio::test(flavor = "current_thread")]
async fn many_small_buffers_exceed_one_system_call() {
    // More buffers than IOV_MAX (1024): the request is split.
    let dir = disk_dir();
    let dev = FileBlock::open(image(dir.path(), 1500 * 512), RW).expect("open");
    let sectors: Vec<Vec<u8>> = (0..1500u32).map(|i| i.to_le_bytes().repeat(128)).collect();
    let refs: Vec<&[u8]> = sectors.iter().map(|s| &s[..]).collect();
    dev.write_vectored(0, &refs).await.expect("write");
    let mut back = vec![0u8; 1500 * 512];
    dev.read(0, &mut back).await.expect("read");
    assert!(back.chunks(512).zip(&sectors).all(|(got, want)| got == &want[..]));
}

#[tokio::test(flavor = "current_thread")]
async fn a_partial_last_sector_is_not_part_of_the_device() {
    let dir = disk_dir();
    let dev =
        FileBlock::open(image(dir.path(), 3 * 4096 + 100), FileBlockOptions { sector_size: 4096, ..RW }).expect("open");
    assert_eq!(dev.info().sector_count, 3);
    assert_eq!(dev.info().sector_size, 4096);
    let mut buf = vec![0u8; 4096];
    dev.read(2, &mut buf).await.expect("last whole sector");
    assert_eq!(dev.read(3, &mut buf).await.expect_err("the tail").kind(), ErrorKind::OutOfRange);
}

#[test]
fn open_errors_name_the_path_and_the_remedy() {
    let dir = disk_dir();
    let missing = dir.path().join("no-such.img");
    let e = FileBlock::open(&missing, RW).expect_err("missing file");
    let text = e.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("No such file"), "{text}");
    assert!(text.contains("create it first"), "{text}");

    let path = image(dir.path(), 512);
    for bad in [0, 500, 256, 1 << 20] {
        let e = FileBlock::open(&path, FileBlockOptions { sector_size: bad, ..RW }).expect_err("bad sector size");
        assert!(matches!(e, OpenError::SectorSize(..)), "{e}");
        assert!(e.to_string().contains("power of two"), "{e}");
    }

    let e = FileBlock::open(dir.path(), RO).expect_err("a directory");
    assert!(e.to_string().contains("is a directory, not a regular file or a block device"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn direct_io_round_trips_aligned_and_unaligned_buffers() {
    let dir = disk_dir();
    let len = 3 * 1024 * 1024;
    let path = image(dir.path(), len);
    let options = FileBlockOptions { direct: true, sector_size: 4096, ..RW };
    let dev = match FileBlock::open(&path, options) {
        Ok(dev) => dev,
        Err(e @ OpenError::DirectUnsupported(_)) => {
            assert!(e.to_string().contains("without direct I/O"), "{e}");
            return skip(format!(
                "the file system under {} refuses O_DIRECT (tmpfs before Linux 6.6 does): put the target \
                 directory (CARGO_TARGET_DIR) on ext4 or xfs: {e}",
                dir.path().display()
            ));
        }
        Err(e) => panic!("open with O_DIRECT: {e}"),
    };
    assert!(dev.is_direct());
    // A Vec is not page-aligned in general: this goes through the bounce
    // buffer, in pieces, since it is larger than the bounce buffer.
    let data: Vec<u8> = (0..2 * 1024 * 1024 + 4096).map(|i| (i * 7 % 253) as u8).collect();
    dev.write(1, &data).await.expect("direct write");
    dev.flush().await.expect("flush");
    let mut back = vec![0u8; data.len() + 1]; // offset by one byte: surely unaligned
    dev.read(1, &mut back[1..]).await.expect("direct read");
    assert!(back[1..] == data[..]);
    let on_disk = std::fs::read(&path).expect("read file");
    assert!(on_disk[4096..4096 + data.len()] == data[..]);
    assert_eq!(on_disk[4095], (4095 % 251) as u8);

    // A page-aligned buffer goes to the kernel as it is.
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let page = Box::new(Page([0x3c; 4096]));
    dev.write(0, &page.0).await.expect("aligned direct write");
    let mut page_back = Box::new(Page([0; 4096]));
    dev.read(0, &mut page_back.0).await.expect("aligned direct read");
    assert!(page_back.0 == page.0);
}

/// Detaches the loop device when the test ends, however it ends.
struct LoopDevice(String);

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn block_devices_report_their_size() {
    let dir = disk_dir();
    let path = image(dir.path(), 1024 * 1024);
    let attached = Command::new("losetup").args(["--find", "--show"]).arg(&path).output();
    let device = match attached {
        Ok(out) if out.status.success() => LoopDevice(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            return skip(format!(
                "losetup cannot attach a loop device (run the tests as root, with /dev/loop-control): {}",
                why.trim()
            ));
        }
        Err(e) => return skip(format!("`losetup` cannot run (Debian package mount): {e}")),
    };
    let dev = FileBlock::open(&device.0, RW).expect("open the loop device");
    assert_eq!(dev.info().sector_count, 2048, "BLKGETSIZE64 of a 1 MiB loop device");
    dev.write(2047, &[0x5au8; 512]).await.expect("write the last sector");
    dev.flush().await.expect("flush");
    let mut back = [0u8; 512];
    dev.read(2047, &mut back).await.expect("read");
    assert_eq!(back, [0x5a; 512]);
    // Direct I/O on a block device checks the logical block size (512 on a
    // loop device by default), so 512-byte sectors are accepted.
    FileBlock::open(&device.0, FileBlockOptions { direct: true, ..RO }).expect("O_DIRECT on a loop device");
}
