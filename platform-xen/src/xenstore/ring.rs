//! The xenstore ring page (`struct xenstore_domain_interface`,
//! `io/xs_wire.h`): two 1 KiB byte rings, `req` (we produce, xenstored
//! consumes) and `rsp` (the other way round), with free-running `u32`
//! indices; a byte's slot is its index masked to the ring
//! (`MASK_XENSTORE_IDX`).
//!
//! Bytes are stored before the producer index that covers them is
//! published, and a consumer index is read before the slots it frees are
//! reused, with a fence between each pair, as for every Xen ring. The
//! indices xenstored writes are untrusted: a producer more than a ring
//! ahead of its consumer is reported, never used as an offset.

use alloc::format;

use super::XenstoreError;
use crate::page::SharedPage;
use core::sync::atomic::{fence, Ordering};

/// `XENSTORE_RING_SIZE`: the size of each of `req` and `rsp`.
pub const RING_SIZE: usize = 1024;

/// Offsets of `struct xenstore_domain_interface` (Xen 4.17).
pub mod offset {
    /// `char req[1024]`.
    pub const REQ: usize = 0;
    /// `char rsp[1024]`.
    pub const RSP: usize = 1024;
    /// `req_cons`: how far xenstored has read our requests.
    pub const REQ_CONS: usize = 2048;
    /// `req_prod`: how far we have written requests.
    pub const REQ_PROD: usize = 2052;
    /// `rsp_cons`: how far we have read responses.
    pub const RSP_CONS: usize = 2056;
    /// `rsp_prod`: how far xenstored has written responses.
    pub const RSP_PROD: usize = 2060;
    /// `server_features` (`XENSTORE_SERVER_FEATURE_*`).
    pub const SERVER_FEATURES: usize = 2064;
    /// `connection` (`XENSTORE_CONNECTED`, `XENSTORE_RECONNECT`).
    pub const CONNECTION: usize = 2068;
    /// `error` (`XENSTORE_ERROR_*`), with `XENSTORE_SERVER_FEATURE_ERROR`.
    pub const ERROR: usize = 2072;
}

/// `MASK_XENSTORE_IDX`.
fn mask(index: u32) -> usize {
    index as usize & (RING_SIZE - 1)
}

/// One side of a ring: where its bytes and indices lie.
#[derive(Clone, Copy)]
struct Side {
    data: usize,
    cons: usize,
    prod: usize,
    name: &'static str,
}

const REQUESTS: Side = Side { data: offset::REQ, cons: offset::REQ_CONS, prod: offset::REQ_PROD, name: "request" };
const RESPONSES: Side = Side { data: offset::RSP, cons: offset::RSP_CONS, prod: offset::RSP_PROD, name: "response" };

/// Reads `side`'s indices; errors if the producer is more than a ring
/// ahead of the consumer.
fn indices(page: &SharedPage, side: Side) -> Result<(u32, u32), XenstoreError> {
    let cons = page.read::<u32>(side.cons);
    let prod = page.read::<u32>(side.prod);
    let used = prod.wrapping_sub(cons);
    if used as usize > RING_SIZE {
        return Err(XenstoreError::Malformed(format!(
            "the xenstore {} ring's producer {prod:#x} is {used} bytes ahead of its consumer {cons:#x} (ring of {RING_SIZE})",
            side.name
        )));
    }
    Ok((cons, prod))
}

/// Copies as much of `bytes` into the ring as fits and publishes it as
/// `producer`'s side; returns how many bytes went in.
fn produce(page: &SharedPage, side: Side, bytes: &[u8]) -> Result<usize, XenstoreError> {
    let (cons, prod) = indices(page, side)?;
    // The slots before `cons` are free only once `cons` has been read.
    fence(Ordering::SeqCst);
    let free = RING_SIZE - prod.wrapping_sub(cons) as usize;
    let n = free.min(bytes.len());
    for (i, byte) in bytes[..n].iter().enumerate() {
        page.write::<u8>(side.data + mask(prod.wrapping_add(i as u32)), *byte);
    }
    // The consumer must see the bytes before the index covering them.
    fence(Ordering::SeqCst);
    page.write::<u32>(side.prod, prod.wrapping_add(n as u32));
    Ok(n)
}

/// Copies up to `out.len()` available bytes out of the ring and frees
/// them as `side`'s consumer; returns how many.
fn consume(page: &SharedPage, side: Side, out: &mut [u8]) -> Result<usize, XenstoreError> {
    let (cons, prod) = indices(page, side)?;
    // The bytes are read only after the index that covers them.
    fence(Ordering::SeqCst);
    let n = (prod.wrapping_sub(cons) as usize).min(out.len());
    for (i, byte) in out[..n].iter_mut().enumerate() {
        *byte = page.read::<u8>(side.data + mask(cons.wrapping_add(i as u32)));
    }
    // The bytes are copied before their slots are handed back.
    fence(Ordering::SeqCst);
    page.write::<u32>(side.cons, cons.wrapping_add(n as u32));
    Ok(n)
}

/// The client's end: writes requests, reads responses.
pub fn write_requests(page: &SharedPage, bytes: &[u8]) -> Result<usize, XenstoreError> {
    produce(page, REQUESTS, bytes)
}

/// The client's end: reads up to `out.len()` response bytes.
pub fn read_responses(page: &SharedPage, out: &mut [u8]) -> Result<usize, XenstoreError> {
    consume(page, RESPONSES, out)
}

/// xenstored's end (for the simulated xenstored of the tests).
#[cfg(test)]
pub fn read_requests(page: &SharedPage, out: &mut [u8]) -> Result<usize, XenstoreError> {
    consume(page, REQUESTS, out)
}

/// xenstored's end (for the simulated xenstored of the tests).
#[cfg(test)]
pub fn write_responses(page: &SharedPage, bytes: &[u8]) -> Result<usize, XenstoreError> {
    produce(page, RESPONSES, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn bytes_wrap_around_the_ring_end() {
        let page = SharedPage::alloc().unwrap();
        // Start near the end of the index space, so both the slot and the
        // u32 index wrap.
        page.write::<u32>(offset::REQ_CONS, u32::MAX - 10);
        page.write::<u32>(offset::REQ_PROD, u32::MAX - 10);
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        assert_eq!(write_requests(&page, &data).unwrap(), 1000);
        // Only 24 bytes of room left.
        assert_eq!(write_requests(&page, &data).unwrap(), 24);
        assert_eq!(write_requests(&page, &data).unwrap(), 0);
        let mut out = [0; 2048];
        assert_eq!(read_requests(&page, &mut out).unwrap(), 1024);
        assert_eq!(&out[..1000], &data[..]);
        assert_eq!(&out[1000..1024], &data[..24]);
        assert_eq!(page.read::<u32>(offset::REQ_PROD), (u32::MAX - 10).wrapping_add(1024));
    }

    #[test]
    fn a_producer_more_than_a_ring_ahead_is_an_error() {
        let page = SharedPage::alloc().unwrap();
        page.write::<u32>(offset::RSP_PROD, RING_SIZE as u32 + 1);
        let mut out = [0; 16];
        assert!(matches!(read_responses(&page, &mut out), Err(XenstoreError::Malformed(_))));
        // A consumer past the producer is the same thing seen modulo 2^32.
        page.write::<u32>(offset::RSP_PROD, 0);
        page.write::<u32>(offset::RSP_CONS, 5);
        assert!(read_responses(&page, &mut out).is_err());
        page.write::<u32>(offset::REQ_CONS, 7);
        assert!(write_requests(&page, b"x").is_err());
        // Exactly full is fine.
        page.write::<u32>(offset::RSP_PROD, RING_SIZE as u32);
        page.write::<u32>(offset::RSP_CONS, 0);
        assert_eq!(read_responses(&page, &mut out).unwrap(), 16);
    }
}
