//! HTTP/1.1 framing strictness of the built `www` over loopback (RFC 9112):
//! requests whose framing two parsers could read differently (conflicting
//! `Content-Length`s, `Transfer-Encoding` beside `Content-Length`, lines
//! ending in a bare LF) get one 400 and the connection closed, so no
//! smuggled second request behind them is ever answered; a list of
//! identical `Content-Length` values is one value (§6.3, item 5).

mod support;

use std::time::Duration;

use support::{exchange, htdocs, Received, Server};

/// Every wait of these tests gives up after this long.
const LIMIT: Duration = Duration::from_secs(10);

/// The server answered once with 400 and `Connection: close`, then closed.
#[track_caller]
fn assert_refused(r: &Received, what: &str) {
    assert_eq!(r.status(), Some(400), "{what}: {:?}", r.text());
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{what}: {:?}", r.text());
    assert_eq!(r.responses(), 1, "{what}: a request behind the refused one was answered: {:?}", r.text());
    assert!(r.closed, "{what}: the server did not close the connection within {LIMIT:?}: {:?}", r.text());
}

/// A request for /hello.txt with `fields` (each line with its own ending)
/// after `Host`, then a second, pipelined request for /style.css: only a
/// server that read the first one's framing as the client meant answers
/// the second.
fn with_fields(request_line_end: &str, fields: &str, body: &str) -> Vec<u8> {
    format!(
        "GET /hello.txt HTTP/1.1{request_line_end}Host: test\r\n{fields}\r\n{body}\
         GET /style.css HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn conflicting_content_lengths_are_refused_and_the_connection_closed() {
    let server = Server::start(&[], &[]);
    for (what, fields) in [
        ("two fields that differ", "Content-Length: 5\r\nContent-Length: 6\r\n"),
        ("a list whose values differ", "Content-Length: 5, 6\r\n"),
        ("a value with a sign", "Content-Length: +5\r\n"),
        ("a list with a value that is not a number", "Content-Length: 5, five\r\n"),
    ] {
        let r = exchange(&server, &with_fields("\r\n", fields, "hello"), false, LIMIT);
        assert_refused(&r, what);
    }
}

#[test]
fn identical_content_lengths_are_one_value() {
    // RFC 9112 §6.3 item 5: a list of identical valid values is processed
    // as that one value; two field lines are one list (RFC 9110 §5.3).
    let server = Server::start(&[], &[]);
    for (what, fields) in [
        ("two identical fields", "Content-Length: 0\r\nContent-Length: 0\r\n"),
        ("a list of identical values", "Content-Length: 0, 0\r\n"),
    ] {
        let r = exchange(&server, &with_fields("\r\n", fields, ""), false, LIMIT);
        assert_eq!(r.status(), Some(200), "{what}: {:?}", r.text());
        assert_eq!(r.body(), Some(&htdocs("hello.txt")[..]), "{what}");
        assert_eq!(r.responses(), 2, "{what}: the pipelined request was not answered: {:?}", r.text());
    }
}

#[test]
fn transfer_encoding_with_content_length_is_refused() {
    // RFC 9112 §6.1: a server MAY reject such a request, and MUST close the
    // connection after answering it; §6.3 item 3: "ought to be handled as an error".
    let server = Server::start(&[], &[]);
    let fields = "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n";
    let r = exchange(&server, &with_fields("\r\n", fields, "0\r\n\r\n"), false, LIMIT);
    assert_refused(&r, "Transfer-Encoding and Content-Length");
    // Chunked must be the final coding of a request (§6.3 item 3).
    let r = exchange(&server, &with_fields("\r\n", "Transfer-Encoding: chunked, gzip\r\n", ""), false, LIMIT);
    assert_refused(&r, "chunked not last");
}

#[test]
fn lines_ending_in_a_bare_lf_are_refused() {
    // RFC 9112 §2.2 lets a recipient accept a bare LF; we refuse it, since a
    // proxy in front that does not would see different request boundaries.
    let server = Server::start(&[], &[]);
    let r = exchange(&server, &with_fields("\n", "Connection: keep-alive\r\n", ""), false, LIMIT);
    assert_refused(&r, "request line ending in LF");
    let r = exchange(&server, &with_fields("\r\n", "X-Note: a\nConnection: keep-alive\r\n", ""), false, LIMIT);
    assert_refused(&r, "header line ending in LF");
    let r = exchange(&server, b"GET /hello.txt HTTP/1.1\r\nHost: test\r\n\n", false, LIMIT);
    assert_refused(&r, "empty line ending in LF");
    // The same requests with CRLF are served.
    let r = exchange(&server, &with_fields("\r\n", "Connection: keep-alive\r\n", ""), false, LIMIT);
    assert_eq!((r.status(), r.responses()), (Some(200), 2), "{:?}", r.text());
}
