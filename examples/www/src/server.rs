//! Accepting connections and serving requests on them.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::time::Duration;

use futures::future::{select, Either};
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

/// After answering a malformed request the server shuts its side down and
/// reads (and discards) at most this much, for at most [`LINGER_TIME`],
/// before closing. Closing with unread data makes the kernel send a reset
/// that can destroy the error response before the client reads it; this
/// "lingering close" lets the response arrive without letting the client
/// hold the connection open.
const LINGER_BYTES: usize = 64 * 1024;

/// See [`LINGER_BYTES`].
const LINGER_TIME: Duration = Duration::from_secs(1);

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
/// Each connection runs as its own task ([`Platform::spawn`]); at most
/// [`Config::max_connections`] run at once and a connection accepted
/// beyond that is dropped at once (a reset). A failed accept is logged and
/// retried after 100 ms.
///
/// On a connection: `GET` and `HEAD` of a path percent-decode it and look
/// it up as a [`Key`]; a path that ends in `/` or names a dictionary serves
/// the `index.html` below it. Answers are 200 with `Content-Type` (from the
/// extension) and `Content-Length`; 404 when there is no such value; 400
/// for a malformed request or a path that is not a valid key (traversal
/// with `..` in any spelling is one); 405 (known methods) or 501 (unknown
/// ones) with `Allow: GET, HEAD`; 431 for a head longer than
/// [`Config::head_limit`]; 500 when the store fails. Connections persist
/// as HTTP/1.1 says (RFC 9112 §9.3) and pipelined requests are answered in
/// order.
pub async fn serve<P, L, K>(platform: P, listener: L, store: K, config: Config) -> Infallible
where
    P: Platform,
    L: TcpListener,
    K: KvRead + 'static,
    L::Flow: 'static,
{
    let store = Rc::new(store);
    let open = Rc::new(Cell::new(0usize));
    loop {
        let flow = match listener.accept().await {
            Ok(flow) => flow,
            Err(e) => {
                warn!("accepting a connection on {} failed: {e}", listener.local_addr());
                platform.sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if open.get() >= config.max_connections {
            warn!(
                "{}: closed at once, {} connections are open (the limit, --max-connections)",
                flow.remote_addr(),
                open.get()
            );
            drop(flow);
            continue;
        }
        let slot = ConnectionSlot::take(&open);
        let (clock, store) = (platform.clone(), store.clone());
        platform.spawn(async move {
            let _slot = slot;
            let mut flow = flow;
            let peer = flow.remote_addr();
            // Responses are written whole; waiting for more data to fill a
            // segment would only delay the end of each one.
            if let Err(e) = flow.set_nodelay(true) {
                debug!("{peer}: cannot turn Nagle's algorithm off: {e}");
            }
            if let Err(failure) = serve_connection(&clock, &mut flow, &*store, &config, &peer).await {
                failure.log(&peer);
            }
        });
    }
}

/// One of the [`Config::max_connections`] connections; frees its place when
/// dropped, whichever way the task ends.
struct ConnectionSlot(Rc<Cell<usize>>);

impl ConnectionSlot {
    fn take(open: &Rc<Cell<usize>>) -> ConnectionSlot {
        open.set(open.get() + 1);
        ConnectionSlot(open.clone())
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Why a connection ended early.
#[derive(Debug)]
pub(crate) enum Failure<FE, KE> {
    /// The flow failed.
    Flow(FE),
    /// The peer was silent, or accepted no data, for the idle timeout.
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
            Failure::Timeout(phase) => debug!("{peer}: closed after the idle timeout while {phase}"),
            Failure::Store(key, e) => warn!("{peer}: reading {key} from the store failed mid-response: {e}"),
            Failure::Truncated { key, offset, size } => {
                warn!("{peer}: the store ended {key} at byte {offset} of the {size} it announced")
            }
        }
    }
}

/// Serves requests on `flow` until the peer closes it, a request asks for
/// the connection to end, or something fails. Generic over the clock so
/// that tests can drive it with in-memory doubles.
pub(crate) async fn serve_connection<C, F, K>(
    clock: &C,
    flow: &mut F,
    store: &K,
    config: &Config,
    peer: &dyn fmt::Display,
) -> Result<(), Failure<F::Error, K::Error>>
where
    C: Sleep + WallClock,
    F: Flow,
    K: KvRead,
{
    let mut buf = vec![0u8; config.head_limit];
    let mut filled = 0;
    let mut conn = Connection { clock, flow, store, config, peer, out: Vec::new() };
    loop {
        let deadline = clock.now() + config.idle_timeout;
        let keep_open = loop {
            match parse_request(&buf[..filled]) {
                Parsed::Complete(request, len) => {
                    let keep_open = conn.respond(&request).await?;
                    // Pipelined requests already received move to the front.
                    buf.copy_within(len..filled, 0);
                    filled -= len;
                    break keep_open;
                }
                Parsed::Invalid(status, why) => {
                    debug!("{peer}: {why}: {}", status.code());
                    conn.respond_error(status, false, false, false).await?;
                    conn.linger(&mut buf).await;
                    return Ok(());
                }
                Parsed::Partial if filled == buf.len() => {
                    debug!("{peer}: request head longer than {} bytes", buf.len());
                    conn.respond_error(Status::RequestHeaderFieldsTooLarge, false, false, false).await?;
                    conn.linger(&mut buf).await;
                    return Ok(());
                }
                Parsed::Partial => match conn.read_by(&mut buf[filled..], deadline).await? {
                    Some(0) => {
                        // The peer is done (if it left half a head, it gets no answer).
                        conn.close().await;
                        return Ok(());
                    }
                    Some(n) => filled += n,
                    None => {
                        conn.close().await;
                        return Err(Failure::Timeout("waiting for a request"));
                    }
                },
            }
        };
        if !keep_open {
            conn.close().await;
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

    /// Ends the connection after an error response: see [`LINGER_BYTES`].
    async fn linger(&mut self, buf: &mut [u8]) {
        if self.flow.shutdown(Shutdown::Write).await.is_ok() {
            let deadline = self.clock.now() + LINGER_TIME;
            let mut drained = 0;
            while drained < LINGER_BYTES {
                match self.read_by(buf, deadline).await {
                    Ok(Some(n)) if n > 0 => drained += n,
                    _ => break,
                }
            }
        }
        self.close().await;
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
    use core::cell::RefCell;
    use core::task::Poll;

    use bytes::Bytes;
    use futures::executor::{block_on, LocalPool, LocalSpawner};
    use futures::task::LocalSpawnExt;
    use mirage::flow::FlowError;
    use mirage::kv::{Digest, KvError};
    use mirage::random::{Random, RandomError};
    use mirage::tcp::{Keepalive, TcpError};
    use mirage::time::{MonotonicClock, PosixTime};

    /// Timers fire at once (`expire`) or never.
    #[derive(Clone, Default)]
    struct TestClock {
        expire: bool,
    }

    impl MonotonicClock for TestClock {
        fn now(&self) -> Instant {
            Instant::from_millis(1_000)
        }
    }

    impl Sleep for TestClock {
        async fn sleep_until(&self, _deadline: Instant) {
            if !self.expire {
                futures::future::pending::<()>().await;
            }
        }
    }

    impl WallClock for TestClock {
        fn wall_time(&self) -> PosixTime {
            PosixTime::new(784_111_777, 0).unwrap()
        }
    }

    /// A flow that reads `input` (at most `max_read` bytes per call) and
    /// then reports end of stream, or waits for ever if `hang`.
    struct ScriptFlow {
        input: Vec<u8>,
        at: usize,
        max_read: usize,
        hang: bool,
        output: Vec<u8>,
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
                output: Vec::new(),
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
            if self.at == self.input.len() && self.hang {
                futures::future::pending::<()>().await;
            }
            let n = buf.len().min(self.max_read).min(self.input.len() - self.at);
            buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
        async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
            self.output.extend_from_slice(buf);
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
            SocketAddr::from(([127, 0, 0, 1], 40000))
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
        block_on(serve_connection(&TestClock::default(), flow, store, config, &"test"))
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
        let mut input = b"GET /".to_vec();
        input.resize(1024 * 1024, b'a');
        let mut flow = ScriptFlow::new(&input);
        let config = Config::default();
        run(&mut flow, &site(), &config).unwrap();
        let r = responses(&flow.output, &[false]);
        assert_eq!((r[0].status, r[0].header("connection")), (431, Some("close")));
        // The head buffer, then at most the lingering drain.
        assert!(flow.at <= config.head_limit + LINGER_BYTES + config.head_limit, "read {} bytes", flow.at);
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
        let clock = TestClock { expire: true };
        // Timers firing at once would also cut the first read, so hand the
        // first request over in one piece and let only the wait time out.
        let result = block_on(serve_connection(&clock, &mut flow, &site(), &Config::default(), &"test"));
        assert!(matches!(result, Err(Failure::Timeout(_))), "{result:?}");
        assert!(flow.closed);
    }

    /// A platform on a `LocalPool`; never exits.
    #[derive(Clone)]
    struct TestPlatform {
        spawner: LocalSpawner,
        clock: TestClock,
    }

    impl MonotonicClock for TestPlatform {
        fn now(&self) -> Instant {
            self.clock.now()
        }
    }
    impl Sleep for TestPlatform {
        async fn sleep_until(&self, deadline: Instant) {
            self.clock.sleep_until(deadline).await
        }
    }
    impl WallClock for TestPlatform {
        fn wall_time(&self) -> PosixTime {
            self.clock.wall_time()
        }
    }
    impl Random for TestPlatform {
        fn fill(&self, _buf: &mut [u8]) -> Result<(), RandomError> {
            Err(RandomError::Unavailable("the test platform has no entropy".into()))
        }
    }
    impl Platform for TestPlatform {
        fn spawn(&self, task: impl Future<Output = ()> + 'static) {
            self.spawner.spawn_local(task).expect("the pool outlives the test");
        }
        fn args(&self) -> &[String] {
            &[]
        }
        fn exit(&self, status: u8) -> ! {
            panic!("the server exited with {status}")
        }
    }

    /// Hands out queued flows, yielding once before each so that spawned
    /// connection tasks run in between; waits for ever when empty.
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
            let mut yielded = false;
            futures::future::poll_fn(|cx| {
                if yielded {
                    return Poll::Ready(());
                }
                yielded = true;
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

    #[test]
    fn connections_beyond_the_limit_are_closed_at_once() {
        let mut pool = LocalPool::new();
        let platform = TestPlatform { spawner: pool.spawner(), clock: TestClock::default() };
        let listener = QueueListener::default();
        let mut dropped = Vec::new();
        // The first request finishes and frees its place; the next two hang
        // and hold the limit of 2; the fourth is over it.
        for (input, hang) in [(&b"GET / HTTP/1.0\r\n\r\n"[..], false), (b"", true), (b"", true), (b"", true)] {
            let mut flow = ScriptFlow::new(input);
            flow.hang = hang;
            dropped.push(flow.dropped.clone());
            listener.queue.borrow_mut().push_back(flow);
        }
        let config = Config { max_connections: 2, ..Config::default() };
        pool.spawner()
            .spawn_local(async move {
                serve(platform, listener, site(), config).await;
            })
            .unwrap();
        pool.run_until_stalled();
        let dropped: Vec<bool> = dropped.iter().map(|d| d.get()).collect();
        assert_eq!(dropped, [true, false, false, true]);
    }
}
