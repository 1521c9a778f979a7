//! A ChaCha20 DRBG behind [`Random`], seeded and reseeded from a
//! platform's entropy sources.
//!
//! Entropy devices are slow (a virtio-rng request is a round trip to the
//! host) or narrow (RDRAND gives 8 bytes per instruction), and none of them
//! should be the only thing between a peer and our TCP sequence numbers.
//! [`Drbg`] asks its sources once to seed, then produces any amount of
//! output from ChaCha20 without them, and mixes in fresh entropy from time
//! to time. Decision 0010 says why this design and these crates.
//!
//! # What it guarantees
//!
//! - **Seeded from real entropy, or it fails.** The first [`Random::fill`]
//!   asks every source for [`DrbgConfig::bytes_per_source`] bytes and
//!   hashes all that answered into the key (SHA-256). If no source is
//!   configured or none answers, the fill fails with
//!   [`ErrorKind::Unavailable`](mirage_types::random::ErrorKind::Unavailable),
//!   naming each source and why: there is no weak fallback.
//! - **Never blocks or fails after that.** Output comes from ChaCha20
//!   keyed by the state (RFC 8439's block function, 20 rounds); a reseed
//!   whose sources all fail keeps the current key and is counted
//!   ([`DrbgStats::reseeds_without_entropy`]).
//! - **Reseeded periodically**: after [`DrbgConfig::reseed_after_bytes`] of
//!   output or [`DrbgConfig::reseed_interval`] of time, whichever comes
//!   first, the new key hashes the old one with fresh bytes from every
//!   source that answers. A source that was compromised or broken when the
//!   state was seeded stops mattering once one good source has answered a
//!   reseed.
//! - **Forward secrecy per call**: each fill ends by replacing the key
//!   with 32 bytes of the stream that were never output ("fast key
//!   erasure"), so whoever reads the state afterwards cannot recompute
//!   what was output before.
//!
//! Not guaranteed: protection against a reader of memory *during* a fill,
//! or against an attacker who controls every source at seeding time. The
//! state is not cleared from memory when the DRBG is dropped (no unsafe
//! code here to do so reliably).
//!
//! # Example
//!
//! ```
//! use mirage_rng::{Drbg, DrbgConfig};
//! use mirage_testkit::{SeededRandom, VirtualClock};
//! use mirage_types::random::Random;
//!
//! // A platform adds its real sources (virtio-rng, RDSEED, RDRAND, the
//! // host's getrandom); a seeded generator stands in for one here.
//! let mut drbg = Drbg::new(VirtualClock::new(), DrbgConfig::default());
//! drbg.add_source("example", SeededRandom::new(7));
//! let mut key = [0u8; 32];
//! drbg.fill(&mut key).expect("a source answered");
//! assert_eq!(drbg.stats().sources_at_last_seed, 1);
//! ```

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::time::Duration;

use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

/// What the first seed hashes before the sources' bytes.
const SEED_LABEL: &[u8] = b"mirage-rng seed\0";
/// What a reseed hashes before the old key and the sources' bytes.
const RESEED_LABEL: &[u8] = b"mirage-rng reseed\0";

/// When to reseed, and how much to ask of each source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrbgConfig {
    /// Bytes asked of each source at every seed and reseed. Default 32
    /// (256 bits, the key's size).
    pub bytes_per_source: usize,
    /// Output after which the next fill reseeds first. Default 1 MiB.
    pub reseed_after_bytes: u64,
    /// Time after which the next fill reseeds first. Default 5 minutes.
    pub reseed_interval: Duration,
}

impl Default for DrbgConfig {
    fn default() -> DrbgConfig {
        DrbgConfig { bytes_per_source: 32, reseed_after_bytes: 1 << 20, reseed_interval: Duration::from_secs(300) }
    }
}

/// Counters of a [`Drbg`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrbgStats {
    /// Bytes output.
    pub bytes: u64,
    /// Reseeds done (the first seed not counted).
    pub reseeds: u64,
    /// Reseeds at which no source answered (the key was kept).
    pub reseeds_without_entropy: u64,
    /// Requests to a source that failed, at seeds and reseeds.
    pub source_failures: u64,
    /// Sources that answered at the last seed or reseed.
    pub sources_at_last_seed: usize,
}

/// One source of entropy, by name.
struct Source {
    name: &'static str,
    random: Box<dyn Random>,
}

#[derive(Debug)]
struct State {
    key: [u8; 32],
    output_since_reseed: u64,
    reseeded_at: Instant,
}

/// A ChaCha20 DRBG seeded from the sources given with
/// [`Drbg::add_source`]; see the crate documentation for what it
/// guarantees. Single-threaded, like the platforms it serves.
pub struct Drbg<C> {
    clock: C,
    config: DrbgConfig,
    sources: Vec<Source>,
    /// `None` until the first fill seeds it.
    state: RefCell<Option<State>>,
    stats: Cell<DrbgStats>,
}

impl<C> core::fmt::Debug for Drbg<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the key.
        let names: Vec<&str> = self.sources.iter().map(|s| s.name).collect();
        f.debug_struct("Drbg").field("sources", &names).field("stats", &self.stats.get()).finish_non_exhaustive()
    }
}

impl<C: MonotonicClock> Drbg<C> {
    /// A DRBG with no source yet; it is seeded at the first fill.
    pub fn new(clock: C, config: DrbgConfig) -> Drbg<C> {
        Drbg { clock, config, sources: Vec::new(), state: RefCell::new(None), stats: Cell::new(DrbgStats::default()) }
    }

    /// Adds an entropy source, asked at every seed and reseed. Each source
    /// must be unpredictable on its own: one that merely varies (a clock's
    /// low bits) would let a DRBG with no other answer seed from it.
    pub fn add_source(&mut self, name: &'static str, source: impl Random + 'static) {
        self.sources.push(Source { name, random: Box::new(source) });
    }

    /// The names of the sources, in the order they are asked.
    pub fn source_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.sources.iter().map(|s| s.name)
    }

    /// Counters so far.
    pub fn stats(&self) -> DrbgStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut DrbgStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Hashes each source's answer into `hasher`; returns how many
    /// answered and, for those that did not, why.
    fn gather(&self, hasher: &mut Sha256) -> (usize, Vec<String>) {
        let mut bytes = alloc::vec![0u8; self.config.bytes_per_source];
        let (mut answered, mut failures) = (0, Vec::new());
        for source in &self.sources {
            match source.random.fill(&mut bytes) {
                Ok(()) => {
                    // Length-prefixed, so two sources' bytes cannot be
                    // shifted between them.
                    hasher.update([source.name.len() as u8]);
                    hasher.update(source.name.as_bytes());
                    hasher.update((bytes.len() as u32).to_le_bytes());
                    hasher.update(&bytes);
                    answered += 1;
                }
                Err(e) => {
                    // The kind is said once, by the caller's error.
                    let why = match e {
                        RandomError::Unavailable(why) => why,
                        other => other.to_string(),
                    };
                    failures.push(format!("{}: {why}", source.name));
                }
            }
        }
        self.count(|s| {
            s.source_failures += failures.len() as u64;
            s.sources_at_last_seed = answered;
        });
        (answered, failures)
    }

    /// The first key, from the sources, or why there is none.
    fn seed(&self, now: Instant) -> Result<State, RandomError> {
        if self.sources.is_empty() {
            return Err(RandomError::Unavailable(String::from("the DRBG has no entropy source")));
        }
        let mut hasher = Sha256::new();
        hasher.update(SEED_LABEL);
        let (answered, failures) = self.gather(&mut hasher);
        if answered == 0 {
            return Err(RandomError::Unavailable(format!(
                "none of the DRBG's sources answered ({})",
                failures.join("; ")
            )));
        }
        Ok(State { key: hasher.finalize().into(), output_since_reseed: 0, reseeded_at: now })
    }

    /// Mixes fresh entropy into `state`'s key; keeps the key if no source
    /// answers.
    fn reseed(&self, state: &mut State, now: Instant) {
        let mut hasher = Sha256::new();
        hasher.update(RESEED_LABEL);
        hasher.update(state.key);
        let (answered, _) = self.gather(&mut hasher);
        if answered == 0 {
            self.count(|s| s.reseeds_without_entropy += 1);
        } else {
            state.key = hasher.finalize().into();
            self.count(|s| s.reseeds += 1);
        }
        // Either way the next attempt waits a full period: a source that is
        // down is not asked at every fill.
        state.output_since_reseed = 0;
        state.reseeded_at = now;
    }

    fn reseed_due(&self, state: &State, now: Instant) -> bool {
        state.output_since_reseed >= self.config.reseed_after_bytes
            || now - state.reseeded_at >= self.config.reseed_interval
    }
}

impl<C: MonotonicClock> Random for Drbg<C> {
    /// Fills `buf` from ChaCha20 keyed by the state, seeding it first if
    /// this is the first fill and reseeding it if one is due, then
    /// replaces the key. Fails only at the first fill, when no source
    /// answers.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let now = self.clock.now();
        let mut slot = self.state.borrow_mut();
        let state = match slot.as_mut() {
            Some(state) => {
                if self.reseed_due(state, now) {
                    self.reseed(state, now);
                }
                state
            }
            None => slot.insert(self.seed(now)?),
        };
        let mut stream = ChaCha20Rng::from_seed(state.key);
        stream.fill_bytes(buf);
        stream.fill_bytes(&mut state.key);
        state.output_since_reseed = state.output_since_reseed.saturating_add(buf.len() as u64);
        self.count(|s| s.bytes = s.bytes.saturating_add(buf.len() as u64));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
