//! TCP on host sockets.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mirage_types::flow::{Flow, FlowError, Shutdown};
use mirage_types::tcp::{self as tcp_types, Keepalive, Tcp, TcpError, TcpFlow, TcpListener};
use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{flow_error, tcp_error};

/// Linux keeps keepalive times in whole seconds within this range
/// (`TCP_KEEPIDLE`, `TCP_KEEPINTVL`).
const KEEPALIVE_SECS: std::ops::RangeInclusive<u64> = 1..=32767;
/// Linux's range for `TCP_KEEPCNT`.
const KEEPALIVE_PROBES: std::ops::RangeInclusive<u32> = 1..=127;

/// TCP of a [`SocketStack`](super::SocketStack): kernel TCP sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostTcp {
    _private: (),
}

impl Tcp for HostTcp {
    type Error = TcpError;
    type Flow = HostTcpFlow;
    type Listener = HostTcpListener;

    /// Connects with the kernel's connect timeout (about two minutes of SYN
    /// retries, `net.ipv4.tcp_syn_retries`).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for port 0; `ConnectionRefused` on a reset;
    /// `TimedOut` without an answer; `Unreachable` without a route; the
    /// message names `remote` and carries the host's text.
    async fn connect(&self, remote: SocketAddr) -> Result<HostTcpFlow, TcpError> {
        if remote.port() == 0 {
            return Err(TcpError::Other {
                kind: tcp_types::ErrorKind::InvalidInput,
                message: format!("TCP connect to {remote}: port 0 cannot be connected to"),
            });
        }
        let stream = TcpStream::connect(remote).await.map_err(|e| tcp_error("connect to", remote, e))?;
        HostTcpFlow::new(stream).map_err(|e| tcp_error("connect to", remote, e))
    }

    /// Listens with `SO_REUSEADDR` (so a restarted server can bind while
    /// old connections linger in `TIME_WAIT`) and the given backlog, which
    /// the kernel caps at `net.core.somaxconn` (4096 by default). Port 0
    /// picks a free port; [`TcpListener::local_addr`] tells which.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a backlog of 0; `AddressInUse` if another socket
    /// listens there; `AddressNotAvailable` for an address that is not
    /// local; `Other` for a port below 1024 without privilege.
    async fn listen(&self, local: SocketAddr, backlog: usize) -> Result<HostTcpListener, TcpError> {
        if backlog == 0 {
            return Err(TcpError::Other {
                kind: tcp_types::ErrorKind::InvalidInput,
                message: format!("TCP listen on {local}: a backlog of 0 could never accept a connection"),
            });
        }
        let error = |e| tcp_error("listen on", local, e);
        let socket = if local.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(error)?;
        socket.set_reuseaddr(true).map_err(error)?;
        socket.bind(local).map_err(error)?;
        // listen(2) takes an int; anything larger is capped by the kernel anyway.
        let backlog = u32::try_from(backlog).unwrap_or(u32::MAX).min(i32::MAX as u32);
        let listener = socket.listen(backlog).map_err(error)?;
        let local_addr = listener.local_addr().map_err(error)?;
        Ok(HostTcpListener { listener, local_addr })
    }
}

/// A listening kernel TCP socket; dropping it closes the socket, and the
/// kernel resets the connections still in its backlog.
#[derive(Debug)]
pub struct HostTcpListener {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
}

impl TcpListener for HostTcpListener {
    type Flow = HostTcpFlow;
    type Error = TcpError;

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the next connection. Connections that fail between their
    /// handshake and `accept` (reset by the peer, for instance) are skipped,
    /// not reported, so a server loop does not stop for one peer's trouble.
    ///
    /// Cancel-safe: the kernel keeps a connection queued until an `accept`
    /// completes.
    ///
    /// # Errors
    ///
    /// `ResourceExhausted` when the process is out of file descriptors
    /// (`EMFILE`); the listener stays usable and a later call may succeed.
    async fn accept(&self) -> Result<HostTcpFlow, TcpError> {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) if is_per_connection(&e) => {
                    log::debug!("TCP accept on {}: skipped a failed connection: {e}", self.local_addr);
                    continue;
                }
                Err(e) => return Err(tcp_error("accept on", self.local_addr, e)),
            };
            match HostTcpFlow::new(stream) {
                Ok(flow) => return Ok(flow),
                Err(e) => log::debug!("TCP accept on {}: connection from {peer} failed at once: {e}", self.local_addr),
            }
        }
    }
}

/// Errors accept(2) reports for one incoming connection rather than for the
/// listener ("Linux passes already-pending network errors on the new socket
/// as an error code from accept()", accept(2)).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset)
        || matches!(
            e.raw_os_error(),
            Some(
                libc::EPROTO
                    | libc::ENETDOWN
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH
            )
        )
}

/// A kernel TCP connection.
///
/// Dropping it without [`Flow::close`] resets the connection (`SO_LINGER`
/// of zero), as the trait asks. After `close`, the kernel goes on
/// delivering what was written; dropping the closed flow releases the
/// socket, at which point Linux resets instead if received data was left
/// unread (RFC 2525 §2.17), so read to end of stream before dropping when
/// the peer may still be sending.
#[derive(Debug)]
pub struct HostTcpFlow {
    stream: TcpStream,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    read_shut: bool,
    write_shut: bool,
    closed: bool,
}

impl HostTcpFlow {
    fn new(stream: TcpStream) -> io::Result<HostTcpFlow> {
        Ok(HostTcpFlow {
            local_addr: stream.local_addr()?,
            remote_addr: stream.peer_addr()?,
            stream,
            read_shut: false,
            write_shut: false,
            closed: false,
        })
    }

    fn check_open(&self, op: &'static str) -> Result<(), FlowError> {
        if self.closed {
            Err(FlowError::NotConnected(op))
        } else {
            Ok(())
        }
    }

    fn shutdown_socket(&self, how: std::net::Shutdown) -> Result<(), FlowError> {
        SockRef::from(&self.stream).shutdown(how).map_err(|e| flow_error("shutdown of", self.remote_addr, e))
    }
}

impl Flow for HostTcpFlow {
    type Error = FlowError;

    /// Reads what the kernel has received. After `shutdown(Read)` returns
    /// `Ok(0)`.
    ///
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// `NotConnected` after `close`; `ConnectionReset` if the peer reset;
    /// `TimedOut` when keepalive or retransmission gave up.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FlowError> {
        self.check_open("read")?;
        if self.read_shut {
            return Ok(0);
        }
        let remote = self.remote_addr;
        self.stream.read(buf).await.map_err(|e| flow_error("read from", remote, e))
    }

    /// Copies as much of `buf` as fits into the kernel's send buffer,
    /// waiting while it is full. `Ok(n)`: the kernel took `n` bytes.
    ///
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// `NotConnected` after `close`; `BrokenPipe` after `shutdown(Write)`;
    /// `ConnectionReset` if the connection is gone.
    async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
        self.check_open("write")?;
        if self.write_shut {
            return Err(FlowError::BrokenPipe);
        }
        let remote = self.remote_addr;
        self.stream.write(buf).await.map_err(|e| flow_error("write to", remote, e))
    }

    /// Shuts down one or both directions. `Write` queues a FIN after the
    /// data already written; `Read` makes later reads return `Ok(0)`;
    /// `Both` also closes the flow as [`Flow::close`] does. Repeating a
    /// shutdown is not an error.
    ///
    /// # Errors
    ///
    /// `NotConnected` after `close` or if the kernel no longer has the
    /// connection (it was reset).
    async fn shutdown(&mut self, how: Shutdown) -> Result<(), FlowError> {
        self.check_open("shutdown")?;
        if matches!(how, Shutdown::Write | Shutdown::Both) && !self.write_shut {
            self.shutdown_socket(std::net::Shutdown::Write)?;
            self.write_shut = true;
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) && !self.read_shut {
            self.shutdown_socket(std::net::Shutdown::Read)?;
            self.read_shut = true;
        }
        if how == Shutdown::Both {
            self.closed = true;
        }
        Ok(())
    }

    /// Queues a FIN after the data already written and marks the flow
    /// closed; the socket itself is released when the flow is dropped.
    /// Closing twice is not an error.
    ///
    /// # Errors
    ///
    /// If the kernel no longer has the connection (it was reset), the error
    /// says so; the flow is closed either way.
    async fn close(&mut self) -> Result<(), FlowError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        if !self.write_shut {
            self.write_shut = true;
            self.shutdown_socket(std::net::Shutdown::Write)?;
        }
        Ok(())
    }
}

impl TcpFlow for HostTcpFlow {
    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Sets `TCP_NODELAY`.
    fn set_nodelay(&mut self, nodelay: bool) -> Result<(), FlowError> {
        self.check_open("set_nodelay")?;
        self.stream
            .set_nodelay(nodelay)
            .map_err(|e| flow_error("setting TCP_NODELAY on connection to", self.remote_addr, e))
    }

    /// Sets `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and
    /// `TCP_KEEPCNT`.
    ///
    /// # Errors
    ///
    /// `Other` if `idle` or `interval` is not a whole number of seconds
    /// from 1 to 32767 or `probes` is not from 1 to 127 (Linux's limits);
    /// nothing is changed then.
    fn set_keepalive(&mut self, keepalive: Option<Keepalive>) -> Result<(), FlowError> {
        self.check_open("set_keepalive")?;
        let remote = self.remote_addr;
        let socket = SockRef::from(&self.stream);
        let Some(k) = keepalive else {
            return socket
                .set_keepalive(false)
                .map_err(|e| flow_error("disabling keepalive on connection to", remote, e));
        };
        let invalid = |what: &str| FlowError::Other {
            kind: mirage_types::flow::ErrorKind::Other,
            message: format!("keepalive on connection to {remote}: {what}"),
        };
        let whole_secs = |d: Duration| (d.subsec_nanos() == 0 && KEEPALIVE_SECS.contains(&d.as_secs())).then_some(d);
        let idle = whole_secs(k.idle).ok_or_else(|| {
            invalid(&format!("idle time {:?} is not a whole number of seconds from 1 to 32767", k.idle))
        })?;
        let interval = whole_secs(k.interval).ok_or_else(|| {
            invalid(&format!("probe interval {:?} is not a whole number of seconds from 1 to 32767", k.interval))
        })?;
        if !KEEPALIVE_PROBES.contains(&k.probes) {
            return Err(invalid(&format!("{} probes is outside Linux's range of 1 to 127", k.probes)));
        }
        let params = TcpKeepalive::new().with_time(idle).with_interval(interval).with_retries(k.probes);
        socket.set_tcp_keepalive(&params).map_err(|e| flow_error("setting keepalive on connection to", remote, e))
    }
}

impl Drop for HostTcpFlow {
    fn drop(&mut self) {
        if !self.closed {
            // A zero linger time makes the kernel answer close(2) with RST.
            if let Err(e) = SockRef::from(&self.stream).set_linger(Some(Duration::ZERO)) {
                log::debug!("TCP connection to {}: cannot arrange a reset on drop: {e}", self.remote_addr);
            }
        }
    }
}
