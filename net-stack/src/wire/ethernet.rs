//! Ethernet II frames.
//!
//! Reading list:
//! - RFC 894: IPv4 over Ethernet (the Ethernet II header).
//! - IEEE 802.3-2018 §3.2.6: a Length/Type value of 1536 (0x0600) or more is
//!   an EtherType; 1500 or less is an 802.3 length, which this stack does
//!   not speak.
//! - IEEE 802.1Q §9: a VLAN tag is announced by EtherType 0x8100.
//!
//! The frame check sequence is not part of the frames devices hand us
//! (see `mirage_types::net`), so it is not part of this view either. See
//! the [module contract](super#the-contract): after
//! [`EthernetPacket::new_checked`], no getter panics.
//!
//! VLAN-tagged frames parse: their [`EthernetRepr::ethertype`] is
//! [`EtherType::VLAN`] and the payload starts with the tag, so the layer
//! above can drop them (or a VLAN layer can handle them) by matching the
//! EtherType, without this module guessing.

use mirage_types::ethernet::EtherType;
use mirage_types::net::{MacAddress, ETHERNET_HEADER_LEN};

use super::{need, read_u16, write_u16, WireError};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// The smallest Length/Type value that is an EtherType (IEEE 802.3 §3.2.6).
const MIN_ETHERTYPE: u16 = 0x0600;

/// A view of an Ethernet II frame (header and payload, no FCS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthernetPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetPacket<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than the header.
    pub const fn new_unchecked(buffer: T) -> EthernetPacket<T> {
        EthernetPacket { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    ///
    /// `Ok` means no getter of the view panics. Errors with
    /// [`WireError::Truncated`] if the buffer is shorter than 14 bytes.
    pub fn new_checked(buffer: T) -> Result<EthernetPacket<T>, WireError> {
        need("Ethernet header", buffer.as_ref().len(), ETHERNET_HEADER_LEN)?;
        Ok(EthernetPacket { buffer })
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    pub fn dst_addr(&self) -> MacAddress {
        MacAddress(mac(&self.buffer.as_ref()[field::DESTINATION]))
    }

    /// The source address.
    pub fn src_addr(&self) -> MacAddress {
        MacAddress(mac(&self.buffer.as_ref()[field::SOURCE]))
    }

    /// The Length/Type field as an EtherType (it may be an 802.3 length;
    /// [`EthernetRepr::parse`] rejects those).
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// The bytes after the header (including any padding up to the
    /// 60-byte minimum frame).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetPacket<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// The bytes after the header, to write the payload into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

fn mac(bytes: &[u8]) -> [u8; 6] {
    let mut out = [0u8; 6];
    out.copy_from_slice(bytes);
    out
}

/// A decoded Ethernet II header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// The sender.
    pub src_addr: MacAddress,
    /// The receiver: a unicast address, a group or broadcast.
    pub dst_addr: MacAddress,
    /// What the payload carries; [`EtherType::VLAN`] for a tagged frame.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Decodes the header of a checked frame.
    ///
    /// Errors with [`WireError::Unsupported`] if the Length/Type field is
    /// below 0x0600: an IEEE 802.3 length rather than an EtherType (IEEE
    /// 802.3 §3.2.6), a frame format this stack does not handle.
    pub fn parse<T: AsRef<[u8]>>(packet: &EthernetPacket<T>) -> Result<EthernetRepr, WireError> {
        let ethertype = packet.ethertype();
        if ethertype.0 < MIN_ETHERTYPE {
            return Err(WireError::Unsupported {
                what: "802.3 length field instead of an EtherType",
                value: ethertype.0.into(),
            });
        }
        Ok(EthernetRepr { src_addr: packet.src_addr(), dst_addr: packet.dst_addr(), ethertype })
    }

    /// The header's length: 14 bytes.
    pub const fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN
    }

    /// Bytes a frame with `payload_len` bytes of payload takes.
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        ETHERNET_HEADER_LEN + payload_len
    }

    /// Writes the header; the payload is left as it is.
    ///
    /// Panics if the packet's buffer is shorter than the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut EthernetPacket<T>) {
        packet.set_dst_addr(self.dst_addr);
        packet.set_src_addr(self.src_addr);
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    // The header of an ARP request (RFC 826 over RFC 894): broadcast destination, then the
    // sender, then EtherType 0x0806.
    const ARP_FRAME_HEADER: [u8; 14] =
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06];

    #[test]
    fn parses_a_known_header() {
        let mut frame = [0u8; 60];
        frame[..14].copy_from_slice(&ARP_FRAME_HEADER);
        let packet = EthernetPacket::new_checked(&frame[..]).unwrap();
        let repr = EthernetRepr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
                dst_addr: MacAddress::BROADCAST,
                ethertype: EtherType::ARP,
            }
        );
        assert_eq!(packet.payload().len(), 46);
    }

    #[test]
    fn short_buffers_are_truncated() {
        let err = EthernetPacket::new_checked(&ARP_FRAME_HEADER[..13]).unwrap_err();
        assert_eq!(err, WireError::Truncated { what: "Ethernet header", len: 13, needed: 14 });
    }

    #[test]
    fn vlan_tag_is_exposed_as_its_ethertype() {
        // IEEE 802.1Q: TPID 0x8100, then the tag, then the inner EtherType.
        let mut frame = ARP_FRAME_HEADER.to_vec();
        frame[12..14].copy_from_slice(&[0x81, 0x00]);
        frame.extend_from_slice(&[0x00, 0x05, 0x08, 0x00]);
        let packet = EthernetPacket::new_checked(&frame[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&packet).unwrap().ethertype, EtherType::VLAN);
        assert_eq!(packet.payload(), &[0x00, 0x05, 0x08, 0x00]);
    }

    #[test]
    fn ieee_802_3_length_is_unsupported() {
        // IEEE 802.3 §3.2.6: 0x05dc (1500) is a length, not a type.
        let mut frame = ARP_FRAME_HEADER;
        frame[12..14].copy_from_slice(&[0x05, 0xdc]);
        let packet = EthernetPacket::new_checked(&frame[..]).unwrap();
        assert!(matches!(EthernetRepr::parse(&packet), Err(WireError::Unsupported { value: 0x05dc, .. })));
    }

    fn mac_strategy() -> impl Strategy<Value = MacAddress> {
        any::<[u8; 6]>().prop_map(MacAddress)
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            src in mac_strategy(),
            dst in mac_strategy(),
            ethertype in 0x0600u16..,
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType(ethertype) };
            let mut buf = vec![0xa5u8; repr.buffer_len(payload.len())];
            let mut packet = EthernetPacket::new_unchecked(&mut buf[..]);
            repr.emit(&mut packet);
            packet.payload_mut().copy_from_slice(&payload);
            let packet = EthernetPacket::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(packet) = EthernetPacket::new_checked(&bytes[..]) {
                let _ = (packet.src_addr(), packet.dst_addr(), packet.ethertype(), packet.payload());
                let _ = EthernetRepr::parse(&packet);
            }
        }
    }
}
