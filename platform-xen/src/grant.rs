//! Grant tables (v1): letting another domain map or copy one of our pages.
//!
//! A [`Grant`] writes one `grant_entry_v1` (`grant_table.h`) naming the
//! grantee, the frame and whether it may write; the grantee (a backend in
//! dom0) uses the entry's reference to map the page. Dropping the grant
//! ends the access: its flags are cleared with a 16-bit compare-exchange,
//! and only if Xen has not marked the entry `GTF_reading`/`GTF_writing`
//! (the grantee still has the page mapped, or a copy runs). An entry the
//! grantee still uses is *parked*: never handed out again until a later
//! grant operation finds it released and ends it then. So an entry is
//! never reused, nor its page's grant forgotten, while another domain can
//! reach the page. (The page itself is the owner's: it must outlive the
//! grant, which holds no borrow of it; see [`crate::page::SharedPage`].)
//!
//! # Set-up and bounds
//!
//! The table is set up on first use: each frame of entries is mapped with
//! `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx)` into a page of
//! ours (leaked: the frame stays Xen's), one frame at a time as the free
//! entries run out, up to [`MAX_FRAMES`] frames or the most Xen allows
//! (`GNTTABOP_query_size`), whichever is smaller. The first
//! [`GNTTAB_NR_RESERVED_ENTRIES`] references belong to the toolstack and
//! are never used. So at most [`MAX_GRANTS`] entries are granted or parked
//! at once; a grant beyond that fails with [`XenError::Unexpected`].
//!
//! The bookkeeping ([`GrantBook`]: free list, parking) is pure and tested
//! on the host; the entries live in the mapped frames.

use alloc::vec::Vec;
use core::sync::atomic::{fence, AtomicU16, Ordering};

use crate::abi::{
    GrantEntryV1, GNTTAB_NR_RESERVED_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING, PAGE_SIZE,
    XENMAPSPACE_GRANT_TABLE,
};
use crate::hypercall::{leak_page, XenError};
use crate::hypervisor::{add_to_physmap, gnttab_query_size};

/// A grant reference: the index of an entry, which the grantee is told
/// (through xenstore or a ring) to name the page.
pub type GrantRef = u32;

/// Entries in one 4 KiB frame of v1 entries (8 bytes each).
pub const ENTRIES_PER_FRAME: usize = PAGE_SIZE / core::mem::size_of::<GrantEntryV1>();

/// The most grant table frames this domain maps (Xen's default limit for
/// a domain is 64; 8 frames are enough for a few rings' worth of
/// requests: a netfront's 256 + 256 buffers and a blkfront's 32 requests
/// of 11 segments fit with room to spare).
pub const MAX_FRAMES: usize = 8;

/// The most entries granted or parked at once: [`MAX_FRAMES`] frames of
/// entries less the reserved ones.
pub const MAX_GRANTS: usize = MAX_FRAMES * ENTRIES_PER_FRAME - GNTTAB_NR_RESERVED_ENTRIES as usize;

/// The free list and the parked entries: which references may be handed
/// out, which are granted, which wait to be ended. Pure bookkeeping; the
/// caller does the entry writes and the frame mapping.
#[derive(Debug, Default)]
pub struct GrantBook {
    /// References not granted, over the frames added so far.
    free: Vec<GrantRef>,
    /// References whose grantee still used them when they were ended.
    parked: Vec<GrantRef>,
    /// How many references are granted (not free, not parked).
    granted: usize,
    /// How many frames of entries exist.
    frames: usize,
}

impl GrantBook {
    /// A book with no frame yet.
    pub const fn new() -> GrantBook {
        GrantBook { free: Vec::new(), parked: Vec::new(), granted: 0, frames: 0 }
    }

    /// How many frames of entries have been added.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Adds the entries of the next frame to the free list (the caller has
    /// mapped it), skipping the reserved references. Returns the frame's
    /// index, or `None` at [`MAX_FRAMES`].
    pub fn add_frame(&mut self) -> Option<usize> {
        if self.frames >= MAX_FRAMES {
            return None;
        }
        let index = self.frames;
        let first = (index * ENTRIES_PER_FRAME) as GrantRef;
        let last = first + ENTRIES_PER_FRAME as GrantRef;
        // Handed out lowest first (the list is popped from its end).
        self.free.extend((first.max(GNTTAB_NR_RESERVED_ENTRIES)..last).rev());
        self.frames += 1;
        Some(index)
    }

    /// Takes a free reference, if there is one.
    pub fn take(&mut self) -> Option<GrantRef> {
        let reference = self.free.pop()?;
        self.granted += 1;
        Some(reference)
    }

    /// Returns an ended grant's reference to the free list.
    pub fn release(&mut self, reference: GrantRef) {
        self.granted = self.granted.saturating_sub(1);
        self.free.push(reference);
    }

    /// Parks a grant that could not be ended (its grantee still uses it).
    pub fn park(&mut self, reference: GrantRef) {
        self.granted = self.granted.saturating_sub(1);
        self.parked.push(reference);
    }

    /// Tries to end each parked entry with `end` (true: ended) and frees
    /// those that ended. Returns how many.
    pub fn retry_parked(&mut self, mut end: impl FnMut(GrantRef) -> bool) -> usize {
        let before = self.free.len();
        let mut i = 0;
        while i < self.parked.len() {
            if end(self.parked[i]) {
                let reference = self.parked.swap_remove(i);
                self.free.push(reference);
            } else {
                i += 1;
            }
        }
        self.free.len() - before
    }

    /// Entries granted or parked.
    pub fn in_use(&self) -> usize {
        self.granted + self.parked.len()
    }

    /// Entries parked.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }
}

/// The table: the book and where each frame of entries is mapped.
struct Table {
    book: GrantBook,
    /// The address of each mapped frame, by frame index.
    frames: Vec<u64>,
    /// How many frames Xen allows this domain (at most [`MAX_FRAMES`] used).
    limit: usize,
}

/// The entry of `reference` in the mapped `frames`.
fn entry_in(frames: &[u64], reference: GrantRef) -> Option<*mut GrantEntryV1> {
    let frame = *frames.get(reference as usize / ENTRIES_PER_FRAME)?;
    let offset = reference as usize % ENTRIES_PER_FRAME * core::mem::size_of::<GrantEntryV1>();
    Some((frame as usize + offset) as *mut GrantEntryV1)
}

/// Ends the access `reference` grants, unless Xen marks it in use
/// (`GTF_reading`/`GTF_writing`): clears the flags with a compare-exchange
/// so a mapping Xen starts in between is seen. True if ended.
fn end_entry(frames: &[u64], reference: GrantRef) -> bool {
    let Some(entry) = entry_in(frames, reference) else { return true };
    // SAFETY: the entry lies in a mapped grant frame (identity-mapped; the
    // flags word is at offset 0, 2-byte aligned); Xen updates it with
    // atomic operations, so it is accessed as an `AtomicU16`.
    let flags = unsafe { &*(entry.cast::<AtomicU16>()) };
    let mut current = flags.load(Ordering::SeqCst);
    loop {
        if current & (GTF_READING | GTF_WRITING) != 0 {
            return false;
        }
        match flags.compare_exchange(current, 0, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(seen) => current = seen,
        }
    }
}

impl Table {
    /// Maps one more frame of entries and adds it to the book.
    fn grow(&mut self) -> Result<(), XenError> {
        if self.book.frames() >= self.limit.min(MAX_FRAMES) {
            return Err(XenError::Unexpected("all grant table entries are in use (see grant::MAX_GRANTS)"));
        }
        let page = leak_page("grant table")?;
        add_to_physmap(XENMAPSPACE_GRANT_TABLE, self.book.frames() as u64, page / PAGE_SIZE as u64)?;
        self.frames.push(page);
        self.book.add_frame();
        Ok(())
    }

    /// Ends `reference`'s access, or parks it; retries the parked ones.
    fn end(&mut self, reference: GrantRef) {
        if end_entry(&self.frames, reference) {
            self.book.release(reference);
        } else {
            self.book.park(reference);
        }
        self.retry_parked();
    }

    /// Retries the parked entries.
    fn retry_parked(&mut self) {
        let frames = &self.frames;
        self.book.retry_parked(|reference| end_entry(frames, reference));
    }
}

/// The grant table, set up on first use. Tasks run on the one vCPU with
/// interrupts masked and the event upcall never grants, so the lock is
/// never contended.
static TABLE: spin::Mutex<Option<Table>> = spin::Mutex::new(None);

/// Runs `f` on the table, setting it up first if needed.
fn with_table<T>(f: impl FnOnce(&mut Table) -> Result<T, XenError>) -> Result<T, XenError> {
    let mut guard = TABLE.lock();
    if guard.is_none() {
        let (_, max_frames) = gnttab_query_size()?;
        let mut table = Table { book: GrantBook::new(), frames: Vec::new(), limit: max_frames as usize };
        table.grow()?;
        *guard = Some(table);
    }
    match guard.as_mut() {
        Some(table) => f(table),
        None => Err(XenError::Unexpected("grant table not set up")),
    }
}

/// Access to one of our frames granted to another domain. Not `Clone`:
/// one owner ends it, by dropping it.
#[derive(Debug)]
pub struct Grant {
    reference: GrantRef,
    frame: u64,
}

impl Grant {
    /// Grants domain `domid` access to our frame `frame` (read-only if
    /// `readonly`). Sets the table up on first use and maps another frame
    /// of entries when the free ones run out; retries parked entries
    /// first. Errors: the frame is beyond the 32 bits a v1 entry holds,
    /// [`MAX_GRANTS`] entries are in use, or Xen refused to map a frame of
    /// the table.
    pub fn access(domid: u16, frame: u64, readonly: bool) -> Result<Grant, XenError> {
        let frame32 = u32::try_from(frame)
            .map_err(|_| XenError::Unexpected("a granted frame must be below 2^32 (v1 entries)"))?;
        let reference = with_table(|table| {
            table.retry_parked();
            let reference = match table.book.take() {
                Some(reference) => reference,
                None => {
                    table.grow()?;
                    table.book.take().ok_or(XenError::Unexpected("a new grant table frame had no free entry"))?
                }
            };
            let Some(entry) = entry_in(&table.frames, reference) else {
                table.book.release(reference);
                return Err(XenError::Unexpected("a free grant reference lies outside the mapped frames"));
            };
            let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
            // SAFETY: the entry lies in a mapped grant frame and is free (its
            // flags are 0, so Xen does not use it); the domid and frame must
            // be visible to Xen before the flags that make the entry valid.
            unsafe {
                core::ptr::addr_of_mut!((*entry).domid).write_volatile(domid);
                core::ptr::addr_of_mut!((*entry).frame).write_volatile(frame32);
                fence(Ordering::SeqCst);
                core::ptr::addr_of_mut!((*entry).flags).write_volatile(flags);
            }
            Ok(reference)
        })?;
        Ok(Grant { reference, frame })
    }

    /// The reference to tell the grantee.
    pub fn reference(&self) -> GrantRef {
        self.reference
    }

    /// The granted frame.
    pub fn frame(&self) -> u64 {
        self.frame
    }

    /// The entry as Xen sees it now, for checks.
    pub fn entry(&self) -> Option<GrantEntryV1> {
        let guard = TABLE.lock();
        let entry = entry_in(&guard.as_ref()?.frames, self.reference)?;
        // SAFETY: the entry lies in a mapped grant frame; volatile since Xen
        // writes its flags concurrently.
        Some(unsafe { entry.read_volatile() })
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut guard = TABLE.lock();
        if let Some(table) = guard.as_mut() {
            table.end(self.reference);
        }
    }
}

/// Entries granted or parked (0 before the table is set up).
pub fn in_use() -> usize {
    TABLE.lock().as_ref().map_or(0, |table| table.book.in_use())
}

/// The frames of entries mapped so far (0 before the table is set up).
pub fn frames() -> usize {
    TABLE.lock().as_ref().map_or(0, |table| table.book.frames())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserved_references_are_never_handed_out_and_the_first_is_eight() {
        let mut book = GrantBook::new();
        assert_eq!(book.take(), None);
        assert_eq!(book.add_frame(), Some(0));
        assert_eq!(book.take(), Some(GNTTAB_NR_RESERVED_ENTRIES));
        let mut all = vec![GNTTAB_NR_RESERVED_ENTRIES];
        while let Some(r) = book.take() {
            all.push(r);
        }
        assert_eq!(all.len(), ENTRIES_PER_FRAME - GNTTAB_NR_RESERVED_ENTRIES as usize);
        assert!(all.iter().all(|&r| r >= GNTTAB_NR_RESERVED_ENTRIES && (r as usize) < ENTRIES_PER_FRAME));
        assert_eq!(book.in_use(), all.len());
    }

    #[test]
    fn frames_are_bounded_and_the_total_is_max_grants() {
        let mut book = GrantBook::new();
        for i in 0..MAX_FRAMES {
            assert_eq!(book.add_frame(), Some(i));
        }
        assert_eq!(book.add_frame(), None);
        let mut seen = std::collections::BTreeSet::new();
        while let Some(r) = book.take() {
            assert!(seen.insert(r), "reference {r} handed out twice");
        }
        assert_eq!(seen.len(), MAX_GRANTS);
        assert_eq!(book.in_use(), MAX_GRANTS);
        // The second frame starts where the first ends.
        assert!(seen.contains(&(ENTRIES_PER_FRAME as u32)) && !seen.contains(&0));
    }

    #[test]
    fn a_released_reference_is_reused_and_in_use_counts_back_down() {
        let mut book = GrantBook::new();
        book.add_frame();
        let a = book.take().unwrap();
        let b = book.take().unwrap();
        assert_eq!(book.in_use(), 2);
        book.release(a);
        assert_eq!(book.in_use(), 1);
        assert_eq!(book.take(), Some(a));
        book.release(a);
        book.release(b);
        assert_eq!(book.in_use(), 0);
    }

    #[test]
    fn a_parked_reference_is_not_reused_until_it_ends() {
        let mut book = GrantBook::new();
        book.add_frame();
        let mapped = book.take().unwrap();
        book.park(mapped);
        assert_eq!((book.in_use(), book.parked()), (1, 1));
        // Everything else can be handed out; the parked one never is.
        while let Some(r) = book.take() {
            assert_ne!(r, mapped);
        }
        // The grantee still maps it: the retry keeps it parked.
        assert_eq!(book.retry_parked(|_| false), 0);
        assert_eq!(book.take(), None);
        // Unmapped now: the retry frees it.
        let mut tried = Vec::new();
        assert_eq!(
            book.retry_parked(|r| {
                tried.push(r);
                true
            }),
            1
        );
        assert_eq!(tried, vec![mapped]);
        assert_eq!(book.parked(), 0);
        assert_eq!(book.take(), Some(mapped));
    }
}
