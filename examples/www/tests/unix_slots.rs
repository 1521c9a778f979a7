//! Connection slots under attack, over loopback: a slowloris (connections
//! that trickle a request head a byte a second and reconnect when closed)
//! must not deny other clients, a head must complete within a deadline
//! that trickled bytes do not extend, and a client refused for capacity
//! gets a 503 with `Retry-After` rather than a reset.
//!
//! Every wait is bounded; no assertion is about speed.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::{exchange, htdocs, read_until_closed, tar_site, Server, TempDir};

/// The slot limit the slowloris test runs the server with (and the number
/// of slowloris connections it opens, all from 127.0.0.1).
const MAX_CONNECTIONS: usize = 16;

/// How long a legitimate client may wait for its page.
const LEGIT_LIMIT: Duration = Duration::from_secs(5);

/// One slowloris connection's life: sends a request line and then one byte
/// of a header a second, never finishing the head; returns when the server
/// closes the connection (or answers it), or `stop` is set.
fn trickle(stream: &mut TcpStream, stop: &AtomicBool) {
    if stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ").is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        // Wait a second, watching for the server's end of stream or answer.
        stream.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        match stream.read(&mut [0u8; 512]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // End of stream, a response, or a reset: this connection is over.
            _ => return,
        }
        if stream.write_all(b"a").is_err() {
            return;
        }
    }
}

/// `count` slowloris threads against `port`, each reconnecting when its
/// connection ends, until dropped.
struct Slowloris {
    stop: Arc<AtomicBool>,
    /// Connections opened so far, by all threads.
    opened: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(port: u16, count: usize) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|_| {
                let (stop, opened) = (stop.clone(), opened.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match TcpStream::connect(("127.0.0.1", port)) {
                            Ok(mut stream) => {
                                opened.fetch_add(1, Ordering::Relaxed);
                                stream.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                                trickle(&mut stream, &stop);
                            }
                            Err(_) => thread::sleep(Duration::from_millis(100)),
                        }
                    }
                })
            })
            .collect();
        Slowloris { stop, opened, threads }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// GETs /hello.txt on a new connection; the page, or why not.
fn fetch_hello(server: &Server) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_write_timeout(Some(LEGIT_LIMIT)).unwrap();
    stream
        .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let r = read_until_closed(&mut stream, LEGIT_LIMIT);
    match (r.status(), &r.error) {
        (Some(200), _) if r.body() == Some(&htdocs("hello.txt")[..]) => Ok(()),
        (_, Some(e)) => Err(format!("read failed ({e}) after {:?}", r.text())),
        _ if !r.closed && r.bytes.is_empty() => Err(format!("no answer within {LEGIT_LIMIT:?}")),
        _ => Err(format!("unexpected answer {:?}", r.text())),
    }
}

#[test]
fn a_slowloris_holding_every_slot_does_not_deny_other_clients() {
    let mut server = Server::start(&[], &["--max-connections", &MAX_CONNECTIONS.to_string()]);
    let attack = Slowloris::start(server.port, MAX_CONNECTIONS);
    // Every slowloris connection is open (and has sent its first bytes).
    let deadline = Instant::now() + Duration::from_secs(10);
    while attack.opened.load(Ordering::Relaxed) < MAX_CONNECTIONS {
        assert!(Instant::now() < deadline, "the slowloris connections did not all connect");
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(500));
    // Clients keep getting their page while the attack goes on.
    for i in 0..5 {
        if let Err(why) = fetch_hello(&server) {
            panic!("legitimate request {i} during the slowloris failed: {why}");
        }
        thread::sleep(Duration::from_millis(500));
    }
    server.assert_running();
    drop(attack);
}

#[test]
fn a_request_head_must_complete_within_its_deadline_however_it_trickles() {
    // The default head deadline is 10 s from the connection's start: a
    // byte a second keeps a connection alive for ever against an idle
    // timeout, but not against a deadline for the whole head.
    let server = Server::start(&[], &[]);
    let start = Instant::now();
    let mut stream = server.connect(Duration::from_secs(2));
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let t = s.spawn(|| trickle(&mut stream, &stop));
        while !t.is_finished() && start.elapsed() < Duration::from_secs(20) {
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let lasted = start.elapsed();
    assert!(
        lasted < Duration::from_secs(20),
        "a head trickled a byte a second was still being read after {lasted:?} (its deadline is 10 s)"
    );
}

#[test]
fn a_client_refused_for_capacity_gets_503_with_retry_after() {
    let dir = TempDir::new("slots");
    // A value the kernel buffers of two slow readers cannot hold, so that
    // the server stays busy sending it.
    let big = vec![7u8; 64 << 20];
    let Some(archive) = tar_site(&dir.0, &[("big.bin", &big), ("hello.txt", b"hello\n")]) else {
        return mirage_test_env::skip("GNU tar is not installed (Debian package tar)");
    };
    let block = format!("htdocs={}:ro", archive.display());
    let mut server = Server::start(&["--block", &block], &["--max-connections", "2"]);
    // Two clients ask for the big file and, once it starts coming, stop
    // reading: both slots are busy sending.
    let slow: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = server.connect(Duration::from_secs(10));
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
            let mut status = [0u8; 12];
            s.read_exact(&mut status).expect("the start of the big file's response");
            assert_eq!(&status, b"HTTP/1.1 200");
            s
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let r = exchange(&server, b"GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n", true, Duration::from_secs(10));
    assert_eq!(r.status(), Some(503), "{:?} {:?}", r.text(), r.error);
    assert!(r.header("retry-after").is_some_and(|v| v.parse::<u32>().is_ok()), "{:?}", r.text());
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert!(r.closed, "the refused connection was not closed");
    // Once the slow readers go, their slots are free again.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = exchange(&server, b"GET /hello.txt HTTP/1.1\r\nHost: test\r\n\r\n", false, Duration::from_secs(5));
        if r.status() == Some(200) {
            assert_eq!(r.body(), Some(&b"hello\n"[..]));
            break;
        }
        assert!(Instant::now() < deadline, "no slot came free after the slow readers left: {:?}", r.text());
        thread::sleep(Duration::from_millis(100));
    }
    server.assert_running();
}
