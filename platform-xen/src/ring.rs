//! The front half of a Xen shared ring (`io/ring.h`), sans-IO, for every
//! PV front-end driver: requests written into a page shared with the
//! backend, responses read back, and the notification checks of
//! `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` and
//! `RING_FINAL_CHECK_FOR_RESPONSES`. Nothing here sends an event or grants
//! a page; the caller does, as the return values say, which lets the host
//! tests drive the ring against a simulated backend on the same page. What
//! the entries mean (ids, operations, statuses) is the driver's business:
//! [`FrontRing`] only moves [`Slot`]s.
//!
//! # Layout
//!
//! The page starts with the header of `struct *_sring`: `req_prod`,
//! `req_event`, `rsp_prod`, `rsp_event` (`u32` each) and 48 bytes of
//! padding; the slots follow from byte 64. A slot holds a request or its
//! response, so its size is the larger of the two; the ring has the
//! largest power of two of slots that fits in the page
//! (`__CONST_RING_SIZE`). The four indices are free-running `u32`
//! counters; an index names slot `index mod size`.
//!
//! # The index protocol
//!
//! - Requests: slots are filled at the private producer index
//!   (`req_prod_pvt`), then `req_prod` is published after a write barrier.
//!   The backend asked to be notified once `req_prod` passes `req_event`;
//!   [`FrontRing::push_requests`] says whether this publication did.
//! - Responses: everything between our consumer index (`rsp_cons`) and
//!   `rsp_prod` is read after a read barrier. When nothing is left,
//!   [`FrontRing::final_check_for_responses`] sets `rsp_event` one past
//!   what we consumed and reads `rsp_prod` again after a full barrier, so
//!   a response published in between is not left without a notification.
//!
//! # What the backend may write, and what we do about it
//!
//! The backend writes the page at any time. `rsp_prod` is checked before
//! anything is read: claiming more responses than requests we published
//! and it has not answered (in particular, running more than the ring's
//! size ahead of us) is a [`RingOverrun`], which breaks the ring for good:
//! every later call fails with the same error and no request is accepted,
//! since nothing the backend says can be trusted any more. Slot offsets
//! always come from our own indices masked to the ring, so no value the
//! backend writes makes us touch memory outside the page. `req_prod` on
//! the page is never read back (we keep our own copy), and `req_event`
//! only decides whether we notify: a wrong value costs a spurious or a
//! missed notification, which is the backend's loss. Each response slot is
//! read once into a local copy, which the driver then validates field by
//! field.
//!
//! # Bounds
//!
//! At most [`FrontRing::SIZE`] requests are in flight; the ring allocates
//! nothing.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{fence, Ordering};

use crate::abi::netif::{ring_size, SRING_ENTRIES, SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD};
use crate::page::SharedPage;

/// A ring entry (a request or a response of some protocol): how it is
/// written into and read from its slot.
///
/// The implementing type is the entry's `#[repr(C)]` struct from the
/// public headers, whose Rust size is its C size: the ring sizes its slots
/// from it. `write_to` and `read_from` touch only the entry's own bytes.
pub trait Slot: Copy {
    /// Writes the entry at `offset` of `page`.
    fn write_to(&self, page: &SharedPage, offset: usize);
    /// Reads the entry at `offset` of `page`, each field once.
    fn read_from(page: &SharedPage, offset: usize) -> Self;
}

/// The backend published more responses than there are requests it has
/// not answered: the ring's contents cannot be trusted any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOverrun {
    /// The `rsp_prod` the backend wrote.
    pub rsp_prod: u32,
    /// How far we had consumed responses.
    pub rsp_cons: u32,
    /// Requests published and not yet answered.
    pub outstanding: u32,
}

impl fmt::Display for RingOverrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rsp_prod {} is {} past our consumer index {}, but only {} requests are outstanding",
            self.rsp_prod,
            self.rsp_prod.wrapping_sub(self.rsp_cons),
            self.rsp_cons,
            self.outstanding
        )
    }
}

impl core::error::Error for RingOverrun {}

/// The frontend's side of a shared ring on one page, for requests `Req`
/// answered by responses `Rsp` (module documentation).
#[derive(Debug)]
pub struct FrontRing<Req, Rsp> {
    page: SharedPage,
    /// Requests written, published or not.
    req_prod_pvt: u32,
    /// Requests published (`req_prod` as we last wrote it).
    req_prod: u32,
    /// Responses consumed.
    rsp_cons: u32,
    /// The overrun that broke the ring, for good.
    broken: Option<RingOverrun>,
    entries: PhantomData<fn(Req) -> Rsp>,
}

impl<Req: Slot, Rsp: Slot> FrontRing<Req, Rsp> {
    /// Bytes of one slot: the larger of a request and a response (the
    /// size of the header's `union *_sring_entry`).
    pub const SLOT_SIZE: usize = {
        let (req, rsp) = (core::mem::size_of::<Req>(), core::mem::size_of::<Rsp>());
        if req > rsp {
            req
        } else {
            rsp
        }
    };

    /// Slots in the ring: the largest power of two that fits in the page
    /// after the header.
    pub const SIZE: u32 = {
        let size = ring_size(Self::SLOT_SIZE);
        // Evaluated wherever the ring is used: a ring of entries too large
        // for a page does not compile.
        assert!(size > 0, "a ring entry larger than a page minus the header");
        size
    };

    /// Initialises the shared ring on `page` (`SHARED_RING_INIT` and
    /// `FRONT_RING_INIT`): the page zeroed, all indices 0, both event
    /// indices 1 (the first request and the first response notify).
    pub fn new(page: SharedPage) -> Self {
        Self::init(page, 0)
    }

    /// [`FrontRing::new`] with every index starting at `index` (the host
    /// tests start near `u32::MAX` to cross the wrap).
    #[cfg(test)]
    pub(crate) fn starting_at(page: SharedPage, index: u32) -> Self {
        Self::init(page, index)
    }

    fn init(page: SharedPage, index: u32) -> Self {
        page.zero();
        page.write::<u32>(SRING_REQ_PROD, index);
        page.write::<u32>(SRING_RSP_PROD, index);
        page.write::<u32>(SRING_REQ_EVENT, index.wrapping_add(1));
        page.write::<u32>(SRING_RSP_EVENT, index.wrapping_add(1));
        FrontRing { page, req_prod_pvt: index, req_prod: index, rsp_cons: index, broken: None, entries: PhantomData }
    }

    /// The page the ring lives on (to grant it to the backend).
    pub fn page(&self) -> &SharedPage {
        &self.page
    }

    /// Slots in the ring, [`FrontRing::SIZE`] (a power of two).
    pub fn size(&self) -> u32 {
        Self::SIZE
    }

    /// The slot (`0..size`) of ring index `index`.
    pub fn slot_of(&self, index: u32) -> usize {
        (index & (Self::SIZE - 1)) as usize
    }

    /// Requests written (published or not) and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`); none once the
    /// ring is broken.
    pub fn free_requests(&self) -> u32 {
        if self.broken.is_some() {
            return 0;
        }
        Self::SIZE.saturating_sub(self.in_flight())
    }

    /// The ring index the next request goes to.
    pub fn next_request_index(&self) -> u32 {
        self.req_prod_pvt
    }

    /// The overrun that broke the ring, if one did.
    pub fn broken(&self) -> Option<RingOverrun> {
        self.broken
    }

    fn offset(&self, index: u32) -> usize {
        // SIZE * SLOT_SIZE <= PAGE_SIZE - SRING_ENTRIES by construction, so
        // the mask keeps every offset inside the page whatever the index.
        SRING_ENTRIES + self.slot_of(index) * Self::SLOT_SIZE
    }

    /// Writes `request` into the next free slot, not yet visible to the
    /// backend (see [`FrontRing::push_requests`]). `false` if the ring is
    /// full or broken.
    pub fn put_request(&mut self, request: Req) -> bool {
        if self.free_requests() == 0 {
            return false;
        }
        request.write_to(&self.page, self.offset(self.req_prod_pvt));
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes the requests written so far
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`); returns whether the backend
    /// asked to be notified of them. Nothing to publish (or a broken ring)
    /// needs no notification.
    pub fn push_requests(&mut self) -> bool {
        let (old, new) = (self.req_prod, self.req_prod_pvt);
        if old == new || self.broken.is_some() {
            return false;
        }
        // The backend must see the entries before the index that covers them.
        fence(Ordering::Release);
        self.page.write::<u32>(SRING_REQ_PROD, new);
        self.req_prod = new;
        // The index must be visible before we read `req_event` (store-load
        // order: a full fence), else a backend going to sleep and we both
        // miss the notification.
        fence(Ordering::SeqCst);
        let event = self.page.read::<u32>(SRING_REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Responses published and not consumed yet, checked against the
    /// requests outstanding; an overrun breaks the ring.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingOverrun> {
        if let Some(overrun) = self.broken {
            return Err(overrun);
        }
        let rsp_prod = self.page.read::<u32>(SRING_RSP_PROD);
        // Entries are read only after the index that covers them.
        fence(Ordering::Acquire);
        let unconsumed = rsp_prod.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_prod.wrapping_sub(self.rsp_cons);
        if unconsumed > outstanding {
            let overrun = RingOverrun { rsp_prod, rsp_cons: self.rsp_cons, outstanding };
            self.broken = Some(overrun);
            return Err(overrun);
        }
        Ok(unconsumed)
    }

    /// Takes the next response, if one was published, with the ring index
    /// of its slot (the index of the request it answers, on rings whose
    /// backend answers in order).
    pub fn take_response(&mut self) -> Result<Option<(u32, Rsp)>, RingOverrun> {
        if self.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let index = self.rsp_cons;
        let response = Rsp::read_from(&self.page, self.offset(index));
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some((index, response)))
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: whether responses are waiting; if
    /// none are, first asks the backend to notify us of the next one, then
    /// checks again (so one published in between is not missed). `false`
    /// means a notification will come for the next response.
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
/// and of the drivers above it.
#[cfg(test)]
pub(crate) mod sim {
    use alloc::vec::Vec;

    use super::*;

    /// The backend's half (`BACK_RING`): `req_cons` and `rsp_prod_pvt`.
    pub(crate) struct BackRing<Req, Rsp> {
        pub(crate) page: SharedPage,
        pub(crate) req_cons: u32,
        pub(crate) rsp_prod_pvt: u32,
        entries: PhantomData<fn(Req) -> Rsp>,
    }

    impl<Req: Slot, Rsp: Slot> BackRing<Req, Rsp> {
        /// The backend's view of `front`'s page, starting where the
        /// frontend's indices start.
        pub(crate) fn attach(front: &FrontRing<Req, Rsp>) -> Self {
            // SAFETY: (host test) the frame is the address of a live heap
            // page owned by `front`, which outlives this handle in every
            // test (declared first, dropped last); a `from_frame` handle
            // never frees it.
            let page = unsafe { SharedPage::from_frame(front.page().frame()) }.unwrap();
            let start = page.read::<u32>(SRING_REQ_PROD);
            BackRing { page, req_cons: start, rsp_prod_pvt: start, entries: PhantomData }
        }

        fn offset(&self, index: u32) -> usize {
            SRING_ENTRIES + (index & (FrontRing::<Req, Rsp>::SIZE - 1)) as usize * FrontRing::<Req, Rsp>::SLOT_SIZE
        }

        /// Takes the next published request.
        pub(crate) fn take_request(&mut self) -> Option<Req> {
            let prod = self.page.read::<u32>(SRING_REQ_PROD);
            if prod == self.req_cons {
                return None;
            }
            let request = Req::read_from(&self.page, self.offset(self.req_cons));
            self.req_cons = self.req_cons.wrapping_add(1);
            Some(request)
        }

        /// Takes every published request, then asks to be notified of the
        /// next (`RING_FINAL_CHECK_FOR_REQUESTS`'s arming half).
        pub(crate) fn take_requests(&mut self) -> Vec<Req> {
            let requests = core::iter::from_fn(|| self.take_request()).collect();
            self.want_requests();
            requests
        }

        /// Asks for a notification of the next request (sets `req_event`).
        pub(crate) fn want_requests(&mut self) {
            self.page.write::<u32>(SRING_REQ_EVENT, self.req_cons.wrapping_add(1));
        }

        /// Writes a response into the next slot (not yet published).
        pub(crate) fn put_response(&mut self, response: Rsp) {
            response.write_to(&self.page, self.offset(self.rsp_prod_pvt));
            self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        }

        /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: publishes the responses;
        /// `true` if the frontend asked to be notified.
        pub(crate) fn push_responses(&mut self) -> bool {
            let old = self.page.read::<u32>(SRING_RSP_PROD);
            let new = self.rsp_prod_pvt;
            self.page.write::<u32>(SRING_RSP_PROD, new);
            let event = self.page.read::<u32>(SRING_RSP_EVENT);
            new.wrapping_sub(event) < new.wrapping_sub(old)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::BackRing;
    use super::*;
    use crate::abi::PAGE_SIZE;

    /// A test entry of 8 bytes: a tag and a value.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    struct Small {
        tag: u32,
        value: u32,
    }

    impl Slot for Small {
        fn write_to(&self, page: &SharedPage, offset: usize) {
            page.write::<u32>(offset, self.tag);
            page.write::<u32>(offset + 4, self.value);
        }
        fn read_from(page: &SharedPage, offset: usize) -> Small {
            Small { tag: page.read(offset), value: page.read(offset + 4) }
        }
    }

    /// A test entry of 24 bytes, larger than [`Small`]: the slot size is
    /// the larger of request and response.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    struct Large {
        tag: u64,
        words: [u64; 2],
    }

    impl Slot for Large {
        fn write_to(&self, page: &SharedPage, offset: usize) {
            page.write::<u64>(offset, self.tag);
            page.write::<u64>(offset + 8, self.words[0]);
            page.write::<u64>(offset + 16, self.words[1]);
        }
        fn read_from(page: &SharedPage, offset: usize) -> Large {
            Large { tag: page.read(offset), words: [page.read(offset + 8), page.read(offset + 16)] }
        }
    }

    /// Large requests answered by small responses.
    type Ring = FrontRing<Large, Small>;

    fn ring() -> Ring {
        Ring::new(SharedPage::alloc().unwrap())
    }

    fn request(tag: u64) -> Large {
        Large { tag, words: [tag.wrapping_mul(3), !tag] }
    }

    #[test]
    fn slots_are_the_larger_entry_and_the_ring_the_largest_power_of_two_that_fits() {
        // (4096 - 64) / 24 = 168 slots fit; 128 are used.
        assert_eq!((Ring::SLOT_SIZE, Ring::SIZE), (24, 128));
        assert_eq!((FrontRing::<Small, Small>::SLOT_SIZE, FrontRing::<Small, Small>::SIZE), (8, 256));
        let ring = ring();
        // The last slot ends inside the page; index and index + SIZE share
        // a slot.
        assert!(ring.offset(Ring::SIZE - 1) + Ring::SLOT_SIZE <= PAGE_SIZE);
        assert_eq!(ring.offset(u32::MAX), ring.offset(Ring::SIZE - 1));
        assert_eq!((ring.slot_of(Ring::SIZE + 3), ring.size()), (3, 128));
    }

    #[test]
    fn a_request_is_invisible_until_pushed_and_the_first_push_notifies() {
        let front = &mut ring();
        let mut back = BackRing::attach(front);
        assert!(front.put_request(request(7)));
        assert_eq!(back.take_request(), None, "not published yet");
        assert!(front.push_requests(), "req_event starts at 1: the first request notifies");
        assert_eq!(back.take_request(), Some(request(7)));
        assert!(!front.push_requests(), "nothing new to publish");
    }

    #[test]
    fn push_notifies_only_when_the_backend_asked_for_it() {
        let front = &mut ring();
        let mut back = BackRing::attach(front);
        front.put_request(request(0));
        assert!(front.push_requests());
        // The backend has not consumed nor re-armed: req_event is still 1.
        front.put_request(request(1));
        assert!(!front.push_requests());
        assert_eq!(back.take_requests().len(), 2);
        // Re-armed at 3: a batch of two that passes it notifies once.
        front.put_request(request(2));
        front.put_request(request(3));
        assert!(front.push_requests());
        // The backend consumed but asked for nothing past 3.
        back.take_request();
        back.take_request();
        front.put_request(request(4));
        assert!(!front.push_requests());
    }

    #[test]
    fn final_check_arms_rsp_event_and_sees_a_response_published_since() {
        let front = &mut ring();
        let mut back = BackRing::attach(front);
        front.put_request(request(0));
        front.put_request(request(1));
        front.push_requests();
        assert!(!front.final_check_for_responses().unwrap());
        assert_eq!(front.page().read::<u32>(SRING_RSP_EVENT), 1);
        back.take_requests();
        back.put_response(Small { tag: 0, value: 1 });
        assert!(back.push_responses(), "rsp_event was armed at 1: response 0 notifies");
        back.put_response(Small { tag: 1, value: 1 });
        assert!(!back.push_responses(), "the frontend has not re-armed");
        assert!(front.final_check_for_responses().unwrap());
        assert_eq!(front.take_response().unwrap(), Some((0, Small { tag: 0, value: 1 })));
        assert_eq!(front.take_response().unwrap(), Some((1, Small { tag: 1, value: 1 })));
        assert_eq!(front.take_response().unwrap(), None);
        assert!(!front.final_check_for_responses().unwrap());
        assert_eq!(front.page().read::<u32>(SRING_RSP_EVENT), 3);
        assert_eq!(front.in_flight(), 0);
    }

    /// `total` requests through a ring whose indices start at `start`, up
    /// to `depth` in flight, each response carrying its request's tag.
    fn churn(start: u32, total: u64, depth: u32) {
        let front = &mut Ring::starting_at(SharedPage::alloc().unwrap(), start);
        let mut back = BackRing::attach(front);
        let (mut sent, mut received) = (0u64, 0u64);
        while received < total {
            while sent < total && front.in_flight() < depth {
                assert_eq!(front.next_request_index(), start.wrapping_add(sent as u32));
                assert!(front.put_request(request(sent)));
                sent += 1;
            }
            front.push_requests();
            for req in back.take_requests() {
                assert_eq!(req, request(req.tag), "the request's slot was overwritten");
                back.put_response(Small { tag: req.tag as u32, value: req.words[0] as u32 });
            }
            back.push_responses();
            while let Some((index, rsp)) = front.take_response().unwrap() {
                assert_eq!((index, u64::from(rsp.tag)), (start.wrapping_add(received as u32), received));
                received += 1;
            }
        }
        assert_eq!((sent, front.in_flight(), front.free_requests()), (total, 0, Ring::SIZE));
    }

    #[test]
    fn indices_wrap_around_the_slots_and_the_u32_counters() {
        churn(0, 1000, Ring::SIZE);
        churn(0, 300, 7);
        churn(u32::MAX - 40, 600, Ring::SIZE);
        churn(u32::MAX - 3, 100, 5);
        churn(u32::MAX, 10, 1);
    }

    #[test]
    fn a_full_ring_refuses_requests_until_a_response_comes_back() {
        let front = &mut ring();
        let mut back = BackRing::attach(front);
        for tag in 0..u64::from(Ring::SIZE) {
            assert!(front.put_request(request(tag)));
        }
        assert!(!front.put_request(request(999)));
        assert_eq!(front.free_requests(), 0);
        front.push_requests();
        let req = back.take_request().unwrap();
        back.put_response(Small { tag: req.tag as u32, value: 0 });
        back.push_responses();
        assert_eq!(front.take_response().unwrap().map(|(i, r)| (i, r.tag)), Some((0, 0)));
        assert!(front.put_request(request(128)));
        // The new request went into slot 0, which the backend had answered.
        front.push_requests();
        let reqs = back.take_requests();
        assert_eq!((reqs.len(), reqs.last().map(|r| r.tag)), (128, Some(128)));
    }

    #[test]
    fn an_rsp_prod_past_the_outstanding_requests_breaks_the_ring_for_good() {
        // Ahead of one request, a whole ring ahead, "behind" (a huge wrapped
        // distance), and past a request written but not yet published.
        for (published, unpublished, bogus) in [(1, 0, 2u32), (1, 0, 129), (1, 0, u32::MAX), (0, 1, 1), (2, 1, 3)] {
            let front = &mut ring();
            for tag in 0..published + unpublished {
                front.put_request(request(tag));
                if tag + 1 == published {
                    front.push_requests();
                }
            }
            front.page().write::<u32>(SRING_RSP_PROD, bogus);
            let overrun = RingOverrun { rsp_prod: bogus, rsp_cons: 0, outstanding: published as u32 };
            assert_eq!(front.take_response(), Err(overrun));
            // Broken for good: a sane rsp_prod does not mend it.
            front.page().write::<u32>(SRING_RSP_PROD, 0);
            assert_eq!(front.final_check_for_responses(), Err(overrun));
            assert_eq!(front.unconsumed_responses(), Err(overrun));
            assert_eq!((front.broken(), front.free_requests()), (Some(overrun), 0));
            assert!(!front.put_request(request(9)));
            assert!(!front.push_requests());
        }
    }

    #[test]
    fn a_full_ring_answered_whole_is_fine_and_one_more_is_an_overrun() {
        let front = &mut Ring::starting_at(SharedPage::alloc().unwrap(), u32::MAX - 5);
        let mut back = BackRing::attach(front);
        for tag in 0..u64::from(Ring::SIZE) {
            front.put_request(request(tag));
        }
        front.push_requests();
        for req in back.take_requests() {
            back.put_response(Small { tag: req.tag as u32, value: 0 });
        }
        back.push_responses();
        assert_eq!(front.unconsumed_responses(), Ok(Ring::SIZE));
        let rsp_prod = back.rsp_prod_pvt.wrapping_add(1);
        back.page.write::<u32>(SRING_RSP_PROD, rsp_prod);
        assert_eq!(
            front.take_response(),
            Err(RingOverrun { rsp_prod, rsp_cons: u32::MAX - 5, outstanding: Ring::SIZE })
        );
    }

    #[test]
    fn garbage_in_the_header_never_picks_the_slots() {
        let front = &mut ring();
        // Whatever the backend writes into req_prod or req_event, our own
        // indices choose the slots; only the notify answer changes.
        for (round, value) in [0u32, 1, 127, 128, 0xffff_ffff, 0x1234_5678].into_iter().enumerate() {
            front.page().write::<u32>(SRING_REQ_PROD, value);
            front.page().write::<u32>(SRING_REQ_EVENT, value);
            assert!(front.put_request(request(round as u64)));
            let _ = front.push_requests();
            assert_eq!(front.page().read::<u32>(SRING_REQ_PROD), round as u32 + 1, "our req_prod, not theirs");
            front.page().write::<u32>(SRING_RSP_PROD, round as u32 + 1);
            assert_eq!(front.take_response().unwrap().map(|(index, _)| index), Some(round as u32));
        }
    }

    #[test]
    fn garbage_anywhere_in_the_page_never_panics() {
        // SplitMix64: reproducible garbage.
        let mut state = 0x1234_5678_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut broke = 0;
        for round in 0..300u32 {
            let front = &mut ring();
            let published = round % (Ring::SIZE + 1);
            for tag in 0..published {
                front.put_request(request(u64::from(tag)));
            }
            front.push_requests();
            for offset in (0..PAGE_SIZE).step_by(8) {
                if next() % 4 == 0 {
                    front.page().write::<u64>(offset, next());
                }
            }
            // A small rsp_prod sometimes, so responses are read too.
            if round % 2 == 0 {
                front.page().write::<u32>(SRING_RSP_PROD, (next() % 160) as u32);
            }
            let mut taken = 0;
            let result = loop {
                match front.take_response() {
                    Ok(Some(_)) => taken += 1,
                    Ok(None) => break front.final_check_for_responses().map(|_| ()),
                    Err(e) => break Err(e),
                }
                assert!(taken <= published, "more responses than requests");
            };
            if result.is_err() {
                broke += 1;
            }
            let _ = front.put_request(request(1));
            let _ = front.push_requests();
        }
        assert!(broke > 0, "garbage should have broken some rings");
    }
}
