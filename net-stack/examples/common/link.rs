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

/// Bytes per receive arena of [`Wire`]: 43 full-sized frames.
const ARENA: usize = 64 * 1024;

/// One direction of our link: frames in flight, cut from a receive arena.
///
/// The sender emits each frame straight into the arena (the "device
/// buffer"), and the frame travels up as `Bytes`, what a device driver
/// hands the stack; the payload the receiver gets is a slice of it, not a
/// copy. Like a driver's page-fragment allocator, the arena is reused once
/// every frame cut from it has been released (`BytesMut::try_reclaim`),
/// else a new one is allocated: a receiver that holds frames pins their
/// arena.
#[derive(Default)]
pub struct Wire {
    pub queue: VecDeque<Bytes>,
    arena: BytesMut,
}

impl Wire {
    /// A zero-filled buffer of `len` bytes for the next frame.
    pub fn frame(&mut self, len: usize) -> &mut [u8] {
        if !self.arena.try_reclaim(len) {
            self.arena = BytesMut::with_capacity(ARENA.max(len));
        }
        self.arena.resize(len, 0);
        &mut self.arena[..]
    }

    /// Queues the frame just filled.
    pub fn send(&mut self) {
        let len = self.arena.len();
        self.queue.push_back(self.arena.split_to(len).freeze());
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
