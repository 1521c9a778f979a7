//! UDP datagrams.
//!
//! Reading list:
//! - RFC 768: the header, the pseudo-header checksum, and "an all zero
//!   transmitted checksum value means that the transmitter generated no
//!   checksum"; a computed zero is sent as all ones.
//! - RFC 1122 §4.1.3.4: a host must discard a datagram whose non-zero
//!   checksum is wrong.
//! - RFC 6335 §6: port 0 is reserved and not a valid destination.
//!
//! The Length field must cover the header and fit the buffer; bytes after
//! it (trailing data in the IP payload) are not part of the datagram, as in
//! Linux's receive path. See the [module contract](super#the-contract):
//! after [`UdpPacket::new_checked`], no getter and no `payload()` panics.

use core::net::Ipv4Addr;

use mirage_types::ip::IpProtocol;

use super::{checksum, need, read_u16, write_u16, WireError};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Bytes in a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// A view of a UDP datagram (header and payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than the header, and `payload()` if the Length field lies.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer (the IP payload) after checking its lengths.
    ///
    /// `Ok` means no getter and no `payload()` panics: the buffer holds the
    /// header, and the Length field covers the header and fits the buffer.
    /// Errors with [`WireError::Truncated`] if the buffer is shorter than
    /// the header or the Length field, and [`WireError::Malformed`] if the
    /// Length field is below 8.
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        let len = buffer.as_ref().len();
        need("UDP header", len, UDP_HEADER_LEN)?;
        let packet = UdpPacket { buffer };
        let length = usize::from(packet.len());
        if length < UDP_HEADER_LEN {
            return Err(WireError::Malformed { what: "UDP length field shorter than the 8-byte header" });
        }
        need("UDP datagram (length field)", len, length)?;
        Ok(packet)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The source port (0 if the sender expects no reply).
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// The destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The Length field: header plus payload.
    #[allow(clippy::len_without_is_empty)] // a UDP datagram is never empty: the header is always there
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The checksum field (0: none was computed).
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum is right for a datagram from `src` to `dst`;
    /// true when the sender computed none (RFC 768).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let datagram = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, self.len()),
            checksum::data(datagram),
        ]) == 0xffff
    }

    /// The payload: from the end of the header to the Length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the Length field.
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field (see [`Self::fill_checksum`]).
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum over the pseudo-header, the header and the
    /// payload as they are now, and writes it; a computed 0 is written as
    /// 0xffff, since 0 means "no checksum" (RFC 768).
    ///
    /// Panics if the Length field exceeds the buffer.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let length = self.len();
        let datagram = &self.buffer.as_ref()[..usize::from(length)];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, IpProtocol::UDP, length),
            checksum::data(datagram),
        ]);
        let field = !sum;
        self.set_checksum(if field == 0 { 0xffff } else { field });
    }

    /// The payload, to write into.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[UDP_HEADER_LEN..end]
    }
}

/// A decoded UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// The source port.
    pub src_port: u16,
    /// The destination port, never 0.
    pub dst_port: u16,
    /// Bytes of payload.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Decodes a checked datagram that came from `src` to `dst`.
    ///
    /// `Ok` means the checksum is right or absent. Errors with
    /// [`WireError::BadChecksum`] (RFC 1122 §4.1.3.4: discard) and
    /// [`WireError::Malformed`] for destination port 0 (RFC 6335 §6).
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<UdpRepr, WireError> {
        if packet.dst_port() == 0 {
            return Err(WireError::Malformed { what: "UDP destination port 0 is reserved" });
        }
        if !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum { what: "UDP datagram" });
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - UDP_HEADER_LEN,
        })
    }

    /// The header's length: 8 bytes.
    pub const fn header_len(&self) -> usize {
        UDP_HEADER_LEN
    }

    /// Bytes the datagram takes: header and payload.
    pub const fn buffer_len(&self) -> usize {
        UDP_HEADER_LEN + self.payload_len
    }

    /// Writes the header without the checksum (set to 0); for callers that
    /// write the payload afterwards and then call
    /// [`UdpPacket::fill_checksum`].
    ///
    /// Panics (a bug in the caller) if the buffer is shorter than the
    /// header or [`Self::buffer_len`] exceeds 65 535.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) {
        let length = u16::try_from(self.buffer_len())
            .unwrap_or_else(|_| panic!("UDP datagram of {} bytes exceeds 65535", self.buffer_len()));
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(length);
        packet.set_checksum(0);
    }

    /// Writes the header, lets `fill_payload` write the payload (exactly
    /// `payload_len` bytes, initial contents unspecified), then writes the
    /// checksum for a datagram from `src` to `dst`. Returns what
    /// `fill_payload` returns.
    ///
    /// Panics (a bug in the caller) if the buffer is shorter than
    /// [`Self::buffer_len`] or that exceeds 65 535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>, R>(
        &self,
        packet: &mut UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        fill_payload: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        self.emit_header(packet);
        let result = fill_payload(packet.payload_mut());
        packet.fill_checksum(src, dst);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);

    // A DNS query for example.com from port 0xbeef to 53, SRC → DST. Its
    // checksum 0xdb89 was computed outside this crate, by a plain Python
    // transcription of RFC 768's pseudo-header sum.
    const DATAGRAM: [u8; 37] = [
        0xbe, 0xef, 0x00, 0x35, 0x00, 0x25, 0xdb, 0x89, // header
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // DNS header
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, // QNAME
        0x00, 0x01, 0x00, 0x01, // QTYPE A, QCLASS IN
    ];

    #[test]
    fn parses_a_known_datagram() {
        let packet = UdpPacket::new_checked(&DATAGRAM[..]).unwrap();
        let repr = UdpRepr::parse(&packet, SRC, DST).unwrap();
        assert_eq!(repr, UdpRepr { src_port: 0xbeef, dst_port: 53, payload_len: 29 });
        assert_eq!(packet.payload(), &DATAGRAM[8..]);
        // The same bytes from another address fail the pseudo-header sum.
        let other = Ipv4Addr::new(192, 168, 1, 3);
        assert_eq!(UdpRepr::parse(&packet, other, DST), Err(WireError::BadChecksum { what: "UDP datagram" }));
    }

    #[test]
    fn emitting_reproduces_the_capture() {
        let repr = UdpRepr { src_port: 0xbeef, dst_port: 53, payload_len: 29 };
        let mut out = [0xa5u8; 37];
        repr.emit(&mut UdpPacket::new_unchecked(&mut out[..]), SRC, DST, |p| p.copy_from_slice(&DATAGRAM[8..]));
        assert_eq!(out, DATAGRAM);
    }

    #[test]
    fn zero_checksum_means_none() {
        // RFC 768: a transmitted zero means the sender computed none.
        let mut bytes = DATAGRAM;
        bytes[6..8].fill(0);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(UdpRepr::parse(&packet, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST).is_ok());
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Find a payload word that makes the sum all ones, so the computed
        // checksum is 0 and must go out as 0xffff (RFC 768).
        let repr = UdpRepr { src_port: 1, dst_port: 2, payload_len: 2 };
        let mut bytes = [0u8; 10];
        repr.emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), SRC, DST, |p| p.fill(0));
        let without = checksum::combine(&[
            checksum::pseudo_header_v4(SRC, DST, IpProtocol::UDP, 10),
            checksum::data(&[0, 1, 0, 2, 0, 10, 0, 0, 0, 0]),
        ]);
        let word = !without;
        repr.emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), SRC, DST, |p| p.copy_from_slice(&word.to_be_bytes()));
        assert_eq!(&bytes[6..8], &[0xff, 0xff]);
        assert!(UdpRepr::parse(&UdpPacket::new_checked(&bytes[..]).unwrap(), SRC, DST).is_ok());
    }

    #[test]
    fn length_field_checks() {
        let mut bytes = DATAGRAM;
        bytes[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert!(matches!(UdpPacket::new_checked(&bytes[..]), Err(WireError::Malformed { .. })));
        assert!(matches!(UdpPacket::new_checked(&DATAGRAM[..36]), Err(WireError::Truncated { needed: 37, .. })));
        assert!(matches!(UdpPacket::new_checked(&DATAGRAM[..7]), Err(WireError::Truncated { needed: 8, .. })));
        // Bytes beyond the Length field are not payload.
        let mut longer = DATAGRAM.to_vec();
        longer.push(0);
        assert_eq!(UdpPacket::new_checked(&longer[..]).unwrap().payload(), &DATAGRAM[8..]);
    }

    #[test]
    fn destination_port_zero_is_rejected() {
        let repr = UdpRepr { src_port: 5, dst_port: 0, payload_len: 0 };
        let mut bytes = [0xa5u8; 8];
        repr.emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), SRC, DST, |_| ());
        assert!(matches!(
            UdpRepr::parse(&UdpPacket::new_checked(&bytes[..]).unwrap(), SRC, DST),
            Err(WireError::Malformed { .. })
        ));
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(
            src_port in any::<u16>(),
            dst_port in 1u16..,
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            src in any::<[u8; 4]>(),
            dst in any::<[u8; 4]>(),
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let repr = UdpRepr { src_port, dst_port, payload_len: payload.len() };
            let mut bytes = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut UdpPacket::new_unchecked(&mut bytes[..]), src, dst, |p| p.copy_from_slice(&payload));
            let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
            prop_assert_ne!(packet.checksum(), 0);
            prop_assert_eq!(UdpRepr::parse(&packet, src, dst).unwrap(), repr);
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), fix_len: bool) {
            let mut bytes = bytes;
            if fix_len && bytes.len() >= 8 {
                // Steer some inputs past the length check.
                let len = u16::try_from(bytes.len()).unwrap();
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = UdpPacket::new_checked(&bytes[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let _ = p.verify_checksum(SRC, DST);
                let _ = UdpRepr::parse(&p, SRC, DST);
            }
        }
    }
}
