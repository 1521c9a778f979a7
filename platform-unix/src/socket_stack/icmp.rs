//! ICMP echo on the kernel's unprivileged ping sockets.
//!
//! A ping socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, or
//! `AF_INET6`/`IPPROTO_ICMPV6`) sends echo requests whose identifier the
//! kernel sets to the socket's own, and delivers only the replies carrying
//! it. Each ping therefore uses a socket of its own: replies cannot be
//! confused between concurrent pings, and dropping the future drops the
//! socket with whatever reply may still come. The kernel allows ping
//! sockets to the groups in `net.ipv4.ping_group_range` (IPv6 too).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use mirage_types::icmp::{self as icmp_types, EchoReply, Icmp, IcmpError};
use socket2::{Domain, Protocol, Socket, Type};

/// Bytes of an ICMP echo header: type, code, checksum, identifier, sequence.
const ECHO_HEADER_LEN: usize = 8;

/// Where the kernel's ping permission lives.
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// ICMP echo of a [`SocketStack`](super::SocketStack): ping sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostIcmp {
    _private: (),
}

/// The message types of echo request and reply for `dst`'s family.
fn echo_types(dst: IpAddr) -> (u8, u8) {
    match dst {
        IpAddr::V4(_) => (8, 0),     // RFC 792
        IpAddr::V6(_) => (128, 129), // RFC 4443 §4
    }
}

impl Icmp for HostIcmp {
    type Error = IcmpError;

    /// Sends one echo request with `seq` and `payload` and waits up to
    /// `timeout` for the reply with the same sequence number; replies with
    /// another sequence number (late answers to an earlier ping) are
    /// skipped. [`EchoReply::ttl`] is `None`: ping sockets do not report it
    /// without ancillary data, which this does not request.
    ///
    /// Cancel-safe: dropping the future closes the socket.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` if the process's group is outside
    /// `net.ipv4.ping_group_range` (the message shows the range and the
    /// sysctl to change it); `TimedOut` without a reply; `Unreachable` when
    /// there is no route or an ICMP error comes back; `Other` for a payload
    /// too large for one datagram.
    async fn ping(&self, dst: IpAddr, seq: u16, payload: &[u8], timeout: Duration) -> Result<EchoReply, IcmpError> {
        let socket = open_ping_socket(dst)?;
        let peer = SocketAddr::new(dst, 0);
        let error = |what: &str, e: io::Error| ping_error(dst, what, e);
        socket.connect(peer).await.map_err(|e| error("connect", e))?;

        let (request_type, reply_type) = echo_types(dst);
        let mut request = Vec::with_capacity(ECHO_HEADER_LEN + payload.len());
        // The kernel fills in the checksum and the identifier.
        request.extend_from_slice(&[request_type, 0, 0, 0, 0, 0]);
        request.extend_from_slice(&seq.to_be_bytes());
        request.extend_from_slice(payload);
        socket.send(&request).await.map_err(|e| error("send an echo request", e))?;

        // One spare byte shows a reply longer than the request.
        let mut buf = vec![0u8; ECHO_HEADER_LEN + payload.len() + 1];
        let wait = async {
            loop {
                let n = socket.recv(&mut buf).await.map_err(|e| error("receive the echo reply", e))?;
                let Some(reply) = buf.get(..n).filter(|r| r.len() >= ECHO_HEADER_LEN) else {
                    continue;
                };
                if reply[0] == reply_type && u16::from_be_bytes([reply[6], reply[7]]) == seq {
                    return Ok(EchoReply {
                        from: dst,
                        seq,
                        ttl: None,
                        payload: Bytes::copy_from_slice(&reply[ECHO_HEADER_LEN..]),
                    });
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(Err(IcmpError::TimedOut { dst, seq, timeout }))
    }
}

/// A non-blocking ping socket for `dst`'s family, registered with tokio.
fn open_ping_socket(dst: IpAddr) -> Result<tokio::net::UdpSocket, IcmpError> {
    let (domain, protocol) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol)).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => permission_denied(&e),
        _ => ping_error(dst, "open a ping socket", e),
    })?;
    socket.set_nonblocking(true).map_err(|e| ping_error(dst, "make the ping socket non-blocking", e))?;
    // A ping socket is a datagram socket whose addresses are IP addresses
    // with port 0, so tokio's UDP socket type drives it correctly.
    tokio::net::UdpSocket::from_std(socket.into()).map_err(|e| ping_error(dst, "register the ping socket", e))
}

fn permission_denied(e: &io::Error) -> IcmpError {
    let range = std::fs::read_to_string(PING_GROUP_RANGE)
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| String::from("unreadable"));
    IcmpError::Other {
        kind: icmp_types::ErrorKind::PermissionDenied,
        message: format!(
            "the kernel refused a ping socket ({e}): this process's groups are outside \
             net.ipv4.ping_group_range (now \"{range}\"); allow them with, for example, \
             `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"`"
        ),
    }
}

fn ping_error(dst: IpAddr, what: &str, e: io::Error) -> IcmpError {
    let unreachable = matches!(
        e.kind(),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable | io::ErrorKind::ConnectionRefused
    );
    if unreachable {
        IcmpError::Unreachable { dst, reason: format!("{what}: {e}") }
    } else {
        IcmpError::Other { kind: icmp_types::ErrorKind::Other, message: format!("ping {dst}: cannot {what}: {e}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirage_types::icmp::Error as _;

    #[test]
    fn permission_errors_name_the_sysctl() {
        let e = permission_denied(&io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.kind(), icmp_types::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("net.ipv4.ping_group_range"), "{e}");
    }

    #[test]
    fn routing_errors_are_unreachable() {
        let dst: IpAddr = "192.0.2.1".parse().unwrap();
        for code in [libc::ENETUNREACH, libc::EHOSTUNREACH, libc::ECONNREFUSED] {
            let e = ping_error(dst, "send", io::Error::from_raw_os_error(code));
            assert_eq!(e.kind(), icmp_types::ErrorKind::Unreachable, "errno {code}");
            assert!(e.to_string().contains("192.0.2.1"), "{e}");
        }
        let e = ping_error(dst, "send", io::Error::from_raw_os_error(libc::EMSGSIZE));
        assert_eq!(e.kind(), icmp_types::ErrorKind::Other);
    }

    #[test]
    fn echo_types_follow_the_rfcs() {
        assert_eq!(echo_types("127.0.0.1".parse().unwrap()), (8, 0));
        assert_eq!(echo_types("::1".parse().unwrap()), (128, 129));
    }
}
