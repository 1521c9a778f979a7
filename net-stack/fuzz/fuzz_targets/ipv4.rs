//! Arbitrary bytes through the IPv4 view, parser and quoted-header parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{Ipv4Packet, Ipv4Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        let _ = (p.version(), p.header_len(), p.dscp(), p.ecn(), p.total_len(), p.ident());
        let _ = (p.dont_fragment(), p.more_fragments(), p.fragment_offset(), p.ttl(), p.protocol());
        let _ = (p.checksum(), p.src_addr(), p.dst_addr(), p.verify_checksum(), p.payload());
        let _ = Ipv4Repr::parse(&p);
    }
    let _ = Ipv4Repr::parse_quoted(data);
});
