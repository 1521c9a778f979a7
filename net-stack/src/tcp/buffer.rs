//! The send and receive buffers of a connection.
//!
//! [`RingBuffer`] is a bounded byte ring. Bytes go in and out as slices
//! (one or two `copy_from_slice` each, never byte by byte), and the bytes
//! held can be lent out as at most two slices.
//!
//! Bound: a ring never holds more than the `limit` it was made with, and
//! its storage never exceeds that limit. Storage is allocated as data
//! arrives, doubling from [`MIN_STORAGE`] bytes, so an idle connection (or
//! one that moves little data) does not pay for its full buffers; once it
//! has grown, the steady state allocates nothing.
//!
//! [`SendBuffer`] is the send buffer: data written and not yet
//! acknowledged. Bytes written from a slice are copied into a ring; a
//! `Bytes` of at least [`MIN_HELD`] bytes that the application hands over
//! is kept as it is (a reference count, no copy) beside the ring. A
//! segment's payload is lent out as the slices of ring and held chunks it
//! spans ([`SendSlices`]) and copied from them straight into the frame, so
//! data handed over as `Bytes` is copied once on its way out (and again
//! for each retransmission, read from the same chunk). A chunk is released
//! when its last byte is acknowledged.
//!
//! Bound: the send buffer holds at most `limit` bytes of data, held chunks
//! and ring counted alike and exactly. A held chunk keeps alive the
//! allocation it is a slice of, which the application made and may be
//! larger; small `Bytes` (below [`MIN_HELD`]) are copied, so at most
//! `⌈limit / MIN_HELD⌉` chunks are held at once, and the chunk list has at
//! most twice that plus one entries (ring runs lie between held chunks).
//!
//! [`RecvBuffer`] is the receive buffer: in-order data waiting for the
//! application. A segment of at least [`MIN_HELD`] bytes is kept as the
//! `Bytes` it arrived in, a slice of the received frame, so its payload is
//! copied once, into the application's buffer, instead of twice; smaller
//! ones are copied into a ring, so a peer cannot make us pin a whole frame
//! per byte. A slice is a frame's only while the data is read promptly:
//! once it has been held for the hold time (`TcpConfig::recv_frame_hold`,
//! 100 ms by default) [`RecvBuffer::compact`] copies it into an allocation
//! of its own (consecutive ones together, up to [`MAX_COPY`] bytes), so the
//! frame's buffer is released. A zero hold time copies every payload.
//!
//! Bound: the receive buffer holds at most `limit` bytes of data, counted
//! exactly (the advertised window is `limit` minus that). In real memory:
//!
//! - frames kept alive by slices held: each slice held carries at least
//!   [`MIN_HELD`] bytes when it arrives (the oldest may have been read in
//!   part since), so at most `⌊limit / MIN_HELD⌋ + 1` frames (257 for the
//!   default 256 KiB), each for at most the hold time. What one frame
//!   keeps alive is the device's: on TAP a receive buffer of its own of
//!   one maximum frame (1519 bytes for MTU 1500) and its reference count,
//!   on virtio-net and Xen netfront an allocation of exactly the frame's
//!   length; at most 1.6 KiB with the allocator's overhead, 1.6 times the
//!   [`MIN_HELD`] bytes it must carry. A device that cuts frames from
//!   larger shared buffers makes each slice keep a whole shared buffer,
//!   for at most the hold time;
//! - our own allocations: the ring's storage (at most `limit`); the copies,
//!   each allocated at its data's length, whose data together with the
//!   ring's and the slices' is at most `limit`, and of which only the oldest
//!   can have been read in part (keeping the whole allocation: at most
//!   [`MAX_COPY`] bytes, or one segment); and the chunk list of at most
//!   `2 × (⌊limit / MIN_HELD⌋ + 1) + 1` entries (copies and slices each
//!   hold [`MIN_HELD`] bytes but the oldest, ring runs lie between them),
//!   of 48 bytes each, in a list whose capacity is at most twice that.
//!   So at most `2 × limit + MAX_COPY + 96 × (2 × (⌊limit / MIN_HELD⌋ + 1)
//!   + 1)` bytes: 577 KiB for the default 256 KiB.
//!
//! [`RecvBuffer::memory`] reports these figures as they are.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{Buf, Bytes};
use mirage_types::time::Instant;

/// Segments with at least this much data are held as received; smaller
/// ones are copied into the ring. Below a full-sized segment of a 1500-byte
/// MTU (1448 bytes with timestamps), above half of one, so the memory a
/// held frame pins is at most about twice its data. The send buffer holds
/// `Bytes` handed to it from the same size on.
pub(crate) const MIN_HELD: usize = 1024;

/// Data written and not yet acknowledged: held `Bytes` chunks and runs of
/// a ring of copied bytes, in stream order.
#[derive(Debug)]
pub(crate) struct SendBuffer {
    chunks: VecDeque<SendChunk>,
    /// Copied bytes, in order; each [`SendData::Ring`] chunk says where
    /// its bytes are.
    ring: RingBuffer,
    /// Bytes ever dropped from the front of the ring: a ring chunk's
    /// position minus this is its offset in the ring now.
    ring_consumed: u64,
    /// Stream position (bytes ever written) of the oldest byte held.
    head: u64,
    /// Bytes held in all.
    len: usize,
    limit: usize,
}

#[derive(Debug)]
struct SendChunk {
    /// Stream position of the chunk's first byte.
    start: u64,
    /// Bytes in the chunk; never 0.
    len: usize,
    data: SendData,
}

#[derive(Debug)]
enum SendData {
    /// Bytes handed over by the application; `len` long.
    Held(Bytes),
    /// `len` bytes of the ring from this ring position (counted as
    /// `ring_consumed` is).
    Ring(u64),
}

impl SendBuffer {
    /// An empty buffer for at most `limit` bytes; allocates nothing yet.
    pub(crate) const fn new(limit: usize) -> SendBuffer {
        SendBuffer { chunks: VecDeque::new(), ring: RingBuffer::new(limit), ring_consumed: 0, head: 0, len: 0, limit }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be written.
    pub(crate) fn free(&self) -> usize {
        self.limit - self.len
    }

    /// Appends as much of `data` as fits, copied into the ring, and
    /// returns how many bytes that was.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let at = self.ring_consumed + self.ring.len() as u64;
        // The ring's limit is ours and it holds part of our bytes, so it
        // takes all `n`.
        let copied = self.ring.write(&data[..n]);
        debug_assert_eq!(copied, n);
        match self.chunks.back_mut() {
            // The last ring run ends at the ring's end: extend it.
            Some(SendChunk { len, data: SendData::Ring(_), .. }) => *len += copied,
            _ => self.chunks.push_back(SendChunk {
                start: self.head + self.len as u64,
                len: copied,
                data: SendData::Ring(at),
            }),
        }
        self.len += copied;
        copied
    }

    /// Appends as much of `data` as fits and returns how many bytes that
    /// was: holds a slice of `data` (no copy) when that is at least
    /// [`MIN_HELD`] bytes, else copies it into the ring.
    pub(crate) fn write_bytes(&mut self, data: &Bytes) -> usize {
        let n = data.len().min(self.free());
        if n < MIN_HELD {
            return self.write(&data[..n]);
        }
        let start = self.head + self.len as u64;
        self.chunks.push_back(SendChunk { start, len: n, data: SendData::Held(data.slice(..n)) });
        self.len += n;
        n
    }

    /// Drops the `n` oldest bytes (all of them if `n` is larger), releasing
    /// each held chunk once all of it is dropped.
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        let mut rest = n;
        while rest > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            let k = front.len.min(rest);
            match &mut front.data {
                SendData::Held(bytes) => bytes.advance(k),
                SendData::Ring(at) => {
                    self.ring.consume(k);
                    self.ring_consumed += k as u64;
                    *at += k as u64;
                }
            }
            front.start += k as u64;
            front.len -= k;
            if front.len == 0 {
                self.chunks.pop_front();
            }
            rest -= k;
        }
        self.head += n as u64;
        self.len -= n;
    }

    /// Drops every byte; keeps the ring's storage.
    pub(crate) fn clear(&mut self) {
        self.consume(self.len);
    }

    /// The `len` bytes from `offset` on (counted from the oldest byte), as
    /// the slices of ring and held chunks they lie in, in order; clamped to
    /// the bytes held.
    pub(crate) fn slices(&self, offset: usize, len: usize) -> SendSlices<'_> {
        let offset = offset.min(self.len);
        let len = len.min(self.len - offset);
        let pos = self.head + offset as u64;
        // The chunk `pos` lies in: new data is sent from the last chunk
        // and retransmissions start in the first, so look there before
        // searching (chunks are in stream order).
        let last = self.chunks.len().saturating_sub(1);
        let index = match self.chunks.back() {
            Some(c) if c.start <= pos => last,
            _ => self.chunks.partition_point(|c| c.start + c.len as u64 <= pos),
        };
        SendSlices { buf: Some(self), index, pos, remaining: len, pending: &[] }
    }
}

/// A range of the send buffer as the slices it lies in, in order (see
/// [`SendBuffer::slices`]); none of them is empty.
#[derive(Clone, Debug)]
pub(crate) struct SendSlices<'a> {
    buf: Option<&'a SendBuffer>,
    /// The chunk `pos` lies in.
    index: usize,
    /// Stream position of the next byte after `pending`.
    pos: u64,
    /// Bytes still to yield after `pending`.
    remaining: usize,
    /// The second half of a ring run that wraps, to yield next.
    pending: &'a [u8],
}

impl<'a> SendSlices<'a> {
    /// No bytes.
    pub(crate) const EMPTY: SendSlices<'static> =
        SendSlices { buf: None, index: 0, pos: 0, remaining: 0, pending: &[] };

    /// Bytes still to yield.
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.remaining
    }

    /// Copies the bytes into `out`, which must be [`Self::len`] bytes
    /// long (panics otherwise: a bug in the caller).
    pub(crate) fn copy_to(self, out: &mut [u8]) {
        assert_eq!(out.len(), self.len(), "payload copied into a buffer of another size");
        let mut at = 0;
        for part in self {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }
}

impl<'a> Iterator for SendSlices<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if !self.pending.is_empty() {
            return Some(core::mem::take(&mut self.pending));
        }
        if self.remaining == 0 {
            return None;
        }
        let buf = self.buf?;
        let chunk = buf.chunks.get(self.index)?;
        // `pos` lies in this chunk: `slices` found it, and each step below
        // moves to the next chunk exactly at the end of this one.
        let within = usize::try_from(self.pos - chunk.start).ok()?;
        let k = chunk.len.checked_sub(within)?.min(self.remaining);
        self.index += 1;
        self.pos += k as u64;
        self.remaining -= k;
        match &chunk.data {
            SendData::Held(bytes) => bytes.get(within..within + k),
            SendData::Ring(at) => {
                let offset = usize::try_from(*at - buf.ring_consumed).ok()? + within;
                let [first, second] = buf.ring.slices(offset, k);
                self.pending = second;
                Some(first)
            }
        }
    }
}

/// In-order received data, as frame slices held, copies and bytes copied
/// into a ring, in arrival order.
#[derive(Debug)]
pub(crate) struct RecvBuffer {
    chunks: VecDeque<Chunk>,
    /// Small segments' bytes, in order; each [`Chunk::Ring`] says how many
    /// of the next ones belong to it.
    ring: RingBuffer,
    /// Bytes held in all.
    len: usize,
    limit: usize,
    /// How long a payload may stay a slice of its frame.
    hold: Duration,
    /// `hold` is not zero: payloads may be kept as slices at all.
    keep_frames: bool,
    /// At or before the arrival of the oldest [`Chunk::Frame`] held (exact
    /// after [`RecvBuffer::compact`]; after reads it may be a slice gone
    /// since, which costs one early timer pass); `None` when none is held.
    frames_since: Option<Instant>,
}

#[derive(Debug)]
enum Chunk {
    /// A segment's payload, a slice of the frame it arrived in at this
    /// instant (so it keeps the frame's buffer alive); never empty.
    Frame(Bytes, Instant),
    /// Bytes copied into an allocation of `size` bytes of our own; never
    /// empty.
    Copy(Bytes, usize),
    /// This many bytes at the front of the ring; never 0.
    Ring(usize),
}

/// What a connection's receive side holds (in-order and out-of-order data
/// together): see [`super::TcpConnection::recv_memory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMemory {
    /// Received bytes held, in order and out of order; at most
    /// [`super::TcpConfig::recv_buffer`].
    pub data: usize,
    /// Received frames kept alive, because part of their payload is held
    /// as a slice of them (zero-copy). Each keeps the buffer the device
    /// received the frame into: on this project's devices a buffer of the
    /// frame's own, at most 1.6 KiB. At most `⌊data / 1024⌋ + 1` (so at most
    /// `⌊recv_buffer / 1024⌋ + 1`), and each for at most
    /// [`super::TcpConfig::recv_frame_hold`] after it arrived.
    pub frames: usize,
    /// Payload bytes held as slices of those frames (part of `data`).
    pub frame_data: usize,
    /// Bytes the receive side allocated itself: the ring's storage, the
    /// copies of payloads, and the chunk and segment lists (capacity times
    /// entry size). Allocator overhead (tens of bytes per allocation) is
    /// not counted.
    pub allocated: usize,
}

impl core::ops::Add for RecvMemory {
    type Output = RecvMemory;

    fn add(self, other: RecvMemory) -> RecvMemory {
        RecvMemory {
            data: self.data + other.data,
            frames: self.frames + other.frames,
            frame_data: self.frame_data + other.frame_data,
            allocated: self.allocated + other.allocated,
        }
    }
}

impl core::ops::AddAssign for RecvMemory {
    fn add_assign(&mut self, other: RecvMemory) {
        *self = *self + other;
    }
}

/// The earlier of two optional instants.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether a frame slice received at `at` has been held for `hold` at `now`.
pub(crate) fn hold_over(at: Instant, hold: Duration, now: Instant) -> bool {
    at.checked_add(hold).is_some_and(|due| due <= now)
}

impl RecvBuffer {
    /// An empty buffer for at most `limit` bytes that keeps payloads as
    /// slices of their frames for at most `hold` (zero: copies every
    /// payload); allocates nothing yet.
    pub(crate) const fn new(limit: usize, hold: Duration) -> RecvBuffer {
        RecvBuffer {
            chunks: VecDeque::new(),
            ring: RingBuffer::new(limit),
            len: 0,
            limit,
            hold,
            keep_frames: !hold.is_zero(),
            frames_since: None,
        }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be written.
    pub(crate) fn free(&self) -> usize {
        self.limit - self.len
    }

    /// Appends as much of `data` as fits and returns how many bytes that
    /// was. `received` is `Some(instant it arrived)` when `data` is a slice
    /// of a received frame, `None` when it is a copy of our own. Data of
    /// at least [`MIN_HELD`] bytes (cut to what fits) is kept as it is,
    /// no copy (a frame slice only while the buffer's hold time is not
    /// zero); smaller data is copied into the ring. Taken by value, so
    /// holding it costs no reference count of its own.
    pub(crate) fn write(&mut self, mut data: Bytes, received: Option<Instant>) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        if n >= MIN_HELD {
            match received {
                Some(at) if self.keep_frames => {
                    data.truncate(n);
                    self.chunks.push_back(Chunk::Frame(data, at));
                    self.frames_since = earliest(self.frames_since, Some(at));
                    self.len += n;
                    return n;
                }
                // A copy cut short would keep its whole allocation.
                None if n == data.len() => {
                    self.chunks.push_back(Chunk::Copy(data, n));
                    self.len += n;
                    return n;
                }
                _ => {}
            }
        }
        // The ring's limit is ours and it holds part of our bytes, so
        // it takes all `n`.
        let copied = self.ring.write(&data[..n]);
        debug_assert_eq!(copied, n);
        match self.chunks.back_mut() {
            Some(Chunk::Ring(run)) => *run += copied,
            _ => self.chunks.push_back(Chunk::Ring(copied)),
        }
        self.len += n;
        n
    }

    /// Moves up to `out.len()` of the oldest bytes into `out` and returns
    /// how many; releases each held frame as soon as it is read.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.chunks.front_mut() else { break };
            let rest = &mut out[n..];
            let (k, done) = match front {
                Chunk::Frame(bytes, _) | Chunk::Copy(bytes, _) => {
                    let k = bytes.len().min(rest.len());
                    rest[..k].copy_from_slice(&bytes[..k]);
                    bytes.advance(k);
                    (k, bytes.is_empty())
                }
                Chunk::Ring(run) => {
                    let want = (*run).min(rest.len());
                    let k = self.ring.read(&mut rest[..want]);
                    *run -= k;
                    (k, *run == 0)
                }
            };
            n += k;
            if done {
                self.chunks.pop_front();
            } else if k == 0 {
                // Unreachable while the ring's runs match its contents;
                // stopping keeps a mismatch from spinning.
                break;
            }
        }
        self.len -= n;
        if self.len == 0 {
            self.frames_since = None;
        }
        n
    }

    /// At or before the arrival of the oldest frame slice held (exact
    /// after [`Self::compact`]); `None` if none is.
    pub(crate) fn frames_since(&self) -> Option<Instant> {
        self.frames_since
    }

    /// Copies every frame slice held for the hold time or longer at `now`
    /// into memory of our own, consecutive ones into one allocation, so
    /// their frames are released.
    pub(crate) fn compact(&mut self, now: Instant) {
        if self.frames_since.is_none() {
            return;
        }
        let hold = self.hold;
        let due = |c: &Chunk| matches!(c, Chunk::Frame(_, at) if hold_over(*at, hold, now));
        if !self.chunks.iter().any(due) {
            self.frames_since = self.chunks.iter().filter_map(Chunk::received).min();
            return;
        }
        // The length of each copy to make, in order: consecutive due
        // slices go into one copy of at most MAX_COPY bytes (unless one
        // slice is longer), allocated at its exact size.
        let mut runs: Vec<usize> = Vec::new();
        let mut in_run = false;
        for chunk in &self.chunks {
            let len = chunk.len();
            match (due(chunk), runs.last_mut()) {
                (true, Some(run)) if in_run && *run + len <= MAX_COPY => *run += len,
                (true, _) => runs.push(len),
                (false, _) => {}
            }
            in_run = due(chunk);
        }
        let count = self.chunks.len();
        let old = core::mem::replace(&mut self.chunks, VecDeque::with_capacity(count));
        let mut runs = runs.into_iter();
        let (mut run, mut target): (Vec<u8>, usize) = (Vec::new(), 0);
        // Each pass moves one chunk; a due slice is copied into `run`,
        // which becomes one chunk once it has its run's length.
        for chunk in old {
            let Chunk::Frame(bytes, at) = chunk else {
                self.chunks.push_back(chunk);
                continue;
            };
            if !hold_over(at, hold, now) {
                self.chunks.push_back(Chunk::Frame(bytes, at));
                continue;
            }
            if run.is_empty() {
                target = runs.next().unwrap_or(bytes.len());
                run = Vec::with_capacity(target);
            }
            run.extend_from_slice(&bytes);
            if run.len() >= target {
                let size = run.len();
                self.chunks.push_back(Chunk::Copy(Bytes::from(core::mem::take(&mut run)), size));
            }
        }
        self.frames_since = self.chunks.iter().filter_map(Chunk::received).min();
    }

    /// What the buffer holds (`data`, `frames`, `frame_data`, `allocated`).
    pub(crate) fn memory(&self) -> RecvMemory {
        let mut m = RecvMemory {
            data: self.len,
            allocated: self.ring.storage.len() + self.chunks.capacity() * core::mem::size_of::<Chunk>(),
            ..RecvMemory::default()
        };
        for chunk in &self.chunks {
            match chunk {
                Chunk::Frame(bytes, _) => {
                    m.frames += 1;
                    m.frame_data += bytes.len();
                }
                Chunk::Copy(_, size) => m.allocated += size,
                Chunk::Ring(_) => {}
            }
        }
        m
    }
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Frame(bytes, _) | Chunk::Copy(bytes, _) => bytes.len(),
            Chunk::Ring(run) => *run,
        }
    }

    /// When a frame slice arrived; `None` for memory of our own.
    fn received(&self) -> Option<Instant> {
        match self {
            Chunk::Frame(_, at) => Some(*at),
            _ => None,
        }
    }
}

/// The largest copy [`RecvBuffer::compact`] makes of consecutive slices:
/// the application may read a copy in part, which keeps it whole, so this
/// bounds what that leaves allocated beyond the data.
const MAX_COPY: usize = 16 * 1024;

/// The first allocation, in bytes (unless the limit is smaller).
const MIN_STORAGE: usize = 4096;

/// A FIFO of at most `limit` bytes.
#[derive(Debug)]
pub(crate) struct RingBuffer {
    /// The storage; its whole length is usable. Empty until the first write.
    storage: Vec<u8>,
    /// Index in `storage` of the oldest byte.
    head: usize,
    /// Bytes held, starting at `head` and wrapping at `storage.len()`.
    len: usize,
    limit: usize,
}

impl RingBuffer {
    /// An empty ring that will hold at most `limit` bytes; allocates nothing yet.
    pub(crate) const fn new(limit: usize) -> RingBuffer {
        RingBuffer { storage: Vec::new(), head: 0, len: 0, limit }
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes that can still be written.
    pub(crate) fn free(&self) -> usize {
        self.limit - self.len
    }

    /// Appends as much of `data` as fits and returns how many bytes that was.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.reserve(self.len + n);
        let cap = self.storage.len();
        // The first free byte, and the free run from it to the end of
        // storage (all the free space, when the data wraps already).
        let tail = wrap(self.head + self.len, cap);
        let first = n.min(cap - tail);
        self.storage[tail..tail + first].copy_from_slice(&data[..first]);
        // Only when the data wraps: a copy of nothing still calls `memcpy`,
        // which costs a small write as much as the copy itself.
        if first < n {
            self.storage[..n - first].copy_from_slice(&data[first..n]);
        }
        self.len += n;
        n
    }

    /// Moves up to `out.len()` of the oldest bytes into `out` and returns
    /// how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        let [a, b] = self.slices(0, n);
        out[..a.len()].copy_from_slice(a);
        if !b.is_empty() {
            out[a.len()..n].copy_from_slice(b);
        }
        self.consume(n);
        n
    }

    /// Drops the `n` oldest bytes (all of them if `n` is larger).
    pub(crate) fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        // Restarting at 0 when empty keeps later writes in one piece.
        self.head = if self.len == 0 { 0 } else { wrap(self.head + n, self.storage.len()) };
    }

    /// Drops every byte; keeps the storage.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.consume(self.len);
    }

    /// The `len` bytes from `offset` on (counted from the oldest byte), as
    /// at most two slices in order; the second is empty unless the range
    /// wraps. Both are clamped to the bytes held.
    pub(crate) fn slices(&self, offset: usize, len: usize) -> [&[u8]; 2] {
        let offset = offset.min(self.len);
        let len = len.min(self.len - offset);
        if len == 0 {
            return [&[], &[]];
        }
        let cap = self.storage.len();
        let start = wrap(self.head + offset, cap);
        let first = len.min(cap - start);
        [&self.storage[start..start + first], &self.storage[..len - first]]
    }

    /// Makes room for `needed` bytes in all (`needed <= limit`), keeping
    /// what is held.
    fn reserve(&mut self, needed: usize) {
        let cap = self.storage.len();
        if needed <= cap {
            return;
        }
        let new_cap = needed.max(cap.saturating_mul(2)).max(MIN_STORAGE).min(self.limit);
        let mut storage = Vec::with_capacity(new_cap);
        let [a, b] = self.slices(0, self.len);
        storage.extend_from_slice(a);
        storage.extend_from_slice(b);
        storage.resize(new_cap, 0);
        self.storage = storage;
        self.head = 0;
    }
}

/// `index % cap` for an index below `2 * cap`, which every caller's is
/// (a position below `cap` plus a count of at most `cap`), without the
/// division `%` costs (tens of cycles, several times per segment).
fn wrap(index: usize, cap: usize) -> usize {
    if index >= cap {
        index - cap
    } else {
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use proptest::prelude::*;
    use std::vec;

    fn contents(ring: &RingBuffer) -> Vec<u8> {
        let [a, b] = ring.slices(0, ring.len());
        [a, b].concat()
    }

    #[test]
    fn allocates_nothing_until_written_and_never_beyond_the_limit() {
        let mut ring = RingBuffer::new(10_000);
        assert_eq!(ring.storage.len(), 0);
        assert_eq!(ring.write(&[1; 100]), 100);
        assert_eq!(ring.storage.len(), MIN_STORAGE);
        assert_eq!(ring.write(&[2; 20_000]), 9_900);
        assert_eq!(ring.storage.len(), 10_000);
        assert_eq!(ring.free(), 0);
        assert_eq!(ring.write(&[3; 5]), 0);
    }

    #[test]
    fn a_tiny_limit_is_respected() {
        let mut ring = RingBuffer::new(4);
        assert_eq!(ring.write(b"abcdef"), 4);
        assert_eq!(ring.storage.len(), 4);
        let mut out = [0; 3];
        assert_eq!(ring.read(&mut out), 3);
        assert_eq!(&out, b"abc");
        assert_eq!(ring.write(b"xyz"), 3);
        assert_eq!(contents(&ring), b"dxyz");
        // "d" sits at the end of the storage, "xyz" wrapped to its start.
        assert_eq!(ring.slices(0, 10), [&b"d"[..], &b"xyz"[..]]);
        assert_eq!(ring.slices(1, 2), [&b"xy"[..], &b""[..]]);
    }

    #[test]
    fn growth_keeps_wrapped_data_in_order() {
        let mut ring = RingBuffer::new(3 * MIN_STORAGE);
        let first: Vec<u8> = (0..MIN_STORAGE).map(|i| i as u8).collect();
        ring.write(&first);
        ring.consume(MIN_STORAGE - 10);
        // Wraps within the first allocation, then grows while wrapped.
        ring.write(&[0xaa; 20]);
        assert_eq!(ring.storage.len(), MIN_STORAGE);
        ring.write(&[0xbb; MIN_STORAGE]);
        assert_eq!(ring.storage.len(), 2 * MIN_STORAGE);
        let mut expected = first[MIN_STORAGE - 10..].to_vec();
        expected.extend_from_slice(&[0xaa; 20]);
        expected.extend_from_slice(&[0xbb; MIN_STORAGE]);
        assert_eq!(contents(&ring), expected);
    }

    #[test]
    fn a_zero_limit_holds_nothing() {
        let mut ring = RingBuffer::new(0);
        assert_eq!(ring.write(b"a"), 0);
        assert_eq!(ring.read(&mut [0; 4]), 0);
        assert_eq!(ring.slices(0, 4), [&[][..], &[][..]]);
        ring.consume(3);
        assert!(ring.is_empty());
    }

    const HOLD: Duration = Duration::from_millis(100);

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn large_segments_are_held_small_ones_copied() {
        let mut buf = RecvBuffer::new(10_000, HOLD);
        let large = Bytes::from(vec![7u8; MIN_HELD]);
        let small = Bytes::from(vec![9u8; MIN_HELD - 1]);
        assert_eq!(buf.write(large.clone(), Some(at(0))), MIN_HELD);
        assert_eq!(buf.write(small.clone(), Some(at(0))), MIN_HELD - 1);
        // The large one is a reference to the same bytes, the small one a copy.
        assert!(!large.is_unique());
        assert!(small.is_unique());
        match buf.chunks.front() {
            Some(Chunk::Frame(held, _)) => assert_eq!(held.as_ptr(), large.as_ptr()),
            other => panic!("expected a held segment, got {other:?}"),
        }
        assert_eq!(buf.frames_since(), Some(at(0)));
        let mut out = vec![0xa5; 2 * MIN_HELD];
        assert_eq!(buf.read(&mut out), 2 * MIN_HELD - 1);
        assert!(out[..MIN_HELD].iter().all(|&b| b == 7));
        assert!(out[MIN_HELD..2 * MIN_HELD - 1].iter().all(|&b| b == 9));
        assert_eq!(out[2 * MIN_HELD - 1], 0xa5);
        // Reading released the frame.
        assert!(large.is_unique());
        assert!(buf.is_empty());
        assert_eq!(buf.frames_since(), None);
    }

    #[test]
    fn a_segment_beyond_the_limit_is_cut_and_small_runs_merge() {
        let mut buf = RecvBuffer::new(MIN_HELD + 10, HOLD);
        assert_eq!(buf.write(Bytes::from(vec![1u8; 2 * MIN_HELD]), Some(at(0))), MIN_HELD + 10);
        assert_eq!(buf.free(), 0);
        assert_eq!(buf.write(Bytes::from_static(b"x"), Some(at(0))), 0);
        let mut out = vec![0; MIN_HELD + 5];
        assert_eq!(buf.read(&mut out), MIN_HELD + 5);
        assert_eq!(buf.write(Bytes::from_static(b"ab"), Some(at(0))), 2);
        assert_eq!(buf.write(Bytes::from_static(b"cd"), None), 2);
        // One held chunk (its last 5 bytes) and one ring run of 4.
        assert_eq!(buf.chunks.len(), 2);
        let mut out = [0; 16];
        assert_eq!(buf.read(&mut out), 9);
        assert_eq!(&out[..9], &[1, 1, 1, 1, 1, b'a', b'b', b'c', b'd']);
    }

    #[test]
    fn slices_held_past_the_hold_time_are_copied_and_release_their_frames() {
        let mut buf = RecvBuffer::new(100_000, HOLD);
        // A frame of which the payload is a part, as a device hands it up.
        let frame = |fill: u8| Bytes::from(vec![fill; 1514]).slice(66..66 + 1448);
        let (a, b, c) = (frame(1), frame(2), frame(3));
        buf.write(a.clone(), Some(at(0)));
        buf.write(b.clone(), Some(at(10)));
        buf.write(Bytes::from_static(b"small"), Some(at(20)));
        buf.write(c.clone(), Some(at(150)));
        assert_eq!(buf.memory().frames, 3);
        assert_eq!(buf.frames_since(), Some(at(0)));
        // Before the hold time, nothing moves.
        buf.compact(at(99));
        assert_eq!(buf.memory().frames, 3);
        // At 110 ms the first two are due: copied into one allocation of
        // exactly their length; the third stays a slice.
        buf.compact(at(110));
        assert!(a.is_unique() && b.is_unique() && !c.is_unique());
        let m = buf.memory();
        assert_eq!((m.data, m.frames, m.frame_data), (3 * 1448 + 5, 1, 1448));
        assert_eq!(m.allocated, MIN_STORAGE + 2 * 1448 + buf.chunks.capacity() * core::mem::size_of::<Chunk>());
        assert!(matches!(buf.chunks.front(), Some(Chunk::Copy(bytes, 2896)) if bytes.len() == 2896));
        assert_eq!(buf.frames_since(), Some(at(150)));
        buf.compact(at(250));
        assert!(c.is_unique());
        assert_eq!((buf.memory().frames, buf.frames_since()), (0, None));
        let mut out = vec![0; 10_000];
        assert_eq!(buf.read(&mut out), 3 * 1448 + 5);
        let mut want = [vec![1u8; 1448], vec![2; 1448], b"small".to_vec(), vec![3; 1448]].concat();
        want.resize(10_000, 0);
        assert_eq!(out, want);
    }

    #[test]
    fn a_zero_hold_time_copies_every_payload() {
        let mut buf = RecvBuffer::new(100_000, Duration::ZERO);
        let a = Bytes::from(vec![1u8; 1448]);
        buf.write(a.clone(), Some(at(0)));
        assert!(a.is_unique());
        assert_eq!((buf.memory().frames, buf.frames_since()), (0, None));
        // A copy of our own is kept without copying it again.
        let own = Bytes::from(vec![2u8; 1448]);
        buf.write(own.clone(), None);
        assert!(!own.is_unique());
    }

    /// What happens to a receive buffer.
    #[derive(Clone, Debug)]
    enum RecvOp {
        /// A payload of this size arrives (as a slice of a larger frame, or
        /// as our own copy), this many ms after the previous operation.
        Write {
            size: usize,
            seed: u8,
            frame: bool,
            after: u64,
        },
        Read(usize),
        /// The timer runs this many ms after the previous operation.
        Compact {
            after: u64,
        },
    }

    fn recv_op() -> impl Strategy<Value = RecvOp> {
        prop_oneof![
            5 => (0usize..2 * MIN_HELD, any::<u8>(), any::<bool>(), 0u64..60)
                .prop_map(|(size, seed, frame, after)| RecvOp::Write { size, seed, frame, after }),
            3 => (0usize..2 * MIN_HELD).prop_map(RecvOp::Read),
            2 => (0u64..150).prop_map(|after| RecvOp::Compact { after }),
        ]
    }

    proptest! {
        /// The receive buffer behaves as a `VecDeque` capped at `limit`,
        /// whatever mix of frame slices, copies, reads and compactions;
        /// it never holds more than `⌊limit / MIN_HELD⌋ + 1` frames, none
        /// past the hold time after a compaction; its chunk list stays
        /// within its bound; and its accounting matches what it holds.
        #[test]
        fn recv_buffer_behaves_as_a_bounded_deque(limit in 0usize..6000, ops in proptest::collection::vec(recv_op(), 0..60)) {
            let mut buf = RecvBuffer::new(limit, HOLD);
            let mut model = VecDeque::new();
            let mut now = Instant::ZERO;
            // The frames handed in, to check which ones are still alive.
            let mut frames: Vec<(Bytes, Instant)> = Vec::new();
            for op in ops {
                match op {
                    RecvOp::Write { size, seed, frame, after } => {
                        now += Duration::from_millis(after);
                        let data: Vec<u8> = (0..size).map(|i| seed.wrapping_add(i as u8)).collect();
                        let bytes = if frame {
                            let mut whole = vec![0xee; 54];
                            whole.extend_from_slice(&data);
                            let whole = Bytes::from(whole);
                            frames.push((whole.clone(), now));
                            whole.slice(54..)
                        } else {
                            Bytes::from(data.clone())
                        };
                        let n = buf.write(bytes, frame.then_some(now));
                        prop_assert_eq!(n, size.min(limit - model.len()));
                        model.extend(&data[..n]);
                    }
                    RecvOp::Read(size) => {
                        let mut out = vec![0xa5; size];
                        let got = buf.read(&mut out);
                        let want: Vec<u8> = model.drain(..size.min(model.len())).collect();
                        prop_assert_eq!(&out[..got], &want[..]);
                        prop_assert!(out[got..].iter().all(|&b| b == 0xa5));
                    }
                    RecvOp::Compact { after } => {
                        now += Duration::from_millis(after);
                        buf.compact(now);
                        for (frame, at) in &frames {
                            prop_assert!(frame.is_unique() || !hold_over(*at, HOLD, now), "a frame held past the hold time");
                        }
                        if let Some(since) = buf.frames_since() {
                            prop_assert!(!hold_over(since, HOLD, now));
                        }
                    }
                }
                frames.retain(|(frame, _)| !frame.is_unique());
                prop_assert_eq!(buf.len(), model.len());
                prop_assert_eq!(buf.free(), limit - model.len());
                let m = buf.memory();
                prop_assert_eq!(m.frames, frames.len());
                prop_assert!(m.frames <= limit / MIN_HELD + 1);
                prop_assert_eq!(m.data, model.len());
                prop_assert!(m.frame_data <= m.data);
                let runs: usize = buf.chunks.iter().filter(|c| matches!(c, Chunk::Ring(_))).count();
                prop_assert!(buf.chunks.len() <= 2 * (limit / MIN_HELD + 1) + 1, "{} chunks, {} runs", buf.chunks.len(), runs);
                prop_assert!(buf.ring.storage.len() <= limit);
                // Only the oldest copy may have been read in part; the
                // others are exactly their allocation.
                for chunk in buf.chunks.iter().skip(1) {
                    if let Chunk::Copy(bytes, size) = chunk {
                        prop_assert_eq!(bytes.len(), *size);
                    }
                }
                if let Some(since) = buf.frames_since() {
                    prop_assert!(buf.chunks.iter().filter_map(Chunk::received).all(|at| at >= since));
                }
            }
            let mut rest = vec![0; model.len() + 1];
            let got = buf.read(&mut rest);
            prop_assert_eq!(&rest[..got], &model.iter().copied().collect::<Vec<u8>>()[..]);
            prop_assert!(buf.is_empty());
            prop_assert_eq!(buf.memory().frames, 0);
        }
    }

    fn send_contents(buf: &SendBuffer, offset: usize, len: usize) -> Vec<u8> {
        buf.slices(offset, len).collect::<Vec<_>>().concat()
    }

    #[test]
    fn handed_over_bytes_are_held_until_acknowledged() {
        let mut buf = SendBuffer::new(10_000);
        let large = Bytes::from(vec![7u8; 3000]);
        assert_eq!(buf.write(b"head"), 4);
        assert_eq!(buf.write_bytes(&large), 3000);
        assert_eq!(buf.write_bytes(&Bytes::from_static(b"tail")), 4);
        // Held, not copied: the buffer shares the allocation.
        assert!(!large.is_unique());
        let parts: Vec<&[u8]> = buf.slices(0, 3008).collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].as_ptr(), large.as_ptr());
        // A range inside the held chunk lends a slice of it.
        let inner: Vec<&[u8]> = buf.slices(100, 50).collect();
        assert_eq!(inner, [&large[96..146]]);
        // Acknowledging part of the chunk keeps it; all of it releases it.
        buf.consume(1000);
        assert!(!large.is_unique());
        buf.consume(2004);
        assert!(large.is_unique());
        assert_eq!(send_contents(&buf, 0, 100), b"tail");
    }

    #[test]
    fn a_large_write_beyond_the_room_left_is_taken_in_part() {
        let mut buf = SendBuffer::new(MIN_HELD + 500);
        let data = Bytes::from((0..4000).map(|i| i as u8).collect::<Vec<u8>>());
        assert_eq!(buf.write_bytes(&data), MIN_HELD + 500);
        assert!(!data.is_unique());
        assert_eq!(buf.free(), 0);
        assert_eq!(buf.write_bytes(&data), 0);
        assert_eq!(buf.write(b"x"), 0);
        // Room for less than MIN_HELD: that part is copied.
        buf.consume(MIN_HELD + 500);
        assert!(data.is_unique());
        buf.write(&[0; 1000]);
        assert_eq!(buf.write_bytes(&data), 524);
        assert!(data.is_unique());
        assert_eq!(send_contents(&buf, 1000, 1000), &data[..524]);
    }

    #[test]
    fn the_empty_range_and_an_empty_buffer_lend_nothing() {
        let buf = SendBuffer::new(100);
        assert_eq!(buf.slices(0, 10).count(), 0);
        assert_eq!(SendSlices::EMPTY.len(), 0);
        SendSlices::EMPTY.copy_to(&mut []);
    }

    /// What the application does to a send buffer.
    #[derive(Clone, Debug)]
    enum SendOp {
        /// A copying write.
        Write(Vec<u8>),
        /// A `Bytes` handed over: `len` bytes from `skip` into a larger
        /// allocation, so slicing is exercised.
        WriteBytes { skip: usize, len: usize, seed: u8 },
        /// The peer acknowledges this many bytes.
        Ack(usize),
        /// A (re)transmission reads this range.
        Read { offset: usize, len: usize },
    }

    fn send_op() -> impl Strategy<Value = SendOp> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..400).prop_map(SendOp::Write),
            3 => (0usize..64, 0usize..5000, any::<u8>()).prop_map(|(skip, len, seed)| SendOp::WriteBytes { skip, len, seed }),
            2 => (0usize..4000).prop_map(SendOp::Ack),
            4 => (0usize..9000, 0usize..3000).prop_map(|(offset, len)| SendOp::Read { offset, len }),
        ]
    }

    proptest! {
        /// The send buffer behaves as a `VecDeque` capped at `limit`,
        /// whatever mix of copied and handed-over writes, acknowledgments
        /// and reads at any offset; every read lends exactly the bytes
        /// written there, and the chunk and ring bounds hold.
        #[test]
        fn send_buffer_behaves_as_a_bounded_deque(limit in 0usize..12_000, ops in proptest::collection::vec(send_op(), 0..60)) {
            let mut buf = SendBuffer::new(limit);
            let mut model: VecDeque<u8> = VecDeque::new();
            for op in ops {
                match op {
                    SendOp::Write(data) => {
                        let n = buf.write(&data);
                        prop_assert_eq!(n, data.len().min(limit - model.len()));
                        model.extend(&data[..n]);
                    }
                    SendOp::WriteBytes { skip, len, seed } => {
                        let whole: Vec<u8> = (0..skip + len).map(|i| seed.wrapping_add((i * 13) as u8)).collect();
                        let data = Bytes::from(whole).slice(skip..);
                        let n = buf.write_bytes(&data);
                        prop_assert_eq!(n, len.min(limit - model.len()));
                        model.extend(&data[..n]);
                    }
                    SendOp::Ack(n) => {
                        buf.consume(n);
                        model.drain(..n.min(model.len()));
                    }
                    SendOp::Read { offset, len } => {
                        let slices = buf.slices(offset, len);
                        let start = offset.min(model.len());
                        let end = start + len.min(model.len() - start);
                        let want: Vec<u8> = model.range(start..end).copied().collect();
                        prop_assert_eq!(slices.len(), want.len());
                        prop_assert!(slices.clone().all(|s| !s.is_empty()));
                        let mut out = vec![0xa5; want.len()];
                        slices.copy_to(&mut out);
                        prop_assert_eq!(out, want);
                    }
                }
                prop_assert_eq!(buf.len(), model.len());
                prop_assert_eq!(buf.free(), limit - model.len());
                let held = buf.chunks.iter().filter(|c| matches!(c.data, SendData::Held(_))).count();
                prop_assert!(held <= limit.div_ceil(MIN_HELD));
                prop_assert!(buf.chunks.len() <= 2 * held + 1);
                prop_assert!(buf.ring.storage.len() <= limit);
                prop_assert_eq!(buf.chunks.iter().map(|c| c.len).sum::<usize>(), model.len());
            }
            prop_assert_eq!(send_contents(&buf, 0, model.len()), model.iter().copied().collect::<Vec<u8>>());
            buf.clear();
            prop_assert!(buf.is_empty());
            prop_assert!(buf.chunks.is_empty());
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<u8>),
        Read(usize),
        Consume(usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Write),
            3 => (0usize..300).prop_map(Op::Read),
            2 => (0usize..300).prop_map(Op::Consume),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The ring behaves as a `VecDeque` capped at `limit`, whatever the
        /// operations, and its slices always show exactly what it holds.
        #[test]
        fn behaves_as_a_bounded_deque(limit in 0usize..1000, ops in proptest::collection::vec(op(), 0..60),
                                      offset in 0usize..1100, len in 0usize..1100) {
            let mut ring = RingBuffer::new(limit);
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Write(data) => {
                        let n = ring.write(&data);
                        prop_assert_eq!(n, data.len().min(limit - model.len()));
                        model.extend(&data[..n]);
                    }
                    Op::Read(n) => {
                        let mut out = vec![0xa5; n];
                        let got = ring.read(&mut out);
                        let want: Vec<u8> = model.drain(..n.min(model.len())).collect();
                        prop_assert_eq!(&out[..got], &want[..]);
                        prop_assert!(out[got..].iter().all(|&b| b == 0xa5));
                    }
                    Op::Consume(n) => {
                        ring.consume(n);
                        model.drain(..n.min(model.len()));
                    }
                    Op::Clear => {
                        ring.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(ring.len(), model.len());
                prop_assert!(ring.storage.len() <= limit);
                prop_assert_eq!(contents(&ring), model.iter().copied().collect::<Vec<u8>>());
            }
            let [a, b] = ring.slices(offset, len);
            let start = offset.min(model.len());
            let end = start + len.min(model.len() - start);
            prop_assert_eq!([a, b].concat(), model.range(start..end).copied().collect::<Vec<u8>>());
        }
    }
}
