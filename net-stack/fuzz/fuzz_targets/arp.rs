//! Arbitrary bytes through the ARP view and parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{ArpPacket, ArpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = ArpPacket::new_checked(data) {
        let _ = (p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len(), p.operation());
        let _ =
            (p.source_hardware_addr(), p.source_protocol_addr(), p.target_hardware_addr(), p.target_protocol_addr());
        let _ = ArpRepr::parse(&p);
    }
});
