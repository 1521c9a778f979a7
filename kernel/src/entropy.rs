//! The CPU's entropy instructions as [`Random`] sources, and the DRBG the
//! kernel's platform draws from ([`cpu_drbg`]).
//!
//! RDSEED reads the CPU's entropy source (conditioned, NIST SP 800-90B/C),
//! RDRAND the CPU's own DRBG reseeded from it; both run unchanged under
//! Xen (which passes them through when the host CPU has them) and under
//! QEMU's `-cpu max`. Neither is trusted alone: the DRBG hashes every
//! source that answers (and platforms add theirs, such as virtio-rng).

use alloc::format;
use alloc::string::String;

use mirage_rng::{Drbg, DrbgConfig};
use mirage_types::random::{Random, RandomError};

use crate::arch::cpu;
use crate::platform::KernelClock;

/// RDRAND retries per word: Intel's guidance is that ten failures in a row
/// mean the generator is broken.
pub const RDRAND_RETRIES: u32 = 10;

/// RDSEED retries per word: it may run dry under load (each output needs
/// fresh conditioned entropy), so it gets more tries than RDRAND.
pub const RDSEED_RETRIES: u32 = 100;

/// The RDRAND instruction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rdrand;

/// The RDSEED instruction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rdseed;

/// Fills `buf` eight bytes at a time from `word`, tried `retries` times per
/// word; `Unavailable` naming `name` if the CPU lacks it or it stays dry.
fn fill_words(
    buf: &mut [u8],
    name: &str,
    present: bool,
    retries: u32,
    word: impl Fn() -> Option<u64>,
) -> Result<(), RandomError> {
    if !present {
        return Err(RandomError::Unavailable(format!(
            "the CPU has no {name} (with QEMU, use -cpu max or a host CPU model)"
        )));
    }
    for chunk in buf.chunks_mut(8) {
        let value = (0..retries)
            .find_map(|_| word())
            .ok_or_else(|| RandomError::Unavailable(format!("{name} returned no data {retries} times in a row")))?;
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

impl Random for Rdrand {
    /// Bytes from RDRAND; `Unavailable` if the CPU lacks it (CPUID.01H:ECX
    /// bit 30) or it failed [`RDRAND_RETRIES`] times in a row.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        fill_words(buf, "RDRAND", cpu::has_rdrand(), RDRAND_RETRIES, cpu::rdrand)
    }
}

impl Random for Rdseed {
    /// Bytes from RDSEED; `Unavailable` if the CPU lacks it
    /// (CPUID.07H:EBX bit 18) or it failed [`RDSEED_RETRIES`] times in a
    /// row.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        fill_words(buf, "RDSEED", cpu::has_rdseed(), RDSEED_RETRIES, cpu::rdseed)
    }
}

/// A DRBG over the CPU's sources, RDSEED and RDRAND; a platform adds its
/// device sources first with [`Drbg::add_source`].
pub fn cpu_drbg() -> Drbg<KernelClock> {
    let mut drbg = Drbg::new(KernelClock, DrbgConfig::default());
    add_cpu_sources(&mut drbg);
    drbg
}

/// Adds RDSEED and RDRAND to `drbg`.
pub fn add_cpu_sources(drbg: &mut Drbg<KernelClock>) {
    drbg.add_source("RDSEED", Rdseed);
    drbg.add_source("RDRAND", Rdrand);
}

/// What the DRBG's sources are, for a log line.
pub fn describe(drbg: &Drbg<KernelClock>) -> String {
    drbg.source_names().collect::<alloc::vec::Vec<_>>().join(", ")
}
