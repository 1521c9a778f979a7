//! The two netif queues as sans-IO state machines over their rings
//! ([`TxQueue`], [`RxQueue`]): which buffer goes into which slot, what a
//! response means, and every check of what netback wrote. The device
//! ([`super::NetFront`]) adds the grants, the event channel and the
//! waiting; the host tests drive these queues against a simulated backend.
//!
//! # What is checked
//!
//! - `rsp_prod` may not run ahead of our requests (the ring's
//!   [`RingOverrun`]: the device then stops using the ring for good).
//! - A transmit response must name a buffer in flight; a receive response
//!   must carry the id of the buffer posted in its slot (netback answers
//!   receive requests in order, one response slot per request slot).
//! - A received frame must lie within its page and be an Ethernet frame
//!   of [`ETHERNET_HEADER_LEN`] to [`MAX_FRAME_LEN`] bytes; a negative
//!   status is a drop.
//! - Frames spread over several slots (`NETRXF_more_data`) or followed by
//!   extra-info slots (`NETRXF_extra_info`, e.g. GSO metadata) are not
//!   supported: we advertise neither `feature-sg` nor GSO, so netback
//!   should not send them; if it does, every slot of the frame is consumed,
//!   its buffers are posted again, and the frame is counted as dropped.
//!
//! Nothing here panics on any ring contents: ids are checked before they
//! index, and offsets are checked before the page is touched.

use alloc::vec;
use alloc::vec::Vec;

use bytes::Bytes;
use mirage_types::net::{NetStats, ETHERNET_HEADER_LEN};

use super::rings::{RxRing, TxRing};
use crate::abi::netif::{
    RxRequest, RxResponse, TxRequest, NETIF_EXTRA_FLAG_MORE, NETIF_RSP_OKAY, NETRXF_CSUM_BLANK, NETRXF_EXTRA_INFO,
    NETRXF_MORE_DATA, RX_RING_SIZE, TX_RING_SIZE,
};
use crate::abi::PAGE_SIZE;
use crate::page::SharedPage;
use crate::ring::RingOverrun;

/// A grant reference as the rings carry it.
pub type GrantRef = u32;

/// The Ethernet payload size the device is driven with.
pub const MTU: usize = 1500;

/// The largest frame sent or accepted (header included).
pub const MAX_FRAME_LEN: usize = ETHERNET_HEADER_LEN + MTU;

/// Receive buffers, one page each, posted to the backend at all times.
pub const RX_BUFFERS: usize = 64;

/// Transmit buffers (frames in flight towards the backend at most).
pub const TX_BUFFERS: usize = 32;

/// Bytes of one transmit buffer: half a page, so two share a page and
/// grant.
pub const TX_BUFFER_LEN: usize = PAGE_SIZE / 2;

/// Pages holding the transmit buffers.
pub const TX_PAGES: usize = TX_BUFFERS * TX_BUFFER_LEN / PAGE_SIZE;

// Buffers fit their ring (each in-flight buffer holds one slot), a frame
// fits a transmit buffer, and ids fit the rings' u16.
const _: () = assert!(RX_BUFFERS <= RX_RING_SIZE as usize && TX_BUFFERS <= TX_RING_SIZE as usize);
const _: () = assert!(MAX_FRAME_LEN <= TX_BUFFER_LEN && TX_BUFFERS % (PAGE_SIZE / TX_BUFFER_LEN) == 0);
const _: () = assert!(RX_RING_SIZE > 0 && TX_RING_SIZE > 0 && RX_BUFFERS < u16::MAX as usize);

/// Counters the queues keep: the trait's [`NetStats`] and what went wrong
/// on the backend's side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames and bytes in both directions (see [`NetStats`]).
    pub stats: NetStats,
    /// Responses that broke the protocol (unknown or repeated ids,
    /// a frame outside its page, a status for extra info we never sent);
    /// each is ignored or its frame dropped.
    pub protocol_errors: u64,
    /// Received frames whose checksum the backend left blank
    /// (`NETRXF_csum_blank`, which `feature-no-csum-offload` should rule
    /// out); they are delivered as they are.
    pub csum_blank: u64,
}

/// The transmit queue: [`TX_BUFFERS`] half-page buffers on [`TX_PAGES`]
/// granted pages, each either free or in flight under its own id.
#[derive(Debug)]
pub struct TxQueue {
    ring: TxRing,
    pages: Vec<SharedPage>,
    /// The grant of each page, read-only for the backend.
    grefs: Vec<GrantRef>,
    free: Vec<u16>,
    in_flight: Vec<bool>,
    /// Where `fill` writes (the page is shared memory, reached only
    /// through volatile copies).
    scratch: Vec<u8>,
}

impl TxQueue {
    /// A queue on the ring `ring` with `pages` (granted as `grefs`),
    /// [`TX_PAGES`] of each.
    pub fn new(ring: TxRing, pages: Vec<SharedPage>, grefs: Vec<GrantRef>) -> TxQueue {
        debug_assert!(pages.len() == TX_PAGES && grefs.len() == TX_PAGES);
        TxQueue {
            ring,
            pages,
            grefs,
            free: (0..TX_BUFFERS as u16).rev().collect(),
            in_flight: vec![false; TX_BUFFERS],
            scratch: vec![0; MAX_FRAME_LEN],
        }
    }

    /// The ring (its page is granted to the backend by the caller).
    pub fn ring(&self) -> &TxRing {
        &self.ring
    }

    /// Whether a frame can be sent now.
    pub fn has_free_buffer(&self) -> bool {
        !self.free.is_empty() && self.ring.free_requests() > 0
    }

    /// Frames handed to the backend and not answered yet.
    pub fn in_flight(&self) -> usize {
        TX_BUFFERS - self.free.len()
    }

    /// Sends one frame of `len` bytes (at most [`MAX_FRAME_LEN`]) that
    /// `fill` writes. `None` (and `fill` not called) if no buffer is free
    /// or `len` is too large; else `fill`'s result and whether the backend
    /// must be notified.
    pub fn send<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
        counters: &mut Counters,
    ) -> Option<(R, bool)> {
        if len > MAX_FRAME_LEN || !self.has_free_buffer() {
            return None;
        }
        let id = self.free.pop()?;
        let per_page = PAGE_SIZE / TX_BUFFER_LEN;
        let (page, offset) = (usize::from(id) / per_page, usize::from(id) % per_page * TX_BUFFER_LEN);
        let buffer = &mut self.scratch[..len];
        let result = fill(buffer);
        self.pages[page].write_bytes(offset, buffer);
        let request = TxRequest { gref: self.grefs[page], offset: offset as u16, flags: 0, id, size: len as u16 };
        // has_free_buffer checked the ring's room.
        let _ = self.ring.put_request(request);
        self.in_flight[usize::from(id)] = true;
        counters.stats.tx_frames += 1;
        counters.stats.tx_bytes += len as u64;
        Some((result, self.ring.push_requests()))
    }

    /// Takes every transmit response: frees its buffer, counts a failure
    /// as a drop. Returns how many buffers came back.
    pub fn reap(&mut self, counters: &mut Counters) -> Result<usize, RingOverrun> {
        let mut freed = 0;
        while let Some((_, response)) = self.ring.take_response()? {
            let id = usize::from(response.id);
            match self.in_flight.get_mut(id) {
                Some(flying @ true) => {
                    *flying = false;
                    self.free.push(response.id);
                    freed += 1;
                    if response.status != NETIF_RSP_OKAY {
                        // ERROR, DROPPED, or NULL (which answers extra info
                        // we never send).
                        counters.stats.tx_dropped += 1;
                        if response.status > NETIF_RSP_OKAY {
                            counters.protocol_errors += 1;
                        }
                    }
                }
                _ => counters.protocol_errors += 1,
            }
        }
        Ok(freed)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES` on the transmit ring.
    pub fn final_check(&mut self) -> Result<bool, RingOverrun> {
        self.ring.final_check_for_responses()
    }

    /// The pages, for the device to leak when the backend may still map
    /// them.
    pub fn into_pages(self) -> (TxRing, Vec<SharedPage>) {
        (self.ring, self.pages)
    }
}

/// Slots of a frame being skipped (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Skip {
    /// Extra-info slots follow.
    extras: bool,
    /// Continuation slots of the frame follow (after the extras).
    more: bool,
}

impl Skip {
    fn from_flags(flags: u16) -> Skip {
        Skip { extras: flags & NETRXF_EXTRA_INFO != 0, more: flags & NETRXF_MORE_DATA != 0 }
    }

    fn active(&self) -> bool {
        self.extras || self.more
    }
}

/// The receive queue: [`RX_BUFFERS`] granted pages, each posted in one
/// ring slot (or waiting to be posted again).
#[derive(Debug)]
pub struct RxQueue {
    ring: RxRing,
    pages: Vec<SharedPage>,
    /// The grant of each page, writable by the backend.
    grefs: Vec<GrantRef>,
    /// The buffer posted in each ring slot.
    posted_at: Vec<Option<u16>>,
    /// Buffers consumed and not posted again yet.
    unposted: Vec<u16>,
    skip: Skip,
}

impl RxQueue {
    /// A queue on `ring` with `pages` granted as `grefs` ([`RX_BUFFERS`]
    /// of each), none posted yet (see [`RxQueue::refill`]).
    pub fn new(ring: RxRing, pages: Vec<SharedPage>, grefs: Vec<GrantRef>) -> RxQueue {
        debug_assert!(pages.len() == RX_BUFFERS && grefs.len() == RX_BUFFERS);
        let slots = ring.size() as usize;
        RxQueue {
            ring,
            pages,
            grefs,
            posted_at: vec![None; slots],
            unposted: (0..RX_BUFFERS as u16).rev().collect(),
            skip: Skip::default(),
        }
    }

    /// The ring (its page is granted to the backend by the caller).
    pub fn ring(&self) -> &RxRing {
        &self.ring
    }

    /// Buffers posted to the backend now.
    pub fn posted(&self) -> usize {
        RX_BUFFERS - self.unposted.len()
    }

    /// Posts every consumed buffer again, with the page and grant it had;
    /// returns whether the backend must be notified.
    pub fn refill(&mut self) -> bool {
        if self.unposted.is_empty() {
            return false;
        }
        while let Some(&id) = self.unposted.last() {
            let index = self.ring.next_request_index();
            let request = RxRequest { id, pad: 0, gref: self.grefs[usize::from(id)] };
            if !self.ring.put_request(request) {
                break;
            }
            self.unposted.pop();
            self.posted_at[self.ring.slot_of(index)] = Some(id);
        }
        self.ring.push_requests()
    }

    /// The next good frame the backend delivered, copied out of its
    /// buffer; the buffers of the slots consumed wait for
    /// [`RxQueue::refill`]. Bad frames on the way are dropped and counted.
    pub fn next_frame(&mut self, counters: &mut Counters) -> Result<Option<Bytes>, RingOverrun> {
        while let Some((index, response)) = self.ring.take_response()? {
            let slot = self.ring.slot_of(index);
            // The overrun check guarantees a posted buffer in every slot
            // the backend may answer; `None` cannot come from the backend.
            let Some(id) = self.posted_at.get_mut(slot).and_then(Option::take) else {
                counters.protocol_errors += 1;
                continue;
            };
            self.unposted.push(id);
            if self.skip.active() {
                self.skip_slot(response);
                continue;
            }
            if response.id != id {
                // Its flags cannot be trusted either: drop this slot only.
                counters.protocol_errors += 1;
                counters.stats.rx_dropped += 1;
                continue;
            }
            let skip = Skip::from_flags(response.flags);
            if skip.active() {
                self.skip = skip;
                counters.stats.rx_dropped += 1;
                continue;
            }
            let (Ok(len), offset) = (usize::try_from(response.status), usize::from(response.offset)) else {
                counters.stats.rx_dropped += 1;
                continue;
            };
            if offset + len > PAGE_SIZE {
                counters.protocol_errors += 1;
                counters.stats.rx_dropped += 1;
                continue;
            }
            if !(ETHERNET_HEADER_LEN..=MAX_FRAME_LEN).contains(&len) {
                counters.stats.rx_dropped += 1;
                continue;
            }
            if response.flags & NETRXF_CSUM_BLANK != 0 {
                counters.csum_blank += 1;
            }
            let mut frame = vec![0u8; len];
            self.pages[usize::from(id)].read_bytes(offset, &mut frame);
            counters.stats.rx_frames += 1;
            counters.stats.rx_bytes += len as u64;
            return Ok(Some(Bytes::from(frame)));
        }
        Ok(None)
    }

    /// Consumes one slot of a frame being dropped.
    fn skip_slot(&mut self, response: RxResponse) {
        if self.skip.extras {
            // An extra-info slot: `type` in byte 0, `flags` in byte 1, which
            // is the high byte of the little-endian `id` we read.
            self.skip.extras = (response.id >> 8) as u8 & NETIF_EXTRA_FLAG_MORE != 0;
        } else {
            self.skip.more = response.flags & NETRXF_MORE_DATA != 0;
        }
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES` on the receive ring.
    pub fn final_check(&mut self) -> Result<bool, RingOverrun> {
        self.ring.final_check_for_responses()
    }

    /// The pages, for the device to leak when the backend may still map
    /// them.
    pub fn into_pages(self) -> (RxRing, Vec<SharedPage>) {
        (self.ring, self.pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::netif::{TxResponse, NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_NULL, NETRXF_DATA_VALIDATED};
    use crate::ring::sim::BackRing;

    fn pages(n: usize) -> Vec<SharedPage> {
        (0..n).map(|_| SharedPage::alloc().unwrap()).collect()
    }

    fn tx() -> (TxQueue, BackRing<TxRequest, TxResponse>) {
        let ring = TxRing::new(SharedPage::alloc().unwrap());
        let back = BackRing::attach(&ring);
        (TxQueue::new(ring, pages(TX_PAGES), (0..TX_PAGES as u32).map(|g| 500 + g).collect()), back)
    }

    fn rx() -> (RxQueue, BackRing<RxRequest, RxResponse>) {
        let ring = RxRing::new(SharedPage::alloc().unwrap());
        let back = BackRing::attach(&ring);
        let mut queue = RxQueue::new(ring, pages(RX_BUFFERS), (0..RX_BUFFERS as u32).map(|g| 1000 + g).collect());
        assert!(queue.refill(), "the first posting notifies");
        (queue, back)
    }

    /// The simulated netback's copy of a frame into the page of `gref`.
    fn deliver(
        queue: &RxQueue,
        back: &mut BackRing<RxRequest, RxResponse>,
        frame: &[u8],
        offset: u16,
        flags: u16,
    ) -> RxRequest {
        let request: RxRequest = back.take_request().expect("a posted buffer");
        let page = usize::try_from(request.gref - 1000).unwrap();
        queue.pages[page].write_bytes(usize::from(offset), frame);
        back.put_response(RxResponse { id: request.id, offset, flags, status: frame.len() as i16 });
        request
    }

    fn frame(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn sent_frames_reach_the_backend_in_their_buffers_and_come_back_free() {
        let (mut queue, mut back) = tx();
        let mut counters = Counters::default();
        let mut sent = Vec::new();
        for i in 0..TX_BUFFERS {
            let bytes = frame(60 + i * 40, i as u8);
            let (r, _) = queue.send(bytes.len(), |buf| buf.copy_from_slice(&bytes), &mut counters).unwrap();
            let () = r;
            sent.push(bytes);
        }
        assert!(!queue.has_free_buffer());
        assert!(queue.send(60, |_| unreachable!("no buffer is free"), &mut counters).is_none());
        let mut seen = 0;
        while let Some(req) = back.take_request() {
            let page = &queue.pages[(req.gref - 500) as usize];
            let mut got = vec![0; usize::from(req.size)];
            page.read_bytes(usize::from(req.offset), &mut got);
            assert_eq!(got, sent[seen], "frame {seen}");
            assert_eq!(req.flags, 0);
            // Answer out of order, as netback may.
            back.put_response(TxResponse { id: req.id ^ 1, status: NETIF_RSP_OKAY });
            seen += 1;
        }
        back.push_responses();
        assert_eq!((seen, queue.reap(&mut counters).unwrap()), (TX_BUFFERS, TX_BUFFERS));
        assert_eq!(queue.in_flight(), 0);
        assert_eq!((counters.stats.tx_frames, counters.stats.tx_dropped, counters.protocol_errors), (32, 0, 0));
    }

    #[test]
    fn two_buffers_share_a_page_without_overlapping() {
        let (mut queue, mut back) = tx();
        let mut counters = Counters::default();
        for seed in [1u8, 2] {
            queue.send(MAX_FRAME_LEN, |buf| buf.fill(seed), &mut counters).unwrap();
        }
        let (a, b) = (back.take_request().unwrap(), back.take_request().unwrap());
        assert_eq!(a.gref, b.gref);
        let (lo, hi) = if a.offset < b.offset { (a, b) } else { (b, a) };
        assert!(usize::from(lo.offset) + usize::from(lo.size) <= usize::from(hi.offset));
        assert!(usize::from(hi.offset) + usize::from(hi.size) <= PAGE_SIZE);
    }

    #[test]
    fn an_oversized_frame_is_refused_before_fill() {
        let (mut queue, _) = tx();
        let mut counters = Counters::default();
        assert!(queue.send(MAX_FRAME_LEN + 1, |_| unreachable!(), &mut counters).is_none());
        assert_eq!(queue.in_flight(), 0);
    }

    #[test]
    fn bad_transmit_responses_are_counted_and_free_nothing_twice() {
        let (mut queue, mut back) = tx();
        let mut counters = Counters::default();
        for _ in 0..3 {
            queue.send(60, |_| (), &mut counters).unwrap();
        }
        let ids: Vec<u16> = (0..3).map(|_| back.take_request().unwrap().id).collect();
        back.put_response(TxResponse { id: ids[0], status: NETIF_RSP_ERROR });
        back.put_response(TxResponse { id: ids[0], status: NETIF_RSP_OKAY }); // repeated
        back.put_response(TxResponse { id: 9999, status: NETIF_RSP_OKAY }); // unknown
        back.push_responses();
        assert_eq!(queue.reap(&mut counters).unwrap(), 1);
        assert_eq!((counters.stats.tx_dropped, counters.protocol_errors), (1, 2));
        assert_eq!(queue.in_flight(), 2);
        back.put_response(TxResponse { id: ids[1], status: NETIF_RSP_DROPPED });
        back.put_response(TxResponse { id: ids[2], status: NETIF_RSP_NULL });
        back.push_responses();
        // Five responses for three requests: the ring is overrun.
        assert!(queue.reap(&mut counters).is_err());
    }

    #[test]
    fn received_frames_are_copied_out_and_their_buffers_posted_again_with_the_same_grant() {
        let (mut queue, mut back) = rx();
        let mut counters = Counters::default();
        assert_eq!(queue.posted(), RX_BUFFERS);
        let mut grants = Vec::new();
        // Four rounds of the whole pool: every buffer is reused.
        for round in 0..4 * RX_BUFFERS {
            let bytes = frame(14 + round * 5 % 1500, round as u8);
            let offset = (round % 3) as u16 * 100;
            let request = deliver(&queue, &mut back, &bytes, offset, NETRXF_DATA_VALIDATED);
            grants.push((request.id, request.gref));
            back.push_responses();
            assert_eq!(queue.next_frame(&mut counters).unwrap().as_deref(), Some(&bytes[..]));
            queue.refill();
        }
        for (id, gref) in grants {
            assert_eq!(gref, 1000 + u32::from(id), "buffer {id} came back with another grant");
        }
        assert_eq!(queue.posted(), RX_BUFFERS);
        assert_eq!((counters.stats.rx_frames, counters.stats.rx_dropped), (4 * RX_BUFFERS as u64, 0));
    }

    #[test]
    fn bad_receive_responses_are_dropped_counted_and_recycled() {
        let (mut queue, mut back) = rx();
        let mut counters = Counters::default();
        let good = frame(100, 7);
        // A wrong id.
        let req: RxRequest = back.take_request().unwrap();
        back.put_response(RxResponse { id: req.id.wrapping_add(1), offset: 0, flags: 0, status: 100 });
        // A negative status.
        let req: RxRequest = back.take_request().unwrap();
        back.put_response(RxResponse { id: req.id, offset: 0, flags: 0, status: NETIF_RSP_ERROR });
        // Past the end of the page.
        let req: RxRequest = back.take_request().unwrap();
        back.put_response(RxResponse { id: req.id, offset: 4000, flags: 0, status: 200 });
        // Offset and status at their extremes.
        let req: RxRequest = back.take_request().unwrap();
        back.put_response(RxResponse { id: req.id, offset: u16::MAX, flags: 0, status: i16::MAX });
        // Too short and too long for an Ethernet frame.
        for status in [0i16, 13, 1515] {
            let req: RxRequest = back.take_request().unwrap();
            back.put_response(RxResponse { id: req.id, offset: 0, flags: 0, status });
        }
        deliver(&queue, &mut back, &good, 0, 0);
        back.push_responses();
        assert_eq!(queue.next_frame(&mut counters).unwrap().as_deref(), Some(&good[..]));
        assert_eq!((counters.stats.rx_dropped, counters.protocol_errors), (7, 3));
        assert_eq!(queue.posted(), RX_BUFFERS - 8);
        queue.refill();
        assert_eq!(queue.posted(), RX_BUFFERS);
    }

    #[test]
    fn multi_slot_frames_and_extra_info_are_skipped_whole() {
        let (mut queue, mut back) = rx();
        let mut counters = Counters::default();
        // A frame in three slots, after two extra-info slots.
        deliver(&queue, &mut back, &frame(1000, 1), 0, NETRXF_EXTRA_INFO | NETRXF_MORE_DATA);
        for more in [true, false] {
            let req: RxRequest = back.take_request().unwrap();
            // An extra-info slot: type 1 (GSO), flags MORE on the first.
            let id = u16::from(1u8) | u16::from(if more { NETIF_EXTRA_FLAG_MORE } else { 0 }) << 8;
            back.put_response(RxResponse { id, offset: 0xffff, flags: 0xffff, status: -7 });
            let _ = req;
        }
        deliver(&queue, &mut back, &frame(1000, 2), 0, NETRXF_MORE_DATA);
        deliver(&queue, &mut back, &frame(500, 3), 0, 0);
        // Only more_data, in two slots.
        deliver(&queue, &mut back, &frame(30, 4), 0, NETRXF_MORE_DATA);
        deliver(&queue, &mut back, &frame(30, 5), 0, 0);
        let good = frame(64, 6);
        deliver(&queue, &mut back, &good, 0, 0);
        back.push_responses();
        assert_eq!(queue.next_frame(&mut counters).unwrap().as_deref(), Some(&good[..]));
        assert_eq!((counters.stats.rx_dropped, counters.stats.rx_frames), (2, 1));
        assert_eq!(queue.posted(), RX_BUFFERS - 8);
    }

    #[test]
    fn a_frame_split_across_batches_is_still_skipped_whole() {
        let (mut queue, mut back) = rx();
        let mut counters = Counters::default();
        deliver(&queue, &mut back, &frame(100, 1), 0, NETRXF_MORE_DATA);
        back.push_responses();
        assert_eq!(queue.next_frame(&mut counters).unwrap(), None);
        deliver(&queue, &mut back, &frame(100, 2), 0, 0);
        let good = frame(80, 3);
        deliver(&queue, &mut back, &good, 0, 0);
        back.push_responses();
        assert_eq!(queue.next_frame(&mut counters).unwrap().as_deref(), Some(&good[..]));
        assert_eq!(counters.stats.rx_dropped, 1);
    }

    #[test]
    fn random_garbage_in_the_receive_ring_never_panics_and_keeps_the_pool_whole() {
        let (mut queue, mut back) = rx();
        let mut counters = Counters::default();
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let burst = next() % 8;
            for _ in 0..burst {
                if back.take_request().is_none() {
                    break;
                }
                let r = next();
                back.put_response(RxResponse {
                    id: if r & 1 == 0 { (r >> 8) as u16 % (RX_BUFFERS as u16 + 2) } else { (r >> 8) as u16 },
                    offset: (r >> 24) as u16,
                    flags: (r >> 40) as u16 & 0xf,
                    status: (r >> 48) as i16,
                });
            }
            back.push_responses();
            while let Ok(Some(frame)) = queue.next_frame(&mut counters) {
                assert!((ETHERNET_HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
            }
            queue.refill();
            assert_eq!(queue.posted() + queue.unposted.len(), RX_BUFFERS);
        }
        // The pool is whole: all posted, each id once.
        let mut ids: Vec<u16> = queue.posted_at.iter().flatten().copied().collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..RX_BUFFERS as u16).collect::<Vec<_>>());
        assert!(counters.stats.rx_dropped > 0);
    }

    #[test]
    fn an_overrun_receive_ring_is_reported() {
        let (mut queue, back) = rx();
        let mut counters = Counters::default();
        back.page.write::<u32>(crate::abi::netif::SRING_RSP_PROD, RX_BUFFERS as u32 + 1);
        assert!(queue.next_frame(&mut counters).is_err());
    }
}
