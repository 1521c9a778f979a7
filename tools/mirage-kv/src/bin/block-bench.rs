//! `block-bench`: block-device and key-value store throughput on the host,
//! each beside a peer measured in the same run.
//!
//! ```text
//! cargo run --release -p mirage-kv --bin block-bench -- [--dir DIR] [--size 256M] [--seconds 2]
//! ```
//!
//! On one file of `--size` bytes in a fresh directory below `--dir`:
//!
//! - sequential 1 MiB and random 4 KiB reads and writes, at queue depths 1
//!   and 16 (16 futures with a request each, on one event loop), through
//!   `FileBlock` (platform-unix's positional-I/O device, 4096-byte sectors)
//!   and through `mirage_block::Cache` over it (64 MiB), beside `fio` on the
//!   same file with the same pattern (io_uring, buffered like ours; `SKIP`
//!   if fio is not installed: Debian package `fio`). Writes end with a
//!   flush (`fio --end_fsync=1`), which the time includes.
//! - LogKv `set` (durable: each one is flushed) and `get` of 1 KiB values
//!   over 1000 keys, beside a file-per-key store on the host file system
//!   whose `set` is as durable (write a temporary file, fdatasync, rename,
//!   fsync the directory) and whose `get` reads the file.
//!
//! Everything goes through the host's page cache, for us and for fio alike,
//! so reads of a file just written measure memory copies, not the disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::executor::block_on;
use futures::future::join_all;
use mirage_block::{Cache, FormatOptions, LogKv};
use mirage_platform_unix::{FileBlock, FileBlockOptions};
use mirage_types::block::BlockDevice;
use mirage_types::kv::{Key, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::SplitMix64;

#[derive(Parser)]
#[command(
    name = "block-bench",
    about = "Block device and key-value store throughput, beside fio and the host file system"
)]
struct Args {
    /// Where to make the temporary directory holding the test files.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Size of the block test file, e.g. 256M (suffixes K, M, G).
    #[arg(long, default_value = "256M")]
    size: String,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// Sector size of the block benchmarks (fio's 4 KiB random requests).
const SECTOR: u32 = 4096;
/// The cache's capacity in bytes.
const CACHE_BYTES: usize = 64 << 20;
const SEQ_BYTES: usize = 1 << 20;
const RAND_BYTES: usize = 4096;
const KV_KEYS: u64 = 1000;
const KV_VALUE: usize = 1024;

#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    SeqRead,
    SeqWrite,
    RandRead,
    RandWrite,
}

impl Pattern {
    const ALL: [Pattern; 4] = [Pattern::SeqRead, Pattern::SeqWrite, Pattern::RandRead, Pattern::RandWrite];

    fn name(self) -> &'static str {
        match self {
            Pattern::SeqRead => "seq read 1M",
            Pattern::SeqWrite => "seq write 1M",
            Pattern::RandRead => "rand read 4K",
            Pattern::RandWrite => "rand write 4K",
        }
    }

    fn fio_rw(self) -> &'static str {
        match self {
            Pattern::SeqRead => "read",
            Pattern::SeqWrite => "write",
            Pattern::RandRead => "randread",
            Pattern::RandWrite => "randwrite",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Pattern::SeqRead | Pattern::SeqWrite => SEQ_BYTES,
            Pattern::RandRead | Pattern::RandWrite => RAND_BYTES,
        }
    }

    fn writes(self) -> bool {
        matches!(self, Pattern::SeqWrite | Pattern::RandWrite)
    }
}

/// One line of the table.
struct Row {
    what: String,
    /// Requests (or key-value operations) per second; `None` for SKIP.
    rate: Option<f64>,
    /// MiB per second, for block rows.
    mib: Option<f64>,
    note: String,
}

fn print_table(rows: &[Row]) {
    println!("{:<44} {:>12} {:>10}  note", "benchmark", "ops/s", "MiB/s");
    for row in rows {
        let rate = row.rate.map_or("SKIP".to_string(), |r| format!("{r:.0}"));
        let mib = row.mib.map_or("-".to_string(), |m| format!("{m:.1}"));
        println!("{:<44} {:>12} {:>10}  {}", row.what, rate, mib, row.note);
    }
}

/// Runs `pattern` at queue depth `depth` on `dev` for `time`; returns
/// requests per second.
async fn run_block<B: BlockDevice>(dev: &B, pattern: Pattern, depth: usize, time: Duration) -> Result<f64, String> {
    let sectors = dev.info().sector_count;
    let per_request = (pattern.bytes() / SECTOR as usize) as u64;
    let slots = sectors / per_request;
    let cursor = std::cell::Cell::new(0u64);
    let done = std::cell::Cell::new(0u64);
    let start = Instant::now();
    let deadline = start + time;
    let workers = (0..depth).map(|w| {
        let (cursor, done) = (&cursor, &done);
        async move {
            let mut buf = vec![0xa5u8; pattern.bytes()];
            let mut rng = SplitMix64::seed_from_u64(w as u64);
            while Instant::now() < deadline {
                let slot = match pattern {
                    Pattern::SeqRead | Pattern::SeqWrite => {
                        let s = cursor.get();
                        cursor.set((s + 1) % slots);
                        s
                    }
                    _ => rng.next_u64() % slots,
                };
                let at = slot * per_request;
                let result = if pattern.writes() { dev.write(at, &buf).await } else { dev.read(at, &mut buf).await };
                result.map_err(|e| format!("{} at sector {at}: {e}", pattern.name()))?;
                done.set(done.get() + 1);
                // Let the other futures issue their requests.
                yield_now().await;
            }
            Ok::<(), String>(())
        }
    });
    join_all(workers).await.into_iter().collect::<Result<Vec<()>, String>>()?;
    if pattern.writes() {
        dev.flush().await.map_err(|e| format!("flush: {e}"))?;
    }
    Ok(done.get() as f64 / start.elapsed().as_secs_f64())
}

/// Returns `Pending` once, so that `join_all` moves on to the next future.
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// Runs fio with `pattern` at `depth` on `path`: requests per second, or
/// why not.
fn run_fio(path: &Path, size: u64, pattern: Pattern, depth: usize, seconds: f64) -> Result<f64, String> {
    let out = Command::new("fio")
        .args([
            "--name=bench",
            &format!("--filename={}", path.display()),
            &format!("--size={size}"),
            &format!("--rw={}", pattern.fio_rw()),
            &format!("--bs={}", pattern.bytes()),
            &format!("--iodepth={depth}"),
            "--ioengine=io_uring",
            "--direct=0",
            "--time_based",
            &format!("--runtime={}ms", (seconds * 1000.0) as u64),
            if pattern.writes() { "--end_fsync=1" } else { "--end_fsync=0" },
            "--output-format=terse",
            "--terse-version=3",
        ])
        .output()
        .map_err(|e| format!("fio not runnable ({e}): install the Debian package fio"))?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("3;")).ok_or("fio printed no terse line")?;
    let fields: Vec<&str> = line.split(';').collect();
    // Terse v3: field 8 (index 7) is read IOPS, field 49 (index 48) write IOPS.
    let index = if pattern.writes() { 48 } else { 7 };
    fields.get(index).and_then(|f| f.parse::<f64>().ok()).ok_or_else(|| format!("fio terse line too short: {line}"))
}

struct SystemClock;

impl WallClock for SystemClock {
    fn wall_time(&self) -> PosixTime {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        PosixTime::new(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()).unwrap_or_default()
    }
}

/// Operations per second of `op` run for `time` (at least once), and how
/// many ran.
fn per_second(time: Duration, mut op: impl FnMut(u64) -> Result<(), String>) -> Result<(f64, u64), String> {
    let start = Instant::now();
    let mut n = 0u64;
    while n == 0 || start.elapsed() < time {
        op(n)?;
        n += 1;
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), n))
}

fn kv_rows(dir: &Path, time: Duration) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let value: Vec<u8> = {
        let mut rng = SplitMix64::seed_from_u64(7);
        (0..KV_VALUE).map(|_| rng.next_u64() as u8).collect()
    };
    let keys: Vec<Key> = (0..KV_KEYS).map(|i| Key::parse(&format!("bench/k{i}")).expect("valid key")).collect();

    let image = dir.join("logkv.img");
    File::create(&image).and_then(|f| f.set_len(64 << 20)).map_err(|e| format!("{}: {e}", image.display()))?;
    let dev = FileBlock::open(&image, FileBlockOptions::default()).map_err(|e| e.to_string())?;
    let store = block_on(LogKv::format(dev, SystemClock, FormatOptions::default())).map_err(|e| e.to_string())?;
    let (set, sets) = per_second(time, |i| {
        block_on(store.set(&keys[(i % KV_KEYS) as usize], &value)).map_err(|e| format!("LogKv set: {e}"))
    })?;
    // Gets pick among the keys the sets reached.
    let present = sets.min(KV_KEYS);
    let mut rng = SplitMix64::seed_from_u64(1);
    let (get, _) = per_second(time, |_| {
        let key = &keys[(rng.next_u64() % present) as usize];
        block_on(store.get(key)).map(drop).map_err(|e| format!("LogKv get: {e}"))
    })?;
    let note = format!("{KV_VALUE}-byte values, {KV_KEYS} keys, 64 MiB image, 512-byte sectors");
    rows.push(Row { what: "LogKv set (durable)".into(), rate: Some(set), mib: None, note: note.clone() });
    rows.push(Row { what: "LogKv get".into(), rate: Some(get), mib: None, note });

    let files = dir.join("files");
    std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
    let dir_handle = File::open(&files).map_err(|e| format!("{}: {e}", files.display()))?;
    let (set, sets) = per_second(time, |i| {
        let path = files.join(format!("k{}", i % KV_KEYS));
        let tmp = files.join("tmp");
        let mut f = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(&value).and_then(|()| f.sync_data()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        dir_handle.sync_all().map_err(|e| format!("{}: {e}", files.display()))
    })?;
    let present = sets.min(KV_KEYS);
    let mut rng = SplitMix64::seed_from_u64(1);
    let (get, _) = per_second(time, |_| {
        let path = files.join(format!("k{}", rng.next_u64() % present));
        std::fs::read(&path).map(drop).map_err(|e| format!("{}: {e}", path.display()))
    })?;
    let note = "write tmp + fdatasync + rename + fsync dir; get = read the file".to_string();
    rows.push(Row { what: "file per key set (durable)".into(), rate: Some(set), mib: None, note: note.clone() });
    rows.push(Row { what: "file per key get".into(), rate: Some(get), mib: None, note });
    Ok(rows)
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("size {s:?} is not a number with an optional K, M or G"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

fn run(args: &Args) -> Result<(), String> {
    let size = parse_size(&args.size)? / SEQ_BYTES as u64 * SEQ_BYTES as u64;
    if size == 0 {
        return Err(format!("--size {} is smaller than one 1 MiB request", args.size));
    }
    if !(args.seconds > 0.0 && args.seconds <= 600.0) {
        return Err(format!("--seconds {} is not in (0, 600]", args.seconds));
    }
    let time = Duration::from_secs_f64(args.seconds);
    let dir =
        tempfile::tempdir_in(&args.dir).map_err(|e| format!("temporary directory in {}: {e}", args.dir.display()))?;
    let path = dir.path().join("block.img");
    // Written in full (not sparse), so reads find data and fio needs no layout.
    {
        let mut f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let chunk = vec![0x5au8; SEQ_BYTES];
        for _ in 0..size / SEQ_BYTES as u64 {
            f.write_all(&chunk).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        f.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!("$ {}", std::env::args().collect::<Vec<_>>().join(" "));
    println!("file {} ({} MiB), {} s per measurement", path.display(), size >> 20, args.seconds);
    let options = FileBlockOptions { sector_size: SECTOR, ..FileBlockOptions::default() };
    let file = FileBlock::open(&path, options).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for pattern in Pattern::ALL {
        for depth in [1, 16] {
            let label = |dev: &str| format!("{dev} {} QD{depth}", pattern.name());
            let mib = |rate: f64| rate * pattern.bytes() as f64 / f64::from(1 << 20);
            let ours = block_on(run_block(&file, pattern, depth, time))?;
            rows.push(Row { what: label("FileBlock"), rate: Some(ours), mib: Some(mib(ours)), note: String::new() });
            let cache = Cache::new(&file, CACHE_BYTES / SECTOR as usize).map_err(|e| e.to_string())?;
            let cached = block_on(run_block(&cache, pattern, depth, time))?;
            let note = "64 MiB cache, cold at start".to_string();
            rows.push(Row { what: label("Cache<FileBlock>"), rate: Some(cached), mib: Some(mib(cached)), note });
            match run_fio(&path, size, pattern, depth, args.seconds) {
                Ok(rate) => rows.push(Row {
                    what: label("fio"),
                    rate: Some(rate),
                    mib: Some(mib(rate)),
                    note: "io_uring, buffered".into(),
                }),
                Err(why) => rows.push(Row { what: label("fio"), rate: None, mib: None, note: why }),
            }
        }
    }
    rows.extend(kv_rows(dir.path(), time)?);
    print_table(&rows);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("block-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
