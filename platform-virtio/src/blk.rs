//! virtio-blk as a [`BlockDevice`], with several requests in flight.
//!
//! # How requests run
//!
//! Each request of a `read_vectored`/`write_vectored` call is cut into
//! virtio requests of at most [`MAX_REQUEST_BYTES`], submitted together
//! (as far as the virtqueue has room) with virtio-drivers' non-blocking
//! `read_blocks_nb`/`write_blocks_nb`, and completed from the interrupt:
//! whichever waiting future runs first acknowledges the device, takes
//! *every* completed request off the used ring and wakes the futures they
//! belong to (the protocol of [`crate`]'s documentation).
//!
//! # Cancellation: the driver owns every buffer the device sees
//!
//! The device writes into memory until it puts the request on the used
//! ring, whatever happens to the future that asked. So the request header,
//! the status byte and the data of each virtio request live in a heap
//! record owned by the driver's in-flight table, never in the caller's
//! buffers: reads land in that bounce buffer and are copied out on
//! completion, writes are copied in before submission. A future dropped
//! mid-request marks its records *abandoned*; when the device completes
//! them, the driver frees them. Nothing the device writes can reach freed
//! memory, and a cancelled request cannot disturb later ones. The copy
//! costs a memcpy per request, cheap beside a virtio round trip.
//!
//! # Flush
//!
//! `VIRTIO_BLK_F_FLUSH` is negotiated when the device offers it.
//! virtio-drivers 0.13 has only a blocking flush, which must be the only
//! request on the queue (it waits for the first completion it sees), so a
//! flush stops new submissions, waits for the queue to drain, then issues
//! the flush and spins until the device answers. A device without the
//! feature is write-through by the virtio specification (§5.2.6.2), and
//! flush then returns `Ok` at once.
//!
//! # Bounds
//!
//! At most the virtqueue's size (16 with indirect descriptors, fewer
//! without) of virtio requests in flight, each with a bounce buffer of at
//! most [`MAX_REQUEST_BYTES`]: 4 MiB of driver memory at worst.
//! Completed results wait only for the live future they belong to.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use mirage_kernel::interrupt::{InterruptError, InterruptLine};
use mirage_types::block::{gather, scatter, BlockDevice, BlockError, BlockInfo, Operation};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::{DeviceType, SomeTransport};

use crate::discovery::{Location, VirtioDevice};
use crate::hal::KernelHal;

/// The most bytes one virtio request moves; larger I/O is split.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Why a virtio-blk device could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSetupError {
    /// Where the device is.
    pub location: Location,
    /// What failed.
    pub message: String,
}

impl fmt::Display for BlockSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtio-blk device at {}: {}", self.location, self.message)
    }
}

impl core::error::Error for BlockSetupError {}

/// One virtio request the device may be working on: everything it reads
/// or writes, owned here (see the module documentation).
struct InFlight {
    id: u64,
    op: Operation,
    req: BlkReq,
    resp: BlkResp,
    data: Vec<u8>,
    abandoned: bool,
    waker: Option<Waker>,
}

type Completion = (Result<(), virtio_drivers::Error>, Vec<u8>);

struct State {
    device: VirtIOBlk<KernelHal, SomeTransport<'static>>,
    /// By virtqueue token.
    in_flight: BTreeMap<u16, Box<InFlight>>,
    /// Completed requests whose future has not collected them, by id.
    done: BTreeMap<u64, Completion>,
    /// Futures waiting for queue room or for the queue to drain.
    room_waiters: Vec<Waker>,
    /// Flushes waiting for the queue to drain; while any does, nothing new
    /// is submitted.
    flushes_waiting: usize,
    next_id: u64,
    most_in_flight: usize,
}

/// A virtio-blk device: 512-byte sectors, read-write unless the device
/// says read-only. A handle: share it by reference or `Rc`.
pub struct VirtioBlock {
    state: RefCell<State>,
    line: InterruptLine,
    info: BlockInfo,
    location: Location,
}

impl fmt::Debug for VirtioBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioBlock").field("info", &self.info).field("location", &self.location).finish()
    }
}

impl VirtioBlock {
    /// Initialises the virtio-blk `device` (feature negotiation, one
    /// virtqueue) and claims its interrupt line.
    ///
    /// Errors: the device is not a block device, refuses initialisation,
    /// or its line cannot be routed.
    pub fn new(device: VirtioDevice) -> Result<VirtioBlock, BlockSetupError> {
        let location = device.location;
        let error = |message: String| BlockSetupError { location, message };
        if device.kind != DeviceType::Block {
            return Err(error(format!("it is a {:?} device, not a block device", device.kind)));
        }
        let line = InterruptLine::claim(device.gsi).map_err(|e: InterruptError| error(format!("{e}")))?;
        let mut blk = VirtIOBlk::<KernelHal, _>::new(device.transport)
            .map_err(|e| error(format!("initialisation failed: {e}")))?;
        blk.enable_interrupts();
        let info =
            BlockInfo { sector_size: SECTOR_SIZE as u32, sector_count: blk.capacity(), read_write: !blk.readonly() };
        log::debug!(
            "virtio-blk at {location}: {} sectors of {SECTOR_SIZE} bytes, {}, GSI {}, queue of {}",
            info.sector_count,
            if info.read_write { "read-write" } else { "read-only" },
            device.gsi,
            blk.virt_queue_size()
        );
        let state = State {
            device: blk,
            in_flight: BTreeMap::new(),
            done: BTreeMap::new(),
            room_waiters: Vec::new(),
            flushes_waiting: 0,
            next_id: 0,
            most_in_flight: 0,
        };
        Ok(VirtioBlock { state: RefCell::new(state), line, info, location })
    }

    /// Where the device was found.
    pub fn location(&self) -> Location {
        self.location
    }

    /// How many virtio requests the device holds now (for tests and
    /// diagnostics).
    pub fn requests_in_flight(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    /// The most virtio requests the device has held at once since it was
    /// set up (for tests and diagnostics).
    pub fn most_in_flight(&self) -> usize {
        self.state.borrow().most_in_flight
    }

    /// Acknowledges the device and moves every completed request from the
    /// used ring to `done` (or frees it if abandoned), waking its future
    /// and whoever waits for room.
    fn reap(&self, state: &mut State) {
        state.device.ack_interrupt();
        let mut completed = false;
        // At most one pass over the queue: each iteration pops one entry.
        while let Some(token) = state.device.peek_used() {
            let Some(mut request) = state.in_flight.remove(&token) else {
                // A token we never submitted cannot be popped without its
                // buffers; leave it rather than loop on it.
                log::error!("virtio-blk at {}: the device completed unknown token {token}", self.location);
                break;
            };
            let request_ref = &mut *request;
            // SAFETY: `token` was returned by the `*_nb` call that was given
            // exactly these `req`, `data` and `resp`, which stayed in this
            // record, untouched, until now.
            let result = unsafe {
                match request_ref.op {
                    Operation::Read => state.device.complete_read_blocks(
                        token,
                        &request_ref.req,
                        &mut request_ref.data,
                        &mut request_ref.resp,
                    ),
                    _ => state.device.complete_write_blocks(
                        token,
                        &request_ref.req,
                        &request_ref.data,
                        &mut request_ref.resp,
                    ),
                }
            };
            completed = true;
            if !request.abandoned {
                if let Some(waker) = request.waker.take() {
                    waker.wake();
                }
                state.done.insert(request.id, (result, core::mem::take(&mut request.data)));
            }
        }
        if completed {
            for waker in state.room_waiters.drain(..) {
                waker.wake();
            }
        }
    }

    /// Submits one virtio request, waiting for queue room (and for pending
    /// flushes) first. `data` is the bounce buffer: the bytes to write, or
    /// a buffer of the length to read.
    async fn submit(&self, op: Operation, sector: u64, data: Vec<u8>) -> Result<Ticket<'_>, BlockError> {
        let mut record = Some(Box::new(InFlight {
            id: 0,
            op,
            req: BlkReq::default(),
            resp: BlkResp::default(),
            data,
            abandoned: false,
            waker: None,
        }));
        poll_fn(|cx| {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            // Completions are collected by the futures that wait for them
            // (and here only when the queue is full), so the pieces of one
            // call, and the calls of several tasks, go to the device together.
            if state.flushes_waiting > 0 {
                self.reap(state);
            }
            if state.flushes_waiting > 0 {
                push_waker(&mut state.room_waiters, cx.waker());
                self.line.arm(cx.waker());
                return Poll::Pending;
            }
            let Some(mut request) = record.take() else {
                return Poll::Ready(Err(io_error(op, sector, "request polled after it completed")));
            };
            let block = sector as usize;
            let r = &mut *request;
            // SAFETY: `req`, `data` and `resp` live in the boxed record, which
            // moves into `in_flight` below and stays there, untouched, until
            // `reap` completes the token with the same three buffers.
            let submitted = unsafe {
                match op {
                    Operation::Read => state.device.read_blocks_nb(block, &mut r.req, &mut r.data, &mut r.resp),
                    _ => state.device.write_blocks_nb(block, &mut r.req, &r.data, &mut r.resp),
                }
            };
            match submitted {
                Ok(token) => {
                    request.id = state.next_id;
                    state.next_id += 1;
                    request.waker = Some(cx.waker().clone());
                    let id = request.id;
                    state.in_flight.insert(token, request);
                    state.most_in_flight = state.most_in_flight.max(state.in_flight.len());
                    Poll::Ready(Ok(Ticket { device: self, id, op, sector }))
                }
                Err(virtio_drivers::Error::QueueFull) if !state.in_flight.is_empty() => {
                    record = Some(request);
                    self.reap(state);
                    if state.in_flight.len() < usize::from(state.device.virt_queue_size()) {
                        // Room was made: try again at once.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    push_waker(&mut state.room_waiters, cx.waker());
                    self.line.arm(cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(io_error(op, sector, &format!("{e}")))),
            }
        })
        .await
    }

    /// Runs `op` over `len` bytes from `start`: submits every piece, then
    /// collects them in order, handing each completed bounce buffer and its
    /// byte offset to `complete`. `fill` provides each piece's bounce buffer.
    async fn transfer(
        &self,
        op: Operation,
        start: u64,
        len: usize,
        mut fill: impl FnMut(usize, usize) -> Vec<u8>,
        mut complete: impl FnMut(usize, &[u8]),
    ) -> Result<(), BlockError> {
        let mut tickets = Vec::new();
        let mut offset = 0;
        while offset < len {
            let piece = (len - offset).min(MAX_REQUEST_BYTES);
            let sector = start + (offset / SECTOR_SIZE) as u64;
            tickets.push((offset, self.submit(op, sector, fill(offset, piece)).await?));
            offset += piece;
        }
        for (offset, ticket) in tickets {
            let data = ticket.wait().await?;
            complete(offset, &data);
        }
        Ok(())
    }
}

/// A submitted virtio request, collected with [`Ticket::wait`]. Dropping
/// it before that abandons the request (the driver frees its buffers when
/// the device completes it).
struct Ticket<'a> {
    device: &'a VirtioBlock,
    id: u64,
    op: Operation,
    sector: u64,
}

impl Ticket<'_> {
    async fn wait(self) -> Result<Vec<u8>, BlockError> {
        let completion = poll_fn(|cx| {
            let mut guard = self.device.state.borrow_mut();
            let state = &mut *guard;
            self.device.reap(state);
            if let Some(completion) = state.done.remove(&self.id) {
                return Poll::Ready(completion);
            }
            if let Some(request) = state.in_flight.values_mut().find(|r| r.id == self.id) {
                request.waker = Some(cx.waker().clone());
            }
            self.device.line.arm(cx.waker());
            Poll::Pending
        })
        .await;
        match completion {
            (Ok(()), data) => Ok(data),
            (Err(e), _) => Err(io_error(self.op, self.sector, &format!("the device reported {e}"))),
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut state = self.device.state.borrow_mut();
        if state.done.remove(&self.id).is_none() {
            if let Some(request) = state.in_flight.values_mut().find(|r| r.id == self.id) {
                request.abandoned = true;
                request.waker = None;
            }
        }
    }
}

/// Adds `waker` unless its task is in `list` already, so a task polled
/// often between completions holds one entry.
fn push_waker(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

fn io_error(op: Operation, sector: u64, message: &str) -> BlockError {
    BlockError::Io { op, sector, message: String::from(message) }
}

impl BlockDevice for VirtioBlock {
    type Error = BlockError;

    fn info(&self) -> BlockInfo {
        self.info
    }

    /// Reads through driver-owned buffers (module documentation), pieces of
    /// at most [`MAX_REQUEST_BYTES`] in flight together. On `Err` the
    /// buffers may hold some of the data. Cancel-safe: a dropped read's
    /// requests complete into the driver's buffers and are freed.
    async fn read_vectored(&self, start: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        let len = self.info.check_request(Operation::Read, start, bufs)?.bytes;
        self.transfer(
            Operation::Read,
            start,
            len,
            |_, piece| vec![0; piece],
            |offset, data| scatter(bufs, offset, data),
        )
        .await
    }

    /// Writes through driver-owned copies of `bufs`. `Ok`: the device has
    /// completed every piece (visible to later reads; durable after
    /// `flush`). On `Err` or if dropped: any subset of the pieces may have
    /// been written, and `bufs` may be reused at once either way.
    async fn write_vectored(&self, start: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        let len = self.info.check_request(Operation::Write, start, bufs)?.bytes;
        self.transfer(
            Operation::Write,
            start,
            len,
            |offset, piece| {
                let mut data = vec![0; piece];
                gather(bufs, offset, &mut data);
                data
            },
            |_, _| {},
        )
        .await
    }

    /// Waits for the queue to drain (holding back new requests), then
    /// flushes the device's write cache, spinning until it answers (see
    /// the module documentation). `Ok`: every write completed before the
    /// call is durable. Not cancel-safe: dropped while waiting, nothing was
    /// flushed.
    async fn flush(&self) -> Result<(), BlockError> {
        let mut registration = FlushRegistration { device: self, counted: false };
        let result = poll_fn(|cx| {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            self.reap(state);
            if !state.in_flight.is_empty() {
                if !registration.counted {
                    state.flushes_waiting += 1;
                    registration.counted = true;
                }
                push_waker(&mut state.room_waiters, cx.waker());
                self.line.arm(cx.waker());
                return Poll::Pending;
            }
            let result = state.device.flush().map_err(|e| BlockError::Io {
                op: Operation::Flush,
                sector: 0,
                message: format!("the device reported {e}"),
            });
            Poll::Ready(result)
        })
        .await;
        drop(registration);
        result
    }
}

/// Counts a flush as waiting while it is; uncounts it when it finishes or
/// is dropped, and lets held-back submissions go.
struct FlushRegistration<'a> {
    device: &'a VirtioBlock,
    counted: bool,
}

impl Drop for FlushRegistration<'_> {
    fn drop(&mut self) {
        if self.counted {
            let mut state = self.device.state.borrow_mut();
            state.flushes_waiting -= 1;
            for waker in state.room_waiters.drain(..) {
                waker.wake();
            }
        }
    }
}
