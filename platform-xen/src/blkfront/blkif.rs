//! blkif's requests and responses (`io/blkif.h`) over the shared front
//! ring ([`crate::ring::FrontRing`]), sans-IO: request ids, the encoding
//! of both entries, and the checks of every response. The index protocol
//! (publication, notification rules, the `rsp_prod` overrun check) is the
//! shared ring's; [`BlkifRing::publish`] says whether the backend must be
//! notified and the caller does it.
//!
//! # What the backend may write, and what we do about it
//!
//! Besides the ring's own [`RingOverrun`], a response id that is not in
//! flight, an operation that is not the request's or a status that is not
//! one of blkif's three is a protocol violation: [`BlkifRing::poll`]
//! returns a [`RingError`] and the ring is broken from then on (every
//! later call returns the same error), since nothing it says can be
//! trusted any more.
//!
//! # Bounds
//!
//! At most [`RING_SIZE`] requests are in flight; their ids are the
//! numbers `0..RING_SIZE`, so a response's id is checked by indexing.

use alloc::vec::Vec;
use core::fmt;
use core::mem::{offset_of, size_of};

use crate::abi::blkif::{Request, Response, Segment, MAX_SEGMENTS, RING_SIZE, RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY};
use crate::page::SharedPage;
use crate::ring::{FrontRing, RingOverrun, Slot};

/// The shared ring with blkif's entries.
pub type BlkifFrontRing = FrontRing<Request, Response>;

// The ids index arrays of `abi::blkif::RING_SIZE`: it must be the ring's.
const _: () = assert!(BlkifFrontRing::SIZE as usize == RING_SIZE);

impl Slot for Request {
    /// Writes the header and the `nr_segments` segments used (at most
    /// [`MAX_SEGMENTS`]); the backend reads no others.
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u8>(offset + offset_of!(Request, operation), self.operation);
        page.write::<u8>(offset + offset_of!(Request, nr_segments), self.nr_segments);
        page.write::<u16>(offset + offset_of!(Request, handle), self.handle);
        page.write::<u64>(offset + offset_of!(Request, id), self.id);
        page.write::<u64>(offset + offset_of!(Request, sector_number), self.sector_number);
        for (i, seg) in self.seg.iter().take(usize::from(self.nr_segments)).enumerate() {
            let at = offset + offset_of!(Request, seg) + i * size_of::<Segment>();
            page.write::<u32>(at + offset_of!(Segment, gref), seg.gref);
            page.write::<u8>(at + offset_of!(Segment, first_sect), seg.first_sect);
            page.write::<u8>(at + offset_of!(Segment, last_sect), seg.last_sect);
        }
    }

    fn read_from(page: &SharedPage, offset: usize) -> Request {
        let mut request = Request {
            operation: page.read(offset + offset_of!(Request, operation)),
            nr_segments: page.read(offset + offset_of!(Request, nr_segments)),
            handle: page.read(offset + offset_of!(Request, handle)),
            id: page.read(offset + offset_of!(Request, id)),
            sector_number: page.read(offset + offset_of!(Request, sector_number)),
            ..Request::default()
        };
        for (i, seg) in request.seg.iter_mut().take(usize::from(request.nr_segments)).enumerate() {
            let at = offset + offset_of!(Request, seg) + i * size_of::<Segment>();
            *seg = Segment {
                gref: page.read(at + offset_of!(Segment, gref)),
                first_sect: page.read(at + offset_of!(Segment, first_sect)),
                last_sect: page.read(at + offset_of!(Segment, last_sect)),
                pad: 0,
            };
        }
        request
    }
}

impl Slot for Response {
    fn write_to(&self, page: &SharedPage, offset: usize) {
        page.write::<u64>(offset + offset_of!(Response, id), self.id);
        page.write::<u8>(offset + offset_of!(Response, operation), self.operation);
        page.write::<i16>(offset + offset_of!(Response, status), self.status);
    }

    fn read_from(page: &SharedPage, offset: usize) -> Response {
        Response {
            id: page.read(offset + offset_of!(Response, id)),
            operation: page.read(offset + offset_of!(Response, operation)),
            status: page.read(offset + offset_of!(Response, status)),
        }
    }
}

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
    /// The id [`BlkifRing::push`] gave the request.
    pub id: usize,
    /// The request's operation.
    pub operation: u8,
    /// The backend's answer.
    pub status: Status,
}

/// A violation of the blkif ring protocol by the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `rsp_prod` claims more responses than requests outstanding.
    Overrun(RingOverrun),
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
            RingError::Overrun(overrun) => write!(f, "{overrun}"),
            RingError::UnknownId(id) => write!(f, "a response for id {id}, which is not in flight"),
            RingError::WrongOperation { id, expected, found } => {
                write!(f, "the response to request {id} (operation {expected}) says operation {found}")
            }
            RingError::BadStatus { id, status } => write!(f, "the response to request {id} has status {status}"),
        }
    }
}

impl core::error::Error for RingError {}

/// The frontend's side of a blkif ring: the shared ring and the ids in
/// flight.
#[derive(Debug)]
pub struct BlkifRing {
    ring: BlkifFrontRing,
    /// The operation of each id in flight; `None` for a free id.
    in_flight: [Option<u8>; RING_SIZE],
    /// The first protocol violation seen, which breaks the ring for good.
    broken: Option<RingError>,
}

impl BlkifRing {
    /// Initialises the ring on `page` (see [`FrontRing::new`]).
    pub fn new(page: SharedPage) -> BlkifRing {
        BlkifRing::on(FrontRing::new(page))
    }

    fn on(ring: BlkifFrontRing) -> BlkifRing {
        BlkifRing { ring, in_flight: [None; RING_SIZE], broken: None }
    }

    /// The ring page (to grant it to the backend).
    pub fn page(&self) -> &SharedPage {
        self.ring.page()
    }

    /// Slots free for new requests; none once the ring is broken.
    pub fn free_slots(&self) -> usize {
        if self.broken.is_some() {
            return 0;
        }
        self.ring.free_requests() as usize
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
    /// backend: see [`BlkifRing::publish`]) and returns its id. `None` if
    /// the ring is full or broken, or `segments` has more than
    /// [`MAX_SEGMENTS`].
    pub fn push(&mut self, operation: u8, handle: u16, sector: u64, segments: &[Segment]) -> Option<usize> {
        let id = self.in_flight.iter().position(Option::is_none)?;
        self.push_as(id, operation, handle, sector, segments)
    }

    /// [`BlkifRing::push`] with id `id`, which the caller chose: the ring
    /// forgets an id at its response, while the caller may hold it until
    /// its owner has collected the completion, so a caller that keeps such
    /// records picks the ids itself. `None` also if `id` is in flight or
    /// out of range.
    pub fn push_as(
        &mut self,
        id: usize,
        operation: u8,
        handle: u16,
        sector: u64,
        segments: &[Segment],
    ) -> Option<usize> {
        if self.broken.is_some() || segments.len() > MAX_SEGMENTS || self.in_flight.get(id)?.is_some() {
            return None;
        }
        let mut request = Request {
            operation,
            nr_segments: segments.len() as u8,
            handle,
            id: id as u64,
            sector_number: sector,
            ..Request::default()
        };
        request.seg[..segments.len()].copy_from_slice(segments);
        if !self.ring.put_request(request) {
            return None;
        }
        self.in_flight[id] = Some(operation);
        Some(id)
    }

    /// Makes the pushed requests visible to the backend; `true` if it must
    /// be notified.
    pub fn publish(&mut self) -> bool {
        self.broken.is_none() && self.ring.push_requests()
    }

    /// Takes every response the backend has published into `out`, ending
    /// with the shared ring's final check, so that returning means a
    /// notification will come for the next response. A protocol violation
    /// breaks the ring (module documentation); the responses before it
    /// are in `out`.
    pub fn poll(&mut self, out: &mut Vec<Completion>) -> Result<(), RingError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        // Each round consumes at least one response or ends, and responses
        // are bounded by the requests in flight: at most RING_SIZE + 1
        // rounds.
        loop {
            while let Some((_, response)) = self.ring.take_response().map_err(|e| self.fail(RingError::Overrun(e)))? {
                let completion = self.check(response).map_err(|e| self.fail(e))?;
                self.in_flight[completion.id] = None;
                out.push(completion);
            }
            if !self.ring.final_check_for_responses().map_err(|e| self.fail(RingError::Overrun(e)))? {
                return Ok(());
            }
        }
    }

    fn check(&self, response: Response) -> Result<Completion, RingError> {
        let raw_id = response.id;
        let id = usize::try_from(raw_id).ok().filter(|&id| id < RING_SIZE).ok_or(RingError::UnknownId(raw_id))?;
        let expected = self.in_flight[id].ok_or(RingError::UnknownId(raw_id))?;
        if response.operation != expected {
            return Err(RingError::WrongOperation { id, expected, found: response.operation });
        }
        let status = match response.status {
            RSP_OKAY => Status::Okay,
            RSP_ERROR => Status::Error,
            RSP_EOPNOTSUPP => Status::NotSupported,
            status => return Err(RingError::BadStatus { id, status }),
        };
        Ok(Completion { id, operation: expected, status })
    }

    fn fail(&mut self, error: RingError) -> RingError {
        self.broken = Some(error.clone());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::blkif::{OP_FLUSH_DISKCACHE, OP_READ, OP_WRITE};
    use crate::abi::netif::SRING_RSP_PROD;
    use crate::ring::sim::BackRing;

    type SimBackend = BackRing<Request, Response>;

    fn respond(backend: &mut SimBackend, id: u64, operation: u8, status: i16) {
        backend.put_response(Response { id, operation, status });
    }

    fn seg(gref: u32) -> Segment {
        Segment { gref, first_sect: 0, last_sect: 7, pad: 0 }
    }

    fn ring() -> BlkifRing {
        BlkifRing::new(SharedPage::alloc().unwrap())
    }

    #[test]
    fn a_request_reaches_the_backend_with_every_field() {
        let mut ring = ring();
        let mut backend = SimBackend::attach(&ring.ring);
        let segments = [seg(10), Segment { gref: 11, first_sect: 1, last_sect: 3, pad: 0 }];
        let id = ring.push(OP_WRITE, 768, 2048, &segments).unwrap();
        assert!(ring.publish(), "the first request notifies");
        let reqs = backend.take_requests();
        assert_eq!(reqs.len(), 1);
        let r = reqs[0];
        assert_eq!((r.operation, r.nr_segments, r.handle, r.id, r.sector_number), (OP_WRITE, 2, 768, id as u64, 2048));
        assert_eq!(&r.seg[..2], &segments);
        assert_eq!((ring.free_slots(), ring.in_flight()), (RING_SIZE - 1, 1));
    }

    #[test]
    fn responses_complete_their_requests_in_any_order() {
        let mut ring = ring();
        let mut backend = SimBackend::attach(&ring.ring);
        let a = ring.push(OP_READ, 0, 0, &[seg(1)]).unwrap();
        let b = ring.push(OP_FLUSH_DISKCACHE, 0, 0, &[]).unwrap();
        ring.publish();
        backend.take_requests();
        let mut out = Vec::new();
        ring.poll(&mut out).unwrap();
        assert!(out.is_empty());
        // Answered out of order, one failed.
        respond(&mut backend, b as u64, OP_FLUSH_DISKCACHE, RSP_ERROR);
        assert!(backend.push_responses(), "poll armed rsp_event when it found nothing");
        respond(&mut backend, a as u64, OP_READ, RSP_OKAY);
        backend.push_responses();
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

    /// Many requests with up to `depth` in flight, answered in reverse
    /// order per batch (so ids are reused out of order), the ring's indices
    /// starting at `start`.
    fn churn(start: u32, total: usize, depth: usize) {
        let mut ring = BlkifRing::on(FrontRing::starting_at(SharedPage::alloc().unwrap(), start));
        let mut backend = SimBackend::attach(&ring.ring);
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
                respond(&mut backend, r.id, r.operation, RSP_OKAY);
            }
            backend.push_responses();
            ring.poll(&mut done).unwrap();
        }
        assert_eq!(done.len(), total);
        assert!(done.iter().all(|c| c.status == Status::Okay));
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn the_caller_chooses_the_id_of_a_request() {
        // The engine keeps a completion until its owner collects it; the
        // ring forgets the id at the response. So the engine chooses ids:
        // one the ring would reuse could overwrite a completion not yet
        // collected, and its owner would wait forever (seen on Xen with
        // many concurrent reads).
        let mut ring = ring();
        let mut backend = SimBackend::attach(&ring.ring);
        let a = ring.push(OP_READ, 0, 0, &[seg(1)]).unwrap();
        ring.publish();
        backend.take_requests();
        respond(&mut backend, a as u64, OP_READ, RSP_OKAY);
        backend.push_responses();
        let mut out = Vec::new();
        ring.poll(&mut out).unwrap();
        assert_eq!(out.len(), 1);
        let b = ring.push_as(a + 1, OP_READ, 0, 0, &[seg(2)]).unwrap();
        assert_eq!(b, a + 1);
        assert_eq!(ring.push_as(b, OP_READ, 0, 0, &[seg(3)]), None, "an id in flight is refused");
        assert_eq!(ring.push_as(RING_SIZE, OP_READ, 0, 0, &[seg(3)]), None, "an id out of range is refused");
    }

    #[test]
    fn ids_are_reused_out_of_order_across_the_index_wrap() {
        churn(0, 200, RING_SIZE);
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
    fn with_requests(n: usize) -> (BlkifRing, SimBackend) {
        let mut ring = ring();
        let mut backend = SimBackend::attach(&ring.ring);
        for i in 0..n {
            ring.push(OP_READ, 0, i as u64, &[seg(1)]).unwrap();
        }
        ring.publish();
        backend.take_requests();
        (ring, backend)
    }

    fn assert_broken(ring: &mut BlkifRing, expected: RingError) {
        let mut out = Vec::new();
        assert_eq!(ring.poll(&mut out), Err(expected.clone()));
        // Broken for good: the same error again, no room for requests.
        assert_eq!(ring.poll(&mut out), Err(expected.clone()));
        assert_eq!((ring.free_slots(), ring.broken()), (0, Some(&expected)));
        assert_eq!(ring.push(OP_READ, 0, 0, &[]), None);
        assert!(!ring.publish());
    }

    #[test]
    fn a_rsp_prod_past_the_outstanding_requests_breaks_the_ring() {
        let (mut ring, backend) = with_requests(2);
        backend.page.write::<u32>(SRING_RSP_PROD, 3);
        let overrun = RingOverrun { rsp_prod: 3, rsp_cons: 0, outstanding: 2 };
        assert_broken(&mut ring, RingError::Overrun(overrun));
    }

    #[test]
    fn responses_for_ids_not_in_flight_break_the_ring() {
        let (mut ring, mut backend) = with_requests(1);
        respond(&mut backend, 5, OP_READ, RSP_OKAY);
        backend.push_responses();
        assert_broken(&mut ring, RingError::UnknownId(5));

        let (mut ring, mut backend) = with_requests(1);
        respond(&mut backend, u64::MAX, OP_READ, RSP_OKAY);
        backend.push_responses();
        assert_broken(&mut ring, RingError::UnknownId(u64::MAX));

        // The same id answered twice: the second is not in flight any more.
        let (mut ring, mut backend) = with_requests(2);
        respond(&mut backend, 0, OP_READ, RSP_OKAY);
        respond(&mut backend, 0, OP_READ, RSP_OKAY);
        backend.push_responses();
        let mut out = Vec::new();
        assert_eq!(ring.poll(&mut out), Err(RingError::UnknownId(0)));
        assert_eq!(out.len(), 1, "the response before the violation stands");
    }

    #[test]
    fn a_wrong_operation_or_status_breaks_the_ring() {
        let (mut ring, mut backend) = with_requests(1);
        respond(&mut backend, 0, OP_WRITE, RSP_OKAY);
        backend.push_responses();
        assert_broken(&mut ring, RingError::WrongOperation { id: 0, expected: OP_READ, found: OP_WRITE });

        let (mut ring, mut backend) = with_requests(1);
        respond(&mut backend, 0, OP_READ, 7);
        backend.push_responses();
        assert_broken(&mut ring, RingError::BadStatus { id: 0, status: 7 });
    }

    #[test]
    fn garbage_responses_never_panic() {
        // SplitMix64: reproducible garbage.
        let mut state = 0x1234_5678_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let (mut completed, mut broke) = (0, 0);
        for round in 0..300 {
            let (mut ring, mut backend) = with_requests(round % (RING_SIZE + 1));
            for _ in 0..next() % 4 {
                let r = next();
                // Small ids, operations and statuses sometimes, so some
                // responses pass the checks.
                let (id, op, status) = if r & 1 == 0 {
                    (r >> 8 & 63, (r >> 16) as u8 & 1, 0)
                } else {
                    (r, (r >> 8) as u8, (r >> 16) as i16)
                };
                respond(&mut backend, id, op, status);
            }
            backend.push_responses();
            let mut out = Vec::new();
            match ring.poll(&mut out) {
                Ok(()) => completed += out.len(),
                Err(_) => broke += 1,
            }
            assert!(out.len() <= round % (RING_SIZE + 1));
            let _ = ring.publish();
            let _ = ring.push(OP_READ, 0, 0, &[seg(1)]);
        }
        assert!(broke > 0 && completed > 0, "garbage should have broken some rings and passed some responses");
    }
}
