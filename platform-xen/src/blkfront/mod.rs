//! [`BlockFront`]: a Xen virtual block device (`vbd`) as a
//! [`BlockDevice`], talking blkif (`io/blkif.h`) to the backend (blkback
//! in dom0) over one shared ring.
//!
//! # Connecting (xenbus)
//!
//! [`BlockFront::open`] waits for the backend to reach `InitWait` (or
//! `Connected`), allocates and grants the ring page and the data pages,
//! allocates an event channel for the backend, publishes `ring-ref`,
//! `event-channel`, `protocol = "x86_64-abi"` and `feature-persistent = 1`
//! with the state `Initialised` in one transaction, waits for the backend
//! to be `Connected`, reads `sectors`, `sector-size`, `info` (bit
//! `VDISK_READONLY`), `mode`, `feature-flush-cache` and `feature-barrier`,
//! and goes `Connected`.
//!
//! # Data: bounce pages whose grants are reused
//!
//! The backend reads and writes only pages of a fixed pool that the
//! driver owns and granted once at connection ([`DATA_PAGES`] of them):
//! a write is copied into pool pages before its request is pushed, a read
//! is copied out of them when its response arrives. The grant references
//! never change, so the backend may keep them mapped
//! (`feature-persistent`) instead of mapping and unmapping per request.
//! Because the backend never sees the caller's buffers, a future dropped
//! mid-request only abandons its requests: their pages go back to the
//! pool when the responses arrive, and nothing the backend writes can
//! reach freed memory.
//!
//! A `read_vectored`/`write_vectored` call is cut into requests of at most
//! [`MAX_REQUEST_BYTES`] (11 one-page segments), pushed as far as the ring
//! and the pool have room; several calls (tasks) share the ring, up to
//! its 32 requests. Whichever waiting future runs first takes every
//! response off the ring and wakes the futures they belong to.
//!
//! # Flush
//!
//! `BLKIF_OP_FLUSH_DISKCACHE` if the backend offers `feature-flush-cache`,
//! else an empty `BLKIF_OP_WRITE_BARRIER` if it offers `feature-barrier`;
//! a backend offering neither has no volatile cache to flush (blkif.h),
//! and `flush` returns `Ok` at once.
//!
//! # The backend is not trusted
//!
//! Everything it writes is checked: its xenstore values (a malformed
//! number, a sector size that is not a power of two in 512..=4096, a size
//! that overflows are errors of `open`), and the ring (see [`blkif`]: a
//! protocol violation fails every request in flight and later ones with
//! [`ErrorKind::Disconnected`]; the pool pages of the requests that were
//! in flight are then never reused, since the backend may still write
//! them).
//!
//! # Bounds
//!
//! The ring page plus [`DATA_PAGES`] pages (516 KiB) and as many grant
//! entries, fixed at connection; at most 32 requests in flight.
//!
//! # Closing
//!
//! [`BlockFront::close`] waits for the requests in flight, goes through
//! xenbus `Closing`/`Closed` with the backend, ends every grant and closes
//! the event channel. Dropping a `BlockFront` without closing it ends the
//! grants too, but the backend may still map the pages, so they are
//! leaked rather than freed (a grant still mapped stays parked in
//! [`crate::grant`]).

pub mod blkif;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::{poll_fn, Future};
use core::mem::ManuallyDrop;
use core::pin::pin;
use core::task::{Poll, Waker};

use mirage_types::block::{BlockDevice, BlockError, BlockInfo, ErrorKind, Operation};

use crate::abi::blkif::{
    Segment, MAX_SEGMENTS, OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE, OP_WRITE_BARRIER, RING_SIZE, VDISK_READONLY,
    WIRE_SECTOR,
};
use crate::abi::{GTF_READING, GTF_WRITING, PAGE_SIZE};
use crate::event::EventChannel;
use crate::grant::{Grant, GrantRef};
use crate::hypercall::XenError;
use crate::page::SharedPage;
use crate::xenbus::{Frontend, XenbusState};
use crate::xenstore::{Xenstore, XenstoreError};
use blkif::{BlkifRing, Completion, Status};

/// The pages of the bounce pool (module documentation): 128 pages,
/// 512 KiB, enough for 11 full requests in flight at once.
pub const DATA_PAGES: usize = 128;

/// The most bytes one blkif request moves: 11 one-page segments.
pub const MAX_REQUEST_BYTES: usize = MAX_SEGMENTS * PAGE_SIZE;

/// Why a virtual block device could not be connected or closed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockFrontError {
    /// The domain has no `vbd` device (or not the one asked for).
    NoDevice(String),
    /// A xenstore operation failed.
    Xenstore(XenstoreError),
    /// A hypercall (grant, event channel) or an allocation failed.
    Xen(XenError),
    /// The backend published something unusable.
    Backend {
        /// The device's node, e.g. `device/vbd/51712`.
        node: String,
        /// What was wrong.
        message: String,
    },
}

impl fmt::Display for BlockFrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockFrontError::NoDevice(what) => write!(f, "no virtual block device: {what}"),
            BlockFrontError::Xenstore(e) => write!(f, "xenstore: {e}"),
            BlockFrontError::Xen(e) => write!(f, "{e}"),
            BlockFrontError::Backend { node, message } => write!(f, "the backend of {node}: {message}"),
        }
    }
}

impl core::error::Error for BlockFrontError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            BlockFrontError::Xenstore(e) => Some(e),
            _ => None,
        }
    }
}

impl From<XenstoreError> for BlockFrontError {
    fn from(e: XenstoreError) -> Self {
        BlockFrontError::Xenstore(e)
    }
}

impl From<XenError> for BlockFrontError {
    fn from(e: XenError) -> Self {
        BlockFrontError::Xen(e)
    }
}

/// A request slot (by ring id): the pool pages it holds and its state.
#[derive(Debug, Default)]
struct Slot {
    /// From the push until the owner (or the reaper, if abandoned)
    /// releases it: its id is not reused before, even once the ring has
    /// the response, so a completion not yet collected is never
    /// overwritten by another request.
    in_use: bool,
    pages: Vec<usize>,
    done: Option<Status>,
    /// Its future was dropped: free it when the response comes.
    abandoned: bool,
    waker: Option<Waker>,
}

/// The ring, the pool and the slots: pure bookkeeping, no hypercall.
#[derive(Debug)]
struct Engine {
    ring: BlkifRing,
    handle: u16,
    pages: Vec<SharedPage>,
    grefs: Vec<GrantRef>,
    free: Vec<usize>,
    slots: Vec<Slot>,
    /// Futures waiting for ring or pool room.
    room_waiters: Vec<Waker>,
    /// Set when the device is unusable (ring protocol broken, closed).
    failure: Option<String>,
    most_in_flight: usize,
}

impl Engine {
    fn new(ring: BlkifRing, handle: u16, pages: Vec<SharedPage>, grefs: Vec<GrantRef>) -> Engine {
        let free = (0..pages.len()).rev().collect();
        Engine {
            ring,
            handle,
            pages,
            grefs,
            free,
            slots: (0..RING_SIZE).map(|_| Slot::default()).collect(),
            room_waiters: Vec::new(),
            failure: None,
            most_in_flight: 0,
        }
    }

    /// Takes every response off the ring, completes its slot and wakes its
    /// future (or frees an abandoned slot).
    fn reap(&mut self) {
        if self.failure.is_some() {
            return;
        }
        let mut done: Vec<Completion> = Vec::new();
        let result = self.ring.poll(&mut done);
        for c in done {
            let slot = &mut self.slots[c.id];
            slot.done = Some(c.status);
            if slot.abandoned {
                self.release(c.id);
            } else if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        if let Err(e) = result {
            self.fail(format!("the backend broke the blkif ring protocol ({e}); the device is unusable"));
        }
    }

    /// Marks the device unusable and wakes every waiting future.
    fn fail(&mut self, message: String) {
        self.failure.get_or_insert(message);
        for slot in &mut self.slots {
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        self.room_waiters.drain(..).for_each(Waker::wake);
    }

    /// Returns a completed slot's pages to the pool and wakes futures
    /// waiting for room.
    fn release(&mut self, id: usize) {
        let slot = core::mem::take(&mut self.slots[id]);
        self.free.extend(slot.pages);
        self.room_waiters.drain(..).for_each(Waker::wake);
    }

    /// Pushes a request of `pages` pool pages (each `lens[i]` bytes, whole
    /// wire sectors) at wire sector `sector`; `None` if the ring is full.
    fn push(&mut self, operation: u8, sector: u64, pages: Vec<usize>, lens: &[usize]) -> Option<usize> {
        let segments: Vec<Segment> = pages
            .iter()
            .zip(lens)
            .map(|(&p, &len)| Segment {
                gref: self.grefs[p],
                first_sect: 0,
                last_sect: (len / WIRE_SECTOR).saturating_sub(1) as u8,
                pad: 0,
            })
            .collect();
        let id = self.slots.iter().position(|slot| !slot.in_use)?;
        let id = self.ring.push_as(id, operation, self.handle, sector, &segments)?;
        self.slots[id] = Slot { in_use: true, pages, done: None, abandoned: false, waker: None };
        self.most_in_flight = self.most_in_flight.max(self.ring.in_flight());
        Some(id)
    }

    /// The error a request fails with once the device is unusable.
    fn failure_error(&self) -> Option<BlockError> {
        self.failure.as_ref().map(|m| BlockError::Other { kind: ErrorKind::Disconnected, message: m.clone() })
    }
}

/// Calls `f(offset_in_request, piece)` for the bytes `[from, from +
/// len)` of the concatenation of `bufs`, in order.
fn for_range<B: AsRef<[u8]>>(bufs: &[B], from: usize, len: usize, mut f: impl FnMut(usize, &[u8])) {
    let (mut at, mut done) = (0, 0);
    for buf in bufs {
        let buf = buf.as_ref();
        let (start, end) = (at, at + buf.len());
        at = end;
        let lo = from.max(start);
        let hi = (from + len).min(end);
        if lo < hi {
            f(done, &buf[lo - start..hi - start]);
            done += hi - lo;
        }
    }
}

/// Mutable counterpart of [`for_range`].
fn for_range_mut(bufs: &mut [&mut [u8]], from: usize, len: usize, mut f: impl FnMut(usize, &mut [u8])) {
    let (mut at, mut done) = (0, 0);
    for buf in bufs.iter_mut() {
        let (start, end) = (at, at + buf.len());
        at = end;
        let lo = from.max(start);
        let hi = (from + len).min(end);
        if lo < hi {
            f(done, &mut buf[lo - start..hi - start]);
            done += hi - lo;
        }
    }
}

/// A Xen virtual block device (see the module documentation). A handle:
/// share it by reference or `Rc`.
pub struct BlockFront {
    /// Dropped only if the backend can no longer map its pages (after a
    /// clean close); leaked otherwise.
    engine: ManuallyDrop<RefCell<Engine>>,
    channel: EventChannel,
    frontend: Frontend,
    info: BlockInfo,
    /// 512-byte wire sectors per logical sector.
    wire_per_sector: u64,
    flush_op: Option<u8>,
    /// The ring page's grant, then the data pages' (index + 1).
    grants: RefCell<Vec<Grant>>,
    /// Whether the pages may be freed: the backend closed and unmapped
    /// every grant.
    pages_free: bool,
}

impl fmt::Debug for BlockFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockFront").field("node", &self.frontend.node()).field("info", &self.info).finish()
    }
}

/// What the data path does with one request's pages.
enum Data<'a, 'b> {
    Read(&'a mut [&'b mut [u8]]),
    Write(&'a [&'b [u8]]),
    Flush,
}

impl BlockFront {
    /// Connects the first `vbd` device of this domain (the lowest id).
    pub async fn open_first(store: Rc<Xenstore>) -> Result<BlockFront, BlockFrontError> {
        let mut ids = Frontend::list(&store, "vbd").await?;
        ids.sort_by_key(|id| (id.len(), id.clone()));
        let Some(id) = ids.first().cloned() else {
            return Err(BlockFrontError::NoDevice("this domain has no device/vbd in xenstore".to_string()));
        };
        BlockFront::open(store, &id).await
    }

    /// Connects the `vbd` device `id` (e.g. `"51712"` for `xvda`); see the
    /// module documentation for the handshake.
    pub async fn open(store: Rc<Xenstore>, id: &str) -> Result<BlockFront, BlockFrontError> {
        let frontend = Frontend::open(store, "vbd", id).await.map_err(|e| {
            if e.is_not_found() {
                BlockFrontError::NoDevice(format!("device/vbd/{id} is not in xenstore ({e})"))
            } else {
                BlockFrontError::Xenstore(e)
            }
        })?;
        let node = frontend.node().to_string();
        let bad = |message: String| BlockFrontError::Backend { node: node.clone(), message };
        frontend
            .wait_backend(|s| matches!(s, XenbusState::InitWait | XenbusState::Initialised | XenbusState::Connected))
            .await?;
        let backend = frontend.backend_id();

        let ring_page = SharedPage::alloc()?;
        let mut grants = Vec::with_capacity(DATA_PAGES + 1);
        grants.push(Grant::access(backend, ring_page.frame(), false)?);
        let mut pages = Vec::with_capacity(DATA_PAGES);
        let mut grefs = Vec::with_capacity(DATA_PAGES);
        for _ in 0..DATA_PAGES {
            let page = SharedPage::alloc()?;
            let grant = Grant::access(backend, page.frame(), false)?;
            grefs.push(grant.reference());
            grants.push(grant);
            pages.push(page);
        }
        let channel = EventChannel::alloc_unbound(backend)?;
        let ring_ref = grants[0].reference();
        frontend
            .publish(
                &[
                    ("ring-ref", ring_ref.to_string()),
                    ("event-channel", channel.port().to_string()),
                    ("protocol", "x86_64-abi".to_string()),
                    ("feature-persistent", "1".to_string()),
                ],
                XenbusState::Initialised,
            )
            .await?;
        frontend.wait_backend(|s| s == XenbusState::Connected).await?;

        let sectors = frontend.read_backend_u64("sectors").await?;
        let sector_size = frontend.read_backend_u64("sector-size").await?;
        let info = optional(frontend.read_backend_u64("info").await)?.unwrap_or(0);
        let mode = optional(frontend.read_backend("mode").await)?;
        let flush_cache = optional(frontend.read_backend_u64("feature-flush-cache").await)?.unwrap_or(0) != 0;
        let barrier = optional(frontend.read_backend_u64("feature-barrier").await)?.unwrap_or(0) != 0;
        if !sector_size.is_power_of_two() || !(WIRE_SECTOR as u64..=PAGE_SIZE as u64).contains(&sector_size) {
            return Err(bad(format!("sector-size {sector_size} is not a power of two from 512 to 4096")));
        }
        let wire_per_sector = sector_size / WIRE_SECTOR as u64;
        if sectors.checked_mul(WIRE_SECTOR as u64).is_none() {
            return Err(bad(format!("sectors {sectors} overflows a 64-bit byte size")));
        }
        let read_only = info & VDISK_READONLY != 0 || mode.as_deref().is_some_and(|m| m.trim() == "r");
        let block_info = BlockInfo {
            sector_size: sector_size as u32,
            sector_count: sectors / wire_per_sector,
            read_write: !read_only,
        };
        let flush_op = if flush_cache {
            Some(OP_FLUSH_DISKCACHE)
        } else if barrier {
            Some(OP_WRITE_BARRIER)
        } else {
            None
        };
        frontend.set_state(XenbusState::Connected).await?;
        log::info!(
            "blkfront {node}: {} sectors of {sector_size} bytes ({:.1} MiB), {}, flush by {}",
            block_info.sector_count,
            block_info.size_bytes() as f64 / (1024.0 * 1024.0),
            if read_only { "read-only" } else { "read-write" },
            match flush_op {
                Some(OP_FLUSH_DISKCACHE) => "FLUSH_DISKCACHE",
                Some(_) => "WRITE_BARRIER",
                None => "nothing (no write cache)",
            }
        );
        let handle = id.parse::<u16>().unwrap_or(0);
        Ok(BlockFront {
            engine: ManuallyDrop::new(RefCell::new(Engine::new(BlkifRing::new(ring_page), handle, pages, grefs))),
            channel,
            frontend,
            info: block_info,
            wire_per_sector,
            flush_op,
            grants: RefCell::new(grants),
            pages_free: false,
        })
    }

    /// The device's xenstore node, e.g. `device/vbd/51712`.
    pub fn node(&self) -> &str {
        self.frontend.node()
    }

    /// Requests in flight now.
    pub fn requests_in_flight(&self) -> usize {
        self.engine.borrow().ring.in_flight()
    }

    /// The most requests that were in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.engine.borrow().most_in_flight
    }

    /// Closes the device: waits for the requests in flight (those of
    /// dropped futures; a backend that never answers them keeps `close`
    /// waiting), goes through xenbus `Closing` and `Closed` with the
    /// backend, then ends every grant and closes the event channel. If the
    /// backend still maps a page after that, all the pages are leaked
    /// rather than freed (module documentation).
    pub async fn close(mut self) -> Result<(), BlockFrontError> {
        loop {
            {
                let mut engine = self.engine.borrow_mut();
                engine.reap();
                if engine.ring.in_flight() == 0 || engine.failure.is_some() {
                    break;
                }
            }
            self.channel.wait().await;
        }
        let result = self.frontend.close().await;
        self.engine.borrow_mut().fail("the device was closed".to_string());
        let grants = core::mem::take(&mut *self.grants.borrow_mut());
        let busy = grants.iter().any(|g| g.entry().is_none_or(|e| e.flags & (GTF_READING | GTF_WRITING) != 0));
        drop(grants);
        self.pages_free = result.is_ok() && !busy;
        result.map_err(BlockFrontError::from)
    }

    /// Runs one read, write or flush: cut into requests, pushed as room
    /// allows, completed as responses arrive (module documentation).
    async fn transfer(&self, op: Operation, start: u64, len: usize, mut data: Data<'_, '_>) -> Result<(), BlockError> {
        let (code, pieces) = match op {
            Operation::Read => (OP_READ, len.div_ceil(MAX_REQUEST_BYTES)),
            Operation::Write => (OP_WRITE, len.div_ceil(MAX_REQUEST_BYTES)),
            Operation::Flush => match self.flush_op {
                Some(code) => (code, 1),
                None => return Ok(()),
            },
        };
        let wire_start = start.saturating_mul(self.wire_per_sector);
        let mut guard = InFlightGuard { device: self, ids: Vec::new() };
        let mut next = 0;
        let mut wait = pin!(self.channel.wait());
        poll_fn(|cx| loop {
            let mut engine = self.engine.borrow_mut();
            let engine = &mut *engine;
            engine.reap();
            if let Some(e) = engine.failure_error() {
                return Poll::Ready(Err(e));
            }
            // Completed requests of this call.
            let mut i = 0;
            while i < guard.ids.len() {
                let (piece, id) = guard.ids[i];
                let Some(status) = engine.slots[id].done else {
                    i += 1;
                    continue;
                };
                guard.ids.swap_remove(i);
                if status == Status::Okay {
                    if let Data::Read(bufs) = &mut data {
                        let from = piece * MAX_REQUEST_BYTES;
                        let slot_pages = &engine.slots[id].pages;
                        let pages = &engine.pages;
                        for_range_mut(bufs, from, MAX_REQUEST_BYTES.min(len - from), |at, out| {
                            // `at` and `out.len()` are whole wire sectors;
                            // a piece may span two pages.
                            let mut done = 0;
                            while done < out.len() {
                                let (page, offset) = ((at + done) / PAGE_SIZE, (at + done) % PAGE_SIZE);
                                let n = (PAGE_SIZE - offset).min(out.len() - done);
                                pages[slot_pages[page]].read_bytes(offset, &mut out[done..done + n]);
                                done += n;
                            }
                        });
                    }
                }
                engine.release(id);
                if status != Status::Okay {
                    let sector = start + (piece * MAX_REQUEST_BYTES) as u64 / u64::from(self.info.sector_size);
                    let message = match status {
                        Status::NotSupported => "the backend does not support this operation (BLKIF_RSP_EOPNOTSUPP)",
                        _ => "the backend reported an error (BLKIF_RSP_ERROR)",
                    };
                    return Poll::Ready(Err(BlockError::Io { op, sector, message: message.to_string() }));
                }
            }
            // Push what fits.
            let mut pushed = false;
            while next < pieces && engine.ring.free_slots() > 0 {
                let from = next * MAX_REQUEST_BYTES;
                let piece_len = if code == OP_READ || code == OP_WRITE { MAX_REQUEST_BYTES.min(len - from) } else { 0 };
                let npages = piece_len.div_ceil(PAGE_SIZE);
                if engine.free.len() < npages {
                    break;
                }
                let pages: Vec<usize> = (0..npages).filter_map(|_| engine.free.pop()).collect();
                let lens: Vec<usize> = (0..npages).map(|p| PAGE_SIZE.min(piece_len - p * PAGE_SIZE)).collect();
                if let Data::Write(bufs) = &data {
                    for_range(bufs, from, piece_len, |at, chunk| {
                        let mut done = 0;
                        while done < chunk.len() {
                            let (page, offset) = ((at + done) / PAGE_SIZE, (at + done) % PAGE_SIZE);
                            let n = (PAGE_SIZE - offset).min(chunk.len() - done);
                            engine.pages[pages[page]].write_bytes(offset, &chunk[done..done + n]);
                            done += n;
                        }
                    });
                }
                let sector = wire_start + (from / WIRE_SECTOR) as u64;
                match engine.push(code, sector, pages.clone(), &lens) {
                    Some(id) => {
                        guard.ids.push((next, id));
                        next += 1;
                        pushed = true;
                    }
                    None => {
                        engine.free.extend(pages);
                        break;
                    }
                }
            }
            if pushed && engine.ring.publish() {
                if let Err(e) = self.channel.notify() {
                    engine.fail(format!("cannot notify the backend: {e}"));
                    continue;
                }
            }
            if next == pieces && guard.ids.is_empty() {
                return Poll::Ready(Ok(()));
            }
            for &(_, id) in &guard.ids {
                engine.slots[id].waker = Some(cx.waker().clone());
            }
            if next < pieces && !engine.room_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                engine.room_waiters.push(cx.waker().clone());
            }
            // The port fired: responses may be there; look again.
            if wait.as_mut().poll(cx).is_ready() {
                wait.set(self.channel.wait());
                continue;
            }
            return Poll::Pending;
        })
        .await
    }
}

/// Abandons the requests of a dropped (or finished) transfer: their slots
/// are freed when their responses arrive.
struct InFlightGuard<'a> {
    device: &'a BlockFront,
    ids: Vec<(usize, usize)>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut engine = self.device.engine.borrow_mut();
        for &(_, id) in &self.ids {
            if engine.slots[id].done.is_some() {
                engine.release(id);
            } else {
                engine.slots[id].abandoned = true;
                engine.slots[id].waker = None;
            }
        }
    }
}

/// `Ok(None)` for a key the backend did not write.
fn optional<T>(result: Result<T, XenstoreError>) -> Result<Option<T>, XenstoreError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl Drop for BlockFront {
    fn drop(&mut self) {
        // End the grants first (an entry still mapped is parked by the
        // grant table), then free the pages only if the backend is known
        // to have let go of them.
        drop(core::mem::take(&mut *self.grants.borrow_mut()));
        if self.pages_free {
            // SAFETY: the engine is dropped once, here, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.engine) }
        }
    }
}

impl BlockDevice for BlockFront {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// Reads through the bounce pool (module documentation), up to 11
    /// pages per request, requests in flight together. On `Err` the
    /// buffers may hold some of the data. Cancel-safe: a dropped read's
    /// requests complete into pool pages, which are then reused.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let len = self.info.check_request(Operation::Read, start, bufs)?.bytes;
        self.transfer(Operation::Read, start, len, Data::Read(bufs)).await
    }

    /// Writes copies of `bufs` made in pool pages. `Ok`: the backend has
    /// completed every request (visible to later reads; durable after
    /// `flush`). On `Err` or if dropped: any subset of the requests may
    /// have been written; `bufs` may be reused at once either way. A
    /// read-only device refuses with [`BlockError::ReadOnly`] before
    /// anything is sent.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let len = self.info.check_request(Operation::Write, start, bufs)?.bytes;
        self.transfer(Operation::Write, start, len, Data::Write(bufs)).await
    }

    /// `BLKIF_OP_FLUSH_DISKCACHE`, or an empty `WRITE_BARRIER`, or nothing
    /// for a backend with neither (module documentation). `Ok`: every
    /// write completed before the call is durable. Not cancel-safe: if
    /// dropped, durability is unknown.
    async fn flush(&self) -> Result<(), BlockError> {
        self.transfer(Operation::Flush, 0, 0, Data::Flush).await
    }
}
