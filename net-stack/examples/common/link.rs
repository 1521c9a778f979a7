//! The in-memory links of the TCP benchmarks (`tcp_bench`, `tcp_rr_bench`):
//! one for our stack, one for smoltcp, each doing what a device driver does
//! for its stack and nothing more.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

/// The IP MTU of both links.
pub const MTU: usize = 1500;

/// One direction of our link: frames in flight, each in a receive buffer
/// of its own.
///
/// The sender emits each frame straight into a receive buffer (the
/// "device buffer"), and the frame travels up as `Bytes`, what a device
/// driver hands the stack; the payload the receiver gets is a slice of
/// it, not a copy. Like a driver's receive ring, buffers of [`MTU`] bytes
/// are recycled oldest first once no frame cut from them is held
/// (`Bytes::try_into_mut`), else a new one is allocated: a receiver that
/// holds frames pins their buffers, and the pool grows to the most frames
/// in flight and held at once. A recycled buffer is written over as it
/// is, not zeroed first (a driver does not clear its ring either, and
/// smoltcp's link reuses its frames the same way).
#[derive(Default)]
pub struct Wire {
    pub queue: VecDeque<Bytes>,
    /// Receive buffers, oldest first, each held here and by a frame.
    pool: VecDeque<Bytes>,
    /// The buffer being filled and the length of its frame.
    filling: Option<(BytesMut, usize)>,
}

impl Wire {
    /// A buffer of `len` bytes (at most [`MTU`]) for the next frame, with
    /// unspecified contents.
    pub fn frame(&mut self, len: usize) -> &mut [u8] {
        let buffer = match self.pool.pop_front().map(Bytes::try_into_mut) {
            Some(Ok(buffer)) if buffer.len() >= len => buffer,
            other => {
                if let Some(Err(held)) = other {
                    self.pool.push_back(held);
                }
                // Split from a larger buffer, a `BytesMut` shares its
                // allocation by reference count, as does every `Bytes`
                // frozen from it: `try_into_mut` then hands it back whole
                // without allocating (from a plain vector it would give
                // the vector back, and the next frame's first slice would
                // allocate a shared header again).
                let mut whole = BytesMut::zeroed(MTU.max(len) + 1);
                whole.split_to(MTU.max(len))
            }
        };
        let (buffer, _) = self.filling.insert((buffer, len));
        &mut buffer[..len]
    }

    /// Queues the frame just filled.
    pub fn send(&mut self) {
        let (buffer, len) = self.filling.take().expect("Wire::send follows Wire::frame");
        let buffer = buffer.freeze();
        self.queue.push_back(buffer.slice(..len));
        self.pool.push_back(buffer);
    }
}

/// The IPv4 address of `addr` (the benchmarks use no other kind).
pub fn ipv4(addr: SocketAddr) -> Ipv4Addr {
    match addr.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => unreachable!("the bench uses IPv4 addresses only"),
    }
}

/// One direction of smoltcp's link: a queue of frames.
pub type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of smoltcp's two-queue link; frame buffers are recycled through
/// a shared pool, so the link allocates nothing once warm. `on_transmit`
/// runs once per frame sent (a counter, or nothing).
pub struct QueueDevice {
    pub rx: Queue,
    pub tx: Queue,
    pub pool: Queue,
    pub on_transmit: fn(),
}

pub struct Rx {
    frame: Vec<u8>,
    pool: Queue,
}

pub struct Tx {
    tx: Queue,
    pool: Queue,
    on_transmit: fn(),
}

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(&self.frame);
        self.pool.borrow_mut().push_back(self.frame);
        r
    }
}

impl smoltcp::phy::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = self.pool.borrow_mut().pop_front().unwrap_or_else(|| Vec::with_capacity(MTU));
        frame.resize(len, 0);
        let r = f(&mut frame);
        self.tx.borrow_mut().push_back(frame);
        (self.on_transmit)();
        r
    }
}

impl QueueDevice {
    fn tx_token(&self) -> Tx {
        Tx { tx: self.tx.clone(), pool: self.pool.clone(), on_transmit: self.on_transmit }
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx, Tx)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        Some((Rx { frame, pool: self.pool.clone() }, self.tx_token()))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx> {
        Some(self.tx_token())
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = MTU;
        // Checksums: the default computes and verifies all of them.
        caps
    }
}
