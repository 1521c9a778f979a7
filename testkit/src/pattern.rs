//! Test data that shows a misplaced, lost or corrupted byte.

use alloc::vec::Vec;

/// `len` deterministic pseudo-random bytes from `seed` (xorshift64 with
/// shifts 13, 7, 17, keeping the low byte of each step).
///
/// Unlike a counter or a repeated block, no window of the output recurs at
/// a short distance, so bytes delivered at the wrong offset, twice, or
/// from another stream do not compare equal by chance. Different seeds
/// give different streams; a seed and `seed | 1` give the same one.
///
/// ```
/// let data = mirage_testkit::pattern(7, 1000);
/// assert_eq!(data.len(), 1000);
/// assert_eq!(data, mirage_testkit::pattern(7, 1000));
/// assert_ne!(data, mirage_testkit::pattern(8, 1000));
/// ```
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    // Zero is xorshift's one fixed point.
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_pattern_is_a_prefix_of_a_longer_one() {
        let long = pattern(42, 4096);
        assert_eq!(pattern(42, 100)[..], long[..100]);
        // No 64-byte window reappears 1 to 1024 bytes later.
        for shift in 1..1024 {
            assert_ne!(long[..64], long[shift..shift + 64], "repeats after {shift} bytes");
        }
    }

    #[test]
    fn first_bytes_are_stable() {
        // The bytes every test written against this function has seen.
        assert_eq!(pattern(1, 8), [0x41, 0x41, 0x29, 0x25, 0x65, 0x01, 0x71, 0x0d]);
    }
}
