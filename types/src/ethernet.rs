//! The Ethernet layer: addressing and demultiplexing frames by EtherType.
//!
//! It sits on a [`crate::net::NetworkDevice`] and serves ARP and IP. It is
//! a trait so that stacks can be composed from independent layers (and a
//! layer replaced, e.g. by one that adds VLAN tags) as MirageOS composes
//! them; applications use [`crate::stack`] instead.
//!
//! # For implementors
//!
//! [`Ethernet::receive`] returns only frames addressed to this interface
//! (its unicast MAC, broadcast, or a subscribed multicast group) and drops
//! the rest, including VLAN-tagged frames unless the layer handles VLANs.
//!
//! # For users
//!
//! ```
//! use mirage_types::ethernet::{EtherType, Ethernet};
//! use mirage_types::net::MacAddress;
//!
//! /// Broadcasts a frame of a local experimental EtherType.
//! async fn announce<E: Ethernet>(eth: &E, message: &[u8]) -> Result<(), E::Error> {
//!     eth.write(MacAddress::BROADCAST, EtherType::LOCAL_EXPERIMENTAL, message.len(), |payload| {
//!         payload.copy_from_slice(message)
//!     })
//!     .await
//! }
//! ```

use alloc::string::String;
use bytes::Bytes;

use crate::net::MacAddress;

error_family!("ethernet" {
    /// The payload is larger than the MTU.
    PayloadTooLarge => "payload larger than the MTU",
    /// The network device failed.
    Device => "network device failure",
    /// Anything else.
    Other => "ethernet failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EthernetError {
    /// See [`ErrorKind::PayloadTooLarge`].
    #[error("ethernet payload of {len} bytes exceeds the MTU of {mtu}")]
    PayloadTooLarge {
        /// Requested payload length.
        len: usize,
        /// The interface's MTU.
        mtu: usize,
    },
    /// The device failed; the message is the device's.
    #[error("network device: {0}")]
    Device(String),
}

impl Error for EthernetError {
    fn kind(&self) -> ErrorKind {
        match self {
            EthernetError::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            EthernetError::Device(_) => ErrorKind::Device,
        }
    }
}

/// The EtherType field of an Ethernet II frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4 (RFC 894).
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP (RFC 826).
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6 (RFC 2464).
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// Local experimental EtherType 1 (IEEE 802).
    pub const LOCAL_EXPERIMENTAL: EtherType = EtherType(0x88b5);
}

/// A received frame addressed to this interface, header decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthernetFrame {
    /// Sender's address.
    pub src: MacAddress,
    /// Destination: ours, broadcast or a subscribed group.
    pub dst: MacAddress,
    /// What the payload carries.
    pub ethertype: EtherType,
    /// The payload, sliced from the received frame without copying.
    pub payload: Bytes,
}

/// An Ethernet layer.
pub trait Ethernet {
    /// The layer's error.
    type Error: Error;

    /// This interface's address.
    fn mac(&self) -> MacAddress;

    /// The largest payload of a frame.
    fn mtu(&self) -> usize;

    /// Waits for the next frame addressed to this interface.
    ///
    /// Cancel-safe, as the device's receive is.
    async fn receive(&self) -> Result<EthernetFrame, Self::Error>;

    /// Sends a frame to `dst` with a payload of `payload_len` bytes that
    /// `fill` writes; the layer writes the header. Same guarantees as
    /// [`crate::net::NetworkDevice::transmit`].
    async fn write<R>(
        &self,
        dst: MacAddress,
        ethertype: EtherType,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Self::Error>;
}

forward_handle!(Ethernet {
    type Error = T::Error;
    fn mac(&self) -> MacAddress {
        (**self).mac()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    async fn receive(&self) -> Result<EthernetFrame, Self::Error> {
        (**self).receive().await
    }
    async fn write<R>(
        &self,
        dst: MacAddress,
        ethertype: EtherType,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, Self::Error> {
        (**self).write(dst, ethertype, payload_len, fill).await
    }
});
