//! Arbitrary bytes through the DHCP view, options iterator and parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{DhcpPacket, DhcpRepr};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = DhcpPacket::new_checked(data) {
        let _ = (p.op(), p.hardware_type(), p.hardware_len(), p.hops(), p.transaction_id(), p.secs());
        let _ = (p.broadcast_flag(), p.client_ip(), p.your_ip(), p.server_ip(), p.relay_agent_ip());
        let _ = (p.client_hardware_addr(), p.server_name(), p.boot_file(), p.magic_cookie());
        for option in p.options() {
            let _ = option;
        }
        let _ = DhcpRepr::parse(&p);
    }
});
