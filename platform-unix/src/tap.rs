//! A [`NetworkDevice`] over a Linux TAP interface.
//!
//! [`TapNetwork::open`] attaches to the TAP interface of that name, or
//! creates it, through `/dev/net/tun` (`TUNSETIFF` with `IFF_TAP |
//! IFF_NO_PI`: whole Ethernet frames, no packet-information prefix). The
//! host kernel sees the interface as one end of a virtual cable; this
//! device is the other end, where our own network stack runs.
//!
//! # Addresses
//!
//! The interface's own MAC address belongs to the host side of the cable:
//! the kernel answers ARP for the host's addresses with it. The device
//! therefore reports a *different*, locally administered unicast address,
//! random unless the caller gives one in [`TapOptions::mac`]. Frames from
//! this device must carry that address as their source.
//!
//! # Requirements
//!
//! The `tun` kernel module (`/dev/net/tun`), and `CAP_NET_ADMIN` to create an
//! interface or to attach to one owned by another user. An interface created
//! here is not persistent: it disappears when the device is dropped. To use
//! TAP without root, create a persistent interface owned by the user first
//! (`ip tuntap add dev tap0 mode tap user $USER`) and open it by name.
//!
//! # Resources
//!
//! Receiving reads each frame straight into a buffer of its own, one
//! maximum frame long (`mtu + 14 + 4 + 1` bytes: 1519 for MTU 1500), and
//! hands it up as [`Bytes`] without copying. The buffers come from a pool
//! of at most [`RX_POOL_BUFFERS`], least recently used first: a buffer
//! whose frame (every slice of it) has been dropped is reused as it is;
//! when the oldest ones are still held, a new buffer is allocated and the
//! pool grows (frames are released roughly in the order they came, so in
//! a steady stream it settles at the number of frames in use and recycles
//! them all), up to its bound, beyond which the oldest held buffer is left
//! to its frame. So a frame, or any slice of it that the stack keeps (a
//! TCP payload waiting to be read), keeps alive exactly one frame's buffer
//! (and its reference count, tens of bytes), and the pool keeps at most
//! [`RX_POOL_BUFFERS`] buffers for reuse (380 KiB for MTU 1500). Frames
//! are not cut from larger shared blocks: one byte of a frame kept for
//! long would keep its whole block alive, and a peer could make us hold
//! tens of kilobytes of memory per byte it sent.
//! Transmitting fills one scratch buffer owned by the device, so the
//! steady state allocates nothing. The kernel's queue towards us is bounded
//! by the interface's `txqueuelen` (500 frames by default); frames beyond
//! it are dropped and counted by the kernel, not here.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mirage_types::net::{self, ErrorKind, MacAddress, NetStats, NetworkDevice, ETHERNET_HEADER_LEN};
use tokio::io::unix::AsyncFd;

/// Bytes a single 802.1Q tag adds to a frame. The kernel may hand us tagged
/// frames whose payload is a full MTU, so receive buffers leave room for one.
pub const VLAN_TAG_LEN: usize = 4;

/// Receive buffers the device keeps for reuse at most, each holding one
/// frame at a time: enough for a 256 KiB TCP window of full-sized
/// segments (181) and more; 380 KiB for MTU 1500.
pub const RX_POOL_BUFFERS: usize = 256;

/// Longest wait between retries while the interface is down (the kernel
/// reports no readiness event for an interface coming up, so we poll).
const DOWN_RETRY_MAX: Duration = Duration::from_millis(100);

/// The path of the TUN/TAP clone device.
const TUN_PATH: &str = "/dev/net/tun";

/// Errors of a [`TapNetwork`]: opening it, and I/O on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    /// `/dev/net/tun` does not exist.
    #[error("cannot open {TUN_PATH}: {source}; load the TUN/TAP driver with `modprobe tun`")]
    TunMissing {
        /// The error from opening the clone device.
        source: io::Error,
    },
    /// The kernel refused for lack of privilege.
    #[error(
        "TAP interface {iface}: {source}; creating or attaching to a TAP interface needs CAP_NET_ADMIN: \
         run as root or give the binary cap_net_admin (or create the interface beforehand with \
         `ip tuntap add dev {iface} mode tap user $USER`)"
    )]
    PermissionDenied {
        /// The interface name asked for.
        iface: String,
        /// The error from the kernel.
        source: io::Error,
    },
    /// The interface name cannot name a Linux interface.
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The MAC address asked for cannot be a device's own address.
    #[error("TAP interface {iface}: {mac} cannot be the device's MAC address: it is a group (multicast) address")]
    InvalidMac {
        /// The interface name.
        iface: String,
        /// The address given.
        mac: MacAddress,
    },
    /// The interface exists but cannot be attached to as a TAP device.
    #[error("cannot attach to interface {iface}: {reason} ({source})")]
    Unusable {
        /// The interface name.
        iface: String,
        /// Why, in the likely reading of the kernel's answer.
        reason: &'static str,
        /// The error from the kernel.
        source: io::Error,
    },
    /// The interface was deleted (or its namespace destroyed) while in use.
    #[error("TAP interface {iface} was deleted")]
    Disconnected {
        /// The interface name.
        iface: String,
    },
    /// A frame longer than the interface's MTU plus the Ethernet header.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes on TAP interface {iface}")]
    FrameTooLarge {
        /// The interface name.
        iface: String,
        /// Requested frame length.
        len: usize,
        /// Largest frame the interface takes (MTU plus header).
        max: usize,
    },
    /// Any other failure of a host call.
    #[error("{op} on TAP interface {iface}: {source}")]
    Io {
        /// The interface name.
        iface: String,
        /// What we were doing.
        op: &'static str,
        /// The error from the host.
        source: io::Error,
    },
}

impl net::Error for TapError {
    fn kind(&self) -> ErrorKind {
        match self {
            TapError::Disconnected { .. } => ErrorKind::Disconnected,
            TapError::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            TapError::TunMissing { .. } | TapError::PermissionDenied { .. } | TapError::Io { .. } => ErrorKind::Io,
            TapError::InvalidName { .. } | TapError::InvalidMac { .. } | TapError::Unusable { .. } => ErrorKind::Other,
        }
    }
}

/// Options of [`TapNetwork::open_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TapOptions {
    /// The MAC address the device reports; `None` picks a random locally
    /// administered one. Must differ from the interface's own (host-side)
    /// address.
    pub mac: Option<MacAddress>,
}

impl TapOptions {
    /// Options with the given MAC address.
    pub fn with_mac(mac: MacAddress) -> TapOptions {
        TapOptions { mac: Some(mac) }
    }
}

/// A network device on a Linux TAP interface; see the [module docs](self).
///
/// A handle: methods take `&self`; one task should receive while any may
/// transmit. Must be used on the tokio runtime it was opened on.
#[derive(Debug)]
pub struct TapNetwork {
    fd: AsyncFd<File>,
    name: String,
    mac: MacAddress,
    mtu: usize,
    /// The receive buffers, one per frame (see the module docs).
    rx_pool: RefCell<RxPool>,
    tx_scratch: RefCell<Vec<u8>>,
    stats: Cell<NetStats>,
}

impl TapNetwork {
    /// Attaches to the TAP interface `iface`, creating it if it does not
    /// exist, with a random MAC address. See [`TapNetwork::open_with`].
    pub fn open(iface: &str) -> Result<TapNetwork, TapError> {
        TapNetwork::open_with(iface, TapOptions::default())
    }

    /// Attaches to the TAP interface `iface`, creating it if it does not
    /// exist. A name with `%d` (such as `tap%d`) lets the kernel pick the
    /// number; [`TapNetwork::name`] tells which.
    ///
    /// `Ok` means the file descriptor is attached and the MTU was read; the
    /// interface may still be down (transmit then waits, see
    /// [`NetworkDevice::transmit`]). Must be called inside a tokio runtime
    /// with I/O enabled.
    ///
    /// # Errors
    ///
    /// [`TapError::InvalidName`] for a name Linux rejects (empty, longer than
    /// 15 bytes, `/`, `:` or whitespace in it, `.` or `..`);
    /// [`TapError::InvalidMac`] for a multicast address in `options`;
    /// [`TapError::TunMissing`] without the TUN/TAP driver;
    /// [`TapError::PermissionDenied`] without `CAP_NET_ADMIN`;
    /// [`TapError::Unusable`] when the name belongs to a non-TAP interface or
    /// one already attached elsewhere; [`TapError::Io`] otherwise.
    pub fn open_with(iface: &str, options: TapOptions) -> Result<TapNetwork, TapError> {
        let requested = sys::IfName::new(iface)?;
        if let Some(mac) = options.mac.filter(MacAddress::is_multicast) {
            return Err(TapError::InvalidMac { iface: iface.to_owned(), mac });
        }
        let io_err = |op, source| TapError::Io { iface: iface.to_owned(), op, source };
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io_err(
                "open",
                io::Error::other("TapNetwork must be opened inside a tokio runtime (it registers with its reactor)"),
            ));
        }
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(TUN_PATH).map_err(
            |source| match source.kind() {
                io::ErrorKind::NotFound => TapError::TunMissing { source },
                io::ErrorKind::PermissionDenied => TapError::PermissionDenied { iface: iface.to_owned(), source },
                _ => io_err("opening /dev/net/tun", source),
            },
        )?;
        let name = sys::tun_set_iff_tap(&file, &requested).map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => TapError::PermissionDenied { iface: iface.to_owned(), source },
            Some(libc::EBUSY) => TapError::Unusable {
                iface: iface.to_owned(),
                reason: "it is already attached to another file descriptor (and is not multi-queue)",
                source,
            },
            Some(libc::EINVAL) => TapError::Unusable {
                iface: iface.to_owned(),
                reason: "it exists but is not a TAP interface (or was created with other flags)",
                source,
            },
            _ => io_err("TUNSETIFF", source),
        })?;
        let name = name.to_string();
        let mtu = sys::interface_mtu(&sys::IfName::new(&name)?).map_err(|source| TapError::Io {
            iface: name.clone(),
            op: "reading the MTU (SIOCGIFMTU)",
            source,
        })?;
        let mac = match options.mac {
            Some(mac) => mac,
            None => {
                let mut bytes = [0u8; 6];
                getrandom::fill(&mut bytes).map_err(|e| TapError::Io {
                    iface: name.clone(),
                    op: "choosing a random MAC address",
                    source: io::Error::other(e.to_string()),
                })?;
                MacAddress::local_from_random(bytes)
            }
        };
        let fd = sys::register(file).map_err(|source| TapError::Io {
            iface: name.clone(),
            op: "registering with the reactor",
            source,
        })?;
        log::info!("TAP interface {name}: MTU {mtu}, our MAC {mac}");
        Ok(TapNetwork {
            fd,
            name,
            mac,
            mtu,
            rx_pool: RefCell::new(RxPool::default()),
            tx_scratch: RefCell::new(Vec::new()),
            stats: Cell::new(NetStats::default()),
        })
    }

    /// The interface's name as the kernel knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Largest frame `transmit` accepts.
    fn max_tx_frame(&self) -> usize {
        self.mtu + ETHERNET_HEADER_LEN
    }

    /// Largest frame we hand out; the read buffer is one byte longer so a
    /// frame that did not fit (the host raised the MTU after we read it) is
    /// recognised, since the kernel truncates silently.
    fn max_rx_frame(&self) -> usize {
        self.mtu + ETHERNET_HEADER_LEN + VLAN_TAG_LEN
    }

    fn update_stats(&self, f: impl FnOnce(&mut NetStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn io_error(&self, op: &'static str, source: io::Error) -> TapError {
        // The tun driver answers EBADFD once its interface is gone.
        if source.raw_os_error() == Some(libc::EBADFD) {
            TapError::Disconnected { iface: self.name.clone() }
        } else {
            TapError::Io { iface: self.name.clone(), op, source }
        }
    }

    /// Reads one frame if one is queued, into a buffer of its own (see
    /// the module docs). Never holds the pool's borrow across an await, so
    /// concurrent callers cannot collide.
    fn try_read_frame(&self, file: &File) -> io::Result<Option<Bytes>> {
        let read_len = self.max_rx_frame() + 1;
        let mut pool = self.rx_pool.borrow_mut();
        let mut buffer = pool.take(read_len);
        let read = sys::read_into(file, &mut buffer, read_len);
        let frame = buffer.split().freeze();
        pool.put(buffer);
        let n = read?;
        if n > self.max_rx_frame() {
            self.update_stats(|s| s.rx_dropped += 1);
            log::warn!(
                "TAP interface {}: dropped a frame longer than {} bytes (was the MTU raised after opening?)",
                self.name,
                self.max_rx_frame()
            );
            return Ok(None);
        }
        self.update_stats(|s| {
            s.rx_frames += 1;
            s.rx_bytes += n as u64;
        });
        Ok(Some(frame))
    }
}

impl NetworkDevice for TapNetwork {
    type Error = TapError;

    /// The address given in [`TapOptions::mac`] or a random locally
    /// administered one; never the interface's own (host-side) address.
    fn mac(&self) -> MacAddress {
        self.mac
    }

    /// The interface's MTU when it was opened.
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn stats(&self) -> NetStats {
        self.stats.get()
    }

    /// Waits for the next frame from the host.
    ///
    /// Frames are at most `mtu() + 14 + 4` bytes (one VLAN tag); a longer
    /// one (possible only if the host raised the MTU after opening) is
    /// dropped and counted in `rx_dropped`. Cancel-safe: a frame is read
    /// from the kernel and returned in the same poll, never held across an
    /// await.
    ///
    /// # Errors
    ///
    /// [`TapError::Disconnected`] once the interface is deleted;
    /// [`TapError::Io`] for any other failed read.
    async fn receive(&self) -> Result<Bytes, TapError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(|e| self.io_error("waiting to receive", e))?;
            match guard.try_io(|fd| self.try_read_frame(fd.get_ref())) {
                Ok(Ok(Some(frame))) => return Ok(frame),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(self.io_error("receiving a frame", e)),
                // Spurious readiness: `try_io` cleared it; wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one frame of `len` bytes filled by `fill`.
    ///
    /// `fill` writes into a scratch buffer owned by the device (reused, so
    /// its previous contents show through where `fill` writes nothing). `Ok`
    /// means the kernel took the frame. While the interface is down (the
    /// kernel answers `EIO`) this waits, retrying every few milliseconds up
    /// to every 100 ms, as a NIC without carrier holds its queue; drop the
    /// future to give up.
    ///
    /// Cancel-safe: if dropped, the frame was either written whole or not
    /// at all (`fill` may have run).
    ///
    /// # Errors
    ///
    /// [`TapError::FrameTooLarge`] for `len > mtu() + 14` (before `fill`
    /// runs); [`TapError::Disconnected`] once the interface is deleted;
    /// [`TapError::Io`] for any other failed write, after which nothing was
    /// sent.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, TapError> {
        if len > self.max_tx_frame() {
            self.update_stats(|s| s.tx_dropped += 1);
            return Err(TapError::FrameTooLarge { iface: self.name.clone(), len, max: self.max_tx_frame() });
        }
        // The frame must outlive the waits below, so it leaves the cell for
        // the duration; the guard puts the buffer back even if the future is
        // dropped. A concurrent transmit meanwhile finds an empty buffer and
        // allocates its own, which only happens under contention.
        let mut scratch = ScratchLoan::take(&self.tx_scratch);
        scratch.buf.clear();
        scratch.buf.resize(len, 0);
        let result = fill(&mut scratch.buf);
        let mut down_retry = Duration::from_millis(1);
        loop {
            let mut guard = self.fd.writable().await.map_err(|e| self.io_error("waiting to transmit", e))?;
            match guard.try_io(|fd| Write::write(&mut fd.get_ref(), &scratch.buf)) {
                Ok(Ok(n)) if n == len => {
                    self.update_stats(|s| {
                        s.tx_frames += 1;
                        s.tx_bytes += len as u64;
                    });
                    return Ok(result);
                }
                Ok(Ok(n)) => {
                    self.update_stats(|s| s.tx_dropped += 1);
                    return Err(TapError::Io {
                        iface: self.name.clone(),
                        op: "transmitting a frame",
                        source: io::Error::other(format!("the kernel took {n} of {len} bytes")),
                    });
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    // The interface is down; its fd still polls writable.
                    tokio::time::sleep(down_retry).await;
                    down_retry = (down_retry * 2).min(DOWN_RETRY_MAX);
                }
                Ok(Err(e)) => {
                    self.update_stats(|s| s.tx_dropped += 1);
                    return Err(self.io_error("transmitting a frame", e));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// The receive buffers: each holds one frame at a time, and is reused once
/// the frame is gone (see the module docs).
#[derive(Debug, Default)]
struct RxPool {
    /// Least recently used first; at most [`RX_POOL_BUFFERS`].
    buffers: VecDeque<BytesMut>,
}

impl RxPool {
    /// An empty buffer with room for `len` bytes: one of the two least
    /// recently used if every slice of its last frame is gone, else a new
    /// one (at the bound, the oldest buffer is then left to its frame).
    fn take(&mut self, len: usize) -> BytesMut {
        for i in 0..self.buffers.len().min(2) {
            let buffer = &mut self.buffers[i];
            buffer.clear();
            if buffer.try_reclaim(len) {
                return self.buffers.remove(i).unwrap_or_default();
            }
        }
        if self.buffers.len() >= RX_POOL_BUFFERS {
            self.buffers.pop_front();
        }
        BytesMut::with_capacity(len)
    }

    /// Takes back a buffer from [`Self::take`] after its frame was split
    /// off (there is room: `take` made it).
    fn put(&mut self, buffer: BytesMut) {
        self.buffers.push_back(buffer);
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    /// What a receive does with the pool: a frame of `len` bytes.
    fn receive(pool: &mut RxPool, len: usize) -> Bytes {
        let mut buffer = pool.take(1519);
        assert!(buffer.is_empty() && buffer.capacity() >= 1519);
        buffer.extend_from_slice(&vec![0xab; len]);
        let frame = buffer.split().freeze();
        pool.put(buffer);
        frame
    }

    #[test]
    fn buffers_are_reused_once_their_frames_are_gone() {
        let mut pool = RxPool::default();
        let first = receive(&mut pool, 60);
        let at = first.as_ptr();
        // A slice of the frame keeps its buffer: the next frame gets a new
        // one, and the pool grows.
        let slice = first.slice(14..20);
        drop(first);
        let second = receive(&mut pool, 1514);
        assert_ne!(second.as_ptr(), at);
        assert_eq!(pool.buffers.len(), 2);
        assert_eq!(&slice[..], &[0xab; 6], "the held frame is intact");
        // Both gone: the oldest buffer is reused in place.
        drop((slice, second));
        let third = receive(&mut pool, 1514);
        assert_eq!(third.as_ptr(), at);
        assert_eq!(pool.buffers.len(), 2);
    }

    #[test]
    fn a_stream_of_frames_released_in_order_settles_and_allocates_nothing() {
        let mut pool = RxPool::default();
        let mut held = std::collections::VecDeque::new();
        let mut addresses = std::collections::BTreeSet::new();
        // Frames kept 100 at a time, as a TCP receive buffer keeps them.
        for _ in 0..1000 {
            let frame = receive(&mut pool, 1514);
            addresses.insert(frame.as_ptr() as usize);
            held.push_back(frame);
            if held.len() > 100 {
                held.pop_front();
            }
        }
        assert!(addresses.len() <= 102, "{} buffers for 100 frames in use", addresses.len());
        assert!(pool.buffers.len() <= 102);
    }

    #[test]
    fn the_pool_is_bounded_whatever_is_held() {
        let mut pool = RxPool::default();
        let held: Vec<Bytes> = (0..2 * RX_POOL_BUFFERS).map(|_| receive(&mut pool, 60)).collect();
        assert_eq!(pool.buffers.len(), RX_POOL_BUFFERS);
        // Every frame has a buffer of its own.
        let distinct: std::collections::BTreeSet<_> = held.iter().map(|f| f.as_ptr()).collect();
        assert_eq!(distinct.len(), held.len());
    }
}

/// The transmit scratch buffer, taken out of its cell while a frame is in
/// flight and returned when dropped.
struct ScratchLoan<'a> {
    cell: &'a RefCell<Vec<u8>>,
    buf: Vec<u8>,
}

impl<'a> ScratchLoan<'a> {
    fn take(cell: &'a RefCell<Vec<u8>>) -> ScratchLoan<'a> {
        ScratchLoan { cell, buf: cell.take() }
    }
}

impl Drop for ScratchLoan<'_> {
    fn drop(&mut self) {
        let mut slot = self.cell.borrow_mut();
        // Keep the larger buffer if a concurrent transmit returned one first.
        if slot.capacity() < self.buf.capacity() {
            *slot = std::mem::take(&mut self.buf);
        }
    }
}

/// The ioctl plumbing: the only unsafe code of the TAP device.
mod sys {
    use std::fmt;
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    use tokio::io::unix::AsyncFd;

    use super::TapError;

    /// A name the kernel accepts for an interface (`dev_valid_name` in
    /// net/core/dev.c), NUL-terminated in a buffer of `IFNAMSIZ` bytes.
    pub(super) struct IfName([libc::c_char; libc::IFNAMSIZ]);

    impl IfName {
        pub(super) fn new(name: &str) -> Result<IfName, TapError> {
            let invalid = |reason| TapError::InvalidName { name: name.to_owned(), reason };
            if name.is_empty() {
                return Err(invalid("it is empty"));
            }
            if name.len() >= libc::IFNAMSIZ {
                return Err(invalid("Linux interface names are at most 15 bytes"));
            }
            if name == "." || name == ".." {
                return Err(invalid("\".\" and \"..\" are reserved"));
            }
            if name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace()) {
                return Err(invalid("it contains '/', ':', NUL or whitespace"));
            }
            let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
            for (dst, src) in buf.iter_mut().zip(name.bytes()) {
                *dst = src as libc::c_char;
            }
            Ok(IfName(buf))
        }

        fn from_raw(raw: [libc::c_char; libc::IFNAMSIZ]) -> IfName {
            let mut name = IfName(raw);
            // Guarantee termination whatever the kernel wrote.
            name.0[libc::IFNAMSIZ - 1] = 0;
            name
        }
    }

    impl fmt::Display for IfName {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let bytes: Vec<u8> = self.0.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            f.write_str(&String::from_utf8_lossy(&bytes))
        }
    }

    fn ifreq(name: &IfName) -> libc::ifreq {
        // SAFETY: `ifreq` is a plain C struct (a byte array and a union of
        // integers, sockaddrs and a pointer) for which all-zero bytes is a
        // valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = name.0;
        req
    }

    /// Attaches `tun` (an open `/dev/net/tun`) to the TAP interface `name`,
    /// creating it if needed; returns the interface's actual name.
    pub(super) fn tun_set_iff_tap(tun: &File, name: &IfName) -> io::Result<IfName> {
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, and `req` is
        // a valid, exclusively borrowed one that outlives the call; the fd
        // is open for the duration (borrowed from `tun`).
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IfName::from_raw(req.ifr_name))
    }

    /// Reads one frame from `tun` into the spare capacity of `buffer` (at
    /// most `max` bytes, and at most that capacity) and returns its
    /// length; the bytes read are appended to `buffer`. No byte is written
    /// twice: the kernel fills the capacity, which need not be zeroed first.
    pub(super) fn read_into(tun: &File, buffer: &mut bytes::BytesMut, max: usize) -> io::Result<usize> {
        let spare = buffer.spare_capacity_mut();
        let len = spare.len().min(max);
        let (frame, _) = rustix::io::read(tun, &mut spare[..len])?;
        let n = frame.len();
        // SAFETY: read(2) initialised the first `n` bytes of the spare
        // capacity (`frame`, `n <= len`), which follow the initialised ones.
        unsafe { buffer.set_len(buffer.len() + n) };
        Ok(n)
    }

    /// Registers `tun` with the current tokio reactor. The caller has
    /// checked that a runtime is current (registering panics otherwise).
    pub(super) fn register(tun: File) -> io::Result<AsyncFd<File>> {
        // SAFETY: a `File` owns its descriptor: it is open, and `as_raw_fd`
        // returns the same one, until the `File` (owned by the `AsyncFd`
        // from here on) is dropped.
        unsafe { AsyncFd::register(tun) }.map_err(|e| e.into_parts().1)
    }

    /// The MTU of interface `name` in the caller's network namespace.
    pub(super) fn interface_mtu(name: &IfName) -> io::Result<usize> {
        use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
        let sock = socket_with(AddressFamily::INET, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
        let mut req = ifreq(name);
        // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into one
        // `struct ifreq`; `req` is valid and exclusively borrowed, `sock` is
        // open for the call.
        let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: after a successful SIOCGIFMTU the kernel has written the
        // `ifru_mtu` member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        usize::try_from(mtu).map_err(|_| io::Error::other(format!("the kernel reported a negative MTU ({mtu})")))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn names_linux_rejects_are_refused() {
            for bad in ["", ".", "..", "a/b", "a:b", "a b", "tab\t", "sixteen_chars_xx", "a\0b"] {
                assert!(matches!(IfName::new(bad), Err(TapError::InvalidName { .. })), "{bad:?} accepted");
            }
        }

        #[test]
        fn valid_names_round_trip() {
            for good in ["tap0", "tap%d", "fifteen_chars_x", "mirage-net.1"] {
                assert_eq!(IfName::new(good).unwrap().to_string(), good);
            }
        }

        #[test]
        fn raw_names_are_terminated() {
            let raw = [b'x' as libc::c_char; libc::IFNAMSIZ];
            assert_eq!(IfName::from_raw(raw).to_string(), "x".repeat(libc::IFNAMSIZ - 1));
        }
    }
}
