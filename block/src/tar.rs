//! `TarKv`: a read-only key-value store over a block device holding a tar
//! archive.
//!
//! Reading list: POSIX.1-2017 `pax` (ustar header layout, the `x` and `g`
//! extended headers); the GNU tar manual, "Basic Tar Format" (the `L` long
//! name entry, base-256 numbers).
//!
//! # What is understood
//!
//! - ustar headers (magic `ustar\0`, with the `prefix` field) and GNU
//!   headers (magic `ustar  \0`); the checksum of every header is verified
//!   (unsigned sum, or the signed sum some old tars wrote);
//! - GNU long names (`L` entries) and pax extended headers (`x`) with
//!   `path`, `size` and `mtime`; pax global headers (`g`) are ignored;
//! - regular files (`0`, NUL, `7`), directories (`5`), empty files;
//!   octal and base-256 numbers;
//! - other entry types (links, devices, FIFOs, GNU long link names, sparse
//!   files and anything unknown) are skipped and counted in
//!   [`TarStats::skipped`];
//! - the archive ends at the first all-zero header block or at the end of
//!   the device.
//!
//! Names are normalised: leading `/` and `./`, empty and `.` segments are
//! dropped. A later entry with the same name replaces an earlier one (as
//! extraction would). A name with a `..` segment, a file below another file,
//! or a file where a directory was (and the reverse) is a mount error.
//!
//! # Bounds
//!
//! The index is built once at mount, with [`TarLimits`]: at most
//! `max_entries` names (each costing its bytes plus about 80 bytes), names
//! up to [`Key::MAX_LEN`] bytes, pax headers up to `max_pax_len` bytes.
//! Exceeding one is a mount error with the byte offset of the header.
//!
//! # Digests and times
//!
//! A value's digest is the SHA-256 of its contents (computed by reading
//! them); a dictionary's is defined as for [`LogKv`](crate::LogKv), over
//! the values below it (empty directories do not contribute), so both
//! stores give the same digest to the same tree. `last_modified` is the
//! entry's mtime; a dictionary's is the latest of its own and of everything
//! below it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use mirage_types::block::BlockDevice;
use mirage_types::kv::{Digest, EntryKind, Key, KvError, KvRead};
use mirage_types::time::PosixTime;
use mirage_types::Bytes;
use sha2::{Digest as _, Sha256};

use crate::log_kv::{corrupt, read_bytes, tree_digest};

const BLOCK: u64 = 512;
/// Values are read in chunks of this size to compute their digest.
const DIGEST_CHUNK: u64 = 1 << 20;

/// Bounds on what mounting an archive may allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TarLimits {
    /// Most entries (files and directories) in the index. Default 1,048,576.
    pub max_entries: usize,
    /// Largest pax extended header read, in bytes. Default 65,536.
    pub max_pax_len: u64,
}

impl Default for TarLimits {
    fn default() -> TarLimits {
        TarLimits { max_entries: 1 << 20, max_pax_len: 1 << 16 }
    }
}

/// What mounting found besides the files and directories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries of a type the store does not serve (links, devices, ...).
    pub skipped: u64,
    /// Files and directories indexed.
    pub entries: u64,
}

#[derive(Clone, Copy, Debug)]
enum Node {
    /// Contents at `offset` (bytes from the device's start), `size` bytes.
    Value { offset: u64, size: u64, mtime: PosixTime },
    /// A directory; `mtime` is `None` if it only appears in paths.
    Dictionary { mtime: Option<PosixTime> },
}

/// A read-only key-value store over a tar archive on a block device.
pub struct TarKv<B> {
    dev: B,
    index: BTreeMap<String, Node>,
    stats: TarStats,
}

/// The fields of a header that the index needs.
struct Header {
    name: String,
    size: u64,
    mtime: PosixTime,
    kind: u8,
}

impl<B: BlockDevice> TarKv<B> {
    /// Reads the archive's headers with the default [`TarLimits`].
    pub async fn mount(dev: B) -> Result<TarKv<B>, KvError> {
        TarKv::mount_with(dev, TarLimits::default()).await
    }

    /// Reads every header of the archive and builds the index.
    ///
    /// `Ok`: every header passed its checksum and every entry lies inside
    /// the device. Errors: [`ErrorKind::Corrupt`](mirage_types::kv::ErrorKind::Corrupt) for a bad header, a
    /// truncated entry, a name that is not a valid key or that conflicts
    /// with another, or a bound of `limits` exceeded, each with the byte
    /// offset of the header; [`ErrorKind::Storage`](mirage_types::kv::ErrorKind::Storage) if the device fails.
    pub async fn mount_with(dev: B, limits: TarLimits) -> Result<TarKv<B>, KvError> {
        let size = dev.info().size_bytes();
        let mut index = BTreeMap::new();
        let mut stats = TarStats::default();
        let mut at = 0u64;
        let mut long_name: Option<String> = None;
        let mut pax: BTreeMap<String, String> = BTreeMap::new();
        while at + BLOCK <= size {
            let block = read_bytes(&dev, at, BLOCK).await?;
            if block.iter().all(|&b| b == 0) {
                break;
            }
            let bad = |what: String| corrupt(format!("tar header at byte {at}: {what}"));
            let header = parse_header(&block).map_err(bad)?;
            let data = at + BLOCK;
            let mut size_of_data = header.size;
            if header.kind != b'x' && header.kind != b'L' && header.kind != b'g' {
                if let Some(s) = pax.get("size") {
                    size_of_data = s.parse().map_err(|_| bad(format!("pax size {s:?} is not a number")))?;
                }
            }
            let end = data.checked_add(size_of_data).filter(|&end| end <= size).ok_or_else(|| {
                bad(format!("entry of {size_of_data} bytes goes past the end of the {size}-byte device"))
            })?;
            let next = end.div_ceil(BLOCK) * BLOCK;
            match header.kind {
                b'L' => {
                    if header.size > Key::MAX_LEN as u64 + 1 {
                        return Err(bad(format!("GNU long name of {} bytes is too long", header.size)));
                    }
                    let bytes = read_bytes(&dev, data, header.size).await?;
                    let name = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
                    long_name =
                        Some(String::from_utf8(name.to_vec()).map_err(|_| bad("long name is not UTF-8".to_string()))?);
                }
                b'x' | b'g' => {
                    if header.size > limits.max_pax_len {
                        return Err(bad(format!(
                            "pax header of {} bytes exceeds the limit of {}",
                            header.size, limits.max_pax_len
                        )));
                    }
                    if header.kind == b'x' {
                        let bytes = read_bytes(&dev, data, header.size).await?;
                        pax = parse_pax(&bytes).map_err(bad)?;
                    }
                }
                kind => {
                    let name = pax.remove("path").or(long_name.take()).unwrap_or(header.name);
                    let mtime = match pax.get("mtime") {
                        Some(t) => parse_pax_time(t).ok_or_else(|| bad(format!("pax mtime {t:?} is not a time")))?,
                        None => header.mtime,
                    };
                    pax.clear();
                    let node = match kind {
                        b'0' | 0 | b'7' => Some(Node::Value { offset: data, size: size_of_data, mtime }),
                        b'5' => Some(Node::Dictionary { mtime: Some(mtime) }),
                        _ => None,
                    };
                    match node {
                        Some(node) => {
                            let path = normalise(&name).map_err(bad)?;
                            insert(&mut index, path, node).map_err(bad)?;
                            if index.len() > limits.max_entries {
                                return Err(bad(format!("more than {} entries", limits.max_entries)));
                            }
                        }
                        None => stats.skipped += 1,
                    }
                }
            }
            // Links and devices carry no data whatever their size field says.
            at = if matches!(header.kind, b'1'..=b'6') { data } else { next };
        }
        stats.entries = index.len() as u64;
        Ok(TarKv { dev, index, stats })
    }

    /// What mounting found.
    pub fn stats(&self) -> TarStats {
        self.stats
    }

    /// Gives the device back.
    pub fn into_device(self) -> B {
        self.dev
    }

    fn node(&self, key: &Key) -> Result<Node, KvError> {
        if key.is_root() {
            return Ok(Node::Dictionary { mtime: None });
        }
        for (i, _) in key.as_str().match_indices('/') {
            if let Some(Node::Value { .. }) = self.index.get(&key.as_str()[..i]) {
                return Err(KvError::NotADictionary(Key::parse(&key.as_str()[..i]).map_err(KvError::from)?));
            }
        }
        self.index.get(key.as_str()).copied().ok_or_else(|| KvError::NotFound(key.clone()))
    }

    fn value(&self, key: &Key) -> Result<(u64, u64, PosixTime), KvError> {
        match self.node(key)? {
            Node::Value { offset, size, mtime } => Ok((offset, size, mtime)),
            Node::Dictionary { .. } => Err(KvError::NotAValue(key.clone())),
        }
    }

    fn below<'a>(&'a self, key: &Key) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let prefix = if key.is_root() { String::new() } else { format!("{}/", key.as_str()) };
        self.index.range(prefix.clone()..).take_while(move |(k, _)| k.starts_with(prefix.as_str()))
    }

    async fn sha256(&self, offset: u64, size: u64) -> Result<[u8; 32], KvError> {
        let mut sha = Sha256::new();
        let mut done = 0;
        while done < size {
            let chunk = (size - done).min(DIGEST_CHUNK);
            sha.update(read_bytes(&self.dev, offset + done, chunk).await?);
            done += chunk;
        }
        Ok(sha.finalize().into())
    }
}

impl<B: BlockDevice> KvRead for TarKv<B> {
    type Error = KvError;

    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
        match self.node(key) {
            Ok(Node::Value { .. }) => Ok(Some(EntryKind::Value)),
            Ok(Node::Dictionary { .. }) => Ok(Some(EntryKind::Dictionary)),
            Err(KvError::NotFound(_) | KvError::NotADictionary(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
        let (offset, size, _) = self.value(key)?;
        read_bytes(&self.dev, offset, size).await
    }

    /// Reads only the sectors holding the range.
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
        let (at, size, _) = self.value(key)?;
        let start = offset.min(size);
        let end = start.saturating_add(len as u64).min(size);
        read_bytes(&self.dev, at + start, end - start).await
    }

    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
        match self.node(key)? {
            Node::Value { .. } => Err(KvError::NotADictionary(key.clone())),
            Node::Dictionary { .. } => {
                // Every directory on the way to an entry is in the index, so
                // the direct children are the entries with one more segment.
                let skip = if key.is_root() { 0 } else { key.as_str().len() + 1 };
                Ok(self
                    .below(key)
                    .filter(|(path, _)| !path[skip..].contains('/'))
                    .map(|(path, node)| {
                        let kind = match node {
                            Node::Value { .. } => EntryKind::Value,
                            Node::Dictionary { .. } => EntryKind::Dictionary,
                        };
                        (path[skip..].to_string(), kind)
                    })
                    .collect())
            }
        }
    }

    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
        Ok(match self.node(key)? {
            Node::Value { mtime, .. } => mtime,
            Node::Dictionary { mtime } => self
                .below(key)
                .filter_map(|(_, n)| match n {
                    Node::Value { mtime, .. } => Some(*mtime),
                    Node::Dictionary { mtime } => *mtime,
                })
                .chain(mtime)
                .max()
                .unwrap_or(PosixTime::EPOCH),
        })
    }

    /// Reads every value involved: for a dictionary, everything below it.
    async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
        match self.node(key)? {
            Node::Value { offset, size, .. } => Ok(Digest(self.sha256(offset, size).await?.to_vec())),
            Node::Dictionary { .. } => {
                let skip = if key.is_root() { 0 } else { key.as_str().len() + 1 };
                let mut values = Vec::new();
                for (path, node) in self.below(key) {
                    if let Node::Value { offset, size, .. } = node {
                        values.push((&path[skip..], self.sha256(*offset, *size).await?));
                    }
                }
                Ok(tree_digest(values.into_iter()))
            }
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, KvError> {
        Ok(self.value(key)?.1)
    }
}

/// Parses and checks a 512-byte header block.
fn parse_header(b: &[u8]) -> Result<Header, String> {
    let stored = parse_number(&b[148..156]).ok_or("checksum field is not a number")?;
    let unsigned: u64 =
        b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { u64::from(x) }).sum();
    let signed: i64 =
        b.iter().enumerate().map(|(i, &x)| if (148..156).contains(&i) { 32 } else { i64::from(x as i8) }).sum();
    if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
        return Err(format!("checksum mismatch (stored {stored}, computed {unsigned})"));
    }
    let size = parse_number(&b[124..136]).ok_or("size field is not a number")?;
    let mtime_secs = parse_number(&b[136..148]).ok_or("mtime field is not a number")?;
    let field = |r: core::ops::Range<usize>| {
        let f = &b[r];
        let f = &f[..f.iter().position(|&c| c == 0).unwrap_or(f.len())];
        String::from_utf8(f.to_vec()).map_err(|_| "name is not UTF-8".to_string())
    };
    let mut name = field(0..100)?;
    // Only POSIX ustar has a prefix field; GNU uses that space otherwise.
    if &b[257..263] == b"ustar\0" {
        let prefix = field(345..500)?;
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(Header {
        name,
        size,
        mtime: PosixTime::new(i64::try_from(mtime_secs).unwrap_or(i64::MAX), 0).unwrap_or_default(),
        kind: b[156],
    })
}

/// An octal number (NUL- or space-terminated), or GNU base-256 (first byte
/// 0x80) for large non-negative values.
fn parse_number(f: &[u8]) -> Option<u64> {
    if f.first() == Some(&0x80) {
        return f[1..].iter().try_fold(0u64, |n, &b| n.checked_mul(256)?.checked_add(u64::from(b)));
    }
    let digits = f.iter().skip_while(|&&c| c == b' ').take_while(|&&c| c != 0 && c != b' ');
    // An empty field is zero, as GNU tar reads it.
    let mut n = 0u64;
    for &c in digits {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        n = n.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// Parses pax records: "LEN KEY=VALUE\n", LEN counting the whole record.
fn parse_pax(mut b: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    while !b.is_empty() && b[0] != 0 {
        let space = b.iter().position(|&c| c == b' ').ok_or("pax record without a length")?;
        let len: usize = core::str::from_utf8(&b[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("pax record length is not a number")?;
        if len <= space + 1 || len > b.len() || b[len - 1] != b'\n' {
            return Err("pax record length does not match its contents".to_string());
        }
        let record = core::str::from_utf8(&b[space + 1..len - 1]).map_err(|_| "pax record is not UTF-8")?;
        let (k, v) = record.split_once('=').ok_or("pax record without '='")?;
        out.insert(k.to_string(), v.to_string());
        b = &b[len..];
    }
    Ok(out)
}

/// A pax time: decimal seconds, optionally with a fraction.
fn parse_pax_time(s: &str) -> Option<PosixTime> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += c.to_digit(10)? * 10u32.pow(8 - i as u32);
    }
    PosixTime::new(secs, nanos)
}

/// The key path of an archive name; see "What is understood".
fn normalise(name: &str) -> Result<String, String> {
    let mut segments = Vec::new();
    for s in name.split('/') {
        match s {
            "" | "." => {}
            ".." => return Err(format!("name {name:?} has a '..' segment")),
            s => segments.push(s),
        }
    }
    let path = segments.join("/");
    Key::parse(&path).map_err(|e| e.to_string())?;
    Ok(path)
}

fn insert(index: &mut BTreeMap<String, Node>, path: String, node: Node) -> Result<(), String> {
    if path.is_empty() {
        return Ok(()); // the archive's "./": the root, which always exists
    }
    for (i, _) in path.match_indices('/') {
        match index.get(&path[..i]) {
            Some(Node::Value { .. }) => return Err(format!("{path:?} lies below the file {:?}", &path[..i])),
            Some(Node::Dictionary { .. }) => {}
            None => {
                index.insert(path[..i].to_string(), Node::Dictionary { mtime: None });
            }
        }
    }
    match (index.get(&path), node) {
        (Some(Node::Dictionary { .. }), Node::Value { .. }) => {
            Err(format!("{path:?} is a file, but an earlier entry made it a directory"))
        }
        (Some(Node::Value { .. }), Node::Dictionary { .. }) => {
            Err(format!("{path:?} is a directory, but an earlier entry made it a file"))
        }
        _ => {
            index.insert(path, node);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_octal_and_base_256() {
        assert_eq!(parse_number(b"0000644\0"), Some(0o644));
        assert_eq!(parse_number(b"  12 \0"), Some(0o12));
        assert_eq!(parse_number(b"\0\0\0"), Some(0));
        assert_eq!(parse_number(b"0009\0"), None);
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Some(1 << 32));
        assert_eq!(parse_number(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn pax_records_and_times() {
        let p = parse_pax(b"22 mtime=1700000000.5\n11 size=42\n").unwrap();
        assert_eq!(p["size"], "42");
        assert_eq!(parse_pax_time(&p["mtime"]), PosixTime::new(1_700_000_000, 500_000_000));
        assert!(parse_pax(b"99 size=42\n").is_err());
        assert!(parse_pax(b"3 \n").is_err());
        assert!(parse_pax(b"x").is_err());
    }

    #[test]
    fn names_normalise_and_refuse_traversal() {
        assert_eq!(normalise("./a//b/").unwrap(), "a/b");
        assert_eq!(normalise("/abs/x").unwrap(), "abs/x");
        assert_eq!(normalise("./").unwrap(), "");
        assert!(normalise("a/../../etc").is_err());
    }
}
