//! A network stack: what applications use to talk to the network.
//!
//! Application code written against [`Stack`] runs unchanged over
//! `mirage-net-stack` (our own TCP/IP on any network device) and over the
//! host kernel's sockets (`mirage-platform-unix`'s `SocketStack`).
//!
//! # For implementors
//!
//! Return the same protocol handles on every call; they share the stack's
//! state.
//!
//! # For users
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddr};
//! use mirage_types::flow::Flow;
//! use mirage_types::stack::Stack;
//! use mirage_types::tcp::{Tcp, TcpListener};
//!
//! /// A TCP service answering each connection with one line, forever.
//! async fn motd<S: Stack>(stack: &S, port: u16) -> Result<(), <S::Tcp as Tcp>::Error> {
//!     let listener = stack.tcp().listen(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), 64).await?;
//!     loop {
//!         let mut flow = listener.accept().await?;
//!         let _ = flow.write_all(b"welcome to mirage\n").await;
//!         let _ = flow.close().await;
//!     }
//! }
//! ```

use alloc::vec::Vec;
use core::net::IpAddr;

use crate::icmp::Icmp;
use crate::tcp::Tcp;
use crate::udp::Udp;

/// A network stack with UDP, TCP and ICMP echo.
pub trait Stack {
    /// UDP.
    type Udp: Udp;
    /// TCP.
    type Tcp: Tcp;
    /// ICMP echo.
    type Icmp: Icmp;

    /// The stack's UDP.
    fn udp(&self) -> &Self::Udp;
    /// The stack's TCP.
    fn tcp(&self) -> &Self::Tcp;
    /// The stack's ICMP echo.
    fn icmp(&self) -> &Self::Icmp;

    /// The local addresses now configured (empty while DHCP runs).
    fn addresses(&self) -> Vec<IpAddr>;
}

forward_handle!(Stack {
    type Udp = T::Udp;
    type Tcp = T::Tcp;
    type Icmp = T::Icmp;
    fn udp(&self) -> &Self::Udp {
        (**self).udp()
    }
    fn tcp(&self) -> &Self::Tcp {
        (**self).tcp()
    }
    fn icmp(&self) -> &Self::Icmp {
        (**self).icmp()
    }
    fn addresses(&self) -> Vec<IpAddr> {
        (**self).addresses()
    }
});
