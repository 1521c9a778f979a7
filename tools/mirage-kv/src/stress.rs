//! `mirage-kv stress`: the workload a supervisor kills with SIGKILL to test
//! LogKv's crash safety on a real file (tools/mirage-kv/tests/sigkill.rs).
//!
//! It mounts the LogKv image, then performs random sets, renames and
//! removes of values at keys `d0/k0` .. `d3/k7` (two levels, values only, so
//! a supervisor's model is a plain map) and reports on standard output, one
//! line each, flushed before the next operation starts:
//!
//! ```text
//! begin set d1/k3 <sha256 hex of the new value>
//! ok
//! begin mv d1/k3 d0/k0
//! ok
//! begin rm d0/k0
//! ok
//! ```
//!
//! A `begin` line is printed before the operation starts and `ok` after it
//! returned `Ok` (durable). Each line is one `write` of less than
//! `PIPE_BUF` bytes, so a kill never leaves half a line in a pipe.

use std::collections::BTreeSet;
use std::io::Write;

use mirage_block::LogKv;
use mirage_types::block::BlockDevice;
use mirage_types::kv::{Key, KvRead, KvWrite};
use mirage_types::time::WallClock;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;
use sha2::{Digest, Sha256};

/// Largest value the workload writes: large enough for multi-sector records
/// and frequent compaction on a small image.
const MAX_VALUE: u64 = 3000;
/// The keys the workload uses.
const DIRS: u64 = 4;
const NAMES: u64 = 8;

/// The workload's choices: SplitMix64, seeded, so a run can be replayed.
struct Choices(SplitMix64);

impl Choices {
    fn new(seed: u64) -> Choices {
        Choices(SplitMix64::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn key(&mut self) -> String {
        format!("d{}/k{}", self.below(DIRS), self.below(NAMES))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(path: &str) -> Result<Key, String> {
    Key::parse(path).map_err(|e| format!("{path}: {e}"))
}

/// Prints one line and flushes it, so it reaches the supervisor before the
/// next operation starts.
fn report(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to standard output: {e}"))
}

/// Runs `ops` random operations (seeded by `seed`) on `store`.
pub async fn run<B: BlockDevice, C: WallClock>(store: &LogKv<B, C>, seed: u64, ops: u64) -> Result<(), String> {
    // The values present, to pick valid removes and renames.
    let mut present = BTreeSet::new();
    for d in 0..DIRS {
        let dir = key(&format!("d{d}"))?;
        match store.list(&dir).await {
            Ok(names) => present.extend(names.into_iter().map(|(name, _)| format!("d{d}/{name}"))),
            Err(e) if mirage_types::kv::Error::kind(&e) == mirage_types::kv::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("listing {dir}: {e}")),
        }
    }
    let mut rng = Choices::new(seed);
    for _ in 0..ops {
        let existing: Vec<String> = present.iter().cloned().collect();
        let choice = rng.below(10);
        if existing.is_empty() || choice < 6 {
            let path = rng.key();
            let len = rng.below(MAX_VALUE + 1) as usize;
            let fill = rng.next();
            let mut value_rng = Choices::new(fill);
            let value: Vec<u8> = (0..len).map(|_| value_rng.next() as u8).collect();
            report(&format!("begin set {path} {}", hex(&Sha256::digest(&value))))?;
            store.set(&key(&path)?, &value).await.map_err(|e| format!("set {path}: {e}"))?;
            present.insert(path);
        } else if choice < 8 {
            let from = existing[rng.below(existing.len() as u64) as usize].clone();
            let to = rng.key();
            report(&format!("begin mv {from} {to}"))?;
            store.rename(&key(&from)?, &key(&to)?).await.map_err(|e| format!("rename {from} to {to}: {e}"))?;
            if from != to {
                present.remove(&from);
                present.insert(to);
            }
        } else {
            let path = existing[rng.below(existing.len() as u64) as usize].clone();
            report(&format!("begin rm {path}"))?;
            store.remove(&key(&path)?).await.map_err(|e| format!("remove {path}: {e}"))?;
            present.remove(&path);
        }
        report("ok")?;
    }
    Ok(())
}
