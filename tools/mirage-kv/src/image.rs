//! A block device over an image file, with positional I/O. Reads of a
//! sparse image skip its holes (see [`holes`]): they are zeros, and reading
//! them would make the kernel fill its page cache with zero pages (checking
//! an 8 GiB sparse image read 8 GiB of them).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::rc::Rc;

use crate::progress::Progress;

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};

/// Sector size of the images this tool makes and reads.
pub const SECTOR: u32 = 512;

/// An image file seen as a block device of 512-byte sectors.
pub struct ImageFile {
    file: File,
    info: BlockInfo,
    /// The file has fewer blocks allocated than its length needs: reads ask
    /// the host where its data is and do not read the holes.
    sparse: bool,
    /// Told of every read, to report the progress of long work.
    progress: Option<Rc<Progress>>,
}

impl ImageFile {
    /// Opens `path`; its length must be a whole number of sectors.
    pub fn open(path: &Path, writable: bool) -> Result<ImageFile, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        ImageFile::from_file(file, path, writable)
    }

    /// Creates (or truncates) `path` as a zero-filled image of `bytes` bytes.
    pub fn create(path: &Path, bytes: u64) -> Result<ImageFile, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.set_len(bytes).map_err(|e| format!("cannot size {} to {bytes} bytes: {e}", path.display()))?;
        ImageFile::from_file(file, path, true)
    }

    fn from_file(file: File, path: &Path, writable: bool) -> Result<ImageFile, String> {
        let metadata = file.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
        let len = metadata.len();
        // st_blocks counts 512-byte units whatever the file system's block size.
        let sparse = metadata.blocks().saturating_mul(512) < len;
        if len % u64::from(SECTOR) != 0 {
            return Err(format!(
                "{} is {len} bytes, not a whole number of {SECTOR}-byte sectors (pad it, e.g. with `truncate -s %512`)",
                path.display()
            ));
        }
        let info = BlockInfo { sector_size: SECTOR, sector_count: len / u64::from(SECTOR), read_write: writable };
        Ok(ImageFile { file, info, sparse, progress: None })
    }

    /// Reports every read to `progress`.
    pub fn with_progress(mut self, progress: Rc<Progress>) -> ImageFile {
        self.progress = Some(progress);
        self
    }

    /// The image's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.info.sector_count * u64::from(SECTOR)
    }
}

fn io_error(op: Operation, sector: u64, e: std::io::Error) -> BlockError {
    BlockError::Io { op, sector, message: e.to_string() }
}

impl BlockDevice for ImageFile {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.info.check(Operation::Read, start, len)?;
        let mut at = start * u64::from(SECTOR);
        for buf in bufs.iter_mut() {
            if self.sparse { read_skipping_holes(&self.file, buf, at) } else { self.file.read_exact_at(buf, at) }
                .map_err(|e| io_error(Operation::Read, start, e))?;
            at += buf.len() as u64;
        }
        if let Some(progress) = &self.progress {
            progress.read(start * u64::from(SECTOR), len as u64);
        }
        Ok(())
    }

    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.info.check(Operation::Write, start, len)?;
        let mut at = start * u64::from(SECTOR);
        for buf in bufs {
            self.file.write_all_at(buf, at).map_err(|e| io_error(Operation::Write, start, e))?;
            at += buf.len() as u64;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        if !self.info.read_write {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| BlockError::Other { kind: ErrorKind::Io, message: format!("fsync: {e}") })
    }
}

/// Reads `buf.len()` bytes at byte `at` of `file`, filling the holes of a
/// sparse file with zeros instead of reading them.
fn read_skipping_holes(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    let end = at + buf.len() as u64;
    let mut pos = at;
    while pos < end {
        let Some((data, data_end)) = holes::next_data(file, pos)? else {
            // No more data before the end of the file: all zeros.
            buf[(pos - at) as usize..].fill(0);
            return Ok(());
        };
        let data = data.clamp(pos, end);
        buf[(pos - at) as usize..(data - at) as usize].fill(0);
        let data_end = data_end.clamp(data, end);
        file.read_exact_at(&mut buf[(data - at) as usize..(data_end - at) as usize], data)?;
        pos = data_end;
        if data_end == data && pos < end {
            // The host named no data past `pos` in this range (it cannot
            // tell): read the rest.
            return file.read_exact_at(&mut buf[(pos - at) as usize..], pos);
        }
    }
    Ok(())
}

/// Where a file's data lies, from `lseek(2)`'s `SEEK_DATA` and `SEEK_HOLE`
/// (Linux 3.1 and later; file systems without holes report the whole file
/// as data). std has no binding for them, and this crate has no `libc`
/// dependency, so the one function is declared here: on 64-bit Linux
/// `off_t` is `i64` with glibc and musl alike. Elsewhere the whole file is
/// data.
mod holes {
    use std::fs::File;

    /// The first byte of data at or after `pos` and the end of that run of
    /// data (the next hole, or the end of the file): `None` if there is no
    /// data from `pos` to the end of the file.
    #[cfg(target_os = "linux")]
    pub fn next_data(file: &File, pos: u64) -> std::io::Result<Option<(u64, u64)>> {
        use rustix::fs::{seek, SeekFrom};
        use rustix::io::Errno;
        // Moving the file offset affects nothing: every read and write of an
        // `ImageFile` is positional (pread/pwrite).
        let find = |from: SeekFrom| -> std::io::Result<Option<u64>> {
            match seek(file, from) {
                Ok(at) => Ok(Some(at)),
                // ENXIO: `from` is in the hole at the end of the file, or past it.
                Err(Errno::NXIO) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let data = match find(SeekFrom::Data(pos)) {
            Ok(Some(data)) => data,
            Ok(None) => return Ok(None),
            // Not supported here: treat everything as data.
            Err(_) => return Ok(Some((pos, u64::MAX))),
        };
        let data_end = find(SeekFrom::Hole(data)).ok().flatten().unwrap_or(u64::MAX);
        Ok(Some((data, data_end)))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn next_data(_file: &File, pos: u64) -> std::io::Result<Option<(u64, u64)>> {
        Ok(Some((pos, u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// A 4 MiB file with data at its start, at an unaligned run after a
    /// 1 MiB hole, just before 3 MiB, and a hole to its end.
    fn sparse_file() -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.img");
        let mut expected = vec![0u8; 4 << 20];
        let file = File::create(&path).unwrap();
        for (at, len, byte) in [(0usize, 512usize, 1u8), ((1 << 20) + 100, 5000, 2), ((3 << 20) - 100, 100, 3)] {
            let data = vec![byte; len];
            file.write_all_at(&data, at as u64).unwrap();
            expected[at..at + len].copy_from_slice(&data);
        }
        file.set_len(4 << 20).unwrap();
        (dir, path, expected)
    }

    #[test]
    fn reads_of_a_sparse_image_skip_holes_and_return_what_the_file_holds() {
        let (_dir, path, expected) = sparse_file();
        let image = ImageFile::open(&path, false).unwrap();
        // On file systems with holes (ext4, tmpfs, xfs, btrfs) the image is
        // sparse and the host reports its holes.
        if image.sparse {
            let (data, end) = holes::next_data(&image.file, 512).unwrap().unwrap();
            assert!((512..=(1 << 20) + 100).contains(&data) && end > data, "{data}..{end}");
            assert_eq!(holes::next_data(&image.file, 3 << 20).unwrap(), None, "the trailing hole");
        } else {
            println!("the file system here has no holes: only the plain reads are checked");
        }
        let sectors = (4 << 20) / 512;
        for (start, count) in
            [(0, 1), (0, sectors), (1, 2047), (2047, 2), (2048, 12), (2050, 3), (6143, 2), (6144, 2048), (8191, 1)]
        {
            let mut buf = vec![0xeeu8; count as usize * 512];
            block_on(image.read(start, &mut buf)).unwrap();
            let at = start as usize * 512;
            assert!(buf == expected[at..at + buf.len()], "sectors {start}..{}", start + count);
        }
    }
}
