//! The `tcp_connection` fuzz target's driver under proptest, so every
//! `cargo test` feeds arbitrary segments to a TCP connection in each state
//! (see `mirage_net_stack::tcp::fuzz_driver` for the invariants checked).

use mirage_net_stack::tcp::fuzz_driver::{run, Prologue};
use proptest::prelude::*;

/// Bytes of script after the two prologue bytes: about 40 steps.
const SCRIPT_LEN: usize = 600;

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_segments_keep_invariants(
        prologue in 0..Prologue::ALL.len(),
        bits in any::<u8>(),
        script in proptest::collection::vec(any::<u8>(), 0..SCRIPT_LEN),
    ) {
        let mut data = vec![prologue as u8, bits];
        data.extend_from_slice(&script);
        let outcome = run(&data);
        prop_assert_eq!(outcome.prologue, Prologue::ALL[prologue]);
        prop_assert_eq!(outcome.state_after_prologue, Prologue::ALL[prologue].state());
    }
}

/// Scripts that mostly send in-order data with valid ACKs reach the
/// buffer bounds, unlike uniformly random bytes.
#[test]
fn in_order_floods_stay_within_bounds() {
    for prologue in 0..Prologue::ALL.len() as u8 {
        for bits in [0x08u8, 0x48, 0x00] {
            let mut data = vec![prologue, bits];
            for i in 0..200u32 {
                // Every fourth step reads; every step sends 1400 bytes
                // in order with an ACK of everything.
                let control = if i % 4 == 0 { 10 << 2 } else { 1 };
                data.extend_from_slice(&[control, 5, 0x10, 0, 0, 0xff, 0xff, 0, 0x05, 0x78]);
            }
            let outcome = run(&data);
            assert_eq!(outcome.steps, 200, "prologue {prologue}");
        }
    }
}
