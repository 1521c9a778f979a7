//! Accepting connections and serving requests on them.
//!
//! # Connection slots
//!
//! A client can hold a connection without asking for anything (a
//! "slowloris": request heads trickled a byte at a time, idle keep-alive
//! connections), so connections are admitted and evicted by these rules,
//! all applied by the accept loop as a connection arrives ([`Slots`]):
//!
//! 1. A peer address with [`Config::max_connections_per_address`]
//!    connections open gets no more (loopback addresses are exempt).
//! 2. From three quarters of [`Config::max_connections`] on ("pressure"),
//!    each new connection evicts one that is waiting for a request, reading
//!    a request head or lingering after its last answer: the one that has
//!    waited longest. A connection that is answering a request is never
//!    evicted.
//! 3. With [`Config::max_connections`] open and none evictable, the new
//!    connection is refused.
//!
//! A refused connection gets a `503 Service Unavailable` with
//! `Retry-After` and is closed, from a task of its own; at most
//! [`MAX_REFUSING`] are being refused at once, and one beyond that is
//! closed at once (a reset). Besides, a request head must be complete
//! within [`Config::head_timeout`], however slowly it trickles in.
//!
//! # Endings
//!
//! After the peer's end of stream, a connection is closed gracefully.
//! After an answer that ends it (`Connection: close`, HTTP/1.0, a body
//! the server does not read, an error), it gets a lingering close
//! ([`LINGER_BYTES`]): graceful once the peer has closed its side too.
//! A connection the server ends without the peer's end of stream (a
//! timeout, an eviction, a lingering close or refusal that ran out of
//! time) is reset instead: its flow is dropped without [`Flow::close`].
//! A graceful close would leave it in FIN-WAIT-2 until the peer closes its
//! side, and our own stack (mirage-net-stack) has no FIN-WAIT-2 timeout:
//! a peer that never closes would hold an entry of the stack's connection
//! table (1024 entries) for ever, and evicted slowloris connections waiting
//! for their peers' FIN filled that table in the TAP test. On host
//! sockets the kernel ends such orphans itself, and dropping a flow with
//! nothing unread sends a FIN there anyway.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::task::{Poll, Waker};
use core::time::Duration;

use futures::future::{poll_fn, select, Either};
use log::{debug, info, warn};
use mirage::devices::Devices;
use mirage::flow::{self, Flow, Shutdown};
use mirage::kv::{self, EntryKind, Key, KvRead};
use mirage::platform::{AppError, Platform};
use mirage::stack::Stack;
use mirage::tcp::{Tcp, TcpFlow, TcpListener};
use mirage::time::{Instant, Sleep, WallClock};

use crate::http::{content_type, parse_request, resolve_target, Lookup, Method, Parsed, Request, ResponseHead, Status};
use crate::{Config, CrunchKv};

/// The network device the server listens on.
pub const NET_DEVICE: &str = "net0";

/// The block device a site archive is read from, when one is given.
pub const SITE_DEVICE: &str = "htdocs";

/// Runs the web server: the configuration from the application's
/// arguments ([`Config::from_args`]), the stack [`NET_DEVICE`], the tar
/// archive on the block device [`SITE_DEVICE`] if one is given, else the
/// files compiled in ([`CrunchKv`]); then [`listen`].
///
/// # Errors
///
/// A bad argument, no stack, an unreadable archive, or a port that cannot
/// be listened on.
pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<Infallible, AppError> {
    let config = Config::from_args(platform.args())?;
    let stack = devices.stack(NET_DEVICE).await?;
    let store = devices.kv_ro_or(SITE_DEVICE, CrunchKv::new()).await?;
    if matches!(store, kv::Either::Left(_)) {
        info!("serving the tar archive on block device {SITE_DEVICE}");
    }
    listen(platform, &stack, store, config)
        .await
        .map_err(|e| alloc::format!("cannot serve HTTP on port {}: {e}", config.port).into())
}

/// Bodies up to this size are sent in the same write as the head (one
/// segment for small files instead of two); larger ones are streamed in
/// chunks of [`Config::chunk_size`].
const SMALL_BODY: usize = 16 * 1024;

/// The most bytes a lingering close reads and discards.
///
/// After an answer that ends the connection (a request with a body the
/// server does not read, a malformed one, one with a head too long,
/// `Connection: close`, HTTP/1.0), the server shuts its sending side down
/// and reads and discards what the client still sends until the client's
/// end of stream, for at most [`LINGER_TIME`] and this many bytes; then it
/// closes (or, past the bounds, resets: see the module notes).
///
/// Closing with received data unread makes a TCP stack reset the
/// connection (RFC 2525 §2.17; our stack also resets for data that
/// arrives after the close), and the reset fails the client's writes and
/// can destroy the answer before the client reads it: a client that sends
/// its whole body before it reads got a reset instead of the answer (on
/// host sockets and on our stack over TAP alike), and curl uploading 50 MB
/// to our stack, which reads while it sends, mostly did too (`Recv
/// failure: Connection reset by peer`). Once the client has sent its end
/// of stream, the close is graceful.
///
/// The bounds keep a client from holding the connection: past them the
/// connection is reset, also when the client is still sending. Time is
/// the bound that matters for the connection slot (and a lingering
/// connection is evicted like an idle one under pressure); the byte bound,
/// far above a body anyone uploads to a static site, limits the work done
/// for a client already answered on fast links.
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// See [`LINGER_BYTES`].
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Connections being answered with a 503 at most; one refused beyond this
/// is closed at once.
const MAX_REFUSING: usize = 32;

/// A refused connection's 503 must be accepted, and its lingering close
/// ended, within this long.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// The most bytes the lingering close of a refused connection reads (the
/// request the 503 answers, typically).
const REFUSAL_LINGER_BYTES: usize = 64 * 1024;

/// The pause after a failed accept, so a persistent failure (out of file
/// descriptors, say) does not spin the event loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Listens on `config.port` of every local IPv4 address of `stack` and
/// serves the values of `store` over HTTP/1.1 until the system exits.
///
/// Logs `info` once listening, one `debug` line per request and `warn` for
/// failures of the store or of connections. See [`serve`] for the
/// behaviour and the bounds.
///
/// # Errors
///
/// Only when the stack cannot listen on the port (it is in use, say); once
/// listening, the server runs for ever and failures of single connections
/// or accepts are logged, not returned.
pub async fn listen<P, S, K>(
    platform: P,
    stack: &S,
    store: K,
    config: Config,
) -> Result<Infallible, <S::Tcp as Tcp>::Error>
where
    P: Platform,
    S: Stack,
    K: KvRead + 'static,
    <S::Tcp as Tcp>::Flow: 'static,
{
    let local = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = stack.tcp().listen(local, config.backlog).await?;
    info!("serving HTTP on {}", listener.local_addr());
    Ok(serve(platform, listener, store, config).await)
}

/// Serves the values of `store` over HTTP/1.1 to the connections of
/// `listener`, for ever.
///
/// Each connection runs as its own task ([`Platform::spawn`]). At most
/// [`Config::max_connections`] are served at once, at most
/// [`Config::max_connections_per_address`] from one (non-loopback)
/// address; from three quarters of the limit on, a new connection evicts
/// the one that has waited longest for a request; a connection over the
/// limits gets a 503 with `Retry-After` (see the module notes). A failed
/// accept is logged and retried after 100 ms.
///
/// On a connection: `GET` and `HEAD` of a path percent-decode it and look
/// it up as a [`Key`]; a path that ends in `/` or names a dictionary serves
/// the `index.html` below it. Answers are 200 with `Content-Type` (from the
/// extension) and `Content-Length`; 404 when there is no such value; 400
/// for a malformed request, ambiguous framing (see the `http` module) or a
/// path that is not a valid key (traversal with `..` in any spelling is
/// one); 405 (known methods) or 501 (unknown ones) with `Allow: GET,
/// HEAD`; 431 for a head longer than [`Config::head_limit`]; 500 when the
/// store fails. Connections persist as HTTP/1.1 says (RFC 9112 §9.3) and
/// pipelined requests are answered in order. A connection the server ends
/// after an answer (a request with a body, which it does not read,
/// `Connection: close`, an error) ends with a lingering close: it reads
/// and discards what the client still sends until the client closes its
/// side, for at most 5 s, so that closing does not reset a client still
/// sending.
pub async fn serve<P, L, K>(platform: P, listener: L, store: K, config: Config) -> Infallible
where
    P: Platform,
    L: TcpListener,
    K: KvRead + 'static,
    L::Flow: 'static,
{
    let store = Rc::new(store);
    let slots = Rc::new(Slots::default());
    let mut refusals = RefusalLog::default();
    loop {
        let flow = match listener.accept().await {
            Ok(flow) => flow,
            Err(e) => {
                warn!("accepting a connection on {} failed: {e}", listener.local_addr());
                platform.sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let peer = flow.remote_addr();
        let now = platform.now();
        let slot = match slots.admit(peer.ip(), now, &config) {
            Ok(slot) => slot,
            Err(refusal) => {
                let Some(refusing) = slots.start_refusal() else {
                    refusals.log(
                        now,
                        format_args!(
                            "{peer}: reset at once: {refusal}, and {MAX_REFUSING} connections are being refused"
                        ),
                    );
                    drop(flow);
                    continue;
                };
                refusals.log(now, format_args!("{peer}: answered 503: {refusal}"));
                let clock = platform.clone();
                platform.spawn(async move {
                    let _refusing = refusing;
                    let mut flow = flow;
                    refuse(&clock, &mut flow).await;
                });
                continue;
            }
        };
        let (clock, store) = (platform.clone(), store.clone());
        platform.spawn(async move {
            let mut flow = flow;
            // Responses are written whole; waiting for more data to fill a
            // segment would only delay the end of each one.
            if let Err(e) = flow.set_nodelay(true) {
                debug!("{peer}: cannot turn Nagle's algorithm off: {e}");
            }
            let served = {
                let serving = serve_connection(&clock, &mut flow, &*store, &config, &peer, &slot);
                // Eviction is checked first, so a connection is never cut
                // in the middle of an answer it started in the same poll.
                match select(pin!(slot.evicted()), pin!(serving)).await {
                    Either::Left(((), _)) => None,
                    Either::Right((result, _)) => Some(result),
                }
            };
            match served {
                Some(Ok(())) => {}
                Some(Err(failure)) => failure.log(&peer),
                // Reset by the drop, not closed: see the module notes.
                None => debug!("{peer}: reset to make room for a new connection"),
            }
        });
    }
}

/// Refusals are logged as warnings at most once per this long; the others
/// at debug level, and counted in the next warning. A flood of refused
/// connections must not become a flood of log lines (a serial console is
/// slow).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// See [`REFUSAL_LOG_INTERVAL`].
#[derive(Default)]
struct RefusalLog {
    last_warning: Option<Instant>,
    unreported: u64,
}

impl RefusalLog {
    fn log(&mut self, now: Instant, what: fmt::Arguments<'_>) {
        if self.last_warning.is_some_and(|last| now < last + REFUSAL_LOG_INTERVAL) {
            self.unreported += 1;
            debug!("{what}");
            return;
        }
        match core::mem::take(&mut self.unreported) {
            0 => warn!("{what}"),
            n => warn!("{what} ({n} more refused since the last warning)"),
        }
        self.last_warning = Some(now);
    }
}

/// The connections being served, shared by the accept loop (which admits
/// and evicts them) and their tasks (which say when they may be evicted).
///
/// A slab: a connection keeps its index for its life, so its task finds
/// its entry at once; admission and eviction, once per accepted
/// connection, scan the table (at most [`Config::max_connections`]
/// entries, plus those evicted and not yet ended).
#[derive(Default)]
pub(crate) struct Slots(RefCell<SlotTable>);

#[derive(Default)]
struct SlotTable {
    entries: Vec<Option<Entry>>,
    /// Indexes of `entries` that are `None`.
    free: Vec<usize>,
    /// Entries marked evicted whose task has not ended yet: they no longer
    /// count against the limit.
    evicted: usize,
    /// Connections being answered with a 503.
    refusing: usize,
}

struct Entry {
    address: IpAddr,
    /// Since when the connection may be evicted (it waits for a request,
    /// reads a head, or lingers before closing); `None` while it answers a
    /// request.
    evictable_since: Option<Instant>,
    evicted: bool,
    /// The connection's task, waiting for [`Slot::evicted`].
    waker: Option<Waker>,
}

/// Why a connection was not admitted (for the log).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address has this many connections open.
    PerAddress(usize),
    /// This many connections are open, none of them evictable.
    Full(usize),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PerAddress(n) => {
                write!(f, "its address has {n} connections open (the limit, --max-connections-per-address)")
            }
            Refusal::Full(n) => {
                write!(f, "{n} connections are open (the limit, --max-connections), all busy answering")
            }
        }
    }
}

/// From this many connections open on, a new one evicts a waiting one:
/// three quarters of `max_connections`.
fn pressure(max_connections: usize) -> usize {
    max_connections - max_connections / 4
}

impl Slots {
    /// Admits a connection from `address` at `now`, evicting a waiting one
    /// under pressure (see the module notes), or says why not.
    pub(crate) fn admit(self: &Rc<Self>, address: IpAddr, now: Instant, config: &Config) -> Result<Slot, Refusal> {
        let mut table = self.0.borrow_mut();
        if !address.is_loopback() {
            let from_address = table.live().filter(|entry| entry.address == address).count();
            if from_address >= config.max_connections_per_address {
                return Err(Refusal::PerAddress(from_address));
            }
        }
        let mut open = table.live().count();
        let mut woken = None;
        if open >= pressure(config.max_connections) {
            if let Some(waker) = table.evict_oldest() {
                open -= 1;
                woken = waker;
            }
        }
        if open >= config.max_connections {
            return Err(Refusal::Full(open));
        }
        // A new connection waits for its first request.
        let entry = Some(Entry { address, evictable_since: Some(now), evicted: false, waker: None });
        let index = match table.free.pop() {
            Some(index) => {
                table.entries[index] = entry;
                index
            }
            None => {
                table.entries.push(entry);
                table.entries.len() - 1
            }
        };
        drop(table);
        if let Some(waker) = woken {
            waker.wake();
        }
        Ok(Slot { slots: self.clone(), index })
    }

    /// A place among the [`MAX_REFUSING`] connections being refused, if one
    /// is free.
    fn start_refusal(self: &Rc<Self>) -> Option<Refusing> {
        let mut table = self.0.borrow_mut();
        if table.refusing >= MAX_REFUSING {
            return None;
        }
        table.refusing += 1;
        Some(Refusing(self.clone()))
    }
}

impl SlotTable {
    /// The connections that count against the limits: not evicted.
    fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().flatten().filter(|entry| !entry.evicted)
    }

    /// Marks the evictable connection that has waited longest as evicted;
    /// `None` if there is none, else its task's waker, if it has one (to
    /// wake once the table is no longer borrowed).
    fn evict_oldest(&mut self) -> Option<Option<Waker>> {
        let (_, index) = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| {
                let entry = entry.as_ref().filter(|entry| !entry.evicted)?;
                Some((entry.evictable_since?, index))
            })
            .min()?;
        let entry = self.entries[index].as_mut()?;
        entry.evicted = true;
        let waker = entry.waker.take();
        self.evicted += 1;
        Some(waker)
    }
}

/// A connection's place among those served; frees it when dropped,
/// whichever way the task ends.
pub(crate) struct Slot {
    slots: Rc<Slots>,
    index: usize,
}

impl Slot {
    fn with_entry<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        self.slots.0.borrow_mut().entries[self.index].as_mut().map(f)
    }

    /// The connection waits for a request, reads a head or lingers, and
    /// has since `since`: it may be evicted.
    fn evictable_since(&self, since: Instant) {
        self.with_entry(|entry| entry.evictable_since = Some(since));
    }

    /// The connection answers a request: it may not be evicted.
    fn busy(&self) {
        self.with_entry(|entry| entry.evictable_since = None);
    }

    /// Completes once the connection has been evicted.
    fn evicted(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            let evicted = self.with_entry(|entry| {
                if !entry.evicted && !entry.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    entry.waker = Some(cx.waker().clone());
                }
                entry.evicted
            });
            if evicted == Some(false) {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.slots.0.borrow_mut();
        if let Some(entry) = table.entries[self.index].take() {
            if entry.evicted {
                table.evicted -= 1;
            }
            table.free.push(self.index);
        }
    }
}

/// One of the [`MAX_REFUSING`] connections being refused; frees its place
/// when dropped.
struct Refusing(Rc<Slots>);

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0 .0.borrow_mut().refusing -= 1;
    }
}

/// Answers a connection refused for capacity: a 503 with `Retry-After` and
/// `Connection: close`, before reading anything (the request it answers
/// is read and discarded by the lingering close), all within
/// [`REFUSAL_TIME`]; closes it if the peer has closed its side by then,
/// else leaves it to be reset (see the module notes).
async fn refuse<C: Sleep + WallClock, F: Flow>(clock: &C, flow: &mut F) {
    let body = error_body(Status::ServiceUnavailable);
    let mut out = Vec::new();
    ResponseHead {
        status: Status::ServiceUnavailable,
        content_type: "text/plain; charset=utf-8",
        content_length: body.len() as u64,
        keep_alive: false,
        http10: false,
        date: clock.wall_time(),
        last_modified: None,
    }
    .write_to(&mut out);
    out.extend_from_slice(body.as_bytes());
    let deadline = clock.now() + REFUSAL_TIME;
    if let Some(Ok(())) = race(flow.write_all(&out), clock.sleep_until(deadline)).await {
        if drain(clock, flow, &mut [0u8; 512], deadline, REFUSAL_LINGER_BYTES).await {
            let _ = race(flow.close(), clock.sleep_until(deadline)).await;
        }
    }
    // Otherwise the caller's drop resets it: see the module notes.
}

/// The first half of a lingering close (see [`LINGER_BYTES`]): shuts the
/// sending side down, then reads and discards until the peer's end of
/// stream, `deadline` or `max_bytes`, whichever comes first. Whether the
/// peer's end of stream came (then a close is graceful; else see
/// the module notes).
async fn drain<C: Sleep, F: Flow>(
    clock: &C,
    flow: &mut F,
    buf: &mut [u8],
    deadline: Instant,
    max_bytes: usize,
) -> bool {
    if flow.shutdown(Shutdown::Write).await.is_err() {
        return false;
    }
    let mut drained = 0;
    while drained < max_bytes {
        match race(flow.read(buf), clock.sleep_until(deadline)).await {
            Some(Ok(0)) => return true,
            Some(Ok(n)) => drained += n,
            // An error or the deadline.
            _ => return false,
        }
    }
    false
}

/// Why a connection ended early.
#[derive(Debug)]
pub(crate) enum Failure<FE, KE> {
    /// The flow failed.
    Flow(FE),
    /// The peer was silent, too slow with a request head, or accepted no
    /// data, for too long.
    Timeout(&'static str),
    /// The store failed while a response body was being sent.
    Store(Key, KE),
    /// The store returned less than the size it announced, so the response
    /// cannot be completed.
    Truncated { key: Key, offset: u64, size: u64 },
}

impl<FE: flow::Error, KE: kv::Error> Failure<FE, KE> {
    fn log(&self, peer: &dyn fmt::Display) {
        match self {
            Failure::Flow(e) => match e.kind() {
                // The peer's choice, not a problem of ours.
                flow::ErrorKind::ConnectionReset | flow::ErrorKind::BrokenPipe | flow::ErrorKind::NotConnected => {
                    debug!("{peer}: {e}")
                }
                _ => warn!("{peer}: connection failed: {e}"),
            },
            Failure::Timeout(phase) => debug!("{peer}: reset after a timeout while {phase}"),
            Failure::Store(key, e) => warn!("{peer}: reading {key} from the store failed mid-response: {e}"),
            Failure::Truncated { key, offset, size } => {
                warn!("{peer}: the store ended {key} at byte {offset} of the {size} it announced")
            }
        }
    }
}

/// Serves requests on `flow` until the peer closes it, a request asks for
/// the connection to end, or something fails; tells `slot` when the
/// connection may be evicted (while it waits for or reads a request head,
/// and while it lingers). Generic over the clock so that tests can drive
/// it with in-memory doubles.
///
/// Deadlines: the first request head must be complete within
/// [`Config::head_timeout`] of the start; after an answer, the next
/// request must start within [`Config::idle_timeout`], and its head be
/// complete within `head_timeout` of its first byte (and within the idle
/// timeout).
///
/// Endings: after the peer's end of stream, a graceful close. After an
/// answer that ends the connection, a lingering close ([`LINGER_BYTES`]):
/// graceful once the peer has closed its side too. On a timeout, or when
/// the lingering runs out, the flow is left unclosed, so the caller's
/// dropping it resets the connection (see the module notes).
pub(crate) async fn serve_connection<C, F, K>(
    clock: &C,
    flow: &mut F,
    store: &K,
    config: &Config,
    peer: &dyn fmt::Display,
    slot: &Slot,
) -> Result<(), Failure<F::Error, K::Error>>
where
    C: Sleep + WallClock,
    F: Flow,
    K: KvRead,
{
    let mut buf = vec![0u8; config.head_limit];
    let mut filled = 0;
    let mut conn = Connection { clock, flow, store, config, peer, out: Vec::new() };
    let mut first = true;
    loop {
        let waiting_since = clock.now();
        slot.evictable_since(waiting_since);
        let idle_deadline = waiting_since + config.idle_timeout;
        // Pipelined bytes already received start the next head.
        let mut head_deadline = (first || filled > 0).then(|| waiting_since + config.head_timeout);
        first = false;
        let keep_open = loop {
            match parse_request(&buf[..filled]) {
                Parsed::Complete(request, len) => {
                    slot.busy();
                    let keep_open = conn.respond(&request).await?;
                    // Pipelined requests already received move to the front.
                    buf.copy_within(len..filled, 0);
                    filled -= len;
                    break keep_open;
                }
                Parsed::Invalid(status, why) => {
                    slot.busy();
                    debug!("{peer}: {why}: {}", status.code());
                    conn.respond_error(status, false, false, false).await?;
                    break false;
                }
                Parsed::Partial if filled == buf.len() => {
                    slot.busy();
                    debug!("{peer}: request head longer than {} bytes", buf.len());
                    conn.respond_error(Status::RequestHeaderFieldsTooLarge, false, false, false).await?;
                    break false;
                }
                Parsed::Partial => {
                    let deadline = head_deadline.map_or(idle_deadline, |head| head.min(idle_deadline));
                    match conn.read_by(&mut buf[filled..], deadline).await? {
                        Some(0) => {
                            // The peer is done (if it left half a head, it gets no answer).
                            conn.close().await;
                            return Ok(());
                        }
                        Some(n) => {
                            filled += n;
                            head_deadline.get_or_insert_with(|| clock.now() + config.head_timeout);
                        }
                        None => {
                            // Reset by the caller's drop, not closed: see the module notes.
                            return Err(Failure::Timeout(if filled == 0 {
                                "waiting for a request"
                            } else {
                                "reading a request head"
                            }));
                        }
                    }
                }
            }
        };
        if !keep_open {
            slot.evictable_since(clock.now());
            conn.linger(&mut buf).await;
            return Ok(());
        }
    }
}

/// What a request asked for, once found in the store.
struct Found {
    key: Key,
    size: u64,
}

struct Connection<'a, C, F, K> {
    clock: &'a C,
    flow: &'a mut F,
    store: &'a K,
    config: &'a Config,
    peer: &'a dyn fmt::Display,
    /// The response head (and a small body), reused between requests.
    out: Vec<u8>,
}

impl<C: Sleep + WallClock, F: Flow, K: KvRead> Connection<'_, C, F, K> {
    /// Answers one request; `Ok(true)` if the connection stays open.
    async fn respond(&mut self, request: &Request<'_>) -> Result<bool, Failure<F::Error, K::Error>> {
        let head_only = request.method == Method::Head;
        // Without reading the body we cannot find the next request.
        let keep_alive = request.keep_alive && !request.has_body;
        let http10 = request.minor_version == 0;
        let found = match request.method {
            Method::Get | Method::Head => match resolve_target(request.target) {
                Ok(lookup) => self.find(lookup).await,
                Err(why) => {
                    debug!("{}: {why}: {:?}", self.peer, request.target);
                    Err(Status::BadRequest)
                }
            },
            Method::NotAllowed => Err(Status::MethodNotAllowed),
            Method::Unknown => Err(Status::NotImplemented),
        };
        let (status, length) = match &found {
            Ok(found) => (Status::Ok, found.size),
            Err(status) => (*status, error_body(*status).len() as u64),
        };
        debug!("{} \"{} {}\" {} {length}", self.peer, request.method_name, request.target, status.code());
        let keep_alive = keep_alive && status != Status::InternalServerError;
        match found {
            Ok(found) => self.send_value(found, head_only, keep_alive, http10).await?,
            Err(status) => self.respond_error(status, head_only, keep_alive, http10).await?,
        }
        Ok(keep_alive)
    }

    /// Finds the value a request names, or the status to answer with.
    async fn find(&self, lookup: Lookup) -> Result<Found, Status> {
        let key = if lookup.index {
            lookup.key.child("index.html")
        } else {
            match self.store.exists(&lookup.key).await {
                Ok(Some(EntryKind::Value)) => Ok(lookup.key),
                Ok(Some(EntryKind::Dictionary)) => lookup.key.child("index.html"),
                Ok(None) => return Err(Status::NotFound),
                Err(e) => return Err(self.store_status(&lookup.key, &e)),
            }
        };
        // Only a key longer than Key::MAX_LEN fails here: nothing can be stored there.
        let key = key.map_err(|_| Status::NotFound)?;
        match self.store.size(&key).await {
            Ok(size) => Ok(Found { key, size }),
            Err(e) => Err(self.store_status(&key, &e)),
        }
    }

    /// The status for a store error: 404 when the key names no value, 500
    /// (logged) when the store itself failed.
    fn store_status(&self, key: &Key, e: &K::Error) -> Status {
        use kv::Error as _;
        match e.kind() {
            kv::ErrorKind::NotFound
            | kv::ErrorKind::NotAValue
            | kv::ErrorKind::NotADictionary
            | kv::ErrorKind::InvalidKey => Status::NotFound,
            _ => {
                warn!("{}: looking up {key} in the store failed: {e}", self.peer);
                Status::InternalServerError
            }
        }
    }

    async fn send_value(
        &mut self,
        found: Found,
        head_only: bool,
        keep_alive: bool,
        http10: bool,
    ) -> Result<(), Failure<F::Error, K::Error>> {
        let Found { key, size } = found;
        // A missing date is no reason to fail the request.
        let last_modified = self.store.last_modified(&key).await.ok();
        self.out.clear();
        ResponseHead {
            status: Status::Ok,
            content_type: content_type(&key),
            content_length: size,
            keep_alive,
            http10,
            date: self.clock.wall_time(),
            last_modified,
        }
        .write_to(&mut self.out);
        if head_only {
            return self.send_out().await;
        }
        let mut offset = 0;
        if size <= SMALL_BODY as u64 {
            let body = self.read_chunk(&key, 0, size as usize, size).await?;
            self.out.extend_from_slice(&body);
            return self.send_out().await;
        }
        self.send_out().await?;
        while offset < size {
            let len = (size - offset).min(self.config.chunk_size as u64) as usize;
            let chunk = self.read_chunk(&key, offset, len, size).await?;
            write_by(self.clock, self.flow, &chunk, self.config.idle_timeout).await?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    /// Reads `len` bytes of the value at `key` from `offset`, and fails if
    /// the store has fewer than its announced `size` said.
    async fn read_chunk(
        &self,
        key: &Key,
        offset: u64,
        len: usize,
        size: u64,
    ) -> Result<bytes::Bytes, Failure<F::Error, K::Error>> {
        let mut chunk = self.store.get_partial(key, offset, len).await.map_err(|e| Failure::Store(key.clone(), e))?;
        if chunk.len() < len {
            return Err(Failure::Truncated { key: key.clone(), offset: offset + chunk.len() as u64, size });
        }
        // More than asked for would break Content-Length.
        chunk.truncate(len);
        Ok(chunk)
    }

    async fn respond_error(
        &mut self,
        status: Status,
        head_only: bool,
        keep_alive: bool,
        http10: bool,
    ) -> Result<(), Failure<F::Error, K::Error>> {
        let body = error_body(status);
        self.out.clear();
        ResponseHead {
            status,
            content_type: "text/plain; charset=utf-8",
            content_length: body.len() as u64,
            keep_alive,
            http10,
            date: self.clock.wall_time(),
            last_modified: None,
        }
        .write_to(&mut self.out);
        if !head_only {
            self.out.extend_from_slice(body.as_bytes());
        }
        self.send_out().await
    }

    async fn send_out(&mut self) -> Result<(), Failure<F::Error, K::Error>> {
        write_by(self.clock, self.flow, &self.out, self.config.idle_timeout).await
    }

    /// Reads into `buf` unless `deadline` passes first (`None`).
    async fn read_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<Option<usize>, Failure<F::Error, K::Error>> {
        match race(self.flow.read(buf), self.clock.sleep_until(deadline)).await {
            Some(result) => result.map(Some).map_err(Failure::Flow),
            None => Ok(None),
        }
    }

    /// Ends the connection with a lingering close (see [`LINGER_BYTES`]):
    /// closes it once the peer has closed its side, else leaves it to be
    /// reset (see the module notes).
    async fn linger(&mut self, buf: &mut [u8]) {
        let deadline = self.clock.now() + LINGER_TIME;
        if drain(self.clock, self.flow, buf, deadline, LINGER_BYTES).await {
            self.close().await;
        }
    }

    /// Closes the flow, giving up after the idle timeout. Failures are of
    /// no consequence: the connection is over either way.
    async fn close(&mut self) {
        let deadline = self.clock.now() + self.config.idle_timeout;
        let _ = race(self.flow.close(), self.clock.sleep_until(deadline)).await;
    }
}

/// The body of an error response.
fn error_body(status: Status) -> &'static str {
    match status {
        Status::Ok => "",
        Status::BadRequest => "400 Bad Request\n",
        Status::NotFound => "404 Not Found\n",
        Status::MethodNotAllowed => "405 Method Not Allowed\n",
        Status::RequestHeaderFieldsTooLarge => "431 Request Header Fields Too Large\n",
        Status::InternalServerError => "500 Internal Server Error\n",
        Status::NotImplemented => "501 Not Implemented\n",
        Status::ServiceUnavailable => "503 Service Unavailable\n",
    }
}

/// Writes all of `data` unless the peer accepts nothing for `timeout`.
async fn write_by<C: Sleep, F: Flow, KE>(
    clock: &C,
    flow: &mut F,
    data: &[u8],
    timeout: Duration,
) -> Result<(), Failure<F::Error, KE>> {
    let deadline = clock.now() + timeout;
    match race(flow.write_all(data), clock.sleep_until(deadline)).await {
        Some(result) => result.map_err(Failure::Flow),
        None => Err(Failure::Timeout("sending a response")),
    }
}

/// `Some` with the output of `work`, or `None` if `timer` completes first.
async fn race<T>(work: impl Future<Output = T>, timer: impl Future<Output = ()>) -> Option<T> {
    match select(pin!(work), pin!(timer)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}

#[cfg(test)]
mod tests {
    //! The connection handler and the accept loop against in-memory doubles:
    //! a scripted flow, a map store, a clock whose timers fire at once or
    //! never, and a platform on futures' single-threaded pool.

    use super::*;
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::string::{String, ToString};
    use core::cell::Cell;

    use bytes::Bytes;
    use futures::executor::{block_on, LocalPool};
    use futures::task::LocalSpawnExt;
    use mirage::flow::FlowError;
    use mirage::kv::{Digest, KvError};
    use mirage::tcp::{Keepalive, TcpError};
    use mirage::time::{MonotonicClock, PosixTime};
    use mirage_testkit::FakePlatform;

    /// Timers fire at once (`expire`), never, or, on a manual clock
    /// (`manual`), once its time has reached their deadline; flows advance
    /// a manual clock as they read (see [`ScriptFlow::clock`]).
    #[derive(Clone, Default)]
    struct TestClock {
        expire: bool,
        manual: Option<Rc<Cell<Instant>>>,
    }

    impl TestClock {
        fn manual() -> TestClock {
            TestClock { expire: false, manual: Some(Rc::new(Cell::new(Instant::from_millis(1_000)))) }
        }
    }

    impl MonotonicClock for TestClock {
        fn now(&self) -> Instant {
            self.manual.as_ref().map_or(Instant::from_millis(1_000), |now| now.get())
        }
    }

    impl Sleep for TestClock {
        async fn sleep_until(&self, deadline: Instant) {
            match &self.manual {
                // Polled again whenever the flow in the same race wakes the task.
                Some(now) => poll_fn(|_| if now.get() >= deadline { Poll::Ready(()) } else { Poll::Pending }).await,
                None if self.expire => {}
                None => futures::future::pending::<()>().await,
            }
        }
    }

    impl WallClock for TestClock {
        fn wall_time(&self) -> PosixTime {
            PosixTime::new(784_111_777, 0).unwrap()
        }
    }

    /// A flow that reads `input` (at most `max_read` bytes per call) and
    /// then reports end of stream, or waits for ever if `hang`, or reads
    /// `b'a'`s for ever if `endless`. Writes are kept in `output` (and in
    /// `written`, which outlives the flow), or wait for ever once a
    /// complete request has been read if `write_hangs`.
    struct ScriptFlow {
        input: Vec<u8>,
        at: usize,
        max_read: usize,
        hang: bool,
        endless: bool,
        /// With a manual `clock`, each read first takes the next of `steps`
        /// (then `step`, once they are used up): its first poll moves the
        /// clock on and wakes the task, the next one reads, so a timer
        /// racing the read sees the time pass.
        clock: Option<TestClock>,
        steps: VecDeque<Duration>,
        step: Duration,
        waited: bool,
        write_hangs: bool,
        output: Vec<u8>,
        written: Rc<RefCell<Vec<u8>>>,
        remote: SocketAddr,
        closed: bool,
        dropped: Rc<Cell<bool>>,
    }

    impl ScriptFlow {
        fn new(input: &[u8]) -> ScriptFlow {
            ScriptFlow {
                input: input.to_vec(),
                at: 0,
                max_read: usize::MAX,
                hang: false,
                endless: false,
                clock: None,
                steps: VecDeque::new(),
                step: Duration::ZERO,
                waited: false,
                write_hangs: false,
                output: Vec::new(),
                written: Rc::default(),
                remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
                closed: false,
                dropped: Rc::new(Cell::new(false)),
            }
        }
    }

    impl Drop for ScriptFlow {
        fn drop(&mut self) {
            self.dropped.set(true);
        }
    }

    impl Flow for ScriptFlow {
        type Error = FlowError;
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FlowError> {
            if let Some(clock) = &self.clock {
                if !self.waited {
                    let now = clock.manual.as_ref().expect("a ScriptFlow's clock must be manual");
                    let step = self.steps.pop_front().unwrap_or(self.step);
                    now.set(now.get() + step);
                    self.waited = true;
                    // Let the timer in the same race see the new time first.
                    let mut yielded = false;
                    poll_fn(|cx| {
                        if yielded {
                            return Poll::Ready(());
                        }
                        yielded = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    })
                    .await;
                }
                self.waited = false;
            }
            if self.at >= self.input.len() {
                if self.endless {
                    let n = buf.len().min(self.max_read);
                    buf[..n].fill(b'a');
                    self.at += n;
                    return Ok(n);
                }
                if self.hang {
                    futures::future::pending::<()>().await;
                }
            }
            let n = buf.len().min(self.max_read).min(self.input.len().saturating_sub(self.at));
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
            if self.write_hangs {
                futures::future::pending::<()>().await;
            }
            self.output.extend_from_slice(buf);
            self.written.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        async fn shutdown(&mut self, _how: Shutdown) -> Result<(), FlowError> {
            Ok(())
        }
        async fn close(&mut self) -> Result<(), FlowError> {
            self.closed = true;
            Ok(())
        }
    }

    impl TcpFlow for ScriptFlow {
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 80))
        }
        fn remote_addr(&self) -> SocketAddr {
            self.remote
        }
        fn set_nodelay(&mut self, _nodelay: bool) -> Result<(), FlowError> {
            Ok(())
        }
        fn set_keepalive(&mut self, _keepalive: Option<Keepalive>) -> Result<(), FlowError> {
            Ok(())
        }
    }

    /// A store of values in a map; dictionaries are implied by the keys.
    /// Remembers the largest partial read asked of it.
    #[derive(Default)]
    struct MapKv {
        values: BTreeMap<String, Bytes>,
        largest_read: Cell<usize>,
    }

    impl MapKv {
        fn with(entries: &[(&str, &[u8])]) -> MapKv {
            let values = entries.iter().map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v))).collect();
            MapKv { values, largest_read: Cell::new(0) }
        }

        fn value(&self, key: &Key) -> Result<&Bytes, KvError> {
            self.values.get(key.as_str()).ok_or_else(|| KvError::NotFound(key.clone()))
        }
    }

    impl KvRead for MapKv {
        type Error = KvError;
        async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
            let below = |k: &String| key.is_root() || k.starts_with(&alloc::format!("{}/", key.as_str()));
            Ok(if self.values.contains_key(key.as_str()) {
                Some(EntryKind::Value)
            } else if self.values.keys().any(below) {
                Some(EntryKind::Dictionary)
            } else {
                None
            })
        }
        async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
            self.value(key).cloned()
        }
        async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
            self.largest_read.set(self.largest_read.get().max(len));
            let v = self.value(key)?;
            let start = (offset as usize).min(v.len());
            Ok(v.slice(start..start.saturating_add(len).min(v.len())))
        }
        async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
            Err(KvError::NotFound(key.clone()))
        }
        async fn last_modified(&self, _key: &Key) -> Result<PosixTime, KvError> {
            Ok(PosixTime::EPOCH)
        }
        async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
            Err(KvError::NotFound(key.clone()))
        }
        async fn size(&self, key: &Key) -> Result<u64, KvError> {
            Ok(self.value(key)?.len() as u64)
        }
    }

    fn site() -> MapKv {
        MapKv::with(&[
            ("index.html", b"<h1>home</h1>"),
            ("style.css", b"body {}"),
            ("docs/index.html", b"<h1>docs</h1>"),
            ("docs/a b.txt", b"spaced"),
            ("empty/readme.txt", b"no index here"),
        ])
    }

    /// A parsed response: status, header fields (lower-case names) and body.
    #[derive(Debug)]
    struct Response {
        status: u16,
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(String::as_str)
        }
    }

    /// Splits `output` into responses; `head_only` says which have no body.
    fn responses(mut output: &[u8], head_only: &[bool]) -> Vec<Response> {
        let mut all = Vec::new();
        for &no_body in head_only {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(len) = r.parse(output).unwrap() else { panic!("partial response") };
            let headers: BTreeMap<String, String> = r
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8(h.value.to_vec()).unwrap()))
                .collect();
            let body_len = if no_body { 0 } else { headers["content-length"].parse::<usize>().unwrap() };
            all.push(Response { status: r.code.unwrap(), headers, body: output[len..len + body_len].to_vec() });
            output = &output[len + body_len..];
        }
        assert!(output.is_empty(), "trailing bytes: {:?}", String::from_utf8_lossy(output));
        all
    }

    fn run(flow: &mut ScriptFlow, store: &MapKv, config: &Config) -> Result<(), Failure<FlowError, KvError>> {
        run_with(&TestClock::default(), flow, store, config)
    }

    fn run_with(
        clock: &TestClock,
        flow: &mut ScriptFlow,
        store: &MapKv,
        config: &Config,
    ) -> Result<(), Failure<FlowError, KvError>> {
        let slots = Rc::new(Slots::default());
        let slot = slots.admit(IpAddr::from([127, 0, 0, 1]), clock.now(), config).unwrap();
        block_on(serve_connection(clock, flow, store, config, &"test", &slot))
    }

    fn exchange(input: &str, head_only: &[bool]) -> Vec<Response> {
        let mut flow = ScriptFlow::new(input.as_bytes());
        run(&mut flow, &site(), &Config::default()).unwrap();
        assert!(flow.closed);
        responses(&flow.output, head_only)
    }

    fn get(target: &str) -> Response {
        let mut r =
            exchange(&alloc::format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"), &[false]);
        r.remove(0)
    }

    #[test]
    fn get_serves_values_with_type_and_length() {
        let r = get("/style.css");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"body {}");
        assert_eq!(r.header("content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some("7"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.header("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(r.header("last-modified"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
    }

    #[test]
    fn head_has_the_headers_of_get_and_no_body() {
        let r = exchange("HEAD /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &[true]);
        assert_eq!(r[0].status, 200);
        assert_eq!(r[0].header("content-length"), Some("13"));
        assert_eq!(r[0].header("content-type"), Some("text/html; charset=utf-8"));
        assert!(r[0].body.is_empty());
        let r = exchange("HEAD /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &[true]);
        assert_eq!(r[0].status, 404);
        assert_eq!(r[0].header("content-length"), Some("14"));
    }

    #[test]
    fn directories_serve_their_index() {
        assert_eq!(get("/").body, b"<h1>home</h1>");
        assert_eq!(get("/docs/").body, b"<h1>docs</h1>");
        assert_eq!(get("/docs").body, b"<h1>docs</h1>");
        assert_eq!(get("/docs/?x=1").body, b"<h1>docs</h1>");
        // A dictionary without index.html has nothing to serve.
        assert_eq!(get("/empty/").status, 404);
        assert_eq!(get("/empty").status, 404);
        assert_eq!(get("/index.html/").status, 404);
    }

    #[test]
    fn paths_are_percent_decoded() {
        let r = get("/docs/a%20b.txt");
        assert_eq!((r.status, r.body.as_slice()), (200, b"spaced".as_slice()));
        assert_eq!(get("/docs%2Fa%20b.txt").body, b"spaced");
        assert_eq!(get("/%69ndex.html").body, b"<h1>home</h1>");
    }

    #[test]
    fn traversal_and_bad_paths_are_refused() {
        for target in ["/../index.html", "/%2e%2e/index.html", "/docs/%2f..%2findex.html", "/docs//index.html", "/%zz"]
        {
            let r = get(target);
            assert!(r.status == 400 || r.status == 404, "{target}: {}", r.status);
        }
        assert_eq!(get("/nope.html").status, 404);
        assert_eq!(get("/index.html/x").status, 404);
    }

    #[test]
    fn other_methods_get_405_or_501_with_allow() {
        let r = exchange(
            "DELETE / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            &[false, false],
        );
        assert_eq!((r[0].status, r[0].header("allow")), (405, Some("GET, HEAD")));
        assert_eq!(r[1].status, 200, "a 405 without a body keeps the connection");
        let r = exchange("BREW / HTTP/1.1\r\nHost: t\r\n\r\n", &[false]);
        assert_eq!((r[0].status, r[0].header("allow")), (501, Some("GET, HEAD")));
        // A body we will not read ends the connection after the answer.
        let r = exchange("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi", &[false]);
        assert_eq!((r[0].status, r[0].header("connection")), (405, Some("close")));
    }

    #[test]
    fn keep_alive_serves_many_requests_in_order() {
        let mut input = String::new();
        for i in 0..50 {
            let target = if i % 2 == 0 { "/style.css" } else { "/docs/" };
            input.push_str(&alloc::format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
        }
        let mut flow = ScriptFlow::new(input.as_bytes());
        // Requests split across reads at awkward places.
        flow.max_read = 7;
        run(&mut flow, &site(), &Config::default()).unwrap();
        let r = responses(&flow.output, &[false; 50]);
        for (i, r) in r.iter().enumerate() {
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), None);
            let expected: &[u8] = if i % 2 == 0 { b"body {}" } else { b"<h1>docs</h1>" };
            assert_eq!(r.body, expected);
        }
    }

    #[test]
    fn http10_closes_unless_keep_alive_is_asked() {
        let r = exchange("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", &[false]);
        assert_eq!(r[0].header("connection"), Some("close"));
        let r = exchange("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n", &[false, false]);
        assert_eq!(r[0].header("connection"), Some("keep-alive"));
        assert_eq!(r[1].header("connection"), Some("close"));
    }

    #[test]
    fn malformed_requests_get_400_and_close() {
        let r = exchange("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", &[false]);
        assert_eq!((r[0].status, r[0].header("connection")), (400, Some("close")));
        let r = exchange("\x16\x03\x01 not http\r\n\r\n", &[false]);
        assert_eq!(r[0].status, 400);
    }

    #[test]
    fn an_oversized_head_is_refused_without_reading_it_all() {
        let mut flow = ScriptFlow::new(b"GET /");
        // The client never stops sending.
        flow.endless = true;
        let config = Config::default();
        run(&mut flow, &site(), &config).unwrap();
        let r = responses(&flow.output, &[false]);
        assert_eq!((r[0].status, r[0].header("connection")), (431, Some("close")));
        // The head buffer, then at most the lingering drain (in reads of
        // the head buffer's size).
        assert!(flow.at <= config.head_limit + LINGER_BYTES + config.head_limit, "read {} bytes", flow.at);
        // The client never closed its side: left to be reset.
        assert!(!flow.closed);
    }

    #[test]
    fn a_body_is_read_and_discarded_to_the_end_of_stream_after_the_answer() {
        // A lingering close: the answer first, then everything the client
        // sends, so that closing does not reset a client still sending.
        let body = vec![b'x'; 1 << 20];
        for (head, status) in [("POST /index.html", 405), ("GET /style.css", 200), ("BREW /", 501)] {
            let mut input =
                alloc::format!("{head} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            input.extend_from_slice(&body);
            let mut flow = ScriptFlow::new(&input);
            flow.max_read = 1000;
            run(&mut flow, &site(), &Config::default()).unwrap();
            let r = responses(&flow.output, &[false]);
            assert_eq!((r[0].status, r[0].header("connection")), (status, Some("close")), "{head}");
            assert_eq!(flow.at, input.len(), "{head}: the body was not read to its end");
            assert!(flow.closed, "{head}");
        }
        // The same after a refused head, and after pipelined bytes behind a
        // request that ends the connection.
        for input in [
            &b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 2\r\n\r\nab"[..],
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n",
        ] {
            let mut flow = ScriptFlow::new(input);
            flow.max_read = 10;
            run(&mut flow, &site(), &Config::default()).unwrap();
            assert_eq!(flow.at, input.len());
            assert!(flow.closed);
        }
    }

    #[test]
    fn a_lingering_close_ends_at_its_time_bound() {
        let clock = TestClock::manual();
        let start = clock.now();
        let mut flow = ScriptFlow::new(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
        // The body comes in a buffer a second, for ever.
        flow.endless = true;
        flow.clock = Some(clock.clone());
        flow.steps.push_back(Duration::ZERO);
        flow.step = Duration::from_secs(1);
        run_with(&clock, &mut flow, &site(), &Config::default()).unwrap();
        assert_eq!(responses(&flow.output, &[false])[0].status, 405);
        assert_eq!(clock.now() - start, LINGER_TIME);
        assert!(!flow.closed);
    }

    #[test]
    fn large_values_are_streamed_in_bounded_chunks() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let store = MapKv::with(&[("big.wasm", &big)]);
        let mut flow = ScriptFlow::new(b"GET /big.wasm HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let config = Config::default();
        run(&mut flow, &store, &config).unwrap();
        let r = responses(&flow.output, &[false]);
        assert_eq!(r[0].header("content-type"), Some("application/wasm"));
        assert_eq!(r[0].body, big);
        assert_eq!(store.largest_read.get(), config.chunk_size);
    }

    #[test]
    fn an_idle_connection_times_out() {
        let mut flow = ScriptFlow::new(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /sty");
        flow.hang = true;
        let clock = TestClock { expire: true, manual: None };
        // Timers firing at once would also cut the first read, so hand the
        // first request over in one piece and let only the wait time out.
        let result = run_with(&clock, &mut flow, &site(), &Config::default());
        assert!(matches!(result, Err(Failure::Timeout(_))), "{result:?}");
        // Left to be reset by the drop, not closed (see the module notes).
        assert!(!flow.closed);
    }

    #[test]
    fn a_trickled_head_is_cut_at_the_head_timeout() {
        let clock = TestClock::manual();
        let start = clock.now();
        // A slowloris: a head that never ends, a byte a second.
        let mut flow = ScriptFlow::new(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
        flow.endless = true;
        flow.max_read = 1;
        flow.clock = Some(clock.clone());
        flow.step = Duration::from_secs(1);
        let config = Config::default();
        let result = run_with(&clock, &mut flow, &site(), &config);
        assert!(matches!(result, Err(Failure::Timeout("reading a request head"))), "{result:?}");
        // The idle timeout (30 s) alone would have let it go on three times as long.
        assert_eq!(clock.now() - start, config.head_timeout);
        assert!(flow.output.is_empty());
        assert!(!flow.closed);
    }

    #[test]
    fn a_kept_alive_connection_waits_the_idle_timeout_for_its_next_request() {
        let clock = TestClock::manual();
        let start = clock.now();
        let mut flow = ScriptFlow::new(
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        // The first request in the first read, the next one in two more.
        flow.max_read = 27;
        flow.clock = Some(clock.clone());
        // The second request starts 25 s after the first one's answer: more
        // than a head may take, less than the idle timeout.
        flow.steps.extend([Duration::ZERO, Duration::from_secs(25)]);
        run_with(&clock, &mut flow, &site(), &Config::default()).unwrap();
        let r = responses(&flow.output, &[false, false]);
        assert_eq!((r[0].status, r[1].status, r[1].body.as_slice()), (200, 200, b"body {}".as_slice()));
        assert_eq!(clock.now() - start, Duration::from_secs(25));
        // Silence after an answer ends at the idle timeout, not the head's.
        let clock = TestClock::manual();
        let start = clock.now();
        let mut flow = ScriptFlow::new(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        flow.clock = Some(clock.clone());
        flow.steps.extend([Duration::ZERO, Duration::from_secs(45)]);
        let result = run_with(&clock, &mut flow, &site(), &Config::default());
        assert!(matches!(result, Err(Failure::Timeout("waiting for a request"))), "{result:?}");
        assert_eq!(clock.now() - start, Duration::from_secs(45));
    }

    #[test]
    fn slots_evict_the_longest_waiting_and_count_per_address() {
        assert_eq!([1, 2, 4, 16, 960, 1024].map(pressure), [1, 2, 3, 12, 720, 768]);
        let config = Config { max_connections: 4, max_connections_per_address: 2, ..Config::default() };
        let slots = Rc::new(Slots::default());
        let at = Instant::from_millis;
        let (a, b, c, d) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 3]),
            IpAddr::from([10, 0, 0, 4]),
        );
        let first = slots.admit(a, at(1), &config).unwrap();
        let second = slots.admit(b, at(2), &config).unwrap();
        let third = slots.admit(c, at(3), &config).unwrap();
        // The first is answering a request; the second has waited since 5.
        first.busy();
        second.evictable_since(at(5));
        let evicted = |slot: &Slot| block_on(async { futures::poll!(pin!(slot.evicted())).is_ready() });
        // Three of four open is pressure: the fourth evicts the third (waiting since 3).
        let fourth = slots.admit(d, at(6), &config).unwrap();
        assert_eq!([&first, &second, &third, &fourth].map(evicted), [false, false, true, false]);
        // An evicted connection no longer counts; its address's share is freed once it ends.
        drop(third);
        let fifth = slots.admit(c, at(7), &config).unwrap();
        assert!(evicted(&second));
        // Nothing left to evict and four open: full.
        second.busy();
        drop(second);
        fourth.busy();
        fifth.busy();
        let sixth = slots.admit(b, at(8), &config).unwrap();
        sixth.busy();
        assert_eq!(slots.admit(d, at(9), &config).err(), Some(Refusal::Full(4)));
        // Per address: a has one; two more from a are one too many.
        drop(sixth);
        let seventh = slots.admit(a, at(10), &config).unwrap();
        assert_eq!(slots.admit(a, at(11), &config).err(), Some(Refusal::PerAddress(2)));
        // Loopback is exempt from the per-address limit.
        drop((first, seventh));
        let local = IpAddr::from([127, 0, 0, 1]);
        let roomy = Config { max_connections: 100, ..config };
        let locals: Vec<Slot> = (0..3).map(|i| slots.admit(local, at(12 + i), &roomy).unwrap()).collect();
        assert!(!locals.iter().any(evicted));
        drop((locals, fourth, fifth));
        let table = slots.0.borrow();
        assert!(table.live().next().is_none() && table.evicted == 0);
        assert_eq!(table.free.len(), table.entries.len());
    }

    #[test]
    fn refusals_are_warned_about_at_most_once_per_interval() {
        let mut log = RefusalLog::default();
        let at = |secs: u64| Instant::from_millis(secs * 1000);
        for secs in [0, 1, 2, 9, 10, 11, 25] {
            log.log(at(secs), format_args!("refused"));
        }
        // Warnings at 0, 10 (three counted since) and 25 (one since).
        assert_eq!((log.last_warning, log.unreported), (Some(at(25)), 0));
        log.log(at(26), format_args!("refused"));
        assert_eq!((log.last_warning, log.unreported), (Some(at(25)), 1));
    }

    /// Hands out queued flows, yielding before each so that the connection
    /// tasks spawned run in between; waits for ever when empty.
    #[derive(Default)]
    struct QueueListener {
        queue: RefCell<VecDeque<ScriptFlow>>,
    }

    impl TcpListener for QueueListener {
        type Flow = ScriptFlow;
        type Error = TcpError;
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 80))
        }
        async fn accept(&self) -> Result<ScriptFlow, TcpError> {
            // Several times: the pool may poll a task that woke itself
            // again before one spawned after that, so a single yield can let
            // the accept loop run on before the task it just spawned starts.
            let mut yields = 0;
            poll_fn(|cx| {
                if yields == 8 {
                    return Poll::Ready(());
                }
                yields += 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            })
            .await;
            let next = self.queue.borrow_mut().pop_front();
            match next {
                Some(flow) => Ok(flow),
                None => futures::future::pending().await,
            }
        }
    }

    /// What had become of a flow handed to the accept loop once nothing
    /// could go on.
    struct Outcome {
        dropped: bool,
        written: Vec<u8>,
    }

    impl Outcome {
        fn dropped(&self) -> bool {
            self.dropped
        }
        fn status(&self) -> Option<u16> {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut headers);
            r.parse(&self.written).ok()?;
            r.code
        }
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.written).into_owned()
        }
    }

    /// An idle flow (it sends nothing and never closes) from `remote`.
    fn idle(remote: [u8; 4]) -> ScriptFlow {
        let mut flow = ScriptFlow::new(b"");
        flow.hang = true;
        flow.remote = SocketAddr::from((remote, 40000));
        flow
    }

    /// A flow whose request is being answered for ever (the peer accepts
    /// no response bytes).
    fn busy() -> ScriptFlow {
        let mut flow = ScriptFlow::new(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        flow.hang = true;
        flow.write_hangs = true;
        flow
    }

    /// Hands `flows` to [`serve`] with `config`, one accept at a time, and
    /// runs everything until nothing can go on.
    fn serve_flows(config: Config, flows: Vec<ScriptFlow>) -> Vec<Outcome> {
        let mut pool = LocalPool::new();
        // The clock of `TestClock::default()`: it stands still and no timer fires.
        let spawner = pool.spawner();
        let platform = FakePlatform::new()
            .starting_at(Instant::from_millis(1_000))
            .with_timers_that_never_fire()
            .with_wall_time(PosixTime::new(784_111_777, 0).unwrap())
            .without_randomness()
            .spawning_with(move |task| spawner.spawn_local(task).expect("the pool outlives the test"));
        let listener = QueueListener::default();
        let watched: Vec<_> = flows
            .into_iter()
            .map(|flow| {
                let watch = (flow.dropped.clone(), flow.written.clone());
                listener.queue.borrow_mut().push_back(flow);
                watch
            })
            .collect();
        pool.spawner()
            .spawn_local(async move {
                serve(platform, listener, site(), config).await;
            })
            .unwrap();
        pool.run_until_stalled();
        // Before the pool, and the flows its tasks hold, are dropped.
        watched.iter().map(|(dropped, written)| Outcome { dropped: dropped.get(), written: written.take() }).collect()
    }

    #[test]
    fn under_pressure_new_connections_evict_the_longest_waiting() {
        // Pressure starts at 3 of 4. The first request finishes and frees
        // its place; then three idle connections; each later one evicts the
        // oldest idle one, never the busy one.
        let mut done = ScriptFlow::new(b"GET / HTTP/1.0\r\n\r\n");
        done.remote = SocketAddr::from(([10, 0, 0, 1], 1));
        let flows =
            vec![done, idle([10, 0, 0, 2]), idle([10, 0, 0, 3]), busy(), idle([10, 0, 0, 4]), idle([10, 0, 0, 5])];
        let config = Config { max_connections: 4, ..Config::default() };
        let outcomes = serve_flows(config, flows);
        let dropped: Vec<bool> = outcomes.iter().map(Outcome::dropped).collect();
        assert_eq!(dropped, [true, true, true, false, false, false]);
        // Evicted connections are closed without a word.
        assert!(outcomes[1].written.is_empty() && outcomes[2].written.is_empty());
    }

    #[test]
    fn a_connection_over_the_limit_with_none_evictable_gets_503() {
        let flows = vec![busy(), busy(), idle([10, 0, 0, 9]), idle([10, 0, 0, 9])];
        let outcomes = serve_flows(Config { max_connections: 2, ..Config::default() }, flows);
        for refused in &outcomes[2..] {
            assert_eq!(refused.status(), Some(503), "{}", refused.text());
            assert!(refused.text().contains("\r\nRetry-After: 5\r\n"), "{}", refused.text());
            assert!(refused.text().contains("\r\nConnection: close\r\n"), "{}", refused.text());
        }
        // The refused connections linger (their peers send nothing and the
        // test's timers never fire); the busy ones go on.
        assert!(outcomes.iter().all(|o| !o.dropped()));
    }

    #[test]
    fn one_address_gets_at_most_its_share_but_loopback_is_exempt() {
        let config = Config { max_connections_per_address: 2, ..Config::default() };
        let flows = vec![
            idle([10, 0, 0, 1]),
            idle([10, 0, 0, 1]),
            idle([10, 0, 0, 1]),
            idle([10, 0, 0, 2]),
            idle([127, 0, 0, 1]),
            idle([127, 0, 0, 1]),
            idle([127, 0, 0, 1]),
        ];
        let outcomes = serve_flows(config, flows);
        let statuses: Vec<Option<u16>> = outcomes.iter().map(Outcome::status).collect();
        assert_eq!(statuses, [None, None, Some(503), None, None, None, None]);
    }

    #[test]
    fn refusals_beyond_their_bound_are_closed_at_once() {
        // One busy slot; every later connection is refused. The refusals
        // hang (silent peers, timers that never fire), so they pile up to
        // MAX_REFUSING; the next one is closed without an answer.
        let mut flows = vec![busy()];
        flows.extend((0..=MAX_REFUSING).map(|i| idle([10, 1, (i / 256) as u8, i as u8])));
        let outcomes = serve_flows(Config { max_connections: 1, ..Config::default() }, flows);
        let refused = &outcomes[1..];
        assert!(refused[..MAX_REFUSING].iter().all(|o| o.status() == Some(503) && !o.dropped()));
        let last = &refused[MAX_REFUSING];
        assert!(last.dropped() && last.written.is_empty(), "{}", last.text());
    }
}
