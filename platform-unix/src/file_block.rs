//! A block device over a host file or a host block device.
//!
//! # Design choices
//!
//! - **Reads and writes run on the event loop's thread**, as positional
//!   vectored system calls (`preadv`/`pwritev`) straight into the caller's
//!   buffers. The buffers are borrowed and the future may be dropped at any
//!   await point, so lending them to another thread would need a copy; a
//!   copy costs more than the rare blocking read saves when the data is in
//!   the page cache, which is the common case for a development platform.
//! - **`flush` runs `fdatasync` on tokio's blocking pool** (when called
//!   inside a tokio runtime): it can take tens of milliseconds on a real
//!   disk, it borrows no caller memory, and the file descriptor is shared
//!   through an `Arc`. Dropping the flush future leaves the `fdatasync`
//!   running; durability is then unknown, as the trait says.
//! - **`O_DIRECT`** ([`FileBlockOptions::direct`]) bypasses the page cache.
//!   It needs memory aligned to the device's logical block size: requests
//!   whose buffers are all 4096-byte aligned go straight to the kernel, the
//!   others go through a bounce buffer of [`BOUNCE_BUFFER_LEN`] bytes
//!   owned by the device.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mirage_types::block::{gather, scatter, BlockDevice, BlockError, BlockInfo, Operation};

/// The smallest sector size [`FileBlock::open`] accepts.
pub const MIN_SECTOR_SIZE: u32 = 512;
/// The largest sector size [`FileBlock::open`] accepts: larger than any
/// logical block size Linux reports, and a divisor of
/// [`BOUNCE_BUFFER_LEN`].
pub const MAX_SECTOR_SIZE: u32 = 64 * 1024;
/// The size of the bounce buffer an `O_DIRECT` device allocates on its
/// first unaligned request: requests larger than this are split into
/// pieces of this size.
pub const BOUNCE_BUFFER_LEN: usize = 1024 * 1024;
/// The memory alignment `O_DIRECT` requests use: the page size, which
/// satisfies every logical block size up to 4096 bytes.
const DIRECT_ALIGN: usize = 4096;
/// The most `iovec`s Linux takes in one call (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// How to open a [`FileBlock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileBlockOptions {
    /// Open the file read-only: writes fail with
    /// [`mirage_types::block::ErrorKind::ReadOnly`].
    pub read_only: bool,
    /// Bytes per sector: a power of two from [`MIN_SECTOR_SIZE`] to
    /// [`MAX_SECTOR_SIZE`]. With `direct`, at least the device's logical
    /// block size.
    pub sector_size: u32,
    /// Open with `O_DIRECT`, bypassing the host's page cache. Not every
    /// file system allows it (tmpfs does not).
    pub direct: bool,
}

impl Default for FileBlockOptions {
    /// Read-write, 512-byte sectors, through the page cache.
    fn default() -> FileBlockOptions {
        FileBlockOptions { read_only: false, sector_size: 512, direct: false }
    }
}

/// Why [`FileBlock::open`] failed. Every message names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The sector size is not a power of two in the accepted range.
    #[error(
        "invalid sector size {0} for {path}: it must be a power of two from {MIN_SECTOR_SIZE} to {MAX_SECTOR_SIZE}",
        path = .1.display()
    )]
    SectorSize(u32, PathBuf),
    /// The host refused to open the file.
    #[error("cannot open {} {}: {source}{hint}", if *.read_only { "read-only" } else { "read-write" }, .path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Whether it was opened read-only.
        read_only: bool,
        /// A suggestion for the user, starting with "; ", or empty.
        hint: &'static str,
        /// What the host said.
        source: io::Error,
    },
    /// The file system or device does not support `O_DIRECT`.
    #[error(
        "{} does not support direct I/O (O_DIRECT was refused, as on tmpfs): open it without direct I/O",
        .0.display()
    )]
    DirectUnsupported(PathBuf),
    /// The path is neither a regular file nor a block device.
    #[error("{path} is a {1}, not a regular file or a block device", path = .0.display())]
    NotFileOrBlockDevice(PathBuf, &'static str),
    /// The size (or logical block size) could not be read.
    #[error("cannot read the size of {}: {source}", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// What the host said.
        source: io::Error,
    },
    /// With `O_DIRECT`, the sector size is below the device's logical block size.
    #[error(
        "sector size {sector_size} is smaller than the {logical}-byte logical blocks of {}: direct I/O would fail; use a sector size of at least {logical}",
        path.display()
    )]
    SectorBelowLogicalBlock {
        /// The device.
        path: PathBuf,
        /// The sector size asked for.
        sector_size: u32,
        /// The device's logical block size.
        logical: u32,
    },
}

/// A [`BlockDevice`] over a host file or block device (see the module
/// documentation for how I/O is done).
///
/// The capacity is fixed at open: the file's size (or the block device's,
/// from `BLKGETSIZE64`) in whole sectors. Several `FileBlock`s may be open
/// on the same file; nothing coordinates them.
#[derive(Debug)]
pub struct FileBlock {
    file: Arc<File>,
    path: PathBuf,
    info: BlockInfo,
    direct: bool,
    /// Allocated on the first unaligned `O_DIRECT` request. Borrowed only
    /// inside synchronous code, never across an await, so it is never
    /// borrowed twice.
    bounce: RefCell<Option<AlignedBuffer>>,
}

impl FileBlock {
    /// Opens `path` as a block device.
    ///
    /// `Ok` means the file is open with the access asked for and its
    /// capacity is known. A size that is not a whole number of sectors
    /// loses its tail (logged as a warning). Errors name the path and say
    /// what to change.
    pub fn open(path: impl AsRef<Path>, options: FileBlockOptions) -> Result<FileBlock, OpenError> {
        let path = path.as_ref().to_path_buf();
        let sector_size = options.sector_size;
        if !sector_size.is_power_of_two() || !(MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&sector_size) {
            return Err(OpenError::SectorSize(sector_size, path));
        }
        let mut open = OpenOptions::new();
        open.read(true).write(!options.read_only);
        if options.direct {
            open.custom_flags(libc::O_DIRECT);
        }
        let file = match open.open(&path) {
            Ok(file) => file,
            Err(e) if options.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(OpenError::DirectUnsupported(path));
            }
            Err(source) => {
                let hint = match source.kind() {
                    io::ErrorKind::PermissionDenied if !options.read_only => {
                        "; open it read-only if writing is not needed"
                    }
                    io::ErrorKind::NotFound => "; create it first (e.g. truncate -s 64M FILE)",
                    _ => "",
                };
                return Err(OpenError::Open { path, read_only: options.read_only, hint, source });
            }
        };
        let size_error = |source| OpenError::Size { path: path.clone(), source };
        let file_type = file.metadata().map_err(size_error)?.file_type();
        let size = if file_type.is_file() {
            file.metadata().map_err(size_error)?.len()
        } else if file_type.is_block_device() {
            if options.direct {
                let logical = ioctl::logical_block_size(&file).map_err(size_error)?;
                if sector_size < logical {
                    return Err(OpenError::SectorBelowLogicalBlock { path, sector_size, logical });
                }
            }
            ioctl::block_device_size(&file).map_err(size_error)?
        } else {
            let kind = if file_type.is_dir() {
                "directory"
            } else if file_type.is_char_device() {
                "character device"
            } else if file_type.is_fifo() {
                "named pipe"
            } else if file_type.is_socket() {
                "socket"
            } else {
                "special file"
            };
            return Err(OpenError::NotFileOrBlockDevice(path, kind));
        };
        let sector_count = size / u64::from(sector_size);
        let tail = size % u64::from(sector_size);
        if tail != 0 {
            log::warn!(
                "{}: its size of {size} bytes is not a whole number of {sector_size}-byte sectors; \
                 using {sector_count} sectors and ignoring the last {tail} bytes",
                path.display()
            );
        }
        let info = BlockInfo { sector_size, sector_count, read_write: !options.read_only };
        Ok(FileBlock { file: Arc::new(file), path, info, direct: options.direct, bounce: RefCell::new(None) })
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    fn byte_offset(&self, sector: u64) -> u64 {
        // `BlockInfo::check` has accepted the request, so the whole range
        // lies inside a file whose size fits in u64.
        sector * u64::from(self.info.sector_size)
    }

    fn io_error(&self, op: Operation, start: u64, e: &io::Error) -> BlockError {
        let mut message = format!("{}: {e}", self.path.display());
        if e.kind() == io::ErrorKind::UnexpectedEof {
            message.push_str(" (the file became shorter after it was opened)");
        } else if self.direct && e.raw_os_error() == Some(libc::EINVAL) {
            message.push_str(&format!(
                " (direct I/O refused the request: the {}-byte sector size may be below the \
                 device's logical block size)",
                self.info.sector_size
            ));
        }
        BlockError::Io { op, sector: start, message }
    }

    /// Whether `O_DIRECT` accepts these buffers as they are.
    fn direct_ready<'a>(&self, bufs: impl IntoIterator<Item = &'a [u8]>) -> bool {
        let sector = self.info.sector_size as usize;
        bufs.into_iter().all(|b| b.as_ptr() as usize % DIRECT_ALIGN == 0 && b.len() % sector == 0)
    }

    fn with_bounce<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut bounce = self.bounce.borrow_mut();
        let buffer = bounce.get_or_insert_with(|| AlignedBuffer::new(BOUNCE_BUFFER_LEN, DIRECT_ALIGN));
        f(buffer.as_mut_slice())
    }

    fn read_at(&self, offset: u64, bufs: &mut [&mut [u8]]) -> io::Result<()> {
        if !self.direct || self.direct_ready(bufs.iter().map(|b| &**b)) {
            let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            return positional::read_exact(&self.file, &mut slices, offset);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.with_bounce(|bounce| {
            let mut done = 0;
            while done < total {
                let n = (total - done).min(bounce.len());
                positional::read_exact(&self.file, &mut [IoSliceMut::new(&mut bounce[..n])], offset + done as u64)?;
                scatter(bufs, done, &bounce[..n]);
                done += n;
            }
            Ok(())
        })
    }

    fn write_at(&self, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        if !self.direct || self.direct_ready(bufs.iter().copied()) {
            let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
            return positional::write_all(&self.file, &mut slices, offset);
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.with_bounce(|bounce| {
            let mut done = 0;
            while done < total {
                let n = (total - done).min(bounce.len());
                gather(bufs, done, &mut bounce[..n]);
                positional::write_all(&self.file, &mut [IoSlice::new(&bounce[..n])], offset + done as u64)?;
                done += n;
            }
            Ok(())
        })
    }
}

impl BlockDevice for FileBlock {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// Reads with `preadv` (see the module documentation). Requests that
    /// [`BlockInfo::check`] refuses fail before any I/O. An `Io` error
    /// names the path and what the host said. Cancel-safe.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Read, start, bufs)?;
        self.read_at(self.byte_offset(start), bufs).map_err(|e| self.io_error(Operation::Read, start, &e))
    }

    /// Writes with `pwritev`. `Ok` means the host has the data (in its page
    /// cache, or on the device with `O_DIRECT`); it is durable after a
    /// later [`BlockDevice::flush`]. On `Err` a prefix of the request may
    /// have been written. The write completes before the future first
    /// returns, so dropping the future never leaves it half done.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.info.check_request(Operation::Write, start, bufs)?;
        self.write_at(self.byte_offset(start), bufs).map_err(|e| self.io_error(Operation::Write, start, &e))
    }

    /// `fdatasync`: every write that returned `Ok` before this call is
    /// durable once it returns `Ok`. A read-only device has nothing to
    /// flush. Inside a tokio runtime the call runs on the blocking pool;
    /// outside one it blocks the caller.
    async fn flush(&self) -> Result<(), BlockError> {
        if !self.info.read_write {
            return Ok(());
        }
        let result = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let file = Arc::clone(&self.file);
                runtime
                    .spawn_blocking(move || file.sync_data())
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(format!("the fdatasync thread did not finish: {e}"))))
            }
            Err(_) => self.file.sync_data(),
        };
        result.map_err(|e| self.io_error(Operation::Flush, 0, &e))
    }
}

/// Positional vectored I/O that finishes what it starts.
mod positional {
    use super::*;

    /// `at`, once known to fit in an `off_t` (the kernel would refuse a
    /// larger one as negative).
    fn offset(at: u64) -> io::Result<u64> {
        match libc::off_t::try_from(at) {
            Ok(_) => Ok(at),
            Err(_) => Err(io::Error::other(format!("offset {at} does not fit in off_t"))),
        }
    }

    /// Reads until every slice is full; `UnexpectedEof` if the file ends first.
    pub(super) fn read_exact(file: &File, mut bufs: &mut [IoSliceMut<'_>], mut at: u64) -> io::Result<()> {
        IoSliceMut::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let count = bufs.len().min(IOV_MAX);
            match rustix::io::preadv(file, &mut bufs[..count], offset(at)?) {
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("end of file at byte {at}"))),
                // `n` is at most the slices' total length.
                Ok(n) => {
                    IoSliceMut::advance_slices(&mut bufs, n);
                    at += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Writes every slice.
    pub(super) fn write_all(file: &File, mut bufs: &mut [IoSlice<'_>], mut at: u64) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let count = bufs.len().min(IOV_MAX);
            match rustix::io::pwritev(file, &bufs[..count], offset(at)?) {
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
                Ok(0) => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, format!("no progress writing at byte {at}")))
                }
                Ok(n) => {
                    IoSlice::advance_slices(&mut bufs, n);
                    at += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// The two block-device ioctls this module needs.
mod ioctl {
    use super::*;

    /// `_IOR(0x12, 114, size_t)`, not exported by `libc`. The encoding
    /// (direction in bits 30-31, size in 16-29) is the generic one used by
    /// x86, Arm and RISC-V.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    pub(super) const BLKGETSIZE64: libc::Ioctl =
        (2 << 30) | ((size_of::<usize>() as libc::Ioctl) << 16) | (0x12 << 8) | 114;

    /// The device's size in bytes.
    #[cfg(not(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )))]
    pub(super) fn block_device_size(_file: &File) -> io::Result<u64> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "BLKGETSIZE64 is not encoded for this architecture"))
    }

    /// The device's size in bytes.
    #[cfg(any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    ))]
    pub(super) fn block_device_size(file: &File) -> io::Result<u64> {
        let mut size: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which
        // points to a live, writable u64; the fd is open while `file` is
        // borrowed.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(size)
    }

    /// The device's logical block size: the unit of `O_DIRECT` I/O.
    pub(super) fn logical_block_size(file: &File) -> io::Result<u32> {
        Ok(rustix::fs::ioctl_blksszget(file)?)
    }
}

/// A zeroed heap buffer whose address is a multiple of its alignment, for
/// `O_DIRECT`.
struct AlignedBuffer {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuffer {
    /// # Panics
    ///
    /// If `len` is zero or `align` not a power of two (program errors: the
    /// callers pass constants), or if memory is exhausted.
    fn new(len: usize, align: usize) -> AlignedBuffer {
        assert!(len > 0, "an aligned buffer must not be empty");
        let layout = std::alloc::Layout::from_size_align(len, align).expect("alignment is a power of two");
        // SAFETY: the layout has a non-zero size (checked above).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuffer { ptr, layout }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `layout.size()` initialised (zeroed) bytes
        // owned by this value, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` was allocated by the global allocator with `layout`
        // and is freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuffer({} bytes, aligned to {})", self.layout.size(), self.layout.align())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffer_is_aligned() {
        let mut buffer = AlignedBuffer::new(8192, DIRECT_ALIGN);
        let slice = buffer.as_mut_slice();
        assert_eq!(slice.as_ptr() as usize % DIRECT_ALIGN, 0);
        assert_eq!(slice.len(), 8192);
        assert!(slice.iter().all(|&b| b == 0));
    }

    #[test]
    fn blkgetsize64_has_the_kernel_value() {
        // From <linux/fs.h> on x86_64: _IOR(0x12, 114, size_t).
        #[cfg(target_arch = "x86_64")]
        assert_eq!(ioctl::BLKGETSIZE64, 0x8008_1272);
    }
}
