//! Arbitrary bytes through the IPv6 view and parser, and through the
//! extension header walk from the fixed header's Next Header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::ipv6::walk_extension_headers;
use mirage_net_stack::wire::{Ipv6Packet, Ipv6Repr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        let _ = (p.version(), p.traffic_class(), p.flow_label(), p.payload_len(), p.next_header());
        let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), Ipv6Repr::parse(&p));
        if let Ok(walk) = walk_extension_headers(p.next_header(), p.payload()) {
            assert!(walk.offset <= p.payload().len());
        }
    }
});
