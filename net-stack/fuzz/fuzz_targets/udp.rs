//! Arbitrary bytes through the UDP view and parser.
#![no_main]
use core::net::Ipv4Addr;
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{UdpPacket, UdpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = UdpPacket::new_checked(data) {
        let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
        let _ = UdpRepr::parse(&p, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    }
});
