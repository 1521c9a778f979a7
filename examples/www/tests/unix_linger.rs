//! Lingering close over loopback: a client that sends a request with a
//! body the server will not read (a POST, a GET with a body, a request the
//! server refuses), and writes all of that body before it reads, must get
//! the server's whole response, not a reset.
//!
//! The server answers, shuts down its sending side and reads and discards
//! what still comes, until the client's end of stream or its bounds, before
//! it closes: closing with unread data makes a TCP stack reset the
//! connection, which fails the client's writes and can destroy the response
//! in flight. The body here is written slowly, in pieces, so that the
//! server has answered long before the client finishes.

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

use support::{read_until_closed, Server};

/// The body: well above what the kernels buffer on loopback (so the server
/// must read to let the client finish), under the server's linger bound.
const BODY: usize = 16 << 20;

/// Written in pieces of this size, with [`PAUSE`] between them (about 1.3 s
/// for the whole body).
const PIECE: usize = 64 * 1024;
const PAUSE: Duration = Duration::from_millis(5);

/// Sends `head` and then [`BODY`] bytes slowly, all of it before reading;
/// then reads the response. Panics if a write fails (the server reset the
/// connection) or the response is not complete.
fn send_body_then_read(server: &Server, head: &str) -> support::Received {
    let mut stream = server.connect(Duration::from_secs(20));
    stream.write_all(head.as_bytes()).expect("send the head");
    let piece = vec![b'x'; PIECE];
    let mut sent = 0;
    while sent < BODY {
        if let Err(e) = stream.write_all(&piece) {
            panic!("{head:?}: writing the body failed after {sent} of {BODY} bytes: {e}");
        }
        sent += PIECE;
        thread::sleep(PAUSE);
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let r = read_until_closed(&mut stream, Duration::from_secs(20));
    assert!(r.error.is_none(), "{head:?}: reading the response failed: {:?} after {:?}", r.error, r.text());
    assert!(r.closed, "{head:?}: the server did not close after answering");
    r
}

#[test]
fn a_refused_body_still_gets_the_response() {
    let mut server = Server::start(&[], &[]);
    let r = send_body_then_read(
        &server,
        &format!("POST /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n"),
    );
    assert_eq!(r.status(), Some(405), "{:?}", r.text());
    assert_eq!(r.body(), Some(&b"405 Method Not Allowed\n"[..]));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    server.assert_running();
}

#[test]
fn a_get_with_a_body_still_gets_the_page() {
    let mut server = Server::start(&[], &[]);
    let r =
        send_body_then_read(&server, &format!("GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n"));
    assert_eq!(r.status(), Some(200), "{:?}", r.text());
    assert_eq!(r.body(), Some(&support::htdocs("hello.txt")[..]));
    server.assert_running();
}

#[test]
fn a_malformed_request_with_a_body_still_gets_its_400() {
    let mut server = Server::start(&[], &[]);
    let r = send_body_then_read(
        &server,
        &format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\nContent-Length: 1\r\n\r\n"),
    );
    assert_eq!(r.status(), Some(400), "{:?}", r.text());
    server.assert_running();
}
