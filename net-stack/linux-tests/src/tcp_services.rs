//! Our stack on a TAP device in a namespace, serving an echo and a
//! one-file HTTP responder, and the Linux commands (`curl`, `nc`) that
//! test them byte-exact: what `tests/tcp_interop.rs` and
//! `tests/tcp_lossy.rs` share.
//!
//! These are test harness functions: a failed set-up or a wrong byte
//! panics with a message saying what and where, which fails the test.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_platform_unix::tap::TapNetwork;
use mirage_platform_unix::UnixPlatform;
use mirage_testkit::pattern;
use mirage_types::flow::Flow;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::NetworkDevice;
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpListener};

use crate::{iface_name, missing, run_in_netns, Netns};
use mirage_test_env::require;

/// The TCP port of the echo service on our stack.
pub const ECHO_PORT: u16 = 7;
/// The TCP port of the HTTP responder on our stack.
pub const HTTP_PORT: u16 = 8080;

async fn echo<F: Flow>(mut flow: F) {
    let mut buf = vec![0u8; 64 * 1024];
    // Each pass echoes one read; it ends at end of stream or an error.
    loop {
        match flow.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if flow.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = flow.close().await;
}

/// Answers one HTTP request with `body`, then closes (reading the
/// request head first, so the close sends a FIN, not a reset).
async fn http_once<F: Flow>(mut flow: F, body: Rc<Vec<u8>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // Each pass reads one chunk of the head, at most 64 KiB in all.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match flow.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let header = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    if flow.write_all(header.as_bytes()).await.is_ok() && flow.write_all(&body).await.is_ok() {
        let _ = flow.close().await;
    }
}

/// [`run_in_netns`] on a blocking thread, so the event loop (and our
/// stack) keeps running while the command does.
pub async fn run_in(ns: &str, args: &[&str], input: Option<Vec<u8>>, limit: Duration) -> Result<Vec<u8>, String> {
    let ns = ns.to_string();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_in_netns(&ns, &args, input, limit)
    })
    .await
    .map_err(|e| format!("joining the command: {e}"))?
}

/// What a test body gets from [`with_tcp_services`].
#[derive(Debug)]
pub struct Session<D> {
    /// The namespace's name.
    pub ns: String,
    /// The TAP interface's name (its kernel end is in the namespace).
    pub iface: String,
    /// Our stack's address (Linux has `.1` of the same /24).
    pub ours: Ipv4Addr,
    /// The file the HTTP responder serves.
    pub file: Rc<Vec<u8>>,
    /// A handle on the device our stack runs on.
    pub device: D,
    /// Our stack, for tests that watch its `usage()`.
    pub stack: Rc<NetStack<D, UnixPlatform>>,
}

/// Sets up a namespace `prefix-PID` with TAP interface `tag…` on
/// 10.`net`.0.0/24 (Linux .1, our stack .2), runs our stack on
/// `wrap(tap)` with an echo on [`ECHO_PORT`] and an HTTP responder serving
/// `body_len` pattern bytes on [`HTTP_PORT`], and runs `body`. Afterwards
/// it checks that no connection is left open but TIME-WAIT ones.
///
/// Skips (returns without running `body`), or fails under CI
/// ([`mirage_test_env::skip`]), when /dev/net/tun, `ip`, `curl`, `nc` or
/// `timeout` is absent or a namespace cannot be created. `wrap` runs
/// inside a tokio `LocalSet`.
///
/// # Panics
///
/// When the set-up fails after those checks, when `body` panics, or when
/// connections are left open.
#[track_caller]
pub fn with_tcp_services<D, Fut>(
    prefix: &str,
    tag: &str,
    net: u8,
    body_len: usize,
    wrap: impl FnOnce(TapNetwork) -> D,
    body: impl FnOnce(Session<D>) -> Fut,
) where
    D: NetworkDevice + Clone + 'static,
    Fut: Future<Output = ()>,
{
    require!(missing(&[("curl", "curl"), ("nc", "netcat-openbsd"), ("timeout", "coreutils")]));
    let Some(ns) = Netns::new_or_skip(prefix) else { return };
    let iface = iface_name(tag);
    let ours = Ipv4Addr::new(10, net, 0, 2);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let tap = ns.tap(&iface, &format!("10.{net}.0.1/24")).unwrap();
        let device = wrap(tap);
        let config = Ipv4Config { address: Ipv4Cidr::new(ours, 24).unwrap(), gateway: None };
        let stack = StackBuilder::new(device.clone(), UnixPlatform::new(Vec::new())).ipv4(config).build().await;
        let stack = Rc::new(stack.expect("building our stack"));
        let runner = stack.clone();
        tokio::task::spawn_local(async move {
            let _ = runner.run().await;
        });
        let echo_listener = stack.tcp().listen(SocketAddr::from((ours, ECHO_PORT)), 16).await.unwrap();
        tokio::task::spawn_local(async move {
            while let Ok(flow) = echo_listener.accept().await {
                tokio::task::spawn_local(echo(flow));
            }
        });
        let file = Rc::new(pattern(u64::from(net), body_len));
        let http_listener = stack.tcp().listen(SocketAddr::from((ours, HTTP_PORT)), 16).await.unwrap();
        let served = file.clone();
        tokio::task::spawn_local(async move {
            while let Ok(flow) = http_listener.accept().await {
                tokio::task::spawn_local(http_once(flow, served.clone()));
            }
        });
        body(Session { ns: ns.name().to_string(), iface: iface.clone(), ours, file, device, stack: stack.clone() })
            .await;
        // Every connection was closed by both sides; give the last FINs
        // (and, on a lossy link, their retransmissions) a moment, then
        // nothing but TIME-WAIT may remain.
        let settle = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut u = stack.usage();
        // Each pass waits 50 ms for the last connections to finish closing.
        while u.tcp_connections != u.tcp_time_wait && tokio::time::Instant::now() < settle {
            tokio::time::sleep(Duration::from_millis(50)).await;
            u = stack.usage();
        }
        assert_eq!(u.tcp_connections, u.tcp_time_wait, "connections left open: {u:?}");
    });
}

/// `curl` in `ns` fetches the file from our HTTP responder at `ours`
/// within `limit`; panics unless it gets `file` byte-exact.
pub async fn curl_fetch(ns: &str, ours: Ipv4Addr, file: &[u8], limit: Duration) {
    let url = format!("http://{ours}:{HTTP_PORT}/file");
    let max = limit.as_secs().max(1).to_string();
    let got = run_in(ns, &["curl", "-sS", "--max-time", &max, &url], None, limit + Duration::from_secs(10)).await;
    let got = got.unwrap();
    assert_eq!(got.len(), file.len(), "curl got {} of {} bytes", got.len(), file.len());
    assert!(got == file, "curl's copy differs from the file served");
}

/// `nc` (netcat-openbsd) in `ns` pushes `len` pattern bytes from `seed`
/// to our echo at `ours` and reads them back within `limit`; panics unless
/// they come back byte-exact.
pub async fn nc_echo(ns: &str, ours: Ipv4Addr, len: usize, seed: u64, limit: Duration) {
    let data = pattern(seed, len);
    // -N: shut the socket's write side at end of stdin, then read until
    // our side closes.
    let args = ["nc", "-N", &ours.to_string(), &ECHO_PORT.to_string()];
    let got = run_in(ns, &args, Some(data.clone()), limit).await.unwrap();
    assert_eq!(got.len(), data.len(), "nc got {} of {} bytes back", got.len(), data.len());
    assert!(got == data, "the echo differs from what nc sent");
}
