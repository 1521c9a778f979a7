//! A xenstore client: this domain's connection to xenstored over the
//! shared ring page and event channel the toolstack set up (HVM
//! parameters 1 and 2).
//!
//! [`Xenstore`] reads, writes, lists and removes nodes, runs
//! [`transactions`](Xenstore::transaction) (retried on `EAGAIN`) and
//! [`watches`](Xenstore::watch) paths. Relative paths are relative to the
//! domain's home, `/local/domain/<domid>`, as xenstored resolves them.
//!
//! # How it works
//!
//! The protocol core is sans-IO ([`wire`]: messages as bytes, [`ring`]:
//! the ring page's two byte rings). The client keeps, in one `RefCell`
//! (the domain runs one vCPU), the bytes of requests not yet in the ring,
//! the reply assembler, the requests waiting for replies (by request id)
//! and the watches (by token). Every task that waits for xenstore moves
//! bytes both ways ("pumps"), routes each complete message to its waiter
//! (a reply by request id; a watch event by token, so events may arrive
//! between replies in any order) and wakes it, then waits on the event
//! channel; xenstored is notified whenever bytes moved.
//!
//! Cancellation: dropping a request's future abandons the request (its
//! reply is discarded when it arrives); dropping a transaction's future
//! before it ends aborts the transaction; dropping a [`Watch`] unwatches.
//!
//! # Bounds
//!
//! - At most [`MAX_IN_FLIGHT`] requests wait for replies at once; a
//!   further request waits for one of them to finish before it is sent.
//!   Requests abandoned by cancellation and the unwatch of a dropped
//!   [`Watch`] do not count (each is at most one per dropped future).
//! - A message is at most [`wire::PAYLOAD_MAX`] bytes of payload, both
//!   ways: a longer request is refused with [`XenstoreError::TooLong`], a
//!   longer reply breaks the connection.
//! - A watch queues at most [`MAX_WATCH_EVENTS`] paths. A watch event
//!   means "re-read", so events coalesce: a path equal to or under one
//!   already queued is dropped, and on overflow the queue becomes the
//!   watched path alone (re-read everything under it).
//! - A transaction's body runs at most `1 + `[`MAX_TRANSACTION_RETRIES`]
//!   times; then the `EAGAIN` is the error.
//!
//! A reply that breaks the protocol (unknown type, bad payload, a reply
//! to no request, ring indices out of range) fails the connection: every
//! waiter and every later call gets [`XenstoreError::Malformed`] (there
//! is no telling where the next message starts).

pub mod ring;
pub mod wire;

#[cfg(test)]
pub(crate) mod fake;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::{Rc, Weak};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Poll, Waker};

use crate::abi::{HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN, PAGE_SIZE};
use crate::event::EventChannel;
use crate::hypercall::XenError;
use crate::hypervisor::hvm_get_param;
use crate::page::SharedPage;
use wire::{Assembler, Message, MessageType, Request};

/// The most requests waiting for replies at once (see the bounds).
pub const MAX_IN_FLIGHT: usize = 16;

/// The most paths queued per watch (see the bounds).
pub const MAX_WATCH_EVENTS: usize = 8;

/// How many times a transaction is retried after `EAGAIN`.
pub const MAX_TRANSACTION_RETRIES: u32 = 8;

/// The kernel's boot page tables identity-map the first 4 GiB; the ring
/// page must lie there (the toolstack puts it just below 4 GiB).
const IDENTITY_MAPPED_END: u64 = 1 << 32;

/// Set by the first [`Xenstore::connect`]: a domain has one connection.
static CONNECTED: AtomicBool = AtomicBool::new(false);

/// Why a xenstore operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum XenstoreError {
    /// xenstored refused the request with an error (`XS_ERROR`).
    Refused {
        /// The request, e.g. `"XS_READ"`.
        op: &'static str,
        /// The path it was about ("" for transaction requests).
        path: String,
        /// Xen's error name: `ENOENT`, `EACCES`, `EAGAIN`, `EINVAL`, ...
        error: String,
    },
    /// A request's payload is longer than [`wire::PAYLOAD_MAX`]; nothing
    /// was sent.
    TooLong {
        /// The request.
        op: &'static str,
        /// The path.
        path: String,
        /// The payload's length.
        len: usize,
    },
    /// A path, token or value that cannot be sent (empty, or with a NUL
    /// byte); nothing was sent.
    InvalidArgument(String),
    /// xenstored (or the ring) broke the protocol; the connection is
    /// unusable from then on.
    Malformed(String),
    /// A value read is not what the reader expected (a number, a xenbus
    /// state).
    BadValue {
        /// The node.
        path: String,
        /// What it holds.
        value: String,
        /// What was expected, e.g. `"a decimal number"`.
        expected: &'static str,
    },
    /// A xenbus backend went to `Closing` or `Closed` while we waited for
    /// another state.
    BackendClosed {
        /// The backend's directory.
        backend: String,
        /// The state it reached.
        state: crate::xenbus::XenbusState,
    },
    /// This domain has no xenstore ring (its HVM parameters are 0: a dom0
    /// booted without a toolstack).
    Absent,
    /// [`Xenstore::connect`] was called a second time.
    AlreadyConnected,
    /// A hypercall failed (reading the HVM parameters, binding or
    /// notifying the event channel).
    Xen(XenError),
}

impl XenstoreError {
    /// Whether xenstored said the node does not exist (`ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, XenstoreError::Refused { error, .. } if error == "ENOENT")
    }

    /// Whether xenstored said to retry (`EAGAIN`: a transaction conflicted).
    pub fn is_again(&self) -> bool {
        matches!(self, XenstoreError::Refused { error, .. } if error == "EAGAIN")
    }
}

impl fmt::Display for XenstoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenstoreError::Refused { op, path, error } if path.is_empty() => write!(f, "xenstore {op}: {error}"),
            XenstoreError::Refused { op, path, error } => write!(f, "xenstore {op} of {path:?}: {error}"),
            XenstoreError::TooLong { op, path, len } => write!(
                f,
                "xenstore {op} of {path:?}: a {len}-byte payload is longer than the {} allowed",
                wire::PAYLOAD_MAX
            ),
            XenstoreError::InvalidArgument(what) => write!(f, "xenstore: {what}"),
            XenstoreError::Malformed(what) => write!(f, "xenstore protocol error: {what}"),
            XenstoreError::BadValue { path, value, expected } => {
                write!(f, "xenstore node {path:?} holds {value:?}, not {expected}")
            }
            XenstoreError::BackendClosed { backend, state } => {
                write!(f, "xenbus backend {backend:?} went to {state:?} while we waited")
            }
            XenstoreError::Absent => write!(f, "this domain has no xenstore ring (HVM parameters 1 and 2 are 0)"),
            XenstoreError::AlreadyConnected => write!(f, "xenstore is connected already (one connection per domain)"),
            XenstoreError::Xen(e) => write!(f, "xenstore: {e}"),
        }
    }
}

impl core::error::Error for XenstoreError {}

impl From<XenError> for XenstoreError {
    fn from(e: XenError) -> XenstoreError {
        XenstoreError::Xen(e)
    }
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    /// Its task waits (woken by `waker` when the reply is routed).
    Waiting { kind: MessageType, waker: Option<Waker> },
    /// The reply arrived; the task has not taken it yet.
    Done(Message),
    /// Nobody waits any more; the reply is dropped.
    Abandoned { kind: MessageType },
}

/// One watch's queued paths.
#[derive(Debug)]
struct WatchQueue {
    path: String,
    events: VecDeque<String>,
    waker: Option<Waker>,
}

impl WatchQueue {
    /// Queues `event` by the coalescing rule of the module's bounds.
    fn push(&mut self, event: String) {
        let covered = |queued: &String| {
            event == *queued
                || (event.starts_with(queued.as_str()) && event.as_bytes().get(queued.len()) == Some(&b'/'))
        };
        if self.events.iter().any(covered) {
            return;
        }
        if self.events.len() >= MAX_WATCH_EVENTS {
            self.events.clear();
            self.events.push_back(self.path.clone());
            return;
        }
        self.events.push_back(event);
    }
}

/// The client's state: pure bookkeeping over a ring page.
#[derive(Debug, Default)]
struct Core {
    next_req_id: u32,
    pending: BTreeMap<u32, Pending>,
    /// Request bytes not yet in the ring.
    outgoing: VecDeque<u8>,
    assembler: Assembler,
    watches: BTreeMap<String, WatchQueue>,
    next_token: u64,
    failed: Option<XenstoreError>,
    /// Tasks waiting for an in-flight slot.
    slot_waiters: Vec<Waker>,
    /// Wakers to wake once the `RefCell` is released.
    to_wake: Vec<Waker>,
}

impl Core {
    fn check(&self) -> Result<(), XenstoreError> {
        self.failed.clone().map_or(Ok(()), Err)
    }

    fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| !matches!(p, Pending::Abandoned { .. })).count()
    }

    /// Encodes `request` and queues it; returns its id.
    fn submit(&mut self, request: &Request<'_>, tx_id: u32, abandoned: bool) -> Result<u32, XenstoreError> {
        self.check()?;
        let mut id = self.next_req_id;
        // At most `pending.len()` ids are taken, so this ends.
        while self.pending.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        let bytes = request.encode(id, tx_id)?;
        self.next_req_id = id.wrapping_add(1);
        self.outgoing.extend(bytes);
        let kind = request.kind();
        self.pending
            .insert(id, if abandoned { Pending::Abandoned { kind } } else { Pending::Waiting { kind, waker: None } });
        Ok(id)
    }

    /// A slot became free: let the tasks waiting for one retry.
    fn slot_freed(&mut self) {
        self.to_wake.append(&mut self.slot_waiters);
    }

    /// Takes the reply to `id` if it is there.
    fn take(&mut self, id: u32) -> Option<Message> {
        match self.pending.get(&id) {
            Some(Pending::Done(_)) => {}
            _ => return None,
        }
        self.slot_freed();
        match self.pending.remove(&id) {
            Some(Pending::Done(message)) => Some(message),
            _ => None,
        }
    }

    /// The waiter of `id` went away.
    fn abandon(&mut self, id: u32) {
        match self.pending.get_mut(&id) {
            Some(Pending::Waiting { kind, .. }) => {
                let kind = *kind;
                self.pending.insert(id, Pending::Abandoned { kind });
                self.slot_freed();
            }
            Some(Pending::Done(_)) => {
                self.pending.remove(&id);
                self.slot_freed();
            }
            _ => {}
        }
    }

    /// Whether the reply to `id` is there (or the connection failed); if
    /// not, `waker` is woken when it is.
    fn reply_ready(&mut self, id: u32, waker: &Waker) -> bool {
        if self.failed.is_some() {
            return true;
        }
        match self.pending.get_mut(&id) {
            Some(Pending::Waiting { waker: slot, .. }) => {
                *slot = Some(waker.clone());
                false
            }
            _ => true,
        }
    }

    fn fail(&mut self, error: XenstoreError) {
        self.failed = Some(error);
        for pending in self.pending.values_mut() {
            if let Pending::Waiting { waker: Some(w), .. } = pending {
                self.to_wake.push(w.clone());
            }
        }
        for watch in self.watches.values_mut() {
            self.to_wake.extend(watch.waker.take());
        }
        self.slot_freed();
    }

    /// Moves bytes both ways and routes complete messages; returns whether
    /// any byte moved (xenstored is then notified). An error fails the
    /// connection.
    fn pump(&mut self, page: &SharedPage) -> Result<bool, XenstoreError> {
        self.check()?;
        self.pump_bytes(page).inspect_err(|e| self.fail(e.clone()))
    }

    fn pump_bytes(&mut self, page: &SharedPage) -> Result<bool, XenstoreError> {
        let mut moved = false;
        while !self.outgoing.is_empty() {
            let (bytes, _) = self.outgoing.as_slices();
            let n = ring::write_requests(page, bytes)?;
            if n == 0 {
                break;
            }
            self.outgoing.drain(..n);
            moved = true;
        }
        let mut buf = [0; ring::RING_SIZE];
        loop {
            let want = self.assembler.wanted().min(buf.len());
            let n = ring::read_responses(page, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            moved = true;
            if let Some(message) = self.assembler.push(&buf[..n])? {
                self.route(message)?;
            }
        }
        Ok(moved)
    }

    fn route(&mut self, message: Message) -> Result<(), XenstoreError> {
        if message.kind == MessageType::WatchEvent {
            let (path, token) = wire::parse_watch_event(&message.payload)?;
            // Events for a token we no longer watch (an unwatch in flight)
            // are dropped.
            if let Some(watch) = self.watches.get_mut(&token) {
                watch.push(path);
                self.to_wake.extend(watch.waker.take());
            }
            return Ok(());
        }
        let expected = match self.pending.get(&message.req_id) {
            Some(Pending::Waiting { kind, .. } | Pending::Abandoned { kind }) => *kind,
            _ => {
                return Err(XenstoreError::Malformed(format!(
                    "a {} reply to request {}, which is not waiting for one",
                    message.kind.name(),
                    message.req_id
                )))
            }
        };
        if message.kind != expected && message.kind != MessageType::Error {
            return Err(XenstoreError::Malformed(format!(
                "a {} reply to request {}, an {}",
                message.kind.name(),
                message.req_id,
                expected.name()
            )));
        }
        // An abandoned request's reply is dropped: its slot was free already.
        if let Some(Pending::Waiting { waker, .. }) = self.pending.remove(&message.req_id) {
            self.to_wake.extend(waker);
            self.pending.insert(message.req_id, Pending::Done(message));
        }
        Ok(())
    }
}

/// How the client hears from and notifies xenstored.
enum Link {
    /// The event channel of HVM parameter 2.
    Event(EventChannel),
    /// The tests' simulated xenstored, run on each wait.
    #[cfg(test)]
    Fake(alloc::boxed::Box<RefCell<fake::Xenstored>>),
}

impl Link {
    fn notify(&self) -> Result<(), XenError> {
        match self {
            Link::Event(channel) => channel.notify(),
            #[cfg(test)]
            Link::Fake(_) => Ok(()),
        }
    }

    async fn wait(&self, _page: &SharedPage) {
        match self {
            Link::Event(channel) => channel.wait().await,
            // Yield once first, as a real wait would, so that tests see
            // requests in flight; then the daemon answers.
            #[cfg(test)]
            Link::Fake(xenstored) => {
                let xenstored: &RefCell<fake::Xenstored> = xenstored;
                let mut yielded = false;
                poll_fn(|cx| {
                    if core::mem::replace(&mut yielded, true) {
                        return Poll::Ready(());
                    }
                    cx.waker().wake_by_ref();
                    Poll::Pending
                })
                .await;
                xenstored.borrow_mut().step(_page)
            }
        }
    }
}

/// This domain's connection to xenstored (see the module documentation).
/// Shared as an `Rc` by the drivers that use it; every method takes
/// `&self`.
pub struct Xenstore {
    /// Ourselves, for the `Rc` a [`Watch`] holds.
    me: Weak<Xenstore>,
    page: SharedPage,
    link: Link,
    core: RefCell<Core>,
}

impl fmt::Debug for Xenstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Xenstore").field("ring", &format_args!("{:#x}", self.page.address())).finish_non_exhaustive()
    }
}

impl Xenstore {
    /// Connects to xenstored through the ring page and event channel of
    /// HVM parameters 1 and 2 (`HVM_PARAM_STORE_PFN`, `_EVTCHN`), which the
    /// toolstack sets for every domU it builds.
    ///
    /// Once per domain: a second call fails with
    /// [`XenstoreError::AlreadyConnected`], even after the first client is
    /// dropped (a dropped client may leave half a reply in the ring, so
    /// the stream cannot be picked up again). Errors: [`XenstoreError::Absent`]
    /// when the parameters are 0 (dom0 without a toolstack),
    /// [`XenstoreError::Xen`] when a hypercall fails or the page lies
    /// outside the kernel's identity map.
    pub fn connect() -> Result<Rc<Xenstore>, XenstoreError> {
        if CONNECTED.swap(true, Ordering::SeqCst) {
            return Err(XenstoreError::AlreadyConnected);
        }
        let connected = Xenstore::connect_ring();
        if connected.is_err() {
            CONNECTED.store(false, Ordering::SeqCst);
        }
        connected
    }

    fn connect_ring() -> Result<Rc<Xenstore>, XenstoreError> {
        let pfn = hvm_get_param(HVM_PARAM_STORE_PFN)?;
        let port = hvm_get_param(HVM_PARAM_STORE_EVTCHN)?;
        if pfn == 0 || port == 0 {
            return Err(XenstoreError::Absent);
        }
        if pfn.checked_mul(PAGE_SIZE as u64).is_none_or(|address| address >= IDENTITY_MAPPED_END) {
            return Err(XenError::Unexpected("the xenstore ring page lies above the identity-mapped 4 GiB").into());
        }
        let port = u32::try_from(port).map_err(|_| XenError::Unexpected("the xenstore port is out of range"))?;
        // SAFETY: the toolstack gave this domain the page as its xenstore
        // ring, below 4 GiB (checked), which the kernel maps identically and
        // allocates nothing in (it is not RAM in the memory map); only this
        // client uses it (`CONNECTED`).
        let page = unsafe { SharedPage::from_frame(pfn) }
            .ok_or(XenError::Unexpected("the xenstore ring page frame is not addressable"))?;
        let channel = EventChannel::adopt(port)?;
        Ok(Xenstore::over(page, Link::Event(channel)))
    }

    fn over(page: SharedPage, link: Link) -> Rc<Xenstore> {
        Rc::new_cyclic(|me| Xenstore { me: me.clone(), page, link, core: RefCell::new(Core::default()) })
    }

    /// Moves bytes both ways, wakes the tasks whose messages arrived and
    /// notifies xenstored if anything moved.
    fn pump(&self) -> Result<(), XenstoreError> {
        let (moved, wakers) = {
            let mut core = self.core.borrow_mut();
            let moved = core.pump(&self.page);
            (moved, core::mem::take(&mut core.to_wake))
        };
        wakers.into_iter().for_each(Waker::wake);
        if moved? {
            if let Err(e) = self.link.notify() {
                let error = XenstoreError::Xen(e);
                self.core.borrow_mut().fail(error.clone());
                return Err(error);
            }
        }
        Ok(())
    }

    /// Waits until `ready` says so (it registers the waker otherwise) or
    /// the event channel fires.
    async fn wait_for(&self, mut ready: impl FnMut(&mut Core, &Waker) -> bool) {
        let mut event = pin!(self.link.wait(&self.page));
        poll_fn(|cx| {
            if ready(&mut self.core.borrow_mut(), cx.waker()) {
                return Poll::Ready(());
            }
            event.as_mut().poll(cx)
        })
        .await
    }

    /// Sends `request` in transaction `tx_id` (0: none) and waits for its
    /// reply. An `XS_ERROR` reply is [`XenstoreError::Refused`].
    async fn request(&self, request: Request<'_>, tx_id: u32) -> Result<Message, XenstoreError> {
        poll_fn(|cx| {
            let mut core = self.core.borrow_mut();
            if let Err(e) = core.check() {
                return Poll::Ready(Err(e));
            }
            if core.in_flight() < MAX_IN_FLIGHT {
                return Poll::Ready(Ok(()));
            }
            if !core.slot_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                core.slot_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await?;
        let id = self.core.borrow_mut().submit(&request, tx_id, false)?;
        let abandon = AbandonOnDrop { store: self, id };
        let reply = loop {
            self.pump()?;
            let taken = {
                let mut core = self.core.borrow_mut();
                core.check()?;
                core.take(id)
            };
            if let Some(reply) = taken {
                break reply;
            }
            self.wait_for(|core, waker| core.reply_ready(id, waker)).await;
        };
        core::mem::forget(abandon);
        if reply.kind == MessageType::Error {
            let error = wire::parse_error(&reply.payload)?;
            return Err(XenstoreError::Refused { op: request.kind().name(), path: request.path().to_string(), error });
        }
        Ok(reply)
    }

    /// Sends `request` without waiting: its reply is discarded.
    fn send_abandoned(&self, request: Request<'_>, tx_id: u32) {
        let submitted = self.core.borrow_mut().submit(&request, tx_id, true);
        if submitted.is_ok() {
            let _ = self.pump();
        }
    }

    async fn read_in(&self, tx: u32, path: &str) -> Result<String, XenstoreError> {
        wire::parse_value(&self.request(Request::Read(path), tx).await?.payload)
    }

    async fn write_in(&self, tx: u32, path: &str, value: &str) -> Result<(), XenstoreError> {
        wire::parse_ok(MessageType::Write, &self.request(Request::Write(path, value), tx).await?.payload)
    }

    async fn directory_in(&self, tx: u32, path: &str) -> Result<Vec<String>, XenstoreError> {
        wire::parse_directory(&self.request(Request::Directory(path), tx).await?.payload)
    }

    async fn remove_in(&self, tx: u32, path: &str) -> Result<(), XenstoreError> {
        wire::parse_ok(MessageType::Rm, &self.request(Request::Rm(path), tx).await?.payload)
    }

    /// The value of `path`. `Ok` is the value xenstored holds now.
    /// Errors: [`XenstoreError::Refused`] (`ENOENT` if there is no such
    /// node: see [`XenstoreError::is_not_found`], `EACCES`), a value that is
    /// not UTF-8 ([`XenstoreError::Malformed`]). Cancel-safe.
    pub async fn read(&self, path: &str) -> Result<String, XenstoreError> {
        self.read_in(0, path).await
    }

    /// Writes `value` to `path`, creating it and its parents. `Ok` means
    /// xenstored stored it (and fired the watches on it). A cancelled write
    /// may or may not have happened.
    pub async fn write(&self, path: &str, value: &str) -> Result<(), XenstoreError> {
        self.write_in(0, path, value).await
    }

    /// The names of `path`'s children (not full paths), empty if it has
    /// none. Errors as [`Xenstore::read`]. Cancel-safe.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>, XenstoreError> {
        self.directory_in(0, path).await
    }

    /// Removes `path` and everything under it. `Ok` means it is gone;
    /// `ENOENT` if it did not exist. A cancelled remove may or may not
    /// have happened.
    pub async fn remove(&self, path: &str) -> Result<(), XenstoreError> {
        self.remove_in(0, path).await
    }

    /// Creates `path` with an empty value if it does not exist.
    pub async fn mkdir(&self, path: &str) -> Result<(), XenstoreError> {
        wire::parse_ok(MessageType::Mkdir, &self.request(Request::Mkdir(path), 0).await?.payload)
    }

    /// Watches `path` and everything under it. xenstored fires the watch
    /// once at once, so the first [`Watch::changed`] completes without any
    /// change. Dropping the [`Watch`] unwatches. Cancelling the call
    /// unwatches too.
    pub async fn watch(&self, path: &str) -> Result<Watch, XenstoreError> {
        let store = self.me.upgrade().ok_or(XenstoreError::Malformed("the xenstore client is gone".into()))?;
        let token = {
            let mut core = self.core.borrow_mut();
            core.check()?;
            core.next_token += 1;
            let token = format!("mirage-rs/{}", core.next_token);
            core.watches
                .insert(token.clone(), WatchQueue { path: path.to_string(), events: VecDeque::new(), waker: None });
            token
        };
        // Events may arrive before the reply: the token is registered first.
        let mut watch = Watch { store, token, path: path.to_string(), registered: true };
        match self.request(Request::Watch(path, &watch.token), 0).await {
            Ok(reply) => wire::parse_ok(MessageType::Watch, &reply.payload).map(|()| watch),
            Err(e) => {
                watch.registered = !matches!(e, XenstoreError::Refused { .. } | XenstoreError::InvalidArgument(_));
                Err(e)
            }
        }
    }

    /// Runs `body` in a transaction and commits it. If the commit (or the
    /// body) fails with `EAGAIN` (another writer conflicted), the whole
    /// transaction is run again, at most [`MAX_TRANSACTION_RETRIES`] more
    /// times; then the `EAGAIN` is the error. A body error aborts the
    /// transaction and is returned. `Ok` means everything the last run of
    /// `body` wrote was committed atomically. Cancelling aborts the
    /// transaction unless its commit was sent.
    pub async fn transaction<'a, T, F, Fut>(&'a self, mut body: F) -> Result<T, XenstoreError>
    where
        F: FnMut(Transaction<'a>) -> Fut,
        Fut: Future<Output = Result<T, XenstoreError>>,
    {
        let mut retries = 0;
        loop {
            let start = self.request(Request::TransactionStart, 0).await?;
            let id = wire::parse_transaction_id(&start.payload)?;
            let abort = AbortOnDrop { store: self, id };
            let result = body(Transaction { store: self, id }).await;
            core::mem::forget(abort);
            let outcome = match result {
                Ok(value) => self.end(id, true).await.map(|()| value),
                Err(e) => {
                    // The body's error is what counts; a failed abort only
                    // leaves xenstored to drop the transaction.
                    let _ = self.end(id, false).await;
                    Err(e)
                }
            };
            match outcome {
                Err(e) if e.is_again() && retries < MAX_TRANSACTION_RETRIES => retries += 1,
                outcome => return outcome,
            }
        }
    }

    async fn end(&self, id: u32, commit: bool) -> Result<(), XenstoreError> {
        wire::parse_ok(MessageType::TransactionEnd, &self.request(Request::TransactionEnd(commit), id).await?.payload)
    }
}

/// Abandons a request whose future is dropped before its reply.
struct AbandonOnDrop<'a> {
    store: &'a Xenstore,
    id: u32,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        let wakers = {
            let mut core = self.store.core.borrow_mut();
            core.abandon(self.id);
            core::mem::take(&mut core.to_wake)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Aborts a transaction whose body's future is dropped.
struct AbortOnDrop<'a> {
    store: &'a Xenstore,
    id: u32,
}

impl Drop for AbortOnDrop<'_> {
    fn drop(&mut self) {
        self.store.send_abandoned(Request::TransactionEnd(false), self.id);
    }
}

/// A running transaction (see [`Xenstore::transaction`]): reads see its
/// own writes and a snapshot of the rest; nothing is visible to others
/// before the commit.
#[derive(Clone, Copy)]
pub struct Transaction<'a> {
    store: &'a Xenstore,
    id: u32,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Transaction<'_> {
    /// xenstored's id of the transaction.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// [`Xenstore::read`] in the transaction.
    pub async fn read(&self, path: &str) -> Result<String, XenstoreError> {
        self.store.read_in(self.id, path).await
    }

    /// [`Xenstore::write`] in the transaction.
    pub async fn write(&self, path: &str, value: &str) -> Result<(), XenstoreError> {
        self.store.write_in(self.id, path, value).await
    }

    /// [`Xenstore::directory`] in the transaction.
    pub async fn directory(&self, path: &str) -> Result<Vec<String>, XenstoreError> {
        self.store.directory_in(self.id, path).await
    }

    /// [`Xenstore::remove`] in the transaction.
    pub async fn remove(&self, path: &str) -> Result<(), XenstoreError> {
        self.store.remove_in(self.id, path).await
    }
}

/// A watch on a path (see [`Xenstore::watch`]). Dropping it unwatches.
pub struct Watch {
    store: Rc<Xenstore>,
    token: String,
    path: String,
    /// Whether xenstored may hold the watch (and so must be told to drop it).
    registered: bool,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").field("path", &self.path).field("token", &self.token).finish()
    }
}

impl Watch {
    /// The watched path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Waits for the watch to fire and returns the path that changed (the
    /// watched path or one under it; after an overflow the watched path:
    /// see the module's bounds). The caller re-reads what it cares about.
    /// Cancel-safe: an event is only taken when returned.
    pub async fn changed(&mut self) -> Result<String, XenstoreError> {
        let token = self.token.as_str();
        loop {
            self.store.pump()?;
            {
                let mut core = self.store.core.borrow_mut();
                core.check()?;
                if let Some(path) = core.watches.get_mut(token).and_then(|w| w.events.pop_front()) {
                    return Ok(path);
                }
            }
            self.store
                .wait_for(|core, waker| {
                    if core.failed.is_some() {
                        return true;
                    }
                    match core.watches.get_mut(token) {
                        Some(watch) if watch.events.is_empty() => {
                            watch.waker = Some(waker.clone());
                            false
                        }
                        _ => true,
                    }
                })
                .await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.store.core.borrow_mut().watches.remove(&self.token);
        if self.registered {
            self.store.send_abandoned(Request::Unwatch(&self.path, &self.token), 0);
        }
    }
}

#[cfg(test)]
mod tests;
