//! The front half of a Xen shared ring (`io/ring.h`), sans-IO: requests
//! written into a page shared with the backend, responses read back, and
//! the notification checks of `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` and
//! `RING_FINAL_CHECK_FOR_RESPONSES`. Nothing here sends an event or
//! grants a page; the caller does, as the return values say.
//!
//! The page is written by another domain at any time, so every index read
//! from it is checked before use: `rsp_prod` may not run ahead of the
//! requests we made ([`RingOverrun`]), and slot offsets are always taken
//! modulo the ring's size, so no value the backend writes can make us
//! access memory outside the page. Each slot is read once into a local
//! copy, which the caller then validates field by field.

use core::sync::atomic::{fence, Ordering};

use crate::abi::netif::{
    ring_size, RxRequest, RxResponse, TxRequest, TxResponse, SRING_ENTRIES, SRING_REQ_EVENT, SRING_REQ_PROD,
    SRING_RSP_EVENT, SRING_RSP_PROD,
};
use crate::page::SharedPage;

/// A ring entry: how it is written into and read from its slot.
pub trait Slot: Copy {
    /// Writes the entry at `offset` of `page`.
    fn write_to(&self, page: &SharedPage, offset: usize);
    /// Reads the entry at `offset` of `page`, each field once.
    fn read_from(page: &SharedPage, offset: usize) -> Self;
}

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

/// The backend published more responses than there are requests it has
/// not answered: the ring's contents cannot be trusted any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOverrun {
    /// The `rsp_prod` the backend wrote.
    pub rsp_prod: u32,
    /// How far we had consumed responses.
    pub rsp_cons: u32,
    /// Requests made and not yet answered.
    pub outstanding: u32,
}

impl core::fmt::Display for RingOverrun {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the backend set rsp_prod to {} with responses consumed up to {} and only {} requests outstanding",
            self.rsp_prod, self.rsp_cons, self.outstanding
        )
    }
}

/// The frontend's side of a shared ring on one page: its private request
/// producer and response consumer indices (free-running `u32` counters, as
/// in `io/ring.h`).
#[derive(Debug)]
pub struct FrontRing {
    page: SharedPage,
    slot_size: usize,
    size: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl FrontRing {
    /// Initialises the shared ring on `page` (`SHARED_RING_INIT` and
    /// `FRONT_RING_INIT`) for entries of `slot_size` bytes. The page is
    /// zeroed first.
    ///
    /// `slot_size` must be positive and at most a page minus the header,
    /// which [`ring_size`] checks at compile time for the rings used.
    pub fn new(page: SharedPage, slot_size: usize) -> FrontRing {
        page.zero();
        page.write::<u32>(SRING_REQ_EVENT, 1);
        page.write::<u32>(SRING_RSP_EVENT, 1);
        FrontRing { page, slot_size, size: ring_size(slot_size), req_prod_pvt: 0, rsp_cons: 0 }
    }

    /// The page the ring lives on (to grant it to the backend).
    pub fn page(&self) -> &SharedPage {
        &self.page
    }

    /// Entries in the ring (a power of two).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Requests made (pushed or not) and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size.saturating_sub(self.outstanding())
    }

    /// The index the next request goes to.
    pub fn next_request_index(&self) -> u32 {
        self.req_prod_pvt
    }

    fn offset(&self, index: u32) -> usize {
        // The mask keeps every offset inside the page whatever the index:
        // size * slot_size <= PAGE_SIZE - SRING_ENTRIES by construction.
        SRING_ENTRIES + (index & (self.size - 1)) as usize * self.slot_size
    }

    /// Writes `request` into the next free slot, not yet visible to the
    /// backend (see [`FrontRing::push_requests`]). `false` if the ring is
    /// full.
    pub fn put_request<S: Slot>(&mut self, request: S) -> bool {
        if self.free_requests() == 0 {
            return false;
        }
        request.write_to(&self.page, self.offset(self.req_prod_pvt));
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes the requests written so far (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`);
    /// returns whether the backend asked to be notified of them.
    pub fn push_requests(&mut self) -> bool {
        let old = self.page.read::<u32>(SRING_REQ_PROD);
        let new = self.req_prod_pvt;
        // The backend must see the entries before the index that covers them.
        fence(Ordering::Release);
        self.page.write::<u32>(SRING_REQ_PROD, new);
        // The index must be visible before we read `req_event`, else a
        // backend going to sleep and we both miss the notification.
        fence(Ordering::SeqCst);
        let event = self.page.read::<u32>(SRING_REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses published and not consumed yet, checked against the
    /// requests outstanding.
    pub fn unconsumed_responses(&self) -> Result<u32, RingOverrun> {
        let rsp_prod = self.page.read::<u32>(SRING_RSP_PROD);
        // Entries are read only after the index that covers them.
        fence(Ordering::Acquire);
        let unconsumed = rsp_prod.wrapping_sub(self.rsp_cons);
        if unconsumed > self.outstanding() {
            return Err(RingOverrun { rsp_prod, rsp_cons: self.rsp_cons, outstanding: self.outstanding() });
        }
        Ok(unconsumed)
    }

    /// Takes the next response, if one was published, with the ring index
    /// of its slot (the index of the request it answers, on rings whose
    /// backend answers in order).
    pub fn take_response<S: Slot>(&mut self) -> Result<Option<(u32, S)>, RingOverrun> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let index = self.rsp_cons;
        let response = S::read_from(&self.page, self.offset(index));
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some((index, response)))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: whether responses are waiting;
    /// if none are, first asks the backend to notify us of the next one,
    /// then checks again (so one published in between is not missed).
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingOverrun> {
        if self.unconsumed_responses()? > 0 {
            return Ok(true);
        }
        self.page.write::<u32>(SRING_RSP_EVENT, self.rsp_cons.wrapping_add(1));
        fence(Ordering::SeqCst);
        Ok(self.unconsumed_responses()? > 0)
    }
}

/// A simulated backend over the same page, for the host tests of the ring
/// and of the queues above it.
#[cfg(test)]
pub(crate) mod sim {
    use super::*;

    /// The backend's half: `BACK_RING` with `req_cons` and
    /// `rsp_prod_pvt`.
    pub(crate) struct BackRing {
        pub(crate) page: SharedPage,
        slot_size: usize,
        size: u32,
        pub(crate) req_cons: u32,
        pub(crate) rsp_prod_pvt: u32,
    }

    impl BackRing {
        /// The backend's view of `front`'s page.
        pub(crate) fn attach(front: &FrontRing) -> BackRing {
            // SAFETY: (host test) the frame is the address of a live heap
            // page owned by `front`, which outlives this handle in every
            // test; a `from_frame` handle never frees it.
            let page = unsafe { SharedPage::from_frame(front.page().frame()) }.unwrap();
            BackRing { page, slot_size: front.slot_size, size: front.size, req_cons: 0, rsp_prod_pvt: 0 }
        }

        fn offset(&self, index: u32) -> usize {
            SRING_ENTRIES + (index & (self.size - 1)) as usize * self.slot_size
        }

        /// Takes the next published request.
        pub(crate) fn take_request<S: Slot>(&mut self) -> Option<S> {
            let prod = self.page.read::<u32>(SRING_REQ_PROD);
            if prod == self.req_cons {
                return None;
            }
            let request = S::read_from(&self.page, self.offset(self.req_cons));
            self.req_cons = self.req_cons.wrapping_add(1);
            Some(request)
        }

        /// Writes a response into the next slot.
        pub(crate) fn put_response<S: Slot>(&mut self, response: S) {
            response.write_to(&self.page, self.offset(self.rsp_prod_pvt));
            self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        }

        /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`.
        pub(crate) fn push_responses(&mut self) -> bool {
            let old = self.page.read::<u32>(SRING_RSP_PROD);
            let new = self.rsp_prod_pvt;
            self.page.write::<u32>(SRING_RSP_PROD, new);
            let event = self.page.read::<u32>(SRING_RSP_EVENT);
            new.wrapping_sub(event) < new.wrapping_sub(old)
        }

        /// `RING_FINAL_CHECK_FOR_REQUESTS`'s arming half: asks for a
        /// notification of the next request.
        pub(crate) fn want_requests(&mut self) {
            self.page.write::<u32>(SRING_REQ_EVENT, self.req_cons.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::BackRing;
    use super::*;
    use crate::abi::netif::{RX_SLOT_SIZE, TX_SLOT_SIZE};

    fn tx_ring() -> FrontRing {
        FrontRing::new(SharedPage::alloc().unwrap(), TX_SLOT_SIZE)
    }

    fn request(id: u16) -> TxRequest {
        TxRequest { gref: 100 + u32::from(id), offset: 0, flags: 0, id, size: 60 }
    }

    #[test]
    fn requests_and_responses_go_round_many_times_across_the_index_wrap() {
        let mut front = tx_ring();
        let mut back = BackRing::attach(&front);
        // Start near u32::MAX so the free-running indices wrap.
        let start = u32::MAX - 300;
        front.req_prod_pvt = start;
        front.rsp_cons = start;
        front.page().write::<u32>(SRING_REQ_PROD, start);
        front.page().write::<u32>(SRING_RSP_PROD, start);
        (back.req_cons, back.rsp_prod_pvt) = (start, start);
        let mut next_id = 0u16;
        let mut expected = 0u16;
        for round in 0..40 {
            let batch = 1 + round * 7 % 200;
            for _ in 0..batch {
                assert!(front.put_request(request(next_id)));
                next_id = next_id.wrapping_add(1);
            }
            front.push_requests();
            while let Some(req) = back.take_request::<TxRequest>() {
                assert_eq!(req.gref, 100 + u32::from(req.id));
                back.put_response(TxResponse { id: req.id, status: 0 });
            }
            back.push_responses();
            while let Some((_, rsp)) = front.take_response::<TxResponse>().unwrap() {
                assert_eq!(rsp.id, expected);
                expected = expected.wrapping_add(1);
            }
        }
        assert_eq!(expected, next_id);
        assert!(front.req_prod_pvt < start, "the indices wrapped");
    }

    #[test]
    fn a_full_ring_refuses_requests_until_responses_come_back() {
        let mut front = FrontRing::new(SharedPage::alloc().unwrap(), RX_SLOT_SIZE);
        let mut back = BackRing::attach(&front);
        for id in 0..256 {
            assert!(front.put_request(RxRequest { id, pad: 0, gref: 1 }));
        }
        assert!(!front.put_request(RxRequest { id: 999, pad: 0, gref: 1 }));
        assert_eq!(front.free_requests(), 0);
        front.push_requests();
        let req: RxRequest = back.take_request().unwrap();
        back.put_response(RxResponse { id: req.id, offset: 0, flags: 0, status: 60 });
        back.push_responses();
        assert_eq!(front.take_response::<RxResponse>().unwrap().map(|(i, r)| (i, r.id)), Some((0, 0)));
        assert!(front.put_request(RxRequest { id: 256, pad: 0, gref: 1 }));
    }

    #[test]
    fn push_notifies_only_when_the_backend_asked_for_it() {
        let mut front = tx_ring();
        let mut back = BackRing::attach(&front);
        // req_event starts at 1: the first request is announced.
        front.put_request(request(0));
        assert!(front.push_requests());
        // The backend has not re-armed: more requests need no event.
        front.put_request(request(1));
        assert!(!front.push_requests());
        back.take_request::<TxRequest>();
        back.take_request::<TxRequest>();
        back.want_requests();
        front.put_request(request(2));
        front.put_request(request(3));
        assert!(front.push_requests());
    }

    #[test]
    fn final_check_arms_rsp_event_and_sees_a_response_published_since() {
        let mut front = tx_ring();
        let mut back = BackRing::attach(&front);
        front.put_request(request(0));
        front.put_request(request(1));
        front.push_requests();
        assert!(!front.final_check_for_responses().unwrap());
        assert_eq!(front.page().read::<u32>(SRING_RSP_EVENT), 1);
        back.take_request::<TxRequest>();
        back.put_response(TxResponse { id: 0, status: 0 });
        // rsp_event was armed at 1: publishing response 0 notifies.
        assert!(back.push_responses());
        assert!(front.final_check_for_responses().unwrap());
        front.take_response::<TxResponse>().unwrap();
        assert!(!front.final_check_for_responses().unwrap());
        assert_eq!(front.page().read::<u32>(SRING_RSP_EVENT), 2);
    }

    #[test]
    fn an_rsp_prod_beyond_the_outstanding_requests_is_an_overrun_not_a_read() {
        let mut front = tx_ring();
        front.put_request(request(0));
        front.push_requests();
        for bogus in [2u32, 257, u32::MAX, 0x8000_0000] {
            front.page().write::<u32>(SRING_RSP_PROD, bogus);
            let err = front.take_response::<TxResponse>().unwrap_err();
            assert_eq!(err, RingOverrun { rsp_prod: bogus, rsp_cons: 0, outstanding: 1 });
            assert!(front.final_check_for_responses().is_err());
        }
        front.page().write::<u32>(SRING_RSP_PROD, 1);
        assert!(front.take_response::<TxResponse>().unwrap().is_some());
    }

    #[test]
    fn garbage_indices_in_the_header_never_reach_outside_the_page() {
        let mut front = tx_ring();
        // Whatever the backend writes into req_prod or req_event, our own
        // indices choose the slots; only the notify answer changes.
        for value in [0u32, 1, 255, 256, 0xffff_ffff, 0x1234_5678] {
            front.page().write::<u32>(SRING_REQ_PROD, value);
            front.page().write::<u32>(SRING_REQ_EVENT, value);
            assert!(front.put_request(request(1)));
            let _ = front.push_requests();
            front.page().write::<u32>(SRING_RSP_PROD, front.rsp_cons.wrapping_add(1));
            assert!(front.take_response::<TxResponse>().unwrap().is_some());
        }
    }
}
