//! netif's two rings (`io/netif.h`): the shared front ring
//! ([`crate::ring::FrontRing`]) with the transmit and receive entries, and
//! how each entry is written into and read from its slot. What the
//! entries mean, and every check of what netback wrote into them, is in
//! [`super::queues`].

use crate::abi::netif::{
    RxRequest, RxResponse, TxRequest, TxResponse, RX_RING_SIZE, RX_SLOT_SIZE, TX_RING_SIZE, TX_SLOT_SIZE,
};
use crate::page::SharedPage;
use crate::ring::{FrontRing, Slot};

/// The transmit ring: frames to send, and whether they were sent.
pub type TxRing = FrontRing<TxRequest, TxResponse>;

/// The receive ring: pages for the backend to fill, and the frames it put
/// in them.
pub type RxRing = FrontRing<RxRequest, RxResponse>;

// The ring types agree with the sizes netif's headers give.
const _: () = assert!(TxRing::SLOT_SIZE == TX_SLOT_SIZE && TxRing::SIZE == TX_RING_SIZE);
const _: () = assert!(RxRing::SLOT_SIZE == RX_SLOT_SIZE && RxRing::SIZE == RX_RING_SIZE);

impl Slot for TxRequest {
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u32>(offset, self.gref);
        page.write::<u16>(offset + 4, self.offset);
        page.write::<u16>(offset + 6, self.flags);
        page.write::<u16>(offset + 8, self.id);
        page.write::<u16>(offset + 10, self.size);
    }
    fn read_from(page: &SharedPage, offset: usize) -> TxRequest {
        TxRequest {
            gref: page.read(offset),
            offset: page.read(offset + 4),
            flags: page.read(offset + 6),
            id: page.read(offset + 8),
            size: page.read(offset + 10),
        }
    }
}

impl Slot for TxResponse {
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u16>(offset, self.id);
        page.write::<i16>(offset + 2, self.status);
    }
    fn read_from(page: &SharedPage, offset: usize) -> TxResponse {
        TxResponse { id: page.read(offset), status: page.read(offset + 2) }
    }
}

impl Slot for RxRequest {
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u16>(offset, self.id);
        page.write::<u16>(offset + 2, self.pad);
        page.write::<u32>(offset + 4, self.gref);
    }
    fn read_from(page: &SharedPage, offset: usize) -> RxRequest {
        RxRequest { id: page.read(offset), pad: page.read(offset + 2), gref: page.read(offset + 4) }
    }
}

impl Slot for RxResponse {
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u16>(offset, self.id);
        page.write::<u16>(offset + 2, self.offset);
        page.write::<u16>(offset + 4, self.flags);
        page.write::<i16>(offset + 6, self.status);
    }
    fn read_from(page: &SharedPage, offset: usize) -> RxResponse {
        RxResponse {
            id: page.read(offset),
            offset: page.read(offset + 2),
            flags: page.read(offset + 4),
            status: page.read(offset + 6),
        }
    }
}
