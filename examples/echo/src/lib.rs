//! The echo example: a TCP echo service (RFC 862) written once against the
//! traits of `mirage-types`, one crate for every target.
//!
//! [`start`] takes the stack named `net0` from the platform's devices and
//! [`listen`]s on [`Config::port`] of it; every connection runs as its own
//! task and gets back every byte it sends, in order, until it closes its
//! side, when the server closes too.
//!
//! # Bounds
//!
//! - at most [`Config::max_connections`] connections at once; one accepted
//!   beyond that is dropped at once (a reset);
//! - one buffer of [`BUFFER_SIZE`] bytes per connection: the server reads
//!   no more until what it read has been written back, so a client that
//!   sends without reading is slowed by TCP flow control, not buffered;
//! - a connection on which nothing can be read or written for
//!   [`Config::idle_timeout`] is closed.
//!
//! # Cargo features
//!
//! None. The crate is `#![no_std]` and needs only `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use core::cell::Cell;
use core::convert::Infallible;
use core::future::Future;
use core::net::{Ipv4Addr, SocketAddr};
use core::pin::pin;
use core::time::Duration;

use futures::future::{select, Either};
use log::{debug, info, warn};
use mirage::devices::Devices;
use mirage::flow::{self, Flow};
use mirage::platform::{AppError, Platform};
use mirage::stack::Stack;
use mirage::tcp::{Tcp, TcpFlow, TcpListener};
use mirage::time::Sleep;

/// Bytes each connection reads before writing them back.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// The pause after a failed accept, so a persistent failure (out of file
/// descriptors, say) does not spin the event loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's settings. [`Config::default`] is what runs without flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The TCP port (`--port`, default 7, the echo port of RFC 862; it needs
    /// privileges on most hosts).
    pub port: u16,
    /// The most connections served at once (`--max-connections`, default
    /// 1024).
    pub max_connections: usize,
    /// How long a connection may neither send nor accept data before it is
    /// closed (`--idle-timeout SECONDS`, default 300 s).
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config { port: 7, max_connections: 1024, idle_timeout: Duration::from_secs(300) }
    }
}

/// A command line the server cannot run with; the message says which flag
/// and why, followed by the usage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n{usage}", usage = Config::USAGE)]
pub struct ConfigError {
    problem: String,
}

impl ConfigError {
    /// What is wrong, without the usage.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl Config {
    /// The flags [`Config::from_args`] accepts.
    pub const USAGE: &'static str = "usage: echo [--port N] [--max-connections N] [--idle-timeout SECONDS]";

    /// Reads the settings from the application's arguments (what
    /// `Platform::args` returns), starting from the defaults.
    ///
    /// Errors name the flag and the value that is wrong: an unknown flag, a
    /// missing value, or a value that is not a positive number in range.
    pub fn from_args(args: &[String]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next();
            let number = || {
                let value = value.ok_or_else(|| ConfigError { problem: alloc::format!("{flag} needs a value") })?;
                value.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| ConfigError {
                    problem: alloc::format!("{flag} {value}: expected a positive whole number"),
                })
            };
            match flag.as_str() {
                "--port" => {
                    config.port = number()?.try_into().map_err(|_| ConfigError {
                        problem: alloc::format!("{flag} {}: a port is at most 65535", value.map_or("", |v| v)),
                    })?
                }
                "--max-connections" => config.max_connections = number()?.try_into().unwrap_or(usize::MAX),
                "--idle-timeout" => config.idle_timeout = Duration::from_secs(number()?),
                other => return Err(ConfigError { problem: alloc::format!("unknown argument {other:?}") }),
            }
        }
        Ok(config)
    }
}

/// The network device the service listens on.
pub const NET_DEVICE: &str = "net0";

/// Runs the service: the configuration from the application's arguments
/// ([`Config::from_args`]), the stack [`NET_DEVICE`], then [`listen`].
///
/// # Errors
///
/// A bad argument, no stack, or a port that cannot be listened on.
pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<Infallible, AppError> {
    let config = Config::from_args(platform.args())?;
    let stack = devices.stack(NET_DEVICE).await?;
    listen(platform, &stack, config)
        .await
        .map_err(|e| alloc::format!("cannot listen on TCP port {}: {e}", config.port).into())
}

/// Listens on `config.port` of every local IPv4 address of `stack` and
/// echoes every connection, until the system exits.
///
/// Logs `info` once listening, `debug` when a connection ends and `warn`
/// for failures.
///
/// # Errors
///
/// Only when the stack cannot listen on the port; once listening, the
/// server runs for ever and failures of single connections or accepts are
/// logged, not returned.
pub async fn listen<P, S>(platform: P, stack: &S, config: Config) -> Result<Infallible, <S::Tcp as Tcp>::Error>
where
    P: Platform,
    S: Stack,
    <S::Tcp as Tcp>::Flow: 'static,
{
    let local = SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.port));
    let listener = stack.tcp().listen(local, 128).await?;
    info!("listening on {}", listener.local_addr());
    Ok(serve(platform, listener, config).await)
}

/// Echoes every connection of `listener`, each in its own task, at most
/// [`Config::max_connections`] at once, for ever.
pub async fn serve<P, L>(platform: P, listener: L, config: Config) -> Infallible
where
    P: Platform,
    L: TcpListener,
    L::Flow: 'static,
{
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
            warn!("{}: closed at once, {} connections are open (the limit)", flow.remote_addr(), open.get());
            drop(flow);
            continue;
        }
        let slot = ConnectionSlot::take(&open);
        let clock = platform.clone();
        platform.spawn(async move {
            let _slot = slot;
            let mut flow = flow;
            let peer = flow.remote_addr();
            match echo(&clock, &mut flow, config.idle_timeout).await {
                Ok(total) => debug!("{peer}: echoed {total} bytes"),
                Err(Failure::Timeout) => debug!("{peer}: closed after {:?} idle", config.idle_timeout),
                Err(Failure::Flow(e)) => match flow::Error::kind(&e) {
                    flow::ErrorKind::ConnectionReset | flow::ErrorKind::BrokenPipe => debug!("{peer}: {e}"),
                    _ => warn!("{peer}: {e}"),
                },
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

/// Why a connection ended before its peer closed it.
#[derive(Debug)]
enum Failure<E> {
    Flow(E),
    Timeout,
}

/// Writes back everything read from `flow` until end of stream, then closes
/// it; returns the number of bytes echoed.
async fn echo<C: Sleep, F: Flow>(clock: &C, flow: &mut F, idle_timeout: Duration) -> Result<u64, Failure<F::Error>> {
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut total = 0u64;
    loop {
        let n = within(clock, idle_timeout, flow.read(&mut buf)).await?.map_err(Failure::Flow)?;
        if n == 0 {
            within(clock, idle_timeout, flow.close()).await?.map_err(Failure::Flow)?;
            return Ok(total);
        }
        within(clock, idle_timeout, flow.write_all(&buf[..n])).await?.map_err(Failure::Flow)?;
        total += n as u64;
    }
}

/// The output of `work`, or [`Failure::Timeout`] if it takes longer than
/// `timeout`.
async fn within<C: Sleep, T, E>(clock: &C, timeout: Duration, work: impl Future<Output = T>) -> Result<T, Failure<E>> {
    match select(pin!(work), pin!(clock.sleep(timeout))).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(((), _)) => Err(Failure::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;
    use futures::executor::block_on;
    use mirage_testkit::{FakePlatform, ScriptedFlow};

    /// A clock whose timers never fire: no timeout interferes.
    fn patient_clock() -> FakePlatform {
        FakePlatform::new().with_timers_that_never_fire()
    }

    /// A clock whose timers fire at once: every wait times out.
    fn impatient_clock() -> FakePlatform {
        FakePlatform::new()
    }

    #[test]
    fn echoes_everything_then_closes() {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut flow = ScriptedFlow::new(input.clone()).reading_at_most(3000).writing_at_most(1000);
        let total = block_on(echo(&patient_clock(), &mut flow, Duration::from_secs(1))).unwrap();
        assert_eq!(total, input.len() as u64);
        assert!(*flow.written().borrow() == input);
        assert!(flow.closed().get());
        assert!(flow.largest_read() <= BUFFER_SIZE);
    }

    #[test]
    fn an_empty_connection_is_closed() {
        let mut flow = ScriptedFlow::new(Vec::new());
        assert_eq!(block_on(echo(&patient_clock(), &mut flow, Duration::from_secs(1))).unwrap(), 0);
        assert!(flow.closed().get() && flow.written().borrow().is_empty());
    }

    #[test]
    fn a_silent_peer_times_out() {
        let mut flow = ScriptedFlow::new(Vec::new()).hanging_at_end();
        let result = block_on(echo(&impatient_clock(), &mut flow, Duration::from_secs(1)));
        assert!(matches!(result, Err(Failure::Timeout)), "{result:?}");
    }

    #[test]
    fn flags() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(Config::from_args(&[]), Ok(Config::default()));
        let c = Config::from_args(&args("--port 7007 --max-connections 2 --idle-timeout 9")).unwrap();
        assert_eq!((c.port, c.max_connections, c.idle_timeout), (7007, 2, Duration::from_secs(9)));
        let problem = |s: &str| Config::from_args(&args(s)).unwrap_err().problem().to_string();
        assert_eq!(problem("--port 70000"), "--port 70000: a port is at most 65535");
        assert_eq!(problem("--port"), "--port needs a value");
        assert_eq!(problem("--idle-timeout 0"), "--idle-timeout 0: expected a positive whole number");
        assert_eq!(problem("-v"), "unknown argument \"-v\"");
    }
}
