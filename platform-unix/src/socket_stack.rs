//! The [`Stack`] traits on the host kernel's sockets.
//!
//! [`SocketStack`] lets an application written against
//! [`mirage_types::stack::Stack`] run as an ordinary Linux process, without
//! root and without our own TCP/IP: TCP connections and listeners are
//! kernel TCP sockets, UDP sockets are kernel UDP sockets, and ping uses the
//! kernel's unprivileged ICMP datagram sockets. Everything is driven by the
//! tokio runtime the application runs on.
//!
//! # Errors
//!
//! Host errors are mapped to the mirage-types kinds (`ECONNREFUSED` to
//! `ConnectionRefused`, `EADDRINUSE` to `AddressInUse`, `ECONNRESET` to
//! `ConnectionReset`, `ETIMEDOUT` to `TimedOut`, `ENETUNREACH` and
//! `EHOSTUNREACH` to `Unreachable`, and so on); messages keep the address and
//! the host's own text.
//!
//! # Resources
//!
//! Every queue is the kernel's: a listener's backlog is capped by
//! `net.core.somaxconn`; a UDP socket's receive queue by its `SO_RCVBUF`
//! (`net.core.rmem_default`, 208 KiB on most hosts), beyond which the kernel
//! drops datagrams and counts them in `/proc/net/udp`'s drops column.
//!
//! # Not implemented
//!
//! - [`EchoReply::ttl`](mirage_types::icmp::EchoReply::ttl) is always
//!   `None`.

mod icmp;
mod tcp;
mod udp;

use std::io;
use std::net::{IpAddr, SocketAddr};

use mirage_types::flow::{self, FlowError};
use mirage_types::stack::Stack;
use mirage_types::tcp::{self as tcp_types, TcpError};
use mirage_types::udp::{self as udp_types, UdpError};

pub use icmp::HostIcmp;
pub use tcp::{HostTcp, HostTcpFlow, HostTcpListener};
pub use udp::{HostUdp, HostUdpSocket};

/// A network stack made of the host kernel's sockets.
///
/// Cheap to copy: it holds no state of its own (the kernel holds it), so
/// every copy is the same stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketStack {
    tcp: HostTcp,
    udp: HostUdp,
    icmp: HostIcmp,
}

impl SocketStack {
    /// The host's stack. Sockets opened through it must be used inside a
    /// tokio runtime with I/O and time enabled.
    pub fn new() -> SocketStack {
        SocketStack::default()
    }
}

impl Stack for SocketStack {
    type Udp = HostUdp;
    type Tcp = HostTcp;
    type Icmp = HostIcmp;

    fn udp(&self) -> &HostUdp {
        &self.udp
    }

    fn tcp(&self) -> &HostTcp {
        &self.tcp
    }

    fn icmp(&self) -> &HostIcmp {
        &self.icmp
    }

    /// Every address configured on the host's interfaces (loopback
    /// included), as `getifaddrs(3)` lists them. If the host call fails the
    /// failure is logged and the list is empty, as the trait has no error.
    fn addresses(&self) -> Vec<IpAddr> {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces.iter().map(|i| i.ip()).collect(),
            Err(e) => {
                log::warn!("cannot list the host's addresses (getifaddrs): {e}");
                Vec::new()
            }
        }
    }
}

/// Whether the host found no route to the peer (`EHOSTUNREACH`,
/// `ENETUNREACH`).
fn is_unreachable(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable)
}

/// A TCP connect or listen error; `what` says what was attempted, e.g.
/// "connect to".
fn tcp_error(what: &str, addr: SocketAddr, e: io::Error) -> TcpError {
    use tcp_types::ErrorKind as K;
    let kind = match e.kind() {
        io::ErrorKind::ConnectionRefused => return TcpError::ConnectionRefused(addr),
        io::ErrorKind::TimedOut => return TcpError::TimedOut(addr),
        io::ErrorKind::AddrInUse => return TcpError::AddressInUse(addr),
        io::ErrorKind::AddrNotAvailable => K::AddressNotAvailable,
        io::ErrorKind::InvalidInput => K::InvalidInput,
        _ if is_unreachable(&e) => K::Unreachable,
        _ if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
            K::ResourceExhausted
        }
        _ => K::Other,
    };
    let hint = if e.kind() == io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    } else {
        ""
    };
    TcpError::Other { kind, message: format!("TCP {what} {addr}: {e}{hint}") }
}

/// An error of I/O on a TCP connection; `what` is e.g. "read from".
fn flow_error(what: &str, peer: SocketAddr, e: io::Error) -> FlowError {
    use flow::ErrorKind as K;
    let kind = match e.kind() {
        // EPIPE from the kernel means the connection is gone (our own
        // shutdown is caught before the call), which is a reset here.
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => K::ConnectionReset,
        io::ErrorKind::ConnectionAborted => K::ConnectionAborted,
        io::ErrorKind::NotConnected => K::NotConnected,
        io::ErrorKind::TimedOut => K::TimedOut,
        _ => K::Io,
    };
    FlowError::Other { kind, message: format!("TCP {what} {peer}: {e}") }
}

/// A UDP error; `what` is e.g. "bind" or "send to".
fn udp_error(what: &str, addr: SocketAddr, e: io::Error) -> UdpError {
    use udp_types::ErrorKind as K;
    let kind = match e.kind() {
        io::ErrorKind::AddrInUse => return UdpError::AddressInUse(addr),
        io::ErrorKind::AddrNotAvailable => return UdpError::AddressNotAvailable(addr),
        // An ICMP port unreachable reported on the socket.
        io::ErrorKind::ConnectionRefused => K::Unreachable,
        _ if is_unreachable(&e) => K::Unreachable,
        _ if e.raw_os_error() == Some(libc::EMSGSIZE) => K::TooLarge,
        _ => K::Other,
    };
    UdpError::Other { kind, message: format!("UDP {what} {addr}: {e}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirage_types::flow::Error as _;
    use mirage_types::tcp::Error as _;
    use mirage_types::udp::Error as _;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn tcp_errors_keep_kind_address_and_host_text() {
        let addr: SocketAddr = "192.0.2.7:80".parse().unwrap();
        let cases = [
            (libc::ECONNREFUSED, tcp_types::ErrorKind::ConnectionRefused),
            (libc::ETIMEDOUT, tcp_types::ErrorKind::TimedOut),
            (libc::EADDRINUSE, tcp_types::ErrorKind::AddressInUse),
            (libc::EADDRNOTAVAIL, tcp_types::ErrorKind::AddressNotAvailable),
            (libc::ENETUNREACH, tcp_types::ErrorKind::Unreachable),
            (libc::EHOSTUNREACH, tcp_types::ErrorKind::Unreachable),
            (libc::EMFILE, tcp_types::ErrorKind::ResourceExhausted),
            (libc::EPERM, tcp_types::ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let e = tcp_error("connect to", addr, os(code));
            assert_eq!(e.kind(), kind, "errno {code}");
            assert!(e.to_string().contains("192.0.2.7:80"), "{e}");
        }
        let e = tcp_error("connect to", addr, os(libc::EHOSTUNREACH));
        assert!(e.to_string().contains(&os(libc::EHOSTUNREACH).to_string()), "{e}");
    }

    #[test]
    fn privileged_port_errors_say_what_is_needed() {
        let e = tcp_error("listen on", "0.0.0.0:80".parse().unwrap(), os(libc::EACCES));
        assert!(e.to_string().contains("CAP_NET_BIND_SERVICE"), "{e}");
    }

    #[test]
    fn flow_errors_map_to_flow_kinds() {
        let peer: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let cases = [
            (libc::ECONNRESET, flow::ErrorKind::ConnectionReset),
            (libc::EPIPE, flow::ErrorKind::ConnectionReset),
            (libc::ECONNABORTED, flow::ErrorKind::ConnectionAborted),
            (libc::ENOTCONN, flow::ErrorKind::NotConnected),
            (libc::ETIMEDOUT, flow::ErrorKind::TimedOut),
            (libc::EIO, flow::ErrorKind::Io),
        ];
        for (code, kind) in cases {
            let e = flow_error("read from", peer, os(code));
            assert_eq!(e.kind(), kind, "errno {code}");
            assert!(e.to_string().contains("[2001:db8::1]:443"), "{e}");
        }
    }

    #[test]
    fn udp_errors_map_to_udp_kinds() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let cases = [
            (libc::EADDRINUSE, udp_types::ErrorKind::AddressInUse),
            (libc::EADDRNOTAVAIL, udp_types::ErrorKind::AddressNotAvailable),
            (libc::ECONNREFUSED, udp_types::ErrorKind::Unreachable),
            (libc::ENETUNREACH, udp_types::ErrorKind::Unreachable),
            (libc::EMSGSIZE, udp_types::ErrorKind::TooLarge),
            (libc::EINVAL, udp_types::ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let e = udp_error("send to", addr, os(code));
            assert_eq!(e.kind(), kind, "errno {code}");
            assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
        }
    }

    #[test]
    fn addresses_lists_loopback() {
        // Every Linux network namespace has lo, though it may be down and
        // unaddressed in a fresh one; the host's has 127.0.0.1.
        let addrs = SocketStack::new().addresses();
        if !addrs.is_empty() {
            assert!(addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
        }
    }
}
