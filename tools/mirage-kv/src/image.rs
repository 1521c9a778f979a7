//! A block device over an image file, with positional I/O.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};

/// Sector size of the images this tool makes and reads.
pub const SECTOR: u32 = 512;

/// An image file seen as a block device of 512-byte sectors.
pub struct ImageFile {
    file: File,
    info: BlockInfo,
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
        let len = file.metadata().map_err(|e| format!("cannot stat {}: {e}", path.display()))?.len();
        if len % u64::from(SECTOR) != 0 {
            return Err(format!(
                "{} is {len} bytes, not a whole number of {SECTOR}-byte sectors (pad it, e.g. with `truncate -s %512`)",
                path.display()
            ));
        }
        let info = BlockInfo { sector_size: SECTOR, sector_count: len / u64::from(SECTOR), read_write: writable };
        Ok(ImageFile { file, info })
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
            self.file.read_exact_at(buf, at).map_err(|e| io_error(Operation::Read, start, e))?;
            at += buf.len() as u64;
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
