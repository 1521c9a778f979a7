//! Arbitrary segments, timer advances and user calls against a TCP
//! connection brought into any state by a scripted prologue; the driver
//! (`mirage_net_stack::tcp::fuzz_driver`) panics when an invariant breaks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mirage_net_stack::tcp::fuzz_driver;

fuzz_target!(|data: &[u8]| {
    fuzz_driver::run(data);
});
