//! The frontend's half of a blkif shared ring (`io/ring.h`, `io/blkif.h`),
//! sans-IO: it writes requests into the ring page, publishes them, and
//! takes responses off it, validating everything the backend wrote. It
//! makes no hypercall: [`FrontRing::publish`] says whether the backend
//! must be notified and the caller does it, which lets the host tests
//! drive it against a simulated backend on the same page.
//!
//! # The index protocol
//!
//! - Requests: slots are filled at the private producer index, then
//!   `req_prod` is published after a write barrier. The backend asked to
//!   be notified when `req_prod` passes `req_event`; the publish reports
//!   whether it did (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
//! - Responses: everything between our consumer index and `rsp_prod` is
//!   read after a read barrier; then `rsp_event` is set one past what we
//!   consumed and `rsp_prod` read again after a full barrier, so a
//!   response published in between is not left without a notification
//!   (`RING_FINAL_CHECK_FOR_RESPONSES`).
//!
//! # What the backend may write, and what we do about it
//!
//! The backend controls `rsp_prod`, `req_event` and the response fields.
//! A `rsp_prod` claiming more responses than requests outstanding, a
//! response id that is not in flight, an operation that is not the
//! request's or a status that is not one of blkif's three is a protocol
//! violation: [`FrontRing::poll`] returns a [`RingError`] and the ring is
//! broken from then on (every later call returns the same error), since
//! nothing it says can be trusted any more. Slot offsets are always our
//! own index masked to the ring, so nothing the backend writes can make us
//! read or write outside the page. `req_event` only decides whether we
//! notify; a wrong value costs a spurious or a missed notification, which
//! is the backend's loss.
//!
//! # Bounds
//!
//! At most [`RING_SIZE`] requests are in flight; their ids are the
//! numbers `0..RING_SIZE`, so a response's id is checked by indexing.

use alloc::vec::Vec;
use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

use crate::abi::blkif::{
    Request, Response, Segment, MAX_SEGMENTS, REQ_EVENT, REQ_PROD, RING_OFFSET, RING_SIZE, RSP_EOPNOTSUPP, RSP_ERROR,
    RSP_EVENT, RSP_OKAY, RSP_PROD, SLOT_SIZE,
};
use crate::page::SharedPage;

/// How the backend answered a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `BLKIF_RSP_OKAY`.
    Okay,
    /// `BLKIF_RSP_ERROR`.
    Error,
    /// `BLKIF_RSP_EOPNOTSUPP`.
    NotSupported,
}

/// One response taken off the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The id [`FrontRing::push`] gave the request.
    pub id: usize,
    /// The request's operation.
    pub operation: u8,
    /// The backend's answer.
    pub status: Status,
}

/// A violation of the ring protocol by the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `rsp_prod` claims more responses than requests outstanding.
    TooManyResponses {
        /// The backend's `rsp_prod`.
        rsp_prod: u32,
        /// Our consumer index.
        rsp_cons: u32,
        /// Requests published and not yet answered.
        outstanding: u32,
    },
    /// A response for an id that is not in flight (never used, or already
    /// answered).
    UnknownId(u64),
    /// A response whose operation is not its request's.
    WrongOperation {
        /// The response's id.
        id: usize,
        /// The request's operation.
        expected: u8,
        /// The response's.
        found: u8,
    },
    /// A status that is none of blkif's.
    BadStatus {
        /// The response's id.
        id: usize,
        /// The status.
        status: i16,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::TooManyResponses { rsp_prod, rsp_cons, outstanding } => write!(
                f,
                "rsp_prod {rsp_prod} is {} past our consumer index {rsp_cons}, but only {outstanding} requests are outstanding",
                rsp_prod.wrapping_sub(*rsp_cons)
            ),
            RingError::UnknownId(id) => write!(f, "a response for id {id}, which is not in flight"),
            RingError::WrongOperation { id, expected, found } => {
                write!(f, "the response to request {id} (operation {expected}) says operation {found}")
            }
            RingError::BadStatus { id, status } => write!(f, "the response to request {id} has status {status}"),
        }
    }
}

impl core::error::Error for RingError {}

/// The frontend's side of a blkif ring on one shared page.
#[derive(Debug)]
pub struct FrontRing {
    page: SharedPage,
    /// Requests written, published or not.
    req_prod_pvt: u32,
    /// Requests published (`req_prod` as we last wrote it).
    req_prod: u32,
    /// Responses consumed.
    rsp_cons: u32,
    /// The operation of each id in flight; `None` for a free id.
    in_flight: [Option<u8>; RING_SIZE],
    /// The first protocol violation seen, which breaks the ring for good.
    broken: Option<RingError>,
}

fn slot_offset(index: u32) -> usize {
    RING_OFFSET + (index as usize & (RING_SIZE - 1)) * SLOT_SIZE
}

impl FrontRing {
    /// Initialises the ring on `page` (`SHARED_RING_INIT`): all indices 0,
    /// both event indices 1, the slots zeroed.
    pub fn new(page: SharedPage) -> FrontRing {
        FrontRing::starting_at(page, 0)
    }

    /// [`FrontRing::new`] with every index starting at `index` (the host
    /// tests start near `u32::MAX` to cross the wrap).
    fn starting_at(page: SharedPage, index: u32) -> FrontRing {
        page.zero();
        page.write::<u32>(REQ_PROD, index);
        page.write::<u32>(RSP_PROD, index);
        page.write::<u32>(REQ_EVENT, index.wrapping_add(1));
        page.write::<u32>(RSP_EVENT, index.wrapping_add(1));
        FrontRing {
            page,
            req_prod_pvt: index,
            req_prod: index,
            rsp_cons: index,
            in_flight: [None; RING_SIZE],
            broken: None,
        }
    }

    /// The ring page (to grant it to the backend).
    pub fn page(&self) -> &SharedPage {
        &self.page
    }

    /// Slots free for new requests.
    pub fn free_slots(&self) -> usize {
        if self.broken.is_some() {
            return 0;
        }
        RING_SIZE - self.in_flight.iter().filter(|op| op.is_some()).count()
    }

    /// Requests written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().filter(|op| op.is_some()).count()
    }

    /// The protocol violation that broke the ring, if one did.
    pub fn broken(&self) -> Option<&RingError> {
        self.broken.as_ref()
    }

    /// Writes a request into the next slot (not yet visible to the
    /// backend: see [`FrontRing::publish`]) and returns its id. `None` if
    /// the ring is full or broken, or `segments` has more than
    /// [`MAX_SEGMENTS`].
    pub fn push(&mut self, operation: u8, handle: u16, sector: u64, segments: &[Segment]) -> Option<usize> {
        if self.broken.is_some() || segments.len() > MAX_SEGMENTS {
            return None;
        }
        let id = self.in_flight.iter().position(Option::is_none)?;
        self.in_flight[id] = Some(operation);
        let base = slot_offset(self.req_prod_pvt);
        let page = &self.page;
        page.write::<u8>(base + offset_of!(Request, operation), operation);
        page.write::<u8>(base + offset_of!(Request, nr_segments), segments.len() as u8);
        page.write::<u16>(base + offset_of!(Request, handle), handle);
        page.write::<u64>(base + offset_of!(Request, id), id as u64);
        page.write::<u64>(base + offset_of!(Request, sector_number), sector);
        for (i, seg) in segments.iter().enumerate() {
            let at = base + offset_of!(Request, seg) + i * core::mem::size_of::<Segment>();
            page.write::<u32>(at + offset_of!(Segment, gref), seg.gref);
            page.write::<u8>(at + offset_of!(Segment, first_sect), seg.first_sect);
            page.write::<u8>(at + offset_of!(Segment, last_sect), seg.last_sect);
        }
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Some(id)
    }

    /// Makes the pushed requests visible to the backend; `true` if it must
    /// be notified (it asked to be, through `req_event`, for an index this
    /// publication passed).
    pub fn publish(&mut self) -> bool {
        let old = self.req_prod;
        let new = self.req_prod_pvt;
        if old == new {
            return false;
        }
        // The slots must be visible before the index that hands them over.
        fence(Ordering::Release);
        self.page.write::<u32>(REQ_PROD, new);
        self.req_prod = new;
        // And the index before we read whether the backend wants an event
        // (a store-load ordering: a full fence).
        fence(Ordering::SeqCst);
        let event = self.page.read::<u32>(REQ_EVENT);
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// Takes every response the backend has published into `out`, then
    /// re-arms `rsp_event` and checks again, so that returning with
    /// nothing new means a notification will come for the next response.
    /// A protocol violation breaks the ring (module documentation); the
    /// responses before it are in `out`.
    pub fn poll(&mut self, out: &mut Vec<Completion>) -> Result<(), RingError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        // Each round consumes at least one response or ends, and responses
        // are bounded by the requests in flight: at most RING_SIZE + 1
        // rounds.
        loop {
            let rsp_prod = self.page.read::<u32>(RSP_PROD);
            // The responses' contents are read after the index that
            // published them.
            fence(Ordering::Acquire);
            let available = rsp_prod.wrapping_sub(self.rsp_cons);
            let outstanding = self.req_prod.wrapping_sub(self.rsp_cons);
            if available > outstanding {
                return Err(self.fail(RingError::TooManyResponses { rsp_prod, rsp_cons: self.rsp_cons, outstanding }));
            }
            while self.rsp_cons != rsp_prod {
                let completion = self.read_response(self.rsp_cons).map_err(|e| self.fail(e))?;
                self.in_flight[completion.id] = None;
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
                out.push(completion);
            }
            self.page.write::<u32>(RSP_EVENT, self.rsp_cons.wrapping_add(1));
            fence(Ordering::SeqCst);
            if self.page.read::<u32>(RSP_PROD) == self.rsp_cons {
                return Ok(());
            }
        }
    }

    fn read_response(&self, index: u32) -> Result<Completion, RingError> {
        let base = slot_offset(index);
        let raw_id = self.page.read::<u64>(base + offset_of!(Response, id));
        let operation = self.page.read::<u8>(base + offset_of!(Response, operation));
        let status = self.page.read::<i16>(base + offset_of!(Response, status));
        let id = usize::try_from(raw_id).ok().filter(|&id| id < RING_SIZE).ok_or(RingError::UnknownId(raw_id))?;
        let expected = self.in_flight[id].ok_or(RingError::UnknownId(raw_id))?;
        if operation != expected {
            return Err(RingError::WrongOperation { id, expected, found: operation });
        }
        let status = match status {
            RSP_OKAY => Status::Okay,
            RSP_ERROR => Status::Error,
            RSP_EOPNOTSUPP => Status::NotSupported,
            status => return Err(RingError::BadStatus { id, status }),
        };
        Ok(Completion { id, operation, status })
    }

    fn fail(&mut self, error: RingError) -> RingError {
        self.broken = Some(error.clone());
        error
    }
}

/// A simulated blkback on the same page, for host tests: it reads requests
/// as the backend would and writes responses, following (or, on request,
/// breaking) the index protocol.
#[cfg(test)]
pub(crate) mod sim {
    use super::*;

    /// The backend's view of the ring.
    pub struct SimBackend {
        pub page: SharedPage,
        pub req_cons: u32,
        pub rsp_prod_pvt: u32,
    }

    impl SimBackend {
        /// The backend of `ring`, sharing its page.
        pub fn of(ring: &FrontRing) -> SimBackend {
            // SAFETY: the frame is the ring's heap page, which outlives the
            // simulated backend in every test (both live in the test's
            // scope, the ring declared first); a `from_frame` page is not
            // freed on drop.
            let page = unsafe { SharedPage::from_frame(ring.page().frame()) }.unwrap();
            let start = page.read::<u32>(REQ_PROD);
            SimBackend { page, req_cons: start, rsp_prod_pvt: start }
        }

        /// Takes the published requests (`RING_FINAL_CHECK_FOR_REQUESTS`
        /// style: re-arms `req_event`).
        pub fn take_requests(&mut self) -> Vec<Request> {
            let mut out = Vec::new();
            let prod = self.page.read::<u32>(REQ_PROD);
            while self.req_cons != prod {
                let base = slot_offset(self.req_cons);
                let mut req = Request {
                    operation: self.page.read(base + offset_of!(Request, operation)),
                    nr_segments: self.page.read(base + offset_of!(Request, nr_segments)),
                    handle: self.page.read(base + offset_of!(Request, handle)),
                    id: self.page.read(base + offset_of!(Request, id)),
                    sector_number: self.page.read(base + offset_of!(Request, sector_number)),
                    ..Request::default()
                };
                for i in 0..usize::from(req.nr_segments).min(MAX_SEGMENTS) {
                    let at = base + offset_of!(Request, seg) + i * core::mem::size_of::<Segment>();
                    req.seg[i] = Segment {
                        gref: self.page.read(at),
                        first_sect: self.page.read(at + 4),
                        last_sect: self.page.read(at + 5),
                        pad: 0,
                    };
                }
                out.push(req);
                self.req_cons = self.req_cons.wrapping_add(1);
            }
            self.page.write::<u32>(REQ_EVENT, self.req_cons.wrapping_add(1));
            out
        }

        /// Writes a response into the next slot (not yet published).
        pub fn respond(&mut self, id: u64, operation: u8, status: i16) {
            let base = slot_offset(self.rsp_prod_pvt);
            self.page.write::<u64>(base + offset_of!(Response, id), id);
            self.page.write::<u8>(base + offset_of!(Response, operation), operation);
            self.page.write::<i16>(base + offset_of!(Response, status), status);
            self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        }

        /// Publishes the responses; `true` if the frontend asked to be
        /// notified.
        pub fn publish(&mut self) -> bool {
            let old = self.page.read::<u32>(RSP_PROD);
            let new = self.rsp_prod_pvt;
            self.page.write::<u32>(RSP_PROD, new);
            let event = self.page.read::<u32>(RSP_EVENT);
            new.wrapping_sub(event) < new.wrapping_sub(old)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sim::SimBackend;
    use super::*;
    use crate::abi::blkif::{OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE};

    fn seg(gref: u32) -> Segment {
        Segment { gref, first_sect: 0, last_sect: 7, pad: 0 }
    }

    fn ring() -> FrontRing {
        FrontRing::new(SharedPage::alloc().unwrap())
    }

    #[test]
    fn a_request_reaches_the_backend_with_every_field_and_its_first_publication_notifies() {
        let mut ring = ring();
        let mut backend = SimBackend::of(&ring);
        let segments = [seg(10), Segment { gref: 11, first_sect: 1, last_sect: 3, pad: 0 }];
        let id = ring.push(OP_WRITE, 768, 2048, &segments).unwrap();
        // Not visible before publication.
        assert!(backend.take_requests().is_empty());
        assert!(ring.publish(), "req_event starts at 1: the first request notifies");
        let reqs = backend.take_requests();
        assert_eq!(reqs.len(), 1);
        let r = reqs[0];
        assert_eq!((r.operation, r.nr_segments, r.handle, r.id, r.sector_number), (OP_WRITE, 2, 768, id as u64, 2048));
        assert_eq!(&r.seg[..2], &segments);
        assert_eq!(ring.free_slots(), RING_SIZE - 1);
    }

    #[test]
    fn publication_notifies_only_when_the_backend_asked() {
        let mut ring = ring();
        let mut backend = SimBackend::of(&ring);
        ring.push(OP_READ, 0, 0, &[seg(1)]).unwrap();
        assert!(ring.publish());
        // The backend has not consumed: req_event is still 1, already passed.
        ring.push(OP_READ, 0, 8, &[seg(2)]).unwrap();
        assert!(!ring.publish(), "the backend is still working and did not re-arm req_event");
        backend.take_requests();
        ring.push(OP_READ, 0, 16, &[seg(3)]).unwrap();
        assert!(ring.publish(), "after the backend re-armed req_event");
        assert!(!ring.publish(), "nothing new to publish");
    }

    #[test]
    fn responses_complete_their_requests_and_the_final_check_arms_rsp_event() {
        let mut ring = ring();
        let mut backend = SimBackend::of(&ring);
        let a = ring.push(OP_READ, 0, 0, &[seg(1)]).unwrap();
        let b = ring.push(OP_FLUSH_DISKCACHE, 0, 0, &[]).unwrap();
        ring.publish();
        backend.take_requests();
        let mut out = Vec::new();
        ring.poll(&mut out).unwrap();
        assert!(out.is_empty());
        // Answered out of order, one failed.
        backend.respond(b as u64, OP_FLUSH_DISKCACHE, RSP_ERROR);
        assert!(backend.publish(), "the frontend re-armed rsp_event when it found nothing");
        backend.respond(a as u64, OP_READ, RSP_OKAY);
        assert!(!backend.publish(), "the frontend has not consumed the first response yet");
        ring.poll(&mut out).unwrap();
        assert_eq!(
            out,
            [
                Completion { id: b, operation: OP_FLUSH_DISKCACHE, status: Status::Error },
                Completion { id: a, operation: OP_READ, status: Status::Okay }
            ]
        );
        assert_eq!((ring.in_flight(), ring.free_slots()), (0, RING_SIZE));
    }

    /// Many requests through the ring with up to `depth` in flight,
    /// answered in reverse order per batch, starting at index `start`.
    fn churn(start: u32, total: usize, depth: usize) {
        let mut ring = FrontRing::starting_at(SharedPage::alloc().unwrap(), start);
        let mut backend = SimBackend::of(&ring);
        let mut sent = 0u64;
        let mut done = Vec::new();
        let mut expected_sectors = Vec::new();
        while done.len() < total {
            while sent < total as u64 && ring.in_flight() < depth {
                let id = ring.push(OP_READ, 0, sent * 8, &[seg(sent as u32)]).unwrap();
                expected_sectors.push((id, sent * 8));
                sent += 1;
            }
            ring.publish();
            let mut reqs = backend.take_requests();
            for r in &reqs {
                // Each request carries what was pushed for its id.
                let pos = expected_sectors.iter().position(|&(id, _)| id as u64 == r.id).unwrap();
                assert_eq!(expected_sectors.swap_remove(pos).1, r.sector_number);
            }
            reqs.reverse();
            for r in reqs {
                backend.respond(r.id, r.operation, RSP_OKAY);
            }
            backend.publish();
            ring.poll(&mut done).unwrap();
        }
        assert_eq!(done.len(), total);
        assert!(done.iter().all(|c| c.status == Status::Okay));
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn indices_wrap_around_the_slots_and_the_u32_counters() {
        churn(0, 500, RING_SIZE);
        churn(0, 200, 7);
        churn(u32::MAX - 40, 300, RING_SIZE);
        churn(u32::MAX - 3, 100, 5);
    }

    #[test]
    fn a_full_ring_refuses_more_and_too_many_segments_are_refused() {
        let mut ring = ring();
        for _ in 0..RING_SIZE {
            ring.push(OP_READ, 0, 0, &[seg(1)]).unwrap();
        }
        assert_eq!(ring.push(OP_READ, 0, 0, &[seg(1)]), None);
        let mut ring = self::ring();
        assert_eq!(ring.push(OP_READ, 0, 0, &[seg(1); MAX_SEGMENTS + 1]), None);
        assert!(ring.push(OP_READ, 0, 0, &[seg(1); MAX_SEGMENTS]).is_some());
    }

    /// A ring with `n` requests published and consumed by the backend.
    fn with_requests(n: usize) -> (FrontRing, SimBackend) {
        let mut ring = ring();
        let mut backend = SimBackend::of(&ring);
        for i in 0..n {
            ring.push(OP_READ, 0, i as u64, &[seg(1)]).unwrap();
        }
        ring.publish();
        backend.take_requests();
        (ring, backend)
    }

    fn assert_broken(ring: &mut FrontRing, expected: RingError) {
        let mut out = Vec::new();
        assert_eq!(ring.poll(&mut out), Err(expected.clone()));
        // Broken for good: the same error again, no room for requests.
        assert_eq!(ring.poll(&mut out), Err(expected));
        assert_eq!(ring.free_slots(), 0);
        assert_eq!(ring.push(OP_READ, 0, 0, &[]), None);
    }

    #[test]
    fn a_rsp_prod_past_the_outstanding_requests_breaks_the_ring() {
        let (mut ring, backend) = with_requests(2);
        backend.page.write::<u32>(RSP_PROD, 3);
        assert_broken(&mut ring, RingError::TooManyResponses { rsp_prod: 3, rsp_cons: 0, outstanding: 2 });
        // Far ahead, and "behind" (a huge wrapped distance).
        let (mut ring, backend) = with_requests(1);
        backend.page.write::<u32>(RSP_PROD, u32::MAX);
        assert_broken(&mut ring, RingError::TooManyResponses { rsp_prod: u32::MAX, rsp_cons: 0, outstanding: 1 });
    }

    #[test]
    fn responses_for_ids_not_in_flight_break_the_ring() {
        let (mut ring, mut backend) = with_requests(1);
        backend.respond(5, OP_READ, RSP_OKAY);
        backend.publish();
        assert_broken(&mut ring, RingError::UnknownId(5));

        let (mut ring, mut backend) = with_requests(1);
        backend.respond(u64::MAX, OP_READ, RSP_OKAY);
        backend.publish();
        assert_broken(&mut ring, RingError::UnknownId(u64::MAX));

        // The same id answered twice: the second is not in flight any more.
        let (mut ring, mut backend) = with_requests(2);
        backend.respond(0, OP_READ, RSP_OKAY);
        backend.respond(0, OP_READ, RSP_OKAY);
        backend.publish();
        let mut out = Vec::new();
        assert_eq!(ring.poll(&mut out), Err(RingError::UnknownId(0)));
        assert_eq!(out.len(), 1, "the response before the violation stands");
    }

    #[test]
    fn a_wrong_operation_or_status_breaks_the_ring() {
        let (mut ring, mut backend) = with_requests(1);
        backend.respond(0, OP_WRITE, RSP_OKAY);
        backend.publish();
        assert_broken(&mut ring, RingError::WrongOperation { id: 0, expected: OP_READ, found: OP_WRITE });

        let (mut ring, mut backend) = with_requests(1);
        backend.respond(0, OP_READ, 7);
        backend.publish();
        assert_broken(&mut ring, RingError::BadStatus { id: 0, status: 7 });
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
        for round in 0..300 {
            let (mut ring, backend) = with_requests(round % (RING_SIZE + 1));
            for offset in (0..crate::abi::PAGE_SIZE).step_by(8) {
                if next() % 4 == 0 {
                    backend.page.write::<u64>(offset, next());
                }
            }
            // A small rsp_prod sometimes, so responses are parsed too.
            if round % 2 == 0 {
                backend.page.write::<u32>(RSP_PROD, (next() % 4) as u32);
            }
            let mut out = Vec::new();
            match ring.poll(&mut out) {
                Ok(()) => assert!(out.len() <= round % (RING_SIZE + 1)),
                Err(_) => broke += 1,
            }
            let _ = ring.publish();
            let _ = ring.push(OP_READ, 0, 0, &[seg(1)]);
        }
        assert!(broke > 0, "garbage should have broken some rings");
    }
}
