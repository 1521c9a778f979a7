//! `mirage-kv`: create, inspect and check mirage-rs key-value store images
//! (LogKv and tar) from the host.
//!
//! Read commands (`ls`, `cat`, `fsck`) detect the image's format; `put`
//! and `rm` need a LogKv image. Every failure prints what failed and where
//! on stderr and exits with status 1.

mod image;
mod progress;
mod stress;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};
use futures::executor::block_on;
use mirage_block::{FormatOptions, LogKv, TarKv};
use mirage_types::block::BlockDevice;
use mirage_types::kv::{EntryKind, Key, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};

use image::{ImageFile, SECTOR};
use progress::{Measure, Progress};

#[derive(Parser)]
#[command(name = "mirage-kv", version, about = "Create, inspect and check mirage-rs key-value store images")]
struct Cli {
    /// On work that takes longer, print a progress line to stderr every SECS
    /// seconds (bytes done and total); 0 turns progress off.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 2.0)]
    progress: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create IMAGE as an empty LogKv store of SIZE bytes (suffixes K, M, G).
    Format {
        /// The image file to create (overwritten if it exists).
        image: PathBuf,
        /// Size of the image, e.g. 64M.
        #[arg(long)]
        size: String,
    },
    /// List the dictionary KEY (default: the root); dictionaries end in '/'.
    Ls {
        /// The image file.
        image: PathBuf,
        /// The dictionary to list.
        key: Option<String>,
    },
    /// Write the value at KEY to standard output.
    Cat {
        /// The image file.
        image: PathBuf,
        /// The value's key.
        key: String,
    },
    /// Set KEY to the contents of FILE (or standard input, with '-' or no FILE).
    Put {
        /// The LogKv image file.
        image: PathBuf,
        /// The key to set.
        key: String,
        /// Where the value comes from.
        file: Option<PathBuf>,
    },
    /// Remove the value or dictionary at KEY.
    Rm {
        /// The LogKv image file.
        image: PathBuf,
        /// The key to remove.
        key: String,
    },
    /// Check the image: every record and value of a LogKv store, every header and value of a tar one.
    Fsck {
        /// The image file.
        image: PathBuf,
    },
    /// Create IMAGE holding the files below DIR.
    Build {
        /// The image file to create (overwritten if it exists).
        image: PathBuf,
        /// The directory to copy.
        #[arg(long)]
        from: PathBuf,
        /// The store format.
        #[arg(long, value_enum, default_value_t = StoreFormat::Logkv)]
        format: StoreFormat,
        /// Size of a LogKv image (default: room for the files twice over, plus 1 MiB).
        #[arg(long)]
        size: Option<String>,
    },
    /// The workload of the SIGKILL test: random sets, renames and removes on
    /// a LogKv IMAGE, each reported on stdout (see src/stress.rs).
    #[command(hide = true)]
    Stress {
        /// The LogKv image file.
        image: PathBuf,
        /// Seeds the operations.
        #[arg(long)]
        seed: u64,
        /// How many operations to run.
        #[arg(long, default_value_t = u64::MAX)]
        ops: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreFormat {
    /// A read-write LogKv store.
    Logkv,
    /// A read-only tar archive (ustar with GNU long names).
    Tar,
}

/// The host's wall clock, or a fixed time if `SOURCE_DATE_EPOCH` is set
/// (seconds since 1970, as reproducible builds use it): then images made
/// from the same input are byte-for-byte the same (the record times and the
/// epoch a new store starts from both come from this clock).
struct SystemClock {
    fixed: Option<PosixTime>,
}

impl SystemClock {
    fn new() -> SystemClock {
        let fixed = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<i64>().ok());
        SystemClock { fixed: fixed.and_then(|secs| PosixTime::new(secs, 0)) }
    }
}

impl WallClock for SystemClock {
    fn wall_time(&self) -> PosixTime {
        if let Some(t) = self.fixed {
            return t;
        }
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        PosixTime::new(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()).unwrap_or_default()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let interval = (cli.progress.is_finite() && cli.progress > 0.0).then(|| Duration::from_secs_f64(cli.progress));
    match block_on(run(cli.command, interval)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mirage-kv: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn parse_key(s: &str) -> Result<Key> {
    Key::parse(s).map_err(|e| e.to_string())
}

/// Parses "4096", "64K", "64M", "1G" (powers of 1024).
fn parse_size(s: &str) -> Result<u64> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("size {s:?} is not a number with an optional K, M or G"))?;
    n.checked_mul(1 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

/// An image opened in whichever format it holds.
enum Store {
    Log(LogKv<ImageFile, SystemClock>),
    Tar(TarKv<ImageFile>),
}

/// Opens and mounts the image at `path`, reporting the progress of the
/// mount (which reads a LogKv's whole live half, or every header of a tar
/// archive) to `progress`.
async fn open(path: &Path, writable: bool, progress: &Rc<Progress>) -> Result<Store> {
    let dev = ImageFile::open(path, writable)?.with_progress(progress.clone());
    let size = dev.size_bytes();
    let mut head = vec![0u8; 2 * SECTOR as usize];
    let is_log = dev.info().sector_count >= 2 && {
        dev.read(0, &mut head).await.map_err(|e| format!("{}: {e}", path.display()))?;
        head[..8] == *b"MIRAGEKV" || head[SECTOR as usize..SECTOR as usize + 8] == *b"MIRAGEKV"
    };
    let what = |e: mirage_types::kv::KvError| format!("{}: {e}", path.display());
    let store = if is_log {
        progress.phase("mounting: reading the live log", Measure::BytesRead, logkv_read_estimate(size), true);
        Store::Log(LogKv::mount(dev, SystemClock::new()).await.map_err(what)?)
    } else {
        // Mount reads each header and skips the contents between them.
        progress.phase("mounting: reading the archive's headers", Measure::Position, size, false);
        Store::Tar(TarKv::mount(dev).await.map_err(what)?)
    };
    progress.finish_phase();
    Ok(store)
}

/// What mounting a LogKv image of `size` bytes reads: both superblock
/// sectors, then the whole live half, which is half of the rest when the
/// store fills its image (as every store this tool formats does).
fn logkv_read_estimate(size: u64) -> u64 {
    let superblocks = 2 * u64::from(SECTOR);
    superblocks + size.saturating_sub(superblocks) / u64::from(SECTOR) / 2 * u64::from(SECTOR)
}

async fn writable(path: &Path, progress: &Rc<Progress>) -> Result<LogKv<ImageFile, SystemClock>> {
    match open(path, true, progress).await? {
        Store::Log(store) => Ok(store),
        Store::Tar(_) => Err(format!("{} is a tar image, which is read-only", path.display())),
    }
}

/// Bytes of all the values below the dictionary `key`, each rounded up to
/// a multiple of `unit` (the sectors read for a value aligned to them), for
/// a progress total. The index is in memory: this reads nothing.
async fn value_bytes<S: KvRead>(store: &S, key: &Key, unit: u64) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![key.clone()];
    while let Some(dir) = todo.pop() {
        let Ok(children) = store.list(&dir).await else { continue };
        for (name, kind) in children {
            let Ok(child) = dir.child(&name) else { continue };
            match kind {
                EntryKind::Dictionary => todo.push(child),
                EntryKind::Value => {
                    let size = store.size(&child).await.unwrap_or(0);
                    total = total.saturating_add(size.div_ceil(unit).saturating_mul(unit));
                }
            }
        }
    }
    total
}

async fn run(command: Command, interval: Option<Duration>) -> Result<()> {
    let what = |verb: &str, image: &Path| Rc::new(Progress::new(format!("{verb} {}", image.display()), interval));
    match command {
        Command::Format { image, size } => {
            let bytes = parse_size(&size)? / u64::from(SECTOR) * u64::from(SECTOR);
            let dev = ImageFile::create(&image, bytes)?;
            LogKv::format(dev, SystemClock::new(), FormatOptions::default()).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        Command::Stress { image, seed, ops } => {
            stress::run(&writable(&image, &what("stress", &image)).await?, seed, ops).await
        }
        Command::Ls { image, key } => {
            let key = parse_key(key.as_deref().unwrap_or("/"))?;
            match open(&image, false, &what("ls", &image)).await? {
                Store::Log(s) => ls(&s, &key).await,
                Store::Tar(s) => ls(&s, &key).await,
            }
        }
        Command::Cat { image, key } => {
            let key = parse_key(&key)?;
            let value = match open(&image, false, &what("cat", &image)).await? {
                Store::Log(s) => s.get(&key).await,
                Store::Tar(s) => s.get(&key).await,
            }
            .map_err(|e| e.to_string())?;
            std::io::stdout().write_all(&value).map_err(|e| format!("writing to standard output: {e}"))
        }
        Command::Put { image, key, file } => {
            let key = parse_key(&key)?;
            let mut value = Vec::new();
            match file {
                Some(path) if path.as_os_str() != "-" => {
                    value = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                }
                _ => {
                    std::io::stdin().read_to_end(&mut value).map_err(|e| format!("reading standard input: {e}"))?;
                }
            }
            writable(&image, &what("put", &image)).await?.set(&key, &value).await.map_err(|e| e.to_string())
        }
        Command::Rm { image, key } => {
            let key = parse_key(&key)?;
            writable(&image, &what("rm", &image)).await?.remove(&key).await.map_err(|e| e.to_string())
        }
        Command::Fsck { image } => {
            let progress = what("fsck", &image);
            fsck(&image, &progress).await
        }
        Command::Build { image, from, format, size } => {
            let files = collect(&from)?;
            match format {
                StoreFormat::Logkv => build_logkv(&image, &files, size.as_deref()).await,
                StoreFormat::Tar => build_tar(&image, &files),
            }
        }
    }
}

async fn fsck(image: &Path, progress: &Rc<Progress>) -> Result<()> {
    match open(image, false, progress).await? {
        Store::Log(s) => {
            // check() reads the live half again, then every live value.
            let total =
                logkv_read_estimate(s.device().size_bytes()).saturating_add(value_bytes(&s, &Key::root(), 1).await);
            progress.phase("checking every record and value", Measure::BytesRead, total, true);
            let report = s.check().await.map_err(|e| e.to_string())?;
            progress.finish_phase();
            println!("{report}");
            if report.is_clean() {
                Ok(())
            } else {
                Err(format!("{}: {} problems found", image.display(), report.errors.len()))
            }
        }
        Store::Tar(s) => {
            // Reading every value (for the digest) proves every entry is readable.
            // Each file starts on a 512-byte block and is read in whole sectors.
            let total = value_bytes(&s, &Key::root(), u64::from(SECTOR)).await;
            progress.phase("hashing every file", Measure::BytesRead, total, false);
            let digest = s.digest(&Key::root()).await.map_err(|e| e.to_string())?;
            progress.finish_phase();
            let stats = s.stats();
            println!("tar archive: {} entries, {} skipped (links, devices, ...)", stats.entries, stats.skipped);
            println!("digest of the root: {digest}");
            println!("clean");
            Ok(())
        }
    }
}

async fn ls<S: KvRead>(store: &S, key: &Key) -> Result<()>
where
    S::Error: std::fmt::Display,
{
    let entries = store.list(key).await.map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for (name, kind) in entries {
        let line = match kind {
            EntryKind::Dictionary => format!("{name}/"),
            EntryKind::Value => {
                let size =
                    store.size(&key.child(&name).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
                format!("{name}\t{size}")
            }
        };
        writeln!(out, "{line}").map_err(|e| format!("writing to standard output: {e}"))?;
    }
    Ok(())
}

/// Every regular file below `dir` (following no symlinks), by key path.
fn collect(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = todo.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| format!("cannot read directory {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read directory {}: {e}", path.display()))?;
            let name =
                entry.file_name().into_string().map_err(|n| format!("{n:?} in {}: not UTF-8", path.display()))?;
            let key = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let kind = entry.file_type().map_err(|e| format!("{}: {e}", entry.path().display()))?;
            if kind.is_dir() {
                todo.push((entry.path(), key));
            } else if kind.is_file() {
                parse_key(&key)?;
                out.insert(key, entry.path());
            }
        }
    }
    Ok(out)
}

async fn build_logkv(image: &Path, files: &BTreeMap<String, PathBuf>, size: Option<&str>) -> Result<()> {
    let bytes = match size {
        Some(s) => parse_size(s)?,
        None => {
            let mut sectors = 0u64;
            for (key, path) in files {
                let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
                sectors += (96 + key.len() as u64 + len).div_ceil(u64::from(SECTOR));
            }
            (2 * sectors + 8) * u64::from(SECTOR) + (1 << 20)
        }
    };
    let dev = ImageFile::create(image, bytes / u64::from(SECTOR) * u64::from(SECTOR))?;
    let store = LogKv::format(dev, SystemClock::new(), FormatOptions::default()).await.map_err(|e| e.to_string())?;
    for (key, path) in files {
        let value = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        store.set(&parse_key(key)?, &value).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Writes a ustar archive, with GNU `L` entries for names over 100 bytes.
fn build_tar(image: &Path, files: &BTreeMap<String, PathBuf>) -> Result<()> {
    let mut out = Vec::new();
    for (key, path) in files {
        let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if data.len() as u64 >= 1 << 33 {
            return Err(format!("{}: files of 8 GiB or more do not fit a ustar header", path.display()));
        }
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        if key.len() > 100 {
            let mut name = key.as_bytes().to_vec();
            name.push(0);
            out.extend_from_slice(&tar_header(b"././@LongLink", name.len() as u64, 0, b'L'));
            append_padded(&mut out, &name);
        }
        let short = &key.as_bytes()[..key.len().min(100)];
        out.extend_from_slice(&tar_header(short, data.len() as u64, mtime, b'0'));
        append_padded(&mut out, &data);
    }
    // End of archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    std::fs::write(image, &out).map_err(|e| format!("cannot write {}: {e}", image.display()))
}

fn append_padded(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_header(name: &[u8], size: u64, mtime: u64, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let octal = |h: &mut [u8; 512], at: usize, width: usize, n: u64| {
        let s = format!("{n:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    };
    h[..name.len()].copy_from_slice(name);
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, mtime);
    h[156] = kind;
    // GNU magic, since `L` entries are a GNU extension.
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h, 148, 7, sum);
    h
}
