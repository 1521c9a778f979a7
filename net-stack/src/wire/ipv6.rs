//! IPv6 headers and the walk over their extension headers.
//!
//! Reading list:
//! - RFC 8200 §3: the fixed header; §4: extension headers, their order
//!   (hop-by-hop options only right after the fixed header, §4.1), their
//!   length field (8-octet units after the first 8, §4.3–4.6), and what a
//!   node does with a Next Header value it does not recognise (discard,
//!   and send an ICMPv6 Parameter Problem, code 1, pointing at it).
//! - RFC 8200 §4.5: the fragment header (fixed 8 bytes: offset in 8-octet
//!   units, the M flag, a 32-bit identification).
//! - RFC 2474 and RFC 3168: the traffic class (DSCP and ECN).
//!
//! [`Ipv6Packet`] is the view of the fixed header and its payload;
//! [`walk_extension_headers`] follows the chain of extension headers in
//! the payload to the upper-layer header, checking every length against
//! the bytes there, and stops after [`MAX_EXTENSION_HEADERS`] so that a
//! long chain costs a bounded amount of work.
//!
//! See the [module contract](super#the-contract): after
//! [`Ipv6Packet::new_checked`], no getter and no `payload()` panics, and
//! [`walk_extension_headers`] never panics on any bytes.

use core::net::Ipv6Addr;
use core::ops::Range;

use mirage_types::ip::IpProtocol;

use super::{need, read_u16, write_u16, WireError};

mod field {
    use core::ops::Range;

    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Bytes in the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// Extension headers [`walk_extension_headers`] follows at most; a chain
/// longer than that is refused (RFC 8200 §4.1 lists six kinds, each at
/// most once or twice in a datagram).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Next Header: hop-by-hop options (RFC 8200 §4.3).
pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
/// Next Header: routing (RFC 8200 §4.4).
pub const ROUTING: IpProtocol = IpProtocol(43);
/// Next Header: fragment (RFC 8200 §4.5).
pub const FRAGMENT: IpProtocol = IpProtocol(44);
/// Next Header: destination options (RFC 8200 §4.6).
pub const DESTINATION_OPTIONS: IpProtocol = IpProtocol(60);
/// Next Header: no next header (RFC 8200 §4.7).
pub const NO_NEXT_HEADER: IpProtocol = IpProtocol(59);

/// A view of an IPv6 datagram (fixed header and payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; getters panic if it is shorter
    /// than the fixed header, and `payload()` if the payload length lies.
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after checking its lengths.
    ///
    /// `Ok` means no getter and no `payload()` panics: the buffer holds the
    /// 40-byte header and the payload length says no more than the buffer
    /// holds after it (a longer buffer, such as a padded Ethernet frame, is
    /// fine: `payload()` stops at the payload length). It does not check
    /// the version ([`Ipv6Repr::parse`] does). Errors with
    /// [`WireError::Truncated`].
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>, WireError> {
        let len = buffer.as_ref().len();
        need("IPv6 header", len, IPV6_HEADER_LEN)?;
        let packet = Ipv6Packet { buffer };
        need("IPv6 payload", len - IPV6_HEADER_LEN, usize::from(packet.payload_len()))?;
        Ok(packet)
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn first_word(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        (self.first_word() >> 28) as u8
    }

    /// The traffic class: DSCP in the upper 6 bits, ECN in the lower 2.
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// The flow label (20 bits, RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Bytes after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The type of the header after the fixed one.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        address(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        address(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The payload: extension headers and the upper-layer packet, as long
    /// as the payload length says.
    pub fn payload(&self) -> &[u8] {
        let end = IPV6_HEADER_LEN + usize::from(self.payload_len());
        &self.buffer.as_ref()[IPV6_HEADER_LEN..end]
    }
}

fn address(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version, traffic class and flow label (the flow label's upper
    /// 12 bits are dropped).
    pub fn set_version_class_and_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let word = (u32::from(version & 0x0f) << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = IPV6_HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[IPV6_HEADER_LEN..end]
    }
}

/// The decoded fixed header of an IPv6 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The type of the header after the fixed one.
    pub next_header: IpProtocol,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// Flow label, 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Decodes the fixed header of a checked datagram; errors with
    /// [`WireError::BadVersion`] unless the version is 6.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr, WireError> {
        if packet.version() != 6 {
            return Err(WireError::BadVersion { found: packet.version(), expected: 6 });
        }
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Bytes the whole datagram takes: fixed header and payload.
    pub const fn buffer_len(&self) -> usize {
        IPV6_HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header; the payload is left as it is.
    ///
    /// Panics (a bug in the caller, which built the value) if the packet's
    /// buffer is shorter than the header or the payload length exceeds
    /// 65 535 bytes (jumbograms, RFC 2675, are not supported).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        let payload_len = u16::try_from(self.payload_len)
            .unwrap_or_else(|_| panic!("IPv6 payload of {} bytes exceeds 65535", self.payload_len));
        packet.set_version_class_and_flow(6, self.traffic_class, self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// The fragment header's fields (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Offset of the data after this header in the original payload, in
    /// bytes (a multiple of 8).
    pub offset: u16,
    /// More fragments follow (the M flag).
    pub more_fragments: bool,
    /// Identification, the same in every fragment of one datagram.
    pub ident: u32,
}

/// Where the chain of extension headers of a payload ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionHeaders {
    /// The protocol of what follows the last extension header: an upper
    /// layer (TCP, UDP, ICMPv6), [`NO_NEXT_HEADER`], or a value this
    /// walk does not know (which RFC 8200 §4 answers with a Parameter
    /// Problem, code 1, pointing at [`Self::next_header_at`]).
    pub protocol: IpProtocol,
    /// Where in the payload that protocol's header starts.
    pub offset: usize,
    /// Where in the payload the Next Header byte naming `protocol` is (for
    /// the Parameter Problem's pointer, add the fixed header's 40 bytes).
    pub next_header_at: usize,
    /// The fragment header, if the chain has one.
    pub fragment: Option<FragmentHeader>,
    /// The byte ranges of the options of the hop-by-hop and destination
    /// options headers, in order, for the layer that processes them: at
    /// most three (RFC 8200 §4.1: hop-by-hop once, destination options at
    /// most twice); further ones are walked but not listed.
    pub options: [Option<Range<usize>>; 3],
}

/// Follows the extension headers of `payload` (the bytes after the fixed
/// header), starting with `next_header` (the fixed header's), to the first
/// header that is not a known extension header.
///
/// Errors with [`WireError::Truncated`] when a header's length goes past
/// the payload, [`WireError::Malformed`] when a hop-by-hop header is not
/// the first (RFC 8200 §4.1), a chain has two fragment headers, or it is
/// longer than [`MAX_EXTENSION_HEADERS`]. Never panics.
pub fn walk_extension_headers(next_header: IpProtocol, payload: &[u8]) -> Result<ExtensionHeaders, WireError> {
    let mut walk = ExtensionHeaders {
        protocol: next_header,
        offset: 0,
        next_header_at: 0,
        fragment: None,
        options: [None, None, None],
    };
    for position in 0..=MAX_EXTENSION_HEADERS {
        let at = walk.offset;
        match walk.protocol {
            HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS | FRAGMENT if position == MAX_EXTENSION_HEADERS => {
                return Err(WireError::Malformed { what: "IPv6 extension header chain too long" });
            }
            HOP_BY_HOP if position > 0 => {
                return Err(WireError::Malformed { what: "IPv6 hop-by-hop options header not first" });
            }
            FRAGMENT => {
                need("IPv6 fragment header", payload.len().saturating_sub(at), 8)?;
                if walk.fragment.is_some() {
                    return Err(WireError::Malformed { what: "two IPv6 fragment headers" });
                }
                let bytes = &payload[at..at + 8];
                let offset_and_flags = read_u16(bytes, 2);
                walk.fragment = Some(FragmentHeader {
                    offset: offset_and_flags & !7,
                    more_fragments: offset_and_flags & 1 != 0,
                    ident: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
                });
                walk.protocol = IpProtocol(bytes[0]);
                walk.next_header_at = at;
                walk.offset = at + 8;
            }
            kind @ (HOP_BY_HOP | ROUTING | DESTINATION_OPTIONS) => {
                need("IPv6 extension header", payload.len().saturating_sub(at), 2)?;
                let len = 8 + 8 * usize::from(payload[at + 1]);
                need("IPv6 extension header", payload.len() - at, len)?;
                if kind != ROUTING {
                    if let Some(slot) = walk.options.iter_mut().find(|slot| slot.is_none()) {
                        *slot = Some(at + 2..at + len);
                    }
                }
                walk.protocol = IpProtocol(payload[at]);
                walk.next_header_at = at;
                walk.offset = at + len;
            }
            _ => return Ok(walk),
        }
    }
    // The loop returns at the latest when `position` reaches the bound.
    Err(WireError::Malformed { what: "IPv6 extension header chain too long" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// A datagram from fe80::1 to ff02::1 with `payload`.
    fn datagram(next_header: IpProtocol, payload: &[u8]) -> Vec<u8> {
        let repr = Ipv6Repr {
            src_addr: "fe80::1".parse().unwrap(),
            dst_addr: "ff02::1".parse().unwrap(),
            next_header,
            payload_len: payload.len(),
            hop_limit: 255,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut bytes = vec![0xa5u8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        bytes[IPV6_HEADER_LEN..].copy_from_slice(payload);
        bytes
    }

    #[test]
    fn the_fixed_header_rfc_8200_3() {
        // An ICMPv6 echo request header as Linux sends it: version 6,
        // traffic class 0, flow label 0x12345, 16 bytes of payload.
        let mut bytes = datagram(IpProtocol(58), &[0; 16]);
        bytes[1] = 0x01;
        bytes[2] = 0x23;
        bytes[3] = 0x45;
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let repr = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!((repr.flow_label, repr.traffic_class, repr.payload_len), (0x12345, 0, 16));
        assert_eq!((repr.next_header, repr.hop_limit), (IpProtocol(58), 255));
        assert_eq!(hex(&bytes[..8]), "6001234500103aff");
        bytes[0] = 0x40;
        assert!(matches!(
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&bytes[..]).unwrap()),
            Err(WireError::BadVersion { found: 4, expected: 6 })
        ));
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        bytes.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    #[test]
    fn lengths_are_checked_and_padding_is_not_payload() {
        let mut bytes = datagram(IpProtocol(17), &[1, 2, 3, 4]);
        assert!(Ipv6Packet::new_checked(&bytes[..39]).is_err());
        assert!(Ipv6Packet::new_checked(&bytes[..43]).is_err(), "payload length past the buffer");
        bytes.extend_from_slice(&[0; 6]);
        assert_eq!(Ipv6Packet::new_checked(&bytes[..]).unwrap().payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn the_chain_is_walked_to_the_upper_layer_rfc_8200_4() {
        // Hop-by-hop (8 bytes: a PadN option), destination options (16
        // bytes), fragment (offset 1448, more, id 0xdeadbeef), then UDP.
        let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[17, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        payload.extend_from_slice(&[0xaa; 8]);
        let walk = walk_extension_headers(HOP_BY_HOP, &payload).unwrap();
        assert_eq!((walk.protocol, walk.offset, walk.next_header_at), (IpProtocol(17), 32, 24));
        assert_eq!(walk.fragment, Some(FragmentHeader { offset: 1448, more_fragments: true, ident: 0xdead_beef }));
        assert_eq!(walk.options, [Some(2..8), Some(10..24), None]);
        // No extension header at all.
        let walk = walk_extension_headers(IpProtocol(6), &[0; 20]).unwrap();
        assert_eq!((walk.protocol, walk.offset, walk.fragment), (IpProtocol(6), 0, None));
    }

    #[test]
    fn bad_chains_are_refused() {
        // Hop-by-hop after another header (RFC 8200 §4.1).
        let payload = [0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(walk_extension_headers(DESTINATION_OPTIONS, &payload), Err(WireError::Malformed { .. })));
        // A header whose length runs past the payload.
        assert!(matches!(walk_extension_headers(ROUTING, &[17, 2, 0, 0]), Err(WireError::Truncated { .. })));
        // Two fragment headers.
        let two = [44, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 0, 0, 0, 0, 2];
        assert!(matches!(walk_extension_headers(FRAGMENT, &two), Err(WireError::Malformed { .. })));
        // An endless chain of destination options headers.
        let endless: Vec<u8> = (0..MAX_EXTENSION_HEADERS + 1).flat_map(|_| [60, 0, 0, 0, 0, 0, 0, 0]).collect();
        assert!(matches!(walk_extension_headers(DESTINATION_OPTIONS, &endless), Err(WireError::Malformed { .. })));
        // At the bound exactly, the chain is fine.
        let mut longest: Vec<u8> = (0..MAX_EXTENSION_HEADERS - 1).flat_map(|_| [60, 0, 0, 0, 0, 0, 0, 0]).collect();
        longest.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
        let walk = walk_extension_headers(DESTINATION_OPTIONS, &longest).unwrap();
        assert_eq!((walk.protocol, walk.offset), (IpProtocol(17), 8 * MAX_EXTENSION_HEADERS));
    }

    fn repr_strategy() -> impl Strategy<Value = Ipv6Repr> {
        (any::<[u8; 16]>(), any::<[u8; 16]>(), any::<u8>(), 0usize..1500, any::<u8>(), any::<u8>(), 0u32..1 << 20)
            .prop_map(|(src, dst, next, payload_len, hop_limit, traffic_class, flow_label)| Ipv6Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header: IpProtocol(next),
                payload_len,
                hop_limit,
                traffic_class,
                flow_label,
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(repr in repr_strategy()) {
            let mut bytes = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
            let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(Ipv6Repr::parse(&packet).unwrap(), repr);
            prop_assert_eq!(packet.payload().len(), repr.payload_len);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120), next in any::<u8>()) {
            if let Ok(p) = Ipv6Packet::new_checked(&bytes[..]) {
                let _ = (p.version(), p.traffic_class(), p.flow_label(), p.payload_len(), p.next_header());
                let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), p.payload(), Ipv6Repr::parse(&p));
            }
            if let Ok(walk) = walk_extension_headers(IpProtocol(next), &bytes) {
                prop_assert!(walk.offset <= bytes.len());
                for range in walk.options.iter().flatten() {
                    prop_assert!(range.end <= bytes.len());
                }
            }
        }

        #[test]
        fn chains_of_known_headers_never_panic(
            kinds in proptest::collection::vec(prop_oneof![Just(0u8), Just(43), Just(44), Just(60), Just(17)], 1..12),
            lens in proptest::collection::vec(0u8..3, 12),
            cut in 0usize..200,
        ) {
            // Random bytes rarely form a chain; this builds plausible ones
            // and then cuts them anywhere.
            let mut bytes = Vec::new();
            for (i, kind) in kinds.iter().enumerate().skip(1) {
                let len = if kinds[i - 1] == 44 { 0 } else { lens[i] };
                bytes.push(*kind);
                bytes.push(len);
                bytes.extend(std::iter::repeat_n(0u8, 6 + 8 * usize::from(len)));
            }
            bytes.truncate(cut.min(bytes.len()));
            let _ = walk_extension_headers(IpProtocol(kinds[0]), &bytes);
        }
    }
}
