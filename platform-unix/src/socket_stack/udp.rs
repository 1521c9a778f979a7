//! UDP on host sockets.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use mirage_types::udp::{Datagram, Udp, UdpError, UdpSocket};
use tokio::io::Interest;

use super::udp_error;

/// Largest UDP payload over IPv4: 65535 minus the IPv4 and UDP headers.
pub const MAX_PAYLOAD_V4: usize = 65_507;
/// Largest UDP payload over IPv6 without jumbograms: 65535 minus the UDP
/// header (the IPv6 header is not counted in the payload length).
pub const MAX_PAYLOAD_V6: usize = 65_527;

/// Receive scratch size: any datagram the kernel can deliver fits.
const RECV_SCRATCH_LEN: usize = 65_536;

/// UDP of a [`SocketStack`](super::SocketStack): kernel UDP sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostUdp {
    _private: (),
}

impl Udp for HostUdp {
    type Error = UdpError;
    type Socket = HostUdpSocket;

    /// Binds a kernel UDP socket (without `SO_REUSEADDR`, so a second bind
    /// of the same address fails).
    ///
    /// # Errors
    ///
    /// `AddressInUse` if the address is bound; `AddressNotAvailable` if it
    /// is not local; `Other` for a port below 1024 without privilege.
    async fn bind(&self, local: SocketAddr) -> Result<HostUdpSocket, UdpError> {
        let socket = tokio::net::UdpSocket::bind(local).await.map_err(|e| udp_error("bind", local, e))?;
        let local_addr = socket.local_addr().map_err(|e| udp_error("bind", local, e))?;
        sys::enable_destination_info(&socket, local_addr.is_ipv6())
            .map_err(|e| udp_error("asking for destination addresses (IP_PKTINFO) on", local_addr, e))?;
        Ok(HostUdpSocket { socket, local_addr, scratch: RefCell::new(Vec::new()) })
    }
}

/// A bound kernel UDP socket.
///
/// Incoming datagrams queue in the kernel, bounded by the socket's
/// `SO_RCVBUF` (`net.core.rmem_default`); the kernel drops what does not
/// fit. Receiving copies each datagram out of one 64 KiB scratch buffer
/// (allocated on the first receive) into a [`Bytes`] of its exact size.
#[derive(Debug)]
pub struct HostUdpSocket {
    socket: tokio::net::UdpSocket,
    local_addr: SocketAddr,
    scratch: RefCell<Vec<u8>>,
}

impl HostUdpSocket {
    fn max_payload(&self) -> usize {
        if self.local_addr.is_ipv4() {
            MAX_PAYLOAD_V4
        } else {
            MAX_PAYLOAD_V6
        }
    }

    /// Receives one datagram if one is queued. The scratch borrow never
    /// crosses an await, so concurrent receivers cannot collide.
    fn try_recv(&self) -> io::Result<Datagram> {
        let mut scratch = self.scratch.borrow_mut();
        if scratch.len() < RECV_SCRATCH_LEN {
            scratch.resize(RECV_SCRATCH_LEN, 0);
        }
        let received =
            self.socket.try_io(Interest::READABLE, || sys::recv_with_destination(&self.socket, &mut scratch))?;
        // Without the kernel's answer (it always gives one once asked), the
        // bound address is the best we know.
        let dst_ip = match (received.dst_ip, self.local_addr.ip()) {
            // An IPv4 datagram on a dual-stack socket: the kernel gives its
            // source as an IPv4-mapped IPv6 address; write `dst` alike.
            (Some(IpAddr::V4(v4)), IpAddr::V6(_)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (Some(ip), _) => ip,
            (None, bound) => bound,
        };
        Ok(Datagram {
            src: received.src,
            dst: SocketAddr::new(dst_ip, self.local_addr.port()),
            payload: Bytes::copy_from_slice(&scratch[..received.len]),
        })
    }
}

impl UdpSocket for HostUdpSocket {
    type Error = UdpError;

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends one datagram. `Ok`: the kernel took it.
    ///
    /// Cancel-safe: the datagram is sent whole or not at all.
    ///
    /// # Errors
    ///
    /// `TooLarge` above 65507 bytes (IPv4) or 65527 (IPv6), before anything
    /// is sent; `Unreachable` without a route; `Other` for a destination of
    /// the other address family.
    async fn send_to(&self, payload: &[u8], dst: SocketAddr) -> Result<(), UdpError> {
        let max = self.max_payload();
        if payload.len() > max {
            return Err(UdpError::TooLarge { len: payload.len(), max });
        }
        let sent = self.socket.send_to(payload, dst).await.map_err(|e| udp_error("send to", dst, e))?;
        if sent != payload.len() {
            return Err(UdpError::Other {
                kind: mirage_types::udp::ErrorKind::Other,
                message: format!("UDP send to {dst}: the kernel sent {sent} of {} bytes", payload.len()),
            });
        }
        Ok(())
    }

    /// Waits for the next datagram. [`Datagram::dst`] is the address it was
    /// sent to (from `IP_PKTINFO`/`IPV6_PKTINFO`): one of ours, or a
    /// broadcast or multicast address, with our port.
    ///
    /// Cancel-safe: a datagram is taken from the kernel and returned in the
    /// same poll.
    ///
    /// # Errors
    ///
    /// `Unreachable` when the kernel reports an ICMP error on the socket;
    /// the socket stays usable.
    async fn recv_from(&self) -> Result<Datagram, UdpError> {
        loop {
            self.socket.readable().await.map_err(|e| udp_error("receive on", self.local_addr, e))?;
            match self.try_recv() {
                Ok(datagram) => return Ok(datagram),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(udp_error("receive on", self.local_addr, e)),
            }
        }
    }
}

/// `recvmsg(2)` with each datagram's destination address: the only unsafe
/// code of the UDP sockets.
mod sys {
    use std::io;
    use std::mem::size_of;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;
    use std::ptr;

    fn set_flag(socket: &impl AsRawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt reads `optlen` bytes from `optval`, which points
        // to a live `c_int` of that size; the descriptor is borrowed open.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Asks the kernel to report each datagram's destination address.
    pub(super) fn enable_destination_info(socket: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
        if ipv6 {
            set_flag(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)?;
            // IPv4 datagrams reaching a dual-stack socket come with IPv4
            // information instead; a v6-only socket never sees them, so a
            // refusal here loses nothing.
            let _ = set_flag(socket, libc::IPPROTO_IP, libc::IP_PKTINFO);
            Ok(())
        } else {
            set_flag(socket, libc::IPPROTO_IP, libc::IP_PKTINFO)
        }
    }

    /// One datagram's length, source and (if reported) destination address.
    pub(super) struct Received {
        pub(super) len: usize,
        pub(super) src: SocketAddr,
        pub(super) dst_ip: Option<IpAddr>,
    }

    /// Receives one datagram into `buf` without blocking.
    pub(super) fn recv_with_destination(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Received> {
        // SAFETY: all-zero bytes are a valid `sockaddr_storage` (plain
        // integers and padding).
        let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // `u64` elements align the control buffer for `cmsghdr`; 128 bytes
        // hold both kinds of packet information with their headers.
        let mut control = [0u64; 16];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: all-zero bytes are a valid `msghdr` (null pointers, zero
        // lengths).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` refers to a live buffer, exclusively
        // borrowed for the call, of the length stated beside it.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let src = socket_addr(&name, msg.msg_namelen)?;

        let mut dst_ip = None;
        let header_len = size_of::<libc::cmsghdr>();
        // SAFETY: `msg` describes the control buffer the kernel just filled;
        // CMSG_FIRSTHDR returns null or a header inside it.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: a non-null `cmsg` from CMSG_FIRSTHDR/CMSG_NXTHDR points
            // to a whole, aligned header within `control`.
            let (level, kind, cmsg_len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len as usize) };
            // SAFETY: as above; the data follows the header.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            if level == libc::IPPROTO_IP
                && kind == libc::IP_PKTINFO
                && cmsg_len >= header_len + size_of::<libc::in_pktinfo>()
            {
                // SAFETY: level, type and length say the kernel wrote an
                // `in_pktinfo` at `data`; it may be unaligned.
                let info: libc::in_pktinfo = unsafe { ptr::read_unaligned(data.cast()) };
                dst_ip = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr))));
            } else if level == libc::IPPROTO_IPV6
                && kind == libc::IPV6_PKTINFO
                && cmsg_len >= header_len + size_of::<libc::in6_pktinfo>()
            {
                // SAFETY: level, type and length say the kernel wrote an
                // `in6_pktinfo` at `data`; it may be unaligned.
                let info: libc::in6_pktinfo = unsafe { ptr::read_unaligned(data.cast()) };
                dst_ip = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            // SAFETY: `cmsg` is a header within the buffer `msg` describes;
            // CMSG_NXTHDR returns the next one inside it or null.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        Ok(Received { len, src, dst_ip })
    }

    fn socket_addr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
        let len = len as usize;
        let storage = (name as *const libc::sockaddr_storage).cast::<u8>();
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family and length say the kernel wrote a
                // `sockaddr_in`, which `sockaddr_storage` is large and aligned
                // enough to hold.
                let a: libc::sockaddr_in = unsafe { ptr::read(storage.cast()) };
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Ok(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a `sockaddr_in6`.
                let a: libc::sockaddr_in6 = unsafe { ptr::read(storage.cast()) };
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            family => Err(io::Error::other(format!(
                "datagram from an address of family {family} ({len} bytes), expected IPv4 or IPv6"
            ))),
        }
    }
}
