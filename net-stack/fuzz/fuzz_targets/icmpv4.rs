//! Arbitrary bytes through the ICMPv4 view and parser. The first byte
//! chooses whether to fix the checksum, so the type-specific parsing runs
//! instead of stopping at the checksum.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::wire::{Icmpv4Packet, Icmpv4Repr};

fuzz_target!(|data: &[u8]| {
    let Some((&fix, data)) = data.split_first() else { return };
    let mut bytes = data.to_vec();
    if fix & 1 == 1 && bytes.len() >= 8 {
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
    }
    if let Ok(p) = Icmpv4Packet::new_checked(&bytes[..]) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum(), p.echo_ident(), p.echo_seq_no());
        let _ = (p.next_hop_mtu(), p.verify_checksum(), p.data());
        let _ = Icmpv4Repr::parse(&p);
    }
});
