//! virtio-net as a [`NetworkDevice`]: frames received into driver-owned
//! buffers that are recycled, frames transmitted from a driver-owned pool,
//! several in flight each way.
//!
//! The driver sits on virtio-drivers' raw, non-blocking `VirtIONetRaw`
//! (one receive and one transmit virtqueue of [`QUEUE_SIZE`] entries) and
//! waits through the crate's interrupt protocol (acknowledge, collect,
//! arm; see [`crate`]).
//!
//! # Receive: the driver owns every buffer the device writes
//!
//! At setup every receive descriptor is given a buffer of
//! [`RX_BUFFER_LEN`] bytes owned by the driver's table, never by a
//! future. [`NetworkDevice::receive`] takes the next used buffer off the
//! ring, copies the frame into a [`Bytes`] of exactly its length (one
//! allocation and one copy per frame, at most 1514 bytes), and gives the
//! buffer straight back to the device. The frame leaves the ring only in
//! the same poll that returns it, so a dropped `receive` future loses no
//! frame: it is cancel-safe. The copy keeps the ring's buffers fixed and
//! lets a small frame (an ACK) hold 60 bytes rather than a whole ring
//! buffer for as long as upper layers keep it.
//!
//! # Transmit: fill a driver buffer, no allocation per frame
//!
//! [`TX_BUFFERS`] buffers of [`TX_BUFFER_LEN`] bytes are allocated at
//! setup. [`NetworkDevice::transmit`] takes a free one, writes the virtio
//! header, lets the caller fill the frame in place and puts it on the
//! transmit ring without waiting for the device; completed buffers return
//! to the pool whenever any task of the device next polls. When all are in
//! flight, `transmit` waits (for the device's interrupt) until one comes
//! back. The link state is not looked at: a frame sent while the link is
//! down is handed to the device, which drops it (QEMU does) or sends it
//! later; `transmit` never waits for the link.
//!
//! # Bounds
//!
//! Driver memory is fixed at setup: [`QUEUE_SIZE`] receive buffers and
//! [`TX_BUFFERS`] transmit buffers (about 144 KiB) plus the two
//! virtqueues. A peer can make us allocate only the [`Bytes`] of frames
//! the caller has received; frames arriving while every receive buffer is
//! full are dropped by the device (and not counted here, since the driver
//! never sees them).
//!
//! # What it does not do
//!
//! No checksum or segmentation offload, no mergeable receive buffers, no
//! multi-queue, no control queue (so no MAC filtering or promiscuous
//! switch: the device delivers what its backend sends), MTU fixed at
//! 1500, link state not reported.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use bytes::Bytes;
use mirage_kernel::interrupt::InterruptLine;
use mirage_types::net::{ErrorKind, MacAddress, NetError, NetStats, NetworkDevice, ETHERNET_HEADER_LEN};
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::{DeviceType, SomeTransport};

use crate::discovery::{Location, VirtioDevice};
use crate::hal::KernelHal;

/// Entries in each virtqueue (a power of two no larger than what QEMU
/// offers, 256).
pub const QUEUE_SIZE: usize = 64;

/// Transmit buffers, hence the most frames in flight towards the device.
/// Fewer than [`QUEUE_SIZE`]: a one-buffer frame takes one descriptor, so
/// a free buffer always finds room on the ring.
pub const TX_BUFFERS: usize = 32;

/// The Ethernet payload size the device is driven with.
pub const MTU: usize = 1500;

/// The largest virtio-net header (`struct virtio_net_hdr` with
/// `num_buffers`, as VIRTIO 1.0 devices use; legacy ones use 10 bytes).
const MAX_HEADER_LEN: usize = 12;

/// Bytes in each receive buffer: the largest header and frame, rounded up
/// (virtio-drivers asks for at least 1526).
pub const RX_BUFFER_LEN: usize = 1536;

/// Bytes in each transmit buffer: the largest header and frame.
pub const TX_BUFFER_LEN: usize = MAX_HEADER_LEN + ETHERNET_HEADER_LEN + MTU;

/// The largest frame (header included) sent or accepted.
const MAX_FRAME_LEN: usize = ETHERNET_HEADER_LEN + MTU;

// A receive buffer holds the largest header and frame (virtio-drivers
// refuses buffers under 1526 bytes); a free transmit buffer always finds a
// descriptor; virtqueue sizes are powers of two.
const _: () = assert!(RX_BUFFER_LEN >= MAX_HEADER_LEN + MAX_FRAME_LEN && RX_BUFFER_LEN >= 1526);
const _: () = assert!(TX_BUFFERS < QUEUE_SIZE && QUEUE_SIZE.is_power_of_two());

type RawNet = VirtIONetRaw<KernelHal, SomeTransport<'static>, QUEUE_SIZE>;

/// Why a virtio-net device could not be set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSetupError {
    /// Where the device is.
    pub location: Location,
    /// What failed.
    pub message: String,
}

impl fmt::Display for NetSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtio-net device at {}: {}", self.location, self.message)
    }
}

impl core::error::Error for NetSetupError {}

/// Buffers the device holds, by the virtqueue token (descriptor index)
/// they were submitted under. Tokens are below the queue size, so a table
/// of that many slots holds them all.
struct Posted {
    slots: Vec<Option<(Box<[u8]>, usize)>>,
}

impl Posted {
    fn new(size: usize) -> Posted {
        Posted { slots: (0..size).map(|_| None).collect() }
    }

    /// Records `buffer` (of which the first `len` bytes were submitted)
    /// under `token`. Gives it back if the token is out of range or taken,
    /// which would mean the queue handed out a token twice.
    fn insert(&mut self, token: u16, buffer: Box<[u8]>, len: usize) -> Result<(), Box<[u8]>> {
        match self.slots.get_mut(usize::from(token)) {
            Some(slot @ None) => {
                *slot = Some((buffer, len));
                Ok(())
            }
            _ => Err(buffer),
        }
    }

    fn take(&mut self, token: u16) -> Option<(Box<[u8]>, usize)> {
        self.slots.get_mut(usize::from(token)).and_then(Option::take)
    }

    fn len(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_some()).count()
    }
}

/// What a completed receive buffer held.
#[derive(Debug, PartialEq, Eq)]
enum Received {
    /// A frame at this range of the buffer.
    Frame(core::ops::Range<usize>),
    /// Too short for an Ethernet header, or longer than the MTU allows.
    Bad(usize),
}

/// Classifies a completion of `header_len` header bytes and `frame_len`
/// frame bytes in a buffer of `buffer_len` bytes.
fn received(header_len: usize, frame_len: usize, buffer_len: usize) -> Received {
    let end = header_len.checked_add(frame_len);
    match end {
        Some(end) if (ETHERNET_HEADER_LEN..=MAX_FRAME_LEN).contains(&frame_len) && end <= buffer_len => {
            Received::Frame(header_len..end)
        }
        _ => Received::Bad(frame_len),
    }
}

struct State {
    // Declared first so it is dropped first: its drop detaches the queues
    // from the device before the buffers below are freed.
    device: RawNet,
    rx_posted: Posted,
    /// Receive buffers that could not be resubmitted (the ring refused
    /// them); retried at every poll.
    rx_spare: Vec<Box<[u8]>>,
    tx_posted: Posted,
    tx_free: Vec<Box<[u8]>>,
    /// Transmitters waiting for a free buffer.
    tx_waiters: Vec<Waker>,
}

/// A virtio-net device as a [`NetworkDevice`]; see the
/// [module documentation](self). A handle: share it by reference or `Rc`.
pub struct VirtioNet {
    state: RefCell<State>,
    stats: Cell<NetStats>,
    line: InterruptLine,
    mac: MacAddress,
    location: Location,
}

impl fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioNet").field("mac", &self.mac).field("location", &self.location).finish()
    }
}

impl VirtioNet {
    /// Initialises the virtio-net `device` (feature negotiation, its
    /// receive and transmit queues), gives the device [`QUEUE_SIZE`]
    /// receive buffers and claims its interrupt line. The MAC address is
    /// the one in the device's configuration.
    ///
    /// Errors: the device is not a network device, refuses
    /// initialisation (e.g. offers fewer than [`QUEUE_SIZE`] queue
    /// entries), or its line cannot be routed.
    pub fn new(device: VirtioDevice) -> Result<VirtioNet, NetSetupError> {
        let location = device.location;
        let error = |message: String| NetSetupError { location, message };
        if device.kind != DeviceType::Network {
            return Err(error(format!("it is a {:?} device, not a network device", device.kind)));
        }
        let line = InterruptLine::claim(device.gsi).map_err(|e| error(format!("{e}")))?;
        let mut raw = RawNet::new(device.transport).map_err(|e| error(format!("initialisation failed: {e}")))?;
        raw.enable_interrupts();
        let mac = MacAddress(raw.mac_address());
        let mut state = State {
            device: raw,
            rx_posted: Posted::new(QUEUE_SIZE),
            rx_spare: Vec::new(),
            tx_posted: Posted::new(QUEUE_SIZE),
            tx_free: (0..TX_BUFFERS).map(|_| vec![0u8; TX_BUFFER_LEN].into_boxed_slice()).collect(),
            tx_waiters: Vec::new(),
        };
        for _ in 0..QUEUE_SIZE {
            post_receive(&mut state, vec![0u8; RX_BUFFER_LEN].into_boxed_slice());
        }
        if !state.rx_spare.is_empty() {
            return Err(error(format!(
                "the receive queue took only {} of {QUEUE_SIZE} buffers",
                state.rx_posted.len()
            )));
        }
        log::debug!("virtio-net at {location}: MAC {mac}, GSI {}, queues of {QUEUE_SIZE}", device.gsi);
        Ok(VirtioNet { state: RefCell::new(state), stats: Cell::new(NetStats::default()), line, mac, location })
    }

    /// Where the device was found.
    pub fn location(&self) -> Location {
        self.location
    }

    /// How many frames the device holds for transmission now (for tests
    /// and diagnostics).
    pub fn frames_in_flight(&self) -> usize {
        self.state.borrow().tx_posted.len()
    }

    fn count(&self, update: impl FnOnce(&mut NetStats)) {
        let mut stats = self.stats.get();
        update(&mut stats);
        self.stats.set(stats);
    }

    /// Takes every completed transmission off the used ring, returns its
    /// buffer to the pool and wakes the transmitters waiting for one.
    fn reap_transmitted(&self, state: &mut State) {
        let mut freed = false;
        // Bounded: each pass pops one entry of a ring of QUEUE_SIZE.
        for _ in 0..QUEUE_SIZE {
            let Some(token) = state.device.poll_transmit() else { break };
            let Some((buffer, len)) = state.tx_posted.take(token) else {
                // Popping needs the buffer; without it the entry stays, and
                // transmit reports the ring as broken.
                log::error!("virtio-net at {}: the device completed unknown transmit token {token}", self.location);
                break;
            };
            // SAFETY: `token` was returned by `transmit_begin` for the first
            // `len` bytes of this buffer, which stayed in `tx_posted`,
            // untouched, until now.
            match unsafe { state.device.transmit_complete(token, &buffer[..len]) } {
                Ok(_) => {
                    state.tx_free.push(buffer);
                    freed = true;
                }
                Err(e) => {
                    // Not popped: the device still owns the buffer.
                    log::error!("virtio-net at {}: completing transmit token {token}: {e}", self.location);
                    let _ = state.tx_posted.insert(token, buffer, len);
                    break;
                }
            }
        }
        if freed {
            for waker in state.tx_waiters.drain(..) {
                waker.wake();
            }
        }
    }

    /// Takes the next received frame off the used ring, if any, and gives
    /// its buffer back to the device. Frames with impossible lengths are
    /// dropped and counted.
    fn take_received(&self, state: &mut State) -> Result<Option<Bytes>, NetError> {
        for _ in 0..QUEUE_SIZE {
            let Some(token) = state.device.poll_receive() else { return Ok(None) };
            let Some((mut buffer, _)) = state.rx_posted.take(token) else {
                return Err(self.io_error(format!("the device completed unknown receive token {token}")));
            };
            // SAFETY: `token` was returned by `receive_begin` for this whole
            // buffer, which stayed in `rx_posted`, untouched, until now.
            let completed = unsafe { state.device.receive_complete(token, &mut buffer) };
            let frame = match completed {
                Ok((header_len, frame_len)) => match received(header_len, frame_len, buffer.len()) {
                    Received::Frame(range) => Some(Bytes::copy_from_slice(&buffer[range])),
                    Received::Bad(len) => {
                        log::debug!("virtio-net at {}: dropping a received frame of {len} bytes", self.location);
                        None
                    }
                },
                // The entry was popped but is shorter than its header.
                Err(virtio_drivers::Error::IoError) => None,
                Err(e) => {
                    // Not popped: the device still owns the buffer.
                    let _ = state.rx_posted.insert(token, buffer, RX_BUFFER_LEN);
                    return Err(self.io_error(format!("completing receive token {token}: {e}")));
                }
            };
            post_receive(state, buffer);
            match frame {
                Some(frame) => {
                    self.count(|s| {
                        s.rx_frames += 1;
                        s.rx_bytes += frame.len() as u64;
                    });
                    return Ok(Some(frame));
                }
                None => self.count(|s| s.rx_dropped += 1),
            }
        }
        Ok(None)
    }

    fn io_error(&self, message: String) -> NetError {
        NetError::Other { kind: ErrorKind::Io, message: format!("virtio-net device at {}: {message}", self.location) }
    }
}

/// Gives `buffer` to the device's receive queue, or keeps it as a spare if
/// the queue refuses it. Retries the spares first.
fn post_receive(state: &mut State, buffer: Box<[u8]>) {
    state.rx_spare.push(buffer);
    while let Some(mut buffer) = state.rx_spare.pop() {
        // SAFETY: the buffer moves into `rx_posted` right after (a `Box`
        // move leaves its heap memory in place) and is neither read nor
        // written until `receive_complete` gives it back for this token.
        match unsafe { state.device.receive_begin(&mut buffer) } {
            Ok(token) => {
                if let Err(buffer) = state.rx_posted.insert(token, buffer, RX_BUFFER_LEN) {
                    // The queue handed out a token it holds already: keep
                    // the memory alive (the device may write it) rather than
                    // free it.
                    log::error!("virtio-net: receive token {token} given out twice");
                    Box::leak(buffer);
                }
            }
            Err(e) => {
                log::warn!("virtio-net: the receive queue refused a buffer: {e}");
                state.rx_spare.push(buffer);
                return;
            }
        }
    }
}

/// Adds `waker` unless its task is in `list` already.
fn push_waker(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

impl NetworkDevice for VirtioNet {
    type Error = NetError;

    fn mac(&self) -> MacAddress {
        self.mac
    }

    /// Always [`MTU`].
    fn mtu(&self) -> usize {
        MTU
    }

    /// `rx_dropped` counts frames whose length the driver refused; frames
    /// the device dropped for want of a buffer are not seen.
    fn stats(&self) -> NetStats {
        self.stats.get()
    }

    /// Waits for the next frame (see the module documentation: one
    /// allocation and copy per frame). Cancel-safe. `Err` means the
    /// device's receive ring is inconsistent (it completed a buffer the
    /// driver did not give it); the device is unusable then.
    async fn receive(&self) -> Result<Bytes, NetError> {
        poll_fn(|cx| {
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            state.device.ack_interrupt();
            // Transmitters may all be waiting on a full pool while the
            // stack's input loop is the only task the interrupt wakes.
            self.reap_transmitted(state);
            if !state.rx_spare.is_empty() {
                if let Some(buffer) = state.rx_spare.pop() {
                    post_receive(state, buffer);
                }
            }
            match self.take_received(state) {
                Ok(Some(frame)) => Poll::Ready(Ok(frame)),
                Err(e) => Poll::Ready(Err(e)),
                Ok(None) => {
                    self.line.arm(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Fills a driver buffer and queues it without waiting for the device
    /// (see the module documentation). Waits while all [`TX_BUFFERS`] are
    /// in flight. `Ok`: the device has the frame. `Err` with
    /// [`ErrorKind::FrameTooLarge`] above [`MTU`] + 14 bytes; with
    /// [`ErrorKind::Io`] if the transmit ring refused the frame (counted in
    /// `tx_dropped`; `fill` has run then). Cancel-safe: `fill` runs only in
    /// the poll that queues the frame.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        if len > MAX_FRAME_LEN {
            return Err(NetError::FrameTooLarge { len, max: MAX_FRAME_LEN });
        }
        let mut fill = Some(fill);
        poll_fn(|cx| {
            if fill.is_none() {
                return Poll::Ready(Err(self.io_error(String::from("transmit polled after it completed"))));
            }
            let mut buffer = {
                let mut guard = self.state.borrow_mut();
                let state = &mut *guard;
                state.device.ack_interrupt();
                self.reap_transmitted(state);
                match state.tx_free.pop() {
                    Some(buffer) => buffer,
                    None => {
                        push_waker(&mut state.tx_waiters, cx.waker());
                        self.line.arm(cx.waker());
                        return Poll::Pending;
                    }
                }
            };
            let Some(fill) = fill.take() else {
                // Checked at the top of this poll; kept total all the same.
                self.state.borrow_mut().tx_free.push(buffer);
                return Poll::Ready(Err(self.io_error(String::from("transmit polled after it completed"))));
            };
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            let header_len = match state.device.fill_buffer_header(&mut buffer) {
                Ok(header_len) => header_len,
                Err(e) => {
                    state.tx_free.push(buffer);
                    return Poll::Ready(Err(self.io_error(format!("writing the virtio-net header: {e}"))));
                }
            };
            let total = header_len + len;
            // `fill` is the caller's code: the state is not borrowed while
            // it runs, so it may use this device (its MAC, its counters).
            drop(guard);
            let result = fill(&mut buffer[header_len..total]);
            let mut guard = self.state.borrow_mut();
            let state = &mut *guard;
            // SAFETY: the buffer moves into `tx_posted` right after (its heap
            // memory stays in place) and is not touched until
            // `transmit_complete` gives it back for this token.
            match unsafe { state.device.transmit_begin(&buffer[..total]) } {
                Ok(token) => {
                    if let Err(buffer) = state.tx_posted.insert(token, buffer, total) {
                        log::error!("virtio-net at {}: transmit token {token} given out twice", self.location);
                        Box::leak(buffer);
                    }
                    self.count(|s| {
                        s.tx_frames += 1;
                        s.tx_bytes += len as u64;
                    });
                    Poll::Ready(Ok(result))
                }
                Err(e) => {
                    state.tx_free.push(buffer);
                    self.count(|s| s.tx_dropped += 1);
                    Poll::Ready(Err(self.io_error(format!("the transmit queue refused a frame of {len} bytes: {e}"))))
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_buffers_are_found_by_token_once() {
        let mut posted = Posted::new(4);
        assert!(posted.insert(2, vec![7u8; 3].into_boxed_slice(), 2).is_ok());
        assert_eq!(posted.len(), 1);
        assert!(posted.insert(2, vec![0u8; 1].into_boxed_slice(), 1).is_err(), "a token held twice");
        assert!(posted.insert(4, vec![0u8; 1].into_boxed_slice(), 1).is_err(), "a token past the queue");
        let (buffer, len) = posted.take(2).unwrap();
        assert_eq!((&buffer[..], len), (&[7u8, 7, 7][..], 2));
        assert!(posted.take(2).is_none());
        assert!(posted.take(u16::MAX).is_none());
        assert_eq!(posted.len(), 0);
    }

    #[test]
    fn received_lengths_outside_an_ethernet_frame_are_refused() {
        assert_eq!(received(12, 60, RX_BUFFER_LEN), Received::Frame(12..72));
        assert_eq!(received(10, 1514, RX_BUFFER_LEN), Received::Frame(10..1524));
        assert_eq!(received(12, 13, RX_BUFFER_LEN), Received::Bad(13), "shorter than its Ethernet header");
        assert_eq!(received(12, 1515, RX_BUFFER_LEN), Received::Bad(1515), "longer than the MTU");
        assert_eq!(received(12, 1514, 1500), Received::Bad(1514), "past the buffer");
        assert_eq!(received(usize::MAX, 60, RX_BUFFER_LEN), Received::Bad(60), "overflowing");
    }
}
