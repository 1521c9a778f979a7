//! Network devices: Ethernet frames in and out.
//!
//! A network device moves whole Ethernet II frames (header included, frame
//! check sequence excluded). Received frames arrive as [`Bytes`], which
//! upper layers slice without copying. Transmission fills a buffer the
//! device hands out ([`NetworkDevice::transmit`]), so a driver with a
//! transmit ring lets the stack write headers and payload straight into
//! the ring and the steady state allocates nothing per packet.
//!
//! # For implementors
//!
//! - [`NetworkDevice::mtu`] is the largest Ethernet *payload* (1500 on
//!   most links); frames are at most `mtu() + ETHERNET_HEADER_LEN` bytes.
//! - [`NetworkDevice::receive`] must be cancel-safe: a frame is either
//!   returned or left for the next call, never lost to a dropped future.
//! - Count every frame in [`NetStats`], including the ones dropped because
//!   a queue was full.
//!
//! # For users
//!
//! One task should own the receive side (the stack's input loop); any task
//! may transmit.
//!
//! ```
//! use mirage_types::net::{MacAddress, NetworkDevice, ETHERNET_HEADER_LEN};
//!
//! /// Answers every received frame by sending it back to its sender.
//! async fn reflect<N: NetworkDevice>(dev: &N, frames: usize) -> Result<(), N::Error> {
//!     for _ in 0..frames {
//!         let frame = dev.receive().await?;
//!         if frame.len() < ETHERNET_HEADER_LEN {
//!             continue;
//!         }
//!         let mac = dev.mac();
//!         dev.transmit(frame.len(), |buf| {
//!             buf.copy_from_slice(&frame);
//!             buf[0..6].copy_from_slice(&frame[6..12]);
//!             buf[6..12].copy_from_slice(&mac.0);
//!         })
//!         .await?;
//!     }
//!     Ok(())
//! }
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use bytes::Bytes;

/// Bytes in an Ethernet II header: destination, source, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

error_family!("network device" {
    /// The device went away (interface deleted, backend closed).
    Disconnected => "network device disconnected",
    /// A frame larger than the device accepts.
    FrameTooLarge => "frame too large",
    /// The device or host call failed.
    Io => "network device I/O error",
    /// Anything else.
    Other => "network device failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// See [`ErrorKind::Disconnected`].
    #[error("network device {0} disconnected")]
    Disconnected(String),
    /// See [`ErrorKind::FrameTooLarge`].
    #[error("frame of {len} bytes exceeds the device's maximum of {max} bytes")]
    FrameTooLarge {
        /// Requested frame length.
        len: usize,
        /// Largest frame the device takes (MTU plus header).
        max: usize,
    },
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl NetError {
    /// A ready-made error with the kind and message of any device error.
    pub fn from_error<E: Error + ?Sized>(e: &E) -> NetError {
        NetError::Other { kind: e.kind(), message: alloc::string::ToString::to_string(e) }
    }
}

impl Error for NetError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetError::Disconnected(_) => ErrorKind::Disconnected,
            NetError::FrameTooLarge { .. } => ErrorKind::FrameTooLarge,
            NetError::Other { kind, .. } => *kind,
        }
    }
}

/// An IEEE 802 MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddress = MacAddress([0xff; 6]);
    /// The all-zero address, used as "unknown" in ARP requests.
    pub const UNSPECIFIED: MacAddress = MacAddress([0; 6]);

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether this is a group (multicast or broadcast) address.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Whether the locally-administered bit is set, as it is for addresses
    /// made up by software.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// A locally administered unicast address from six random bytes.
    pub fn local_from_random(mut bytes: [u8; 6]) -> MacAddress {
        bytes[0] = (bytes[0] & !0x01) | 0x02;
        MacAddress(bytes)
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// The text was not a MAC address written as six two-digit hexadecimal
/// bytes separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:00:00:00:00:01")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddress {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<MacAddress, ParseMacError> {
        let err = || ParseMacError(String::from(s));
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            // `from_str_radix` alone would accept "+1".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddress(out))
    }
}

/// Frame and byte counters of a device since it was connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames received and handed to the caller.
    pub rx_frames: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames the device dropped (queue full, too large, bad).
    pub rx_dropped: u64,
    /// Frames transmitted.
    pub tx_frames: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// Frames that could not be transmitted.
    pub tx_dropped: u64,
}

/// A network device.
pub trait NetworkDevice {
    /// The device's error.
    type Error: Error;

    /// The device's MAC address.
    fn mac(&self) -> MacAddress;

    /// The largest Ethernet payload, in bytes.
    fn mtu(&self) -> usize;

    /// Counters since the device was connected.
    fn stats(&self) -> NetStats;

    /// Waits for the next received frame.
    ///
    /// Cancel-safe: a frame is never lost to a dropped future.
    async fn receive(&self) -> Result<Bytes, Self::Error>;

    /// Transmits one frame of `len` bytes, which `fill` writes into the
    /// buffer the device provides (its initial contents are unspecified);
    /// returns what `fill` returns. Waits while the transmit queue is full.
    ///
    /// `Ok` means the device accepted the frame; delivery is not
    /// guaranteed (Ethernet is a datagram service). While the link is down
    /// a device either waits for it (bounded by nothing but cancellation)
    /// or drops the frame and counts it in `tx_dropped`; its documentation
    /// says which. Callers that must not stall (a stack's input loop)
    /// transmit from their own task or race the call against a deadline. `fill` is called at
    /// most once, and not at all on `Err`. A `len` above
    /// `mtu() + ETHERNET_HEADER_LEN` is refused with
    /// [`ErrorKind::FrameTooLarge`]. Cancel-safe: if dropped before `fill`
    /// ran, nothing was sent.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error>;
}

forward_handle!(NetworkDevice {
    type Error = T::Error;
    fn mac(&self) -> MacAddress {
        (**self).mac()
    }
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn stats(&self) -> NetStats {
        (**self).stats()
    }
    async fn receive(&self) -> Result<Bytes, Self::Error> {
        (**self).receive().await
    }
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, Self::Error> {
        (**self).transmit(len, fill).await
    }
});

/// The object-safe counterpart of [`NetworkDevice`], for devices chosen at
/// run time. Every network device implements it; `dyn DynNetworkDevice`
/// implements [`NetworkDevice`] again.
#[async_trait::async_trait(?Send)]
pub trait DynNetworkDevice {
    /// See [`NetworkDevice::mac`].
    fn mac(&self) -> MacAddress;
    /// See [`NetworkDevice::mtu`].
    fn mtu(&self) -> usize;
    /// See [`NetworkDevice::stats`].
    fn stats(&self) -> NetStats;
    /// See [`NetworkDevice::receive`].
    async fn receive(&self) -> Result<Bytes, NetError>;
    /// See [`NetworkDevice::transmit`]; `fill` is called at most once.
    async fn transmit(&self, len: usize, fill: &mut dyn for<'buf> FnMut(&'buf mut [u8])) -> Result<(), NetError>;
}

#[async_trait::async_trait(?Send)]
impl<N: NetworkDevice> DynNetworkDevice for N {
    fn mac(&self) -> MacAddress {
        NetworkDevice::mac(self)
    }
    fn mtu(&self) -> usize {
        NetworkDevice::mtu(self)
    }
    fn stats(&self) -> NetStats {
        NetworkDevice::stats(self)
    }
    async fn receive(&self) -> Result<Bytes, NetError> {
        NetworkDevice::receive(self).await.map_err(|e| NetError::from_error(&e))
    }
    async fn transmit(&self, len: usize, fill: &mut dyn for<'buf> FnMut(&'buf mut [u8])) -> Result<(), NetError> {
        NetworkDevice::transmit(self, len, |buf| fill(buf)).await.map_err(|e| NetError::from_error(&e))
    }
}

impl NetworkDevice for dyn DynNetworkDevice + '_ {
    type Error = NetError;
    fn mac(&self) -> MacAddress {
        DynNetworkDevice::mac(self)
    }
    fn mtu(&self) -> usize {
        DynNetworkDevice::mtu(self)
    }
    fn stats(&self) -> NetStats {
        DynNetworkDevice::stats(self)
    }
    async fn receive(&self) -> Result<Bytes, NetError> {
        DynNetworkDevice::receive(self).await
    }
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        // Adapt the one-shot closure to the `FnMut` the object-safe trait takes.
        let mut fill = Some(fill);
        let mut result = None;
        DynNetworkDevice::transmit(self, len, &mut |buf| {
            if let Some(fill) = fill.take() {
                result = Some(fill(buf));
            }
        })
        .await?;
        result.ok_or_else(|| NetError::Other {
            kind: ErrorKind::Other,
            message: String::from("network device accepted a frame without filling it"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn mac_parses_and_displays() {
        let mac: MacAddress = "02:00:5E:10:00:01".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
        assert_eq!(mac.to_string(), "02:00:5e:10:00:01");
        assert_eq!("02-00-5e-10-00-01".parse::<MacAddress>(), Ok(mac));
        for bad in
            ["", "02:00:5e:10:00", "02:00:5e:10:00:01:02", "2:00:5e:10:00:01", "zz:00:5e:10:00:01", "02:00:5e:10:00:+1"]
        {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddress::BROADCAST.is_broadcast() && MacAddress::BROADCAST.is_multicast());
        let local = MacAddress::local_from_random([0xff; 6]);
        assert!(local.is_unicast() && local.is_local());
    }

    #[test]
    fn dyn_transmit_calls_fill_once_and_returns_its_value() {
        use crate::testing::LoopbackNet;
        let dev = LoopbackNet::default();
        let boxed: Box<dyn DynNetworkDevice> = Box::new(dev);
        futures::executor::block_on(async {
            let n = NetworkDevice::transmit(&*boxed, 60, |buf| {
                buf.fill(0xab);
                buf.len()
            })
            .await
            .unwrap();
            assert_eq!(n, 60);
            let frame = NetworkDevice::receive(&*boxed).await.unwrap();
            assert_eq!(&frame[..], &[0xab; 60][..]);
            let e = NetworkDevice::transmit(&*boxed, 10_000, |_| ()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::FrameTooLarge);
        });
    }
}
