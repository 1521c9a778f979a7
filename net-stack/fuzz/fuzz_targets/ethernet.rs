//! Arbitrary bytes through the Ethernet II view and parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{EthernetPacket, EthernetRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = EthernetPacket::new_checked(data) {
        let _ = (p.src_addr(), p.dst_addr(), p.ethertype(), p.payload());
        let _ = EthernetRepr::parse(&p);
    }
});
