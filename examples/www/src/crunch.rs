//! `CrunchKv`: the files of `htdocs/`, compiled into the binary.
//!
//! `build.rs` walks `examples/www/htdocs/` at build time and generates a
//! sorted table of every file (its key, its bytes through `include_bytes!`,
//! its modification time and SHA-256 digest) and of every directory. The
//! store needs no device, no file system and no allocation to read a
//! value: values are `Bytes::from_static` slices of the binary. The
//! directory's files become keys with `/` separators (`docs/index.html`);
//! directories become the dictionaries those keys imply.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::Bytes;
use mirage::kv::{Digest, EntryKind, Key, KvError, KvRead};
use mirage::time::PosixTime;

/// One file of the crunched directory.
struct CrunchValue {
    key: &'static str,
    data: &'static [u8],
    /// Seconds since the epoch.
    modified: u64,
    /// SHA-256 of `data`.
    digest: [u8; 32],
}

/// One directory of the crunched directory (the root is `""`).
struct CrunchDictionary {
    key: &'static str,
    /// The latest modification of any file below, in seconds since the epoch.
    modified: u64,
    /// SHA-256 over the sorted listing; see `build.rs`.
    digest: [u8; 32],
}

include!(concat!(env!("OUT_DIR"), "/crunch.rs"));

/// A read-only store of the files that were in `examples/www/htdocs/` when
/// the crate was built.
///
/// Digests are SHA-256: of the bytes for a value; for a dictionary, of its
/// entries sorted by name, each as a kind byte (`v` or `d`), the name's
/// length as a little-endian `u32`, the name and the entry's digest.
/// Nothing here fails except for keys that do not name what was asked for;
/// errors are [`KvError`]s naming the key.
#[derive(Clone, Copy, Debug)]
pub struct CrunchKv {
    values: &'static [CrunchValue],
    dictionaries: &'static [CrunchDictionary],
}

impl core::fmt::Debug for CrunchValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({} bytes)", self.key, self.data.len())
    }
}

impl core::fmt::Debug for CrunchDictionary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/", self.key)
    }
}

impl Default for CrunchKv {
    fn default() -> CrunchKv {
        CrunchKv::new()
    }
}

impl CrunchKv {
    /// The store of the site compiled into this binary.
    pub const fn new() -> CrunchKv {
        CrunchKv { values: VALUES, dictionaries: DICTIONARIES }
    }

    /// The keys of every value, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &'static str> {
        self.values.iter().map(|v| v.key)
    }

    fn value(&self, key: &Key) -> Option<&'static CrunchValue> {
        let values: &'static [CrunchValue] = self.values;
        values.binary_search_by(|v| v.key.cmp(key.as_str())).ok().map(|i| &values[i])
    }

    fn dictionary(&self, key: &Key) -> Option<&'static CrunchDictionary> {
        let dictionaries: &'static [CrunchDictionary] = self.dictionaries;
        dictionaries.binary_search_by(|d| d.key.cmp(key.as_str())).ok().map(|i| &dictionaries[i])
    }

    /// The error for a key that names no value: a dictionary, a key below a
    /// value, or nothing at all.
    fn not_a_value(&self, key: &Key) -> KvError {
        if self.dictionary(key).is_some() {
            return KvError::NotAValue(key.clone());
        }
        self.not_found(key)
    }

    /// The error for a key that names nothing: `NotADictionary` with the
    /// prefix if a prefix of it is a value, `NotFound` otherwise.
    fn not_found(&self, key: &Key) -> KvError {
        let mut prefix = key.parent();
        while let Some(p) = prefix {
            if self.value(&p).is_some() {
                return KvError::NotADictionary(p);
            }
            prefix = p.parent();
        }
        KvError::NotFound(key.clone())
    }

    fn found_value(&self, key: &Key) -> Result<&'static CrunchValue, KvError> {
        self.value(key).ok_or_else(|| self.not_a_value(key))
    }
}

fn posix(secs: u64) -> PosixTime {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    PosixTime::new(secs, 0).unwrap_or(PosixTime::EPOCH)
}

impl KvRead for CrunchKv {
    type Error = KvError;

    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
        Ok(if self.value(key).is_some() {
            Some(EntryKind::Value)
        } else if self.dictionary(key).is_some() {
            Some(EntryKind::Dictionary)
        } else {
            None
        })
    }

    async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
        Ok(Bytes::from_static(self.found_value(key)?.data))
    }

    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
        let data = self.found_value(key)?.data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(Bytes::from_static(&data[start..end]))
    }

    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
        if self.dictionary(key).is_none() {
            return Err(if self.value(key).is_some() {
                KvError::NotADictionary(key.clone())
            } else {
                self.not_found(key)
            });
        }
        let mut entries: Vec<(String, EntryKind)> = Vec::new();
        for value in self.values {
            let rest = if key.is_root() {
                value.key
            } else {
                match value.key.strip_prefix(key.as_str()).and_then(|r| r.strip_prefix('/')) {
                    Some(rest) => rest,
                    None => continue,
                }
            };
            let entry = match rest.split_once('/') {
                None => (rest.to_string(), EntryKind::Value),
                Some((name, _)) => (name.to_string(), EntryKind::Dictionary),
            };
            entries.push(entry);
        }
        // Sorting by full key does not sort by name ("a.txt" < "a/b" but "a" < "a.txt").
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
        if let Some(value) = self.value(key) {
            Ok(posix(value.modified))
        } else if let Some(dictionary) = self.dictionary(key) {
            Ok(posix(dictionary.modified))
        } else {
            Err(self.not_found(key))
        }
    }

    async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
        if let Some(value) = self.value(key) {
            Ok(Digest(value.digest.to_vec()))
        } else if let Some(dictionary) = self.dictionary(key) {
            Ok(Digest(dictionary.digest.to_vec()))
        } else {
            Err(self.not_found(key))
        }
    }

    async fn size(&self, key: &Key) -> Result<u64, KvError> {
        Ok(self.found_value(key)?.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use mirage::kv::{Error as _, ErrorKind};
    use sha2::Digest as _;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    const INDEX: &[u8] = include_bytes!("../htdocs/index.html");
    const DOCS_INDEX: &[u8] = include_bytes!("../htdocs/docs/index.html");

    #[test]
    fn values_are_the_files_of_htdocs() {
        let kv = CrunchKv::new();
        assert_eq!(block_on(kv.get(&key("/index.html"))).unwrap(), INDEX);
        assert_eq!(block_on(kv.get(&key("docs/index.html"))).unwrap(), DOCS_INDEX);
        assert_eq!(block_on(kv.size(&key("index.html"))).unwrap(), INDEX.len() as u64);
        assert_eq!(block_on(kv.exists(&key("index.html"))).unwrap(), Some(EntryKind::Value));
        assert_eq!(block_on(kv.exists(&key("docs"))).unwrap(), Some(EntryKind::Dictionary));
        assert_eq!(block_on(kv.exists(&Key::root())).unwrap(), Some(EntryKind::Dictionary));
        assert_eq!(block_on(kv.exists(&key("nope"))).unwrap(), None);
        assert!(kv.keys().any(|k| k == "docs/index.html"));
        assert!(kv.keys().collect::<Vec<_>>().windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn partial_reads_clip_to_the_value() {
        let kv = CrunchKv::new();
        let k = key("index.html");
        assert_eq!(block_on(kv.get_partial(&k, 0, 10)).unwrap(), &INDEX[..10]);
        assert_eq!(block_on(kv.get_partial(&k, 5, 10)).unwrap(), &INDEX[5..15]);
        let end = INDEX.len() as u64;
        assert_eq!(block_on(kv.get_partial(&k, end - 3, 100)).unwrap(), &INDEX[INDEX.len() - 3..]);
        assert!(block_on(kv.get_partial(&k, end, 100)).unwrap().is_empty());
        assert!(block_on(kv.get_partial(&k, u64::MAX, usize::MAX)).unwrap().is_empty());
    }

    #[test]
    fn listing_is_sorted_by_name_with_kinds() {
        let kv = CrunchKv::new();
        let root = block_on(kv.list(&Key::root())).unwrap();
        assert!(root.contains(&("docs".into(), EntryKind::Dictionary)));
        assert!(root.contains(&("index.html".into(), EntryKind::Value)));
        assert!(root.windows(2).all(|w| w[0].0 < w[1].0), "{root:?}");
        assert_eq!(block_on(kv.list(&key("docs"))).unwrap(), [("index.html".into(), EntryKind::Value)]);
    }

    #[test]
    fn errors_name_the_key_and_kind() {
        let kv = CrunchKv::new();
        let e = block_on(kv.get(&key("missing.html"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("/missing.html"), "{e}");
        let e = block_on(kv.get(&key("docs"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotAValue);
        let e = block_on(kv.get(&key("index.html/x"))).unwrap_err();
        assert_eq!(e, KvError::NotADictionary(key("index.html")));
        let e = block_on(kv.list(&key("index.html"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotADictionary);
        assert_eq!(block_on(kv.size(&key("docs"))).unwrap_err().kind(), ErrorKind::NotAValue);
        assert_eq!(block_on(kv.digest(&key("nope"))).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn digests_and_times_come_from_the_build() {
        let kv = CrunchKv::new();
        let d = block_on(kv.digest(&key("index.html"))).unwrap();
        assert_eq!(d.0, sha2::Sha256::digest(INDEX).to_vec());
        assert_ne!(d, block_on(kv.digest(&key("docs/index.html"))).unwrap());
        let root = block_on(kv.digest(&Key::root())).unwrap();
        assert_ne!(root, block_on(kv.digest(&key("docs"))).unwrap());
        // A dictionary was last changed when the latest file below it was.
        let newest = kv.values.iter().map(|v| v.modified).max().unwrap();
        assert_eq!(block_on(kv.last_modified(&Key::root())).unwrap().secs(), newest as i64);
        assert!(block_on(kv.last_modified(&key("index.html"))).unwrap().secs() > 0);
    }
}
