//! UDP on host sockets.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use mirage_types::udp::{Datagram, Udp, UdpError, UdpSocket};

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
        let (n, src) = self.socket.try_recv_from(&mut scratch)?;
        Ok(Datagram { src, dst: self.local_addr, payload: Bytes::copy_from_slice(&scratch[..n]) })
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

    /// Waits for the next datagram. [`Datagram::dst`] is the socket's bound
    /// address (see the [module docs](super) for what that leaves out).
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
