//! Throughput of the Internet checksum against a copy of the same buffer.
//!
//! Run in release, where the numbers mean something:
//!
//! ```text
//! cargo run --release -p mirage-net-stack --example checksum_bench
//! ```
//!
//! For each buffer size it prints GB/s for `checksum::data`, for a plain
//! RFC 1071 loop over 16-bit words (what the fast path replaces), and for
//! `copy_from_slice` of the same buffer (memcpy), the peer the brief asks
//! us to compare with: a checksum that keeps up with a copy is not the
//! bottleneck of a stack that copies each packet at least once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mirage_net_stack::wire::checksum;

/// Bytes each measurement processes, so small and large buffers run a
/// comparable time.
const BYTES_PER_RUN: usize = 1 << 30;

/// RFC 1071 §4.1 transcribed: one 16-bit word per step.
fn word_by_word(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    checksum::fold(sum)
}

/// Runs `op` over enough iterations to process `BYTES_PER_RUN` bytes,
/// three times, and returns the best GB/s (the least disturbed run on a
/// shared machine).
fn measure(len: usize, mut op: impl FnMut()) -> f64 {
    let iterations = (BYTES_PER_RUN / len).max(1);
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..iterations {
            op();
        }
        best = best.min(start.elapsed());
    }
    (iterations * len) as f64 / best.as_secs_f64() / 1e9
}

fn main() {
    println!("{:>9} {:>14} {:>14} {:>14}", "bytes", "checksum GB/s", "16-bit GB/s", "memcpy GB/s");
    for len in [64usize, 576, 1500, 9000, 65536, 1 << 20] {
        // Deterministic non-trivial contents; an odd offset tests the
        // unaligned path the way a packet after a 14-byte header is.
        let backing: Vec<u8> = (0..len + 1).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let src = &backing[1..];
        let mut dst = vec![0u8; len];
        assert_eq!(checksum::data(src), word_by_word(src), "fast and plain sums disagree");
        let fast = measure(len, || {
            black_box(checksum::data(black_box(src)));
        });
        let plain = measure(len, || {
            black_box(word_by_word(black_box(src)));
        });
        let copy = measure(len, || {
            black_box(&mut dst[..]).copy_from_slice(black_box(src));
        });
        println!("{len:>9} {fast:>14.2} {plain:>14.2} {copy:>14.2}");
    }
}
