//! The xenstore wire protocol, sans-IO: message headers, requests as
//! bytes, replies from bytes, and the assembly of a byte stream into
//! messages.
//!
//! Reading list: Xen's `xen/include/public/io/xs_wire.h` (4.17: message
//! types, `struct xsd_sockmsg`, `XENSTORE_PAYLOAD_MAX`, the ring page) and
//! `docs/misc/xenstore.txt` (payload formats of each request and reply).
//!
//! Everything here takes bytes xenstored wrote (another domain) and never
//! panics on them: a reply that breaks the format is a
//! [`XenstoreError::Malformed`] naming what was wrong.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::XenstoreError;

/// `sizeof(struct xsd_sockmsg)`: type, req_id, tx_id, len, each a
/// little-endian `u32` (x86).
pub const HEADER_LEN: usize = 16;

/// `XENSTORE_PAYLOAD_MAX`: the longest payload either side may send.
/// Longer requests are refused before sending ([`XenstoreError::TooLong`]);
/// a longer reply is a protocol error.
pub const PAYLOAD_MAX: usize = 4096;

/// The longest error name we accept in an `XS_ERROR` reply (xs_wire.h's
/// longest is `ENOTEMPTY`).
const ERROR_NAME_MAX: usize = 16;

/// The message types this client sends or receives (`enum xsd_sockmsg_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MessageType {
    /// `XS_DIRECTORY`: list a node's children.
    Directory = 1,
    /// `XS_READ`: read a node's value.
    Read = 2,
    /// `XS_WATCH`: watch a path and its children.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`: commit or abort.
    TransactionEnd = 7,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`: remove a node and its children.
    Rm = 13,
    /// `XS_WATCH_EVENT`: an unsolicited event for a watch.
    WatchEvent = 15,
    /// `XS_ERROR`: the reply to a request that failed.
    Error = 16,
}

impl MessageType {
    /// The type numbered `value`, if it is one this client knows.
    pub fn from_u32(value: u32) -> Option<MessageType> {
        Some(match value {
            1 => MessageType::Directory,
            2 => MessageType::Read,
            4 => MessageType::Watch,
            5 => MessageType::Unwatch,
            6 => MessageType::TransactionStart,
            7 => MessageType::TransactionEnd,
            11 => MessageType::Write,
            12 => MessageType::Mkdir,
            13 => MessageType::Rm,
            15 => MessageType::WatchEvent,
            16 => MessageType::Error,
            _ => return None,
        })
    }

    /// The name in xs_wire.h, for messages.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Directory => "XS_DIRECTORY",
            MessageType::Read => "XS_READ",
            MessageType::Watch => "XS_WATCH",
            MessageType::Unwatch => "XS_UNWATCH",
            MessageType::TransactionStart => "XS_TRANSACTION_START",
            MessageType::TransactionEnd => "XS_TRANSACTION_END",
            MessageType::Write => "XS_WRITE",
            MessageType::Mkdir => "XS_MKDIR",
            MessageType::Rm => "XS_RM",
            MessageType::WatchEvent => "XS_WATCH_EVENT",
            MessageType::Error => "XS_ERROR",
        }
    }
}

/// `struct xsd_sockmsg`, the header before every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message type number (validated separately: see [`Message`]).
    pub kind: u32,
    /// Chosen by the requester, echoed in the reply.
    pub req_id: u32,
    /// The transaction (0: none).
    pub tx_id: u32,
    /// The payload's length in bytes.
    pub len: u32,
}

impl Header {
    /// Reads a header from its 16 bytes.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Header { kind: word(0), req_id: word(4), tx_id: word(8), len: word(12) }
    }

    /// The header's 16 bytes.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        for (i, word) in [self.kind, self.req_id, self.tx_id, self.len].into_iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        out
    }
}

/// A complete message: a header whose type is known and whose payload is
/// at most [`PAYLOAD_MAX`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The type.
    pub kind: MessageType,
    /// The request id.
    pub req_id: u32,
    /// The transaction id.
    pub tx_id: u32,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A request this client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read `path`.
    Read(&'a str),
    /// Write `value` to `path`.
    Write(&'a str, &'a str),
    /// List the children of `path`.
    Directory(&'a str),
    /// Create `path` (empty) if it does not exist.
    Mkdir(&'a str),
    /// Remove `path` and its children.
    Rm(&'a str),
    /// Watch `path` with `token`.
    Watch(&'a str, &'a str),
    /// Stop the watch of `path` with `token`.
    Unwatch(&'a str, &'a str),
    /// Start a transaction.
    TransactionStart,
    /// End a transaction: commit (`true`) or abort.
    TransactionEnd(bool),
}

impl Request<'_> {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        match self {
            Request::Read(_) => MessageType::Read,
            Request::Write(..) => MessageType::Write,
            Request::Directory(_) => MessageType::Directory,
            Request::Mkdir(_) => MessageType::Mkdir,
            Request::Rm(_) => MessageType::Rm,
            Request::Watch(..) => MessageType::Watch,
            Request::Unwatch(..) => MessageType::Unwatch,
            Request::TransactionStart => MessageType::TransactionStart,
            Request::TransactionEnd(_) => MessageType::TransactionEnd,
        }
    }

    /// The path the request is about ("" for transaction requests), for
    /// error messages.
    pub fn path(&self) -> &str {
        match self {
            Request::Read(p)
            | Request::Write(p, _)
            | Request::Directory(p)
            | Request::Mkdir(p)
            | Request::Rm(p)
            | Request::Watch(p, _)
            | Request::Unwatch(p, _) => p,
            Request::TransactionStart | Request::TransactionEnd(_) => "",
        }
    }

    /// The request as bytes on the wire (header and payload).
    ///
    /// Payloads (`docs/misc/xenstore.txt`): a path is NUL-terminated; a
    /// write is `path\0value` with no NUL after the value; a watch is
    /// `path\0token\0`; a transaction start is an empty string (`\0`); an
    /// end is `T\0` (commit) or `F\0`.
    ///
    /// Errors: an empty path, or a path or token with a NUL in it
    /// ([`XenstoreError::InvalidArgument`]; a value may not hold one
    /// either, since replies are read back as text); a payload over
    /// [`PAYLOAD_MAX`] ([`XenstoreError::TooLong`]).
    pub fn encode(&self, req_id: u32, tx_id: u32) -> Result<Vec<u8>, XenstoreError> {
        let mut payload: Vec<u8> = Vec::new();
        let mut add = |text: &str, what: &str, terminate: bool| -> Result<(), XenstoreError> {
            if text.contains('\0') {
                return Err(XenstoreError::InvalidArgument(format!("a xenstore {what} with a NUL byte: {text:?}")));
            }
            payload.extend_from_slice(text.as_bytes());
            if terminate {
                payload.push(0);
            }
            Ok(())
        };
        let path = self.path();
        if path.is_empty() && !matches!(self, Request::TransactionStart | Request::TransactionEnd(_)) {
            return Err(XenstoreError::InvalidArgument(format!("{} of an empty path", self.kind().name())));
        }
        match *self {
            Request::Read(p) | Request::Directory(p) | Request::Mkdir(p) | Request::Rm(p) => add(p, "path", true)?,
            Request::Write(p, value) => {
                add(p, "path", true)?;
                add(value, "value", false)?;
            }
            Request::Watch(p, token) | Request::Unwatch(p, token) => {
                add(p, "path", true)?;
                add(token, "watch token", true)?;
            }
            Request::TransactionStart => add("", "", true)?,
            Request::TransactionEnd(commit) => add(if commit { "T" } else { "F" }, "", true)?,
        }
        if payload.len() > PAYLOAD_MAX {
            return Err(XenstoreError::TooLong { op: self.kind().name(), path: path.to_string(), len: payload.len() });
        }
        let header = Header { kind: self.kind() as u32, req_id, tx_id, len: payload.len() as u32 };
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(&header.emit());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }
}

fn malformed(what: String) -> XenstoreError {
    XenstoreError::Malformed(what)
}

fn text(bytes: &[u8], what: &str) -> Result<String, XenstoreError> {
    core::str::from_utf8(bytes).map(ToString::to_string).map_err(|_| malformed(format!("{what} is not UTF-8")))
}

/// Splits a payload of NUL-terminated strings; the last one must be
/// terminated too.
fn split_terminated<'p>(payload: &'p [u8], what: &str) -> Result<Vec<&'p [u8]>, XenstoreError> {
    let Some(body) = payload.strip_suffix(&[0]) else {
        return Err(malformed(format!("{what} does not end with a NUL byte")));
    };
    Ok(body.split(|&b| b == 0).collect())
}

/// The error name of an `XS_ERROR` payload (`ENOENT\0`): upper-case
/// letters and digits, NUL-terminated.
pub fn parse_error(payload: &[u8]) -> Result<String, XenstoreError> {
    let parts = split_terminated(payload, "an XS_ERROR reply")?;
    match parts.as_slice() {
        [name]
            if !name.is_empty()
                && name.len() <= ERROR_NAME_MAX
                && name.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) =>
        {
            text(name, "an error name")
        }
        _ => Err(malformed(format!("XS_ERROR reply {:?} is not an error name", String::from_utf8_lossy(payload)))),
    }
}

/// The value of an `XS_READ` reply: the payload as text (xenstored sends
/// no NUL after it).
pub fn parse_value(payload: &[u8]) -> Result<String, XenstoreError> {
    text(payload, "an XS_READ reply")
}

/// The `OK\0` of a reply that carries no data (write, mkdir, rm, watch,
/// unwatch, transaction end).
pub fn parse_ok(kind: MessageType, payload: &[u8]) -> Result<(), XenstoreError> {
    if payload == b"OK\0" {
        Ok(())
    } else {
        Err(malformed(format!("{} reply {:?} is not OK", kind.name(), String::from_utf8_lossy(payload))))
    }
}

/// The names of an `XS_DIRECTORY` reply: NUL-terminated, none empty; an
/// empty payload is no children.
pub fn parse_directory(payload: &[u8]) -> Result<Vec<String>, XenstoreError> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    split_terminated(payload, "an XS_DIRECTORY reply")?
        .into_iter()
        .map(|name| {
            if name.is_empty() {
                Err(malformed("an XS_DIRECTORY reply names an empty child".to_string()))
            } else {
                text(name, "a child's name")
            }
        })
        .collect()
}

/// The `(path, token)` of an `XS_WATCH_EVENT` payload (`path\0token\0`).
pub fn parse_watch_event(payload: &[u8]) -> Result<(String, String), XenstoreError> {
    match split_terminated(payload, "an XS_WATCH_EVENT")?.as_slice() {
        [path, token] if !path.is_empty() => Ok((text(path, "a watch event's path")?, text(token, "a watch token")?)),
        _ => Err(malformed(format!("XS_WATCH_EVENT {:?} is not path and token", String::from_utf8_lossy(payload)))),
    }
}

/// The transaction id of an `XS_TRANSACTION_START` reply: a non-zero
/// decimal `u32`, NUL-terminated.
pub fn parse_transaction_id(payload: &[u8]) -> Result<u32, XenstoreError> {
    let parts = split_terminated(payload, "an XS_TRANSACTION_START reply")?;
    let id = match parts.as_slice() {
        [digits] if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            core::str::from_utf8(digits).ok().and_then(|d| d.parse::<u32>().ok())
        }
        _ => None,
    };
    id.filter(|&id| id != 0).ok_or_else(|| {
        malformed(format!("XS_TRANSACTION_START reply {:?} is not a transaction id", String::from_utf8_lossy(payload)))
    })
}

/// Turns a byte stream into [`Message`]s. Holds at most one message's
/// worth of bytes (`HEADER_LEN + PAYLOAD_MAX`): [`Assembler::wanted`] says
/// how many more bytes the current message needs, and the caller feeds no
/// more than that.
#[derive(Debug, Default)]
pub struct Assembler {
    header: Option<Header>,
    buf: Vec<u8>,
}

impl Assembler {
    /// An assembler at a message boundary.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// How many bytes the current message still needs (at least 1).
    pub fn wanted(&self) -> usize {
        match self.header {
            None => HEADER_LEN - self.buf.len(),
            Some(h) => (h.len as usize).saturating_sub(self.buf.len()).max(1),
        }
    }

    /// Whether the assembler sits between messages.
    pub fn at_boundary(&self) -> bool {
        self.header.is_none() && self.buf.is_empty()
    }

    /// Takes `bytes` (at most [`Assembler::wanted`]; more is an error of
    /// the caller, reported as malformed input rather than a panic) and
    /// returns the message they complete, if any.
    ///
    /// Errors: a header whose type is unknown or whose length exceeds
    /// [`PAYLOAD_MAX`]. After an error the stream is out of step and the
    /// assembler should not be used again.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Message>, XenstoreError> {
        if bytes.len() > self.wanted() {
            return Err(malformed(format!("{} bytes fed where the message needs {}", bytes.len(), self.wanted())));
        }
        self.buf.extend_from_slice(bytes);
        if self.header.is_none() {
            let Ok(raw) = <&[u8; HEADER_LEN]>::try_from(self.buf.as_slice()) else {
                return Ok(None);
            };
            let header = Header::parse(raw);
            if MessageType::from_u32(header.kind).is_none() {
                return Err(malformed(format!("xenstored sent a message of unknown type {}", header.kind)));
            }
            if header.len as usize > PAYLOAD_MAX {
                return Err(malformed(format!(
                    "xenstored sent a {}-byte payload, more than the {PAYLOAD_MAX} allowed",
                    header.len
                )));
            }
            self.header = Some(header);
            self.buf.clear();
        }
        match self.header {
            Some(h) if self.buf.len() == h.len as usize => {
                self.header = None;
                let payload = core::mem::take(&mut self.buf);
                // The type was checked when the header arrived.
                let kind = MessageType::from_u32(h.kind).unwrap_or(MessageType::Error);
                Ok(Some(Message { kind, req_id: h.req_id, tx_id: h.tx_id, payload }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(kind: u32, req_id: u32, len: u32) -> [u8; HEADER_LEN] {
        Header { kind, req_id, tx_id: 0, len }.emit()
    }

    #[test]
    fn requests_have_the_documented_payloads() {
        let payload = |r: Request| r.encode(9, 3).unwrap()[HEADER_LEN..].to_vec();
        assert_eq!(payload(Request::Read("name")), b"name\0");
        assert_eq!(payload(Request::Write("data/x", "42")), b"data/x\x0042");
        assert_eq!(payload(Request::Watch("device", "t1")), b"device\0t1\0");
        assert_eq!(payload(Request::TransactionStart), b"\0");
        assert_eq!(payload(Request::TransactionEnd(true)), b"T\0");
        assert_eq!(payload(Request::TransactionEnd(false)), b"F\0");
        let bytes = Request::Rm("a/b").encode(9, 3).unwrap();
        let head = Header::parse(bytes[..HEADER_LEN].try_into().unwrap());
        assert_eq!(head, Header { kind: 13, req_id: 9, tx_id: 3, len: 4 });
    }

    #[test]
    fn requests_over_the_payload_max_or_with_nul_are_refused() {
        let long = "v".repeat(PAYLOAD_MAX - 2);
        // "p\0" + 4094 bytes is exactly the maximum.
        assert!(Request::Write("p", &long).encode(1, 0).is_ok());
        let longer = "v".repeat(PAYLOAD_MAX - 1);
        let err = Request::Write("p", &longer).encode(1, 0).unwrap_err();
        assert!(matches!(err, XenstoreError::TooLong { len: 4097, .. }), "{err}");
        assert!(matches!(Request::Read("a\0b").encode(1, 0), Err(XenstoreError::InvalidArgument(_))));
        assert!(matches!(Request::Read("").encode(1, 0), Err(XenstoreError::InvalidArgument(_))));
    }

    #[test]
    fn replies_parse_and_reject_what_breaks_the_format() {
        assert_eq!(parse_error(b"ENOENT\0").unwrap(), "ENOENT");
        for bad in [&b"ENOENT"[..], b"\0", b"enoent\0", b"E\0X\0", b"EVERYLONGERRORNAME\0"] {
            assert!(matches!(parse_error(bad), Err(XenstoreError::Malformed(_))), "{bad:?}");
        }
        assert_eq!(parse_directory(b"vbd\0vif\0").unwrap(), ["vbd", "vif"]);
        assert!(parse_directory(b"").unwrap().is_empty());
        for bad in [&b"vbd"[..], b"vbd\0\0", b"\xff\0"] {
            assert!(parse_directory(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_watch_event(b"device/vbd\0tok\0").unwrap(), ("device/vbd".into(), "tok".into()));
        for bad in [&b"device\0tok"[..], b"device\0", b"a\0b\0c\0", b"\0tok\0"] {
            assert!(parse_watch_event(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_transaction_id(b"17\0").unwrap(), 17);
        for bad in [&b"0\0"[..], b"17", b"-1\0", b"99999999999\0", b"\0"] {
            assert!(parse_transaction_id(bad).is_err(), "{bad:?}");
        }
        assert!(parse_ok(MessageType::Write, b"OK\0").is_ok());
        assert!(parse_ok(MessageType::Write, b"OK").is_err());
        assert!(parse_value(b"\xc3\x28").is_err());
    }

    #[test]
    fn the_assembler_rejects_unknown_types_and_long_payloads() {
        assert!(Assembler::new().push(&header(99, 1, 0)).is_err());
        assert!(Assembler::new().push(&header(2, 1, PAYLOAD_MAX as u32 + 1)).is_err());
        let mut a = Assembler::new();
        assert_eq!(a.push(&header(2, 1, PAYLOAD_MAX as u32)).unwrap(), None);
        assert_eq!(a.wanted(), PAYLOAD_MAX);
        assert!(a.push(&[0; PAYLOAD_MAX + 1]).is_err());
    }

    #[test]
    fn an_empty_payload_completes_with_the_header() {
        let mut a = Assembler::new();
        let m = a.push(&header(1, 4, 0)).unwrap().unwrap();
        assert_eq!((m.kind, m.req_id, m.payload.len()), (MessageType::Directory, 4, 0));
        assert!(a.at_boundary());
    }

    proptest! {
        #[test]
        fn messages_survive_any_split(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6), cut in 1usize..64) {
            let mut stream = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                stream.extend_from_slice(&header(2, i as u32, p.len() as u32));
                stream.extend_from_slice(p);
            }
            let mut a = Assembler::new();
            let mut got = Vec::new();
            let mut rest = stream.as_slice();
            while !rest.is_empty() {
                let n = a.wanted().min(cut).min(rest.len());
                if let Some(m) = a.push(&rest[..n]).unwrap() {
                    got.push(m.payload);
                }
                rest = &rest[n..];
            }
            prop_assert_eq!(got, payloads);
            prop_assert!(a.at_boundary());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let mut a = Assembler::new();
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let n = a.wanted().min(rest.len());
                match a.push(&rest[..n]) {
                    Ok(Some(m)) => prop_assert!(m.payload.len() <= PAYLOAD_MAX),
                    Ok(None) => {}
                    Err(_) => break,
                }
                rest = &rest[n..];
            }
            let _ = (parse_error(&bytes), parse_directory(&bytes), parse_watch_event(&bytes), parse_transaction_id(&bytes), parse_value(&bytes));
        }
    }
}
