//! What the key-value store tests share: a clock, a reference model of the
//! store's semantics, and a dump of a store's whole contents.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;

use mirage_types::kv::{EntryKind, ErrorKind, Key, KvRead, KvWrite};
use mirage_types::time::{PosixTime, WallClock};

/// A wall clock that ticks one second per reading, so every write has a
/// distinct, predictable time.
#[derive(Default)]
pub struct TickClock(Cell<i64>);

impl WallClock for TickClock {
    fn wall_time(&self) -> PosixTime {
        self.0.set(self.0.get() + 1);
        PosixTime::new(1_700_000_000 + self.0.get(), 0).unwrap()
    }
}

pub fn key(s: &str) -> Key {
    Key::parse(s).unwrap()
}

/// One operation of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Set(Key, Vec<u8>),
    SetPartial(Key, u64, Vec<u8>),
    Remove(Key),
    Rename(Key, Key),
}

/// The store's semantics, on values only (dictionaries are implied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model(pub BTreeMap<String, Vec<u8>>);

impl Model {
    fn below<'a>(&'a self, k: &'a Key) -> impl Iterator<Item = &'a String> + 'a {
        let prefix = if k.is_root() { String::new() } else { format!("{}/", k.as_str()) };
        self.0.keys().filter(move |p| p.starts_with(&prefix))
    }

    /// What `k` is, or the error kind a store must give for a prefix value.
    pub fn lookup(&self, k: &Key) -> Result<Option<EntryKind>, ErrorKind> {
        let mut prefix = k.clone();
        while let Some(p) = prefix.parent() {
            if self.0.contains_key(p.as_str()) && !p.is_root() {
                return Err(ErrorKind::NotADictionary);
            }
            prefix = p;
        }
        if k.is_root() || self.below(k).next().is_some() {
            return Ok(Some(EntryKind::Dictionary));
        }
        Ok(self.0.contains_key(k.as_str()).then_some(EntryKind::Value))
    }

    /// Applies `op`, or returns the kind of error the store must report.
    pub fn apply(&mut self, op: &Op) -> Result<(), ErrorKind> {
        match op {
            Op::Set(k, v) => {
                if k.is_root() || self.lookup(k)? == Some(EntryKind::Dictionary) {
                    return Err(ErrorKind::NotAValue);
                }
                self.0.insert(k.as_str().to_string(), v.clone());
            }
            Op::SetPartial(k, off, data) => {
                if k.is_root() || self.lookup(k)? == Some(EntryKind::Dictionary) {
                    return Err(ErrorKind::NotAValue);
                }
                let v = self.0.entry(k.as_str().to_string()).or_default();
                let end = *off as usize + data.len();
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[*off as usize..end].copy_from_slice(data);
            }
            Op::Remove(k) => {
                let kind = self.lookup(k)?;
                if kind.is_none() || (k.is_root() && self.0.is_empty()) {
                    return Err(ErrorKind::NotFound);
                }
                let doomed: Vec<String> = self.below(k).cloned().collect();
                doomed.iter().for_each(|d| drop(self.0.remove(d)));
                self.0.remove(k.as_str());
            }
            Op::Rename(from, to) => {
                if from == to {
                    return self.lookup(from)?.map(|_| ()).ok_or(ErrorKind::NotFound);
                }
                if from.is_root() || to.is_root() {
                    return Err(ErrorKind::InvalidKey);
                }
                if self.lookup(from)?.is_none() {
                    return Err(ErrorKind::NotFound);
                }
                if to.starts_with(from) {
                    return Err(ErrorKind::InvalidKey);
                }
                let mut p = to.parent();
                while let Some(prefix) = p {
                    if !prefix.is_root() && self.0.contains_key(prefix.as_str()) && prefix != *from {
                        return Err(ErrorKind::NotADictionary);
                    }
                    p = prefix.parent();
                }
                let mut moved: Vec<(String, Vec<u8>)> =
                    self.below(from).map(|k| (k.clone(), self.0[k].clone())).collect();
                if let Some(v) = self.0.get(from.as_str()) {
                    moved.push((from.as_str().to_string(), v.clone()));
                }
                moved.iter().for_each(|(k, _)| drop(self.0.remove(k)));
                let replaced: Vec<String> = self.below(to).cloned().collect();
                replaced.iter().for_each(|d| drop(self.0.remove(d)));
                self.0.remove(to.as_str());
                for (k, v) in moved {
                    self.0.insert(format!("{}{}", to.as_str(), &k[from.as_str().len()..]), v);
                }
            }
        }
        Ok(())
    }
}

/// Runs `op` on a store.
pub async fn run<S: KvWrite>(store: &S, op: &Op) -> Result<(), S::Error> {
    match op {
        Op::Set(k, v) => store.set(k, v).await,
        Op::SetPartial(k, off, data) => store.set_partial(k, *off, data).await,
        Op::Remove(k) => store.remove(k).await,
        Op::Rename(from, to) => store.rename(from, to).await,
    }
}

/// Every value of a store, found by walking its dictionaries from the root
/// (so `list` and `exists` are checked along the way).
pub async fn dump<S: KvRead>(store: &S) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![Key::root()];
    while let Some(dir) = todo.pop() {
        let children = store.list(&dir).await.unwrap_or_else(|e| panic!("list {dir}: {e}"));
        for (name, kind) in children {
            let child = dir.child(&name).unwrap();
            assert_eq!(store.exists(&child).await.unwrap(), Some(kind), "{child}");
            match kind {
                EntryKind::Value => {
                    let v = store.get(&child).await.unwrap_or_else(|e| panic!("get {child}: {e}"));
                    out.insert(child.as_str().to_string(), v.to_vec());
                }
                EntryKind::Dictionary => todo.push(child),
            }
        }
    }
    out
}

/// The kind of a store error.
pub fn kind_of<E: mirage_types::kv::Error>(r: Result<(), E>) -> Result<(), ErrorKind> {
    r.map_err(|e| e.kind())
}

/// A seeded generator for workloads (no dependency on proptest's runner).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A random operation over a small key space (so keys collide,
    /// dictionaries form and conflict), with values up to `max_len` bytes.
    pub fn op(&mut self, max_len: usize) -> Op {
        const KEYS: [&str; 8] = ["a", "b", "a/x", "a/y", "b/x/deep", "c", "a/x/z", "d/e"];
        let k = key(KEYS[self.below(KEYS.len() as u64) as usize]);
        let len = self.below(max_len as u64 + 1) as usize;
        let byte = self.next() as u8;
        let value: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
        match self.below(10) {
            0..=3 => Op::Set(k, value),
            4..=5 => Op::SetPartial(k, self.below(max_len as u64 / 2 + 1), value),
            6..=7 => Op::Remove(k),
            _ => Op::Rename(k, key(KEYS[self.below(KEYS.len() as u64) as usize])),
        }
    }
}
