//! Arbitrary bytes as an MBR sector: parse, check against a disk size,
//! and emit what parsed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_block::Mbr;

fuzz_target!(|data: &[u8]| {
    if let Ok(mbr) = Mbr::parse(data) {
        let _ = mbr.check(1 << 20);
        let _ = mbr.is_protective();
        let mut sector = [0u8; 512];
        let _ = mbr.emit(&mut sector);
    }
});
