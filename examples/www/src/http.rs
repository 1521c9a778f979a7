//! The HTTP/1.1 of a static file server, without I/O: parsing a request
//! head, turning its target into a store key, and writing a response head.
//!
//! Reading list: RFC 9110 (HTTP semantics: methods §9, status codes §15,
//! `Allow` §10.2.1, `Retry-After` §10.2.3, dates §5.6.7, lists §5.6.1,
//! `Content-Length` §8.6), RFC 9112 (HTTP/1.1 message syntax: line
//! endings §2.2, request target §3.2, `Host` §3.2, `Transfer-Encoding`
//! §6.1, message body length §6.3, persistence §9.3, request smuggling
//! §11.2), RFC 3986 §2.1 (percent-encoding), RFC 6585 §5 (431).
//!
//! # Framing is parsed strictly
//!
//! The server reads no request bodies, but it must still agree with
//! every other HTTP parser on the path (a proxy in front, say) about where
//! a request ends, or a second request can be smuggled inside the first
//! (RFC 9112 §11.2). So a head is refused with 400, and the connection
//! closed after the answer, when its framing is ambiguous:
//!
//! - a line (request line, field line or the final empty line) that ends
//!   in a bare LF instead of CRLF. RFC 9112 §2.2 lets a recipient accept a
//!   bare LF, but a proxy that does not would see other line boundaries
//!   than we do; we choose strictness. (A bare CR, an `obs-fold`
//!   continuation line and white space before a field's colon are already
//!   refused by `httparse`, as §2.2, §5.2 and §5.1 allow or require.)
//! - `Content-Length` values that are not all the same, or not all
//!   `1*DIGIT` (§8.6 of RFC 9110: no sign, no spaces inside). Several
//!   field lines, or a comma-separated list, of one identical value are
//!   that value (RFC 9112 §6.3 item 5: "unless the field value can be
//!   successfully parsed as a comma-separated list, all values in the list
//!   are valid, and all values in the list are the same");
//! - `Transfer-Encoding` together with `Content-Length` (§6.1: a server
//!   MAY reject such a request and MUST close the connection after
//!   answering it; §6.3 item 3: it "ought to be handled as an error"), or
//!   a `Transfer-Encoding` whose final coding is not `chunked` (§6.3 item
//!   3: the server MUST answer 400 and close).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use mirage::kv::Key;
use mirage::time::PosixTime;

/// The most header fields a request may have; more is answered with 431.
/// Bounds the parser's stack use.
pub(crate) const MAX_HEADERS: usize = 64;

/// What the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestHeaderFieldsTooLarge,
    InternalServerError,
    NotImplemented,
    ServiceUnavailable,
}

impl Status {
    pub(crate) fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }

    /// Whether the response must carry `Allow` (RFC 9110 §15.5.6 requires
    /// it for 405; we add it to 501 as a hint).
    fn needs_allow(self) -> bool {
        matches!(self, Status::MethodNotAllowed | Status::NotImplemented)
    }
}

/// The `Retry-After` of a 503 (RFC 9110 §10.2.3), in seconds: the server
/// answers 503 only when every connection slot is busy answering a
/// request, which for a static server lasts seconds.
pub(crate) const RETRY_AFTER_SECS: u32 = 5;

/// The request method, as far as a static server cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    /// A method of RFC 9110 §9 or RFC 5789 that this server does not allow: 405.
    NotAllowed,
    /// A method the server does not know: 501 (RFC 9110 §9.1).
    Unknown,
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => Method::NotAllowed,
            _ => Method::Unknown,
        }
    }
}

/// A parsed request head, borrowing from the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'b> {
    pub(crate) method: Method,
    /// The method as sent, for the log.
    pub(crate) method_name: &'b str,
    /// The request target as sent (not yet decoded).
    pub(crate) target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Whether the client wants the connection kept open after the response
    /// (RFC 9112 §9.3).
    pub(crate) keep_alive: bool,
    /// Whether a body follows the head (`Content-Length` other than 0, or
    /// `Transfer-Encoding`). The server does not read bodies, so it ends
    /// the connection after answering such a request (with a lingering
    /// close: it reads and discards what the client still sends).
    pub(crate) has_body: bool,
}

/// The outcome of parsing the start of a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed<'b> {
    /// The head is not complete yet: read more.
    Partial,
    /// A complete head of `len` bytes.
    Complete(Request<'b>, usize),
    /// Not a valid request: answer with this status and close. The message
    /// says why, for the log.
    Invalid(Status, &'static str),
}

/// Parses the request head at the start of `buf`; see the module notes
/// for what is refused.
pub(crate) fn parse_request(buf: &[u8]) -> Parsed<'_> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        // The whole buffer is head so far: a bare LF in it is refused
        // now rather than when the head is complete.
        Ok(httparse::Status::Partial) if has_bare_lf(buf) => return Parsed::Invalid(Status::BadRequest, BARE_LF),
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Invalid(Status::RequestHeaderFieldsTooLarge, "too many header fields")
        }
        Err(_) => return Parsed::Invalid(Status::BadRequest, "malformed request head"),
    };
    // httparse accepts LF alone as a line ending (RFC 9112 §2.2's MAY);
    // only the head is checked, not the bytes after it.
    if has_bare_lf(&buf[..len]) {
        return Parsed::Invalid(Status::BadRequest, BARE_LF);
    }
    // httparse fills all three once the head is complete.
    let (Some(method_name), Some(target), Some(minor_version)) = (request.method, request.path, request.version) else {
        return Parsed::Invalid(Status::BadRequest, "incomplete request line");
    };

    let mut hosts = 0;
    let mut close = false;
    let mut keep_alive = false;
    let mut content_length = None;
    let mut transfer_encoding = false;
    // The last coding of all Transfer-Encoding lines read as one list
    // (RFC 9110 §5.3), if there is one.
    let mut final_coding: Option<&[u8]> = None;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_elements(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let mut values = list_elements(header.value).peekable();
            if values.peek().is_none() {
                return Parsed::Invalid(Status::BadRequest, "empty Content-Length");
            }
            for value in values {
                let Some(length) = decimal(value) else {
                    return Parsed::Invalid(Status::BadRequest, "invalid Content-Length");
                };
                if content_length.is_some_and(|l| l != length) {
                    return Parsed::Invalid(Status::BadRequest, "conflicting Content-Length values");
                }
                content_length = Some(length);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            final_coding = list_elements(header.value).last().or(final_coding);
        }
    }
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request with no
    // Host or more than one.
    if minor_version == 1 && hosts != 1 {
        return Parsed::Invalid(Status::BadRequest, "HTTP/1.1 request needs exactly one Host field");
    }
    if transfer_encoding {
        if content_length.is_some() {
            return Parsed::Invalid(Status::BadRequest, "both Transfer-Encoding and Content-Length");
        }
        if !final_coding.is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked")) {
            return Parsed::Invalid(Status::BadRequest, "chunked is not the final transfer coding");
        }
    }
    let has_body = transfer_encoding || content_length.is_some_and(|l| l > 0);
    let keep_alive = if minor_version == 0 { keep_alive && !close } else { !close };
    let request =
        Request { method: Method::parse(method_name), method_name, target, minor_version, keep_alive, has_body };
    Parsed::Complete(request, len)
}

const BARE_LF: &str = "a line of the request head ends in a bare LF, not CRLF";

/// Whether an LF in `head` is not preceded by a CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The elements of a field value that is a comma-separated list (RFC 9110
/// §5.6.1): trimmed of optional white space, empty ones skipped.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|element| !element.is_empty())
}

/// A `1*DIGIT` value (RFC 9110 §8.6) that fits in a u64.
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &digit| n.checked_mul(10)?.checked_add(u64::from(digit - b'0')))
}

/// Where a request target points in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The decoded path as a key.
    pub(crate) key: Key,
    /// The path ended with `/`: serve `index.html` below the key.
    pub(crate) index: bool,
}

/// Turns a request target into a store key.
///
/// The path is percent-decoded *before* [`Key::parse`] checks it, so
/// `%2e%2e` is seen as `..` and `%2f` as a separator and rejected there:
/// no spelling of a path can name a key outside the store. The query is
/// ignored. Errors are 400 with the reason.
pub(crate) fn resolve_target(target: &str) -> Result<Lookup, &'static str> {
    // RFC 9112 §3.2.2: servers must accept the absolute form too.
    let path = match target.find("://") {
        Some(scheme_end) if !target.starts_with('/') => {
            let after = &target[scheme_end + 3..];
            after.find('/').map_or("/", |slash| &after[slash..])
        }
        _ => target,
    };
    if !path.starts_with('/') {
        return Err("request target is not an absolute path");
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let decoded = percent_decode(path)?;
    let (path, index) = match decoded.strip_suffix('/') {
        Some(dir) => (dir, true),
        None => (decoded.as_str(), false),
    };
    let key = Key::parse(path).map_err(|_| "path is not a valid store key (empty, '.' or '..' segment)")?;
    Ok(Lookup { key, index })
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err("invalid percent-encoding in path"),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "path is not UTF-8 once decoded")
}

/// The media type for a key, from its extension.
pub(crate) fn content_type(key: &Key) -> &'static str {
    let name = key.name().unwrap_or("");
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    const TYPES: &[(&str, &str)] = &[
        ("html", "text/html; charset=utf-8"),
        ("htm", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("svg", "image/svg+xml"),
        ("ico", "image/vnd.microsoft.icon"),
        ("wasm", "application/wasm"),
        ("woff2", "font/woff2"),
    ];
    TYPES
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map_or("application/octet-stream", |(_, media)| media)
}

/// A date in the IMF-fixdate format of RFC 9110 §5.6.7
/// (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) struct HttpDate(pub(crate) PosixTime);

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        // Dates before the epoch or after year 9999 are clamped: the format
        // has four year digits and no sign.
        let secs = self.0.secs().clamp(0, 253_402_300_799);
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[(days % 7) as usize],
            day,
            MONTHS[(month - 1) as usize],
            year,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, for
/// non-negative counts: the proleptic Gregorian calendar, computed by eras
/// of 400 years (after Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The fields of a response head.
pub(crate) struct ResponseHead<'a> {
    pub(crate) status: Status,
    pub(crate) content_type: &'a str,
    pub(crate) content_length: u64,
    /// Whether the connection stays open after this response.
    pub(crate) keep_alive: bool,
    /// The request was HTTP/1.0, where persistence must be announced.
    pub(crate) http10: bool,
    pub(crate) date: PosixTime,
    pub(crate) last_modified: Option<PosixTime>,
}

impl ResponseHead<'_> {
    /// Appends the head, with its final empty line, to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        let mut w = VecWriter(out);
        // Writing into a Vec cannot fail; the Results are only fmt's plumbing.
        let _ = write!(
            w,
            "HTTP/1.1 {} {}\r\nServer: mirage-www\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status.code(),
            self.status.reason(),
            HttpDate(self.date),
            self.content_type,
            self.content_length
        );
        if let Some(t) = self.last_modified {
            let _ = write!(w, "Last-Modified: {}\r\n", HttpDate(t));
        }
        if self.status.needs_allow() {
            let _ = w.write_str("Allow: GET, HEAD\r\n");
        }
        if self.status == Status::ServiceUnavailable {
            let _ = write!(w, "Retry-After: {RETRY_AFTER_SECS}\r\n");
        }
        if !self.keep_alive {
            let _ = w.write_str("Connection: close\r\n");
        } else if self.http10 {
            let _ = w.write_str("Connection: keep-alive\r\n");
        }
        let _ = w.write_str("\r\n");
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match parse_request(buf) {
            Parsed::Complete(r, len) => (r, len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_get_and_head_with_persistence_rules() {
        let head = b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n";
        let pipelined = [&head[..], b"GET /next"].concat();
        let (r, len) = complete(&pipelined);
        assert_eq!(
            (r.method, r.target, r.minor_version, r.keep_alive, r.has_body),
            (Method::Get, "/a?b", 1, true, false)
        );
        assert_eq!(len, head.len());
        let (r, _) = complete(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n");
        assert_eq!((r.method, r.keep_alive), (Method::Head, false));
        // RFC 9112 §9.3: HTTP/1.0 closes unless keep-alive is asked for.
        let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive);
        let (r, _) = complete(b"GET / HTTP/1.0\r\nConnection: te, Keep-Alive\r\n\r\n");
        assert!(r.keep_alive);
    }

    #[test]
    fn partial_and_invalid_heads() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n"), Parsed::Partial);
        assert_eq!(parse_request(b""), Parsed::Partial);
        assert!(matches!(parse_request(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid(Status::BadRequest, _)));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Parsed::Invalid(Status::BadRequest, _)
        ));
        assert!(matches!(parse_request(b"GET / HTTP/2.0\r\n\r\n"), Parsed::Invalid(Status::BadRequest, _)));
        assert!(matches!(parse_request(b"\x00\x01garbage\r\n\r\n"), Parsed::Invalid(Status::BadRequest, _)));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"),
            Parsed::Invalid(Status::BadRequest, _)
        ));
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(alloc::format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse_request(&many), Parsed::Invalid(Status::RequestHeaderFieldsTooLarge, _)));
    }

    #[test]
    fn methods_and_bodies() {
        let (r, _) = complete(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((r.method, r.has_body), (Method::NotAllowed, true));
        let (r, _) = complete(b"BREW / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((r.method, r.method_name, r.has_body), (Method::Unknown, "BREW", true));
        let (r, _) = complete(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.has_body);
    }

    fn refused(buf: &[u8]) -> &'static str {
        match parse_request(buf) {
            Parsed::Invalid(Status::BadRequest, why) => why,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn lines_ending_in_a_bare_lf_are_refused() {
        // RFC 9112 §2.2 allows accepting them; we do not (module notes).
        for head in [
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(refused(head), BARE_LF, "{:?}", String::from_utf8_lossy(head));
        }
        // Refused as soon as it is seen, before the head is complete.
        assert_eq!(refused(b"GET / HTTP/1.1\nHo"), BARE_LF);
        // A leading empty line with CRLF is ignored (§2.2), and the bytes
        // after the head are not the head's.
        let (r, len) = complete(b"\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\na\nb");
        assert_eq!((r.method, r.has_body, len), (Method::NotAllowed, true, 49));
    }

    #[test]
    fn content_length_values_must_agree() {
        let with = |fields: &str| alloc::format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        for fields in [
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 6\r\n",
            "Content-Length: 5\r\nContent-Length: 5, 6\r\n",
            "Content-Length: 0\r\nContent-Length: 1\r\n",
        ] {
            assert_eq!(refused(with(fields).as_bytes()), "conflicting Content-Length values", "{fields:?}");
        }
        for fields in [
            "Content-Length: +5\r\n",
            "Content-Length: -5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: 0x5\r\n",
            "Content-Length: 5, five\r\n",
            "Content-Length: 18446744073709551616\r\n",
        ] {
            assert_eq!(refused(with(fields).as_bytes()), "invalid Content-Length", "{fields:?}");
        }
        assert_eq!(refused(with("Content-Length: \r\n").as_bytes()), "empty Content-Length");
        assert_eq!(refused(with("Content-Length: ,\r\n").as_bytes()), "empty Content-Length");
        // RFC 9112 §6.3 item 5: identical values, in one list or on several
        // lines, are that one value.
        for (fields, has_body) in [
            ("Content-Length: 5\r\nContent-Length: 5\r\n", true),
            ("Content-Length: 5, 5\r\n", true),
            ("Content-Length: 5 ,5,,\t5\r\nContent-Length: 005\r\n", true),
            ("Content-Length: 0, 0\r\nContent-Length: 0\r\n", false),
            ("Content-Length: 18446744073709551615\r\n", true),
        ] {
            let head = with(fields);
            let (r, _) = complete(head.as_bytes());
            assert_eq!(r.has_body, has_body, "{fields:?}");
        }
    }

    #[test]
    fn transfer_encoding_must_end_in_chunked_and_come_alone() {
        let with = |fields: &str| alloc::format!("POST / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        for fields in [
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(refused(with(fields).as_bytes()), "both Transfer-Encoding and Content-Length", "{fields:?}");
        }
        for fields in [
            "Transfer-Encoding: chunked, gzip\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            "Transfer-Encoding: xchunked\r\n",
            "Transfer-Encoding: \r\n",
        ] {
            assert_eq!(refused(with(fields).as_bytes()), "chunked is not the final transfer coding", "{fields:?}");
        }
        for fields in [
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip, Chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
        ] {
            let head = with(fields);
            let (r, _) = complete(head.as_bytes());
            assert!(r.has_body && r.keep_alive, "{fields:?}");
        }
    }

    #[test]
    fn other_ambiguous_lines_are_refused_by_httparse() {
        // RFC 9112 §2.2: a bare CR; §5.2: obs-fold in a request; §5.1: white
        // space between a field name and its colon.
        for head in [
            &b"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n"[..],
            b"GET / HTTP/1.1\rHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n",
        ] {
            assert_eq!(refused(head), "malformed request head", "{:?}", String::from_utf8_lossy(head));
        }
    }

    fn lookup(target: &str) -> Result<(String, bool), &'static str> {
        resolve_target(target).map(|l| (l.key.as_str().to_string(), l.index))
    }

    #[test]
    fn targets_become_keys() {
        assert_eq!(lookup("/"), Ok(("".into(), true)));
        assert_eq!(lookup("/docs/"), Ok(("docs".into(), true)));
        assert_eq!(lookup("/docs"), Ok(("docs".into(), false)));
        assert_eq!(lookup("/a/b.css?v=1#top"), Ok(("a/b.css".into(), false)));
        assert_eq!(lookup("http://example.com/x.txt?q"), Ok(("x.txt".into(), false)));
        assert_eq!(lookup("http://example.com"), Ok(("".into(), true)));
        assert!(lookup("x.txt").is_err());
        assert!(lookup("*").is_err());
    }

    #[test]
    fn percent_decoding_happens_before_the_key_check() {
        assert_eq!(lookup("/hello%20world.txt"), Ok(("hello world.txt".into(), false)));
        assert_eq!(lookup("/%E2%9C%93"), Ok(("\u{2713}".into(), false)));
        assert_eq!(lookup("/a%2Fb"), Ok(("a/b".into(), false)));
        // Traversal in every spelling is refused by Key::parse.
        for target in
            ["/../Cargo.toml", "/%2e%2e/Cargo.toml", "/%2E%2E%2FCargo.toml", "/a/%2f..%2fb", "/a/./b", "//etc"]
        {
            assert!(lookup(target).is_err(), "{target}");
        }
        for target in ["/%", "/%2", "/%zz", "/%ff", "/a%00b"] {
            assert!(lookup(target).is_err(), "{target}");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        let ct = |k: &str| content_type(&Key::parse(k).unwrap());
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a/STYLE.CSS"), "text/css; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("d.json"), "application/json");
        assert_eq!(ct("i.png"), "image/png");
        assert_eq!(ct("i.jpg"), "image/jpeg");
        assert_eq!(ct("i.svg"), "image/svg+xml");
        assert_eq!(ct("r.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("favicon.ico"), "image/vnd.microsoft.icon");
        assert_eq!(ct("m.wasm"), "application/wasm");
        assert_eq!(ct("f.woff2"), "font/woff2");
        assert_eq!(ct("archive.tar.gz"), "application/octet-stream");
        assert_eq!(ct("Makefile"), "application/octet-stream");
    }

    #[test]
    fn dates_are_imf_fixdates() {
        let date = |secs| HttpDate(PosixTime::new(secs, 0).unwrap()).to_string();
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110 §5.6.7's own example.
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn response_heads() {
        let mut out = Vec::new();
        let head = ResponseHead {
            status: Status::MethodNotAllowed,
            content_type: "text/plain; charset=utf-8",
            content_length: 5,
            keep_alive: false,
            http10: false,
            date: PosixTime::EPOCH,
            last_modified: None,
        };
        head.write_to(&mut out);
        let text = core::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 5\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert!(!text.contains("Retry-After"), "{text}");

        out.clear();
        ResponseHead { status: Status::ServiceUnavailable, ..head }.write_to(&mut out);
        let text = core::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        assert!(!text.contains("Allow:"), "{text}");
    }
}
