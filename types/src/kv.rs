//! Key-value stores with hierarchical keys, read-only and read-write.
//!
//! Keys are paths of segments (`/htdocs/index.html`, see [`Key`]). A key
//! names a *value* (bytes) or a *dictionary* (the keys below it);
//! dictionaries exist implicitly while they contain something.
//!
//! # For implementors
//!
//! - Errors say which key: [`KvError::NotFound`] for a missing key,
//!   [`KvError::NotAValue`] when reading a dictionary as a value,
//!   [`KvError::NotADictionary`] when a key's prefix is a value.
//! - Edge cases every store treats alike: `remove` or `rename` of a missing
//!   key is [`ErrorKind::NotFound`]; `set` on a key that is a dictionary is
//!   [`ErrorKind::NotAValue`]; `exists` of a key below a value is
//!   `Ok(None)`; the root always exists as a dictionary. A read-write store
//!   keeps a dictionary only while something is below it; a read-only store
//!   may list empty dictionaries it was built with (an archive's empty
//!   directories).
//! - In a [`KvWrite`] store, `Ok` from [`KvWrite::set`],
//!   [`KvWrite::set_partial`], [`KvWrite::remove`] and [`KvWrite::rename`]
//!   means *durable*, and each is atomic: after a crash the key holds its
//!   old or its new value, never a mix. Running out of room is
//!   [`ErrorKind::NoSpace`], with the store unchanged.
//!
//! # For users
//!
//! ```
//! use mirage_types::kv::{Key, KvError, KvWrite, ErrorKind, Error as _};
//!
//! /// Increments a decimal counter stored at `key`, starting from 0.
//! async fn bump<S: KvWrite>(store: &S, key: &Key) -> Result<u64, S::Error> {
//!     let count = match store.get(key).await {
//!         Ok(bytes) => core::str::from_utf8(&bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
//!         Err(e) if e.kind() == ErrorKind::NotFound => 0,
//!         Err(e) => return Err(e),
//!     };
//!     store.set(key, (count + 1).to_string().as_bytes()).await?;
//!     Ok(count + 1)
//! }
//! ```

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use bytes::Bytes;

use crate::time::PosixTime;

error_family!("key-value" {
    /// No such key.
    NotFound => "key not found",
    /// The key is a dictionary where a value was expected.
    NotAValue => "key is a dictionary, not a value",
    /// A prefix of the key is a value, so the key cannot exist below it.
    NotADictionary => "a prefix of the key is a value",
    /// Not enough room in the store.
    NoSpace => "no space left in the store",
    /// The store is read-only.
    ReadOnly => "store is read-only",
    /// The key is not valid (see [`Key`]).
    InvalidKey => "invalid key",
    /// The store's contents are damaged.
    Corrupt => "store is corrupt",
    /// The storage below failed.
    Storage => "storage failure",
    /// Anything else.
    Other => "key-value store failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// See [`ErrorKind::NotFound`].
    #[error("{0}: no such key")]
    NotFound(Key),
    /// See [`ErrorKind::NotAValue`].
    #[error("{0}: is a dictionary, not a value")]
    NotAValue(Key),
    /// See [`ErrorKind::NotADictionary`]; holds the prefix that is a value.
    #[error("{0}: is a value, not a dictionary")]
    NotADictionary(Key),
    /// See [`ErrorKind::NoSpace`].
    #[error("{key}: no space for {needed} more bytes ({free} free)")]
    NoSpace {
        /// The key being written.
        key: Key,
        /// Bytes the operation needed.
        needed: u64,
        /// Bytes available.
        free: u64,
    },
    /// See [`ErrorKind::ReadOnly`].
    #[error("{0}: the store is read-only")]
    ReadOnly(Key),
    /// See [`ErrorKind::InvalidKey`].
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// Any other failure, with its kind.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed and where.
        message: String,
    },
}

impl KvError {
    /// A ready-made error with the kind and message of any store error.
    pub fn from_error<E: Error + ?Sized>(e: &E) -> KvError {
        KvError::Other { kind: e.kind(), message: e.to_string() }
    }
}

impl Error for KvError {
    fn kind(&self) -> ErrorKind {
        match self {
            KvError::NotFound(_) => ErrorKind::NotFound,
            KvError::NotAValue(_) => ErrorKind::NotAValue,
            KvError::NotADictionary(_) => ErrorKind::NotADictionary,
            KvError::NoSpace { .. } => ErrorKind::NoSpace,
            KvError::ReadOnly(_) => ErrorKind::ReadOnly,
            KvError::InvalidKey(_) => ErrorKind::InvalidKey,
            KvError::Other { kind, .. } => *kind,
        }
    }
}

/// Why a string is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// An empty segment (`a//b`, or a trailing `/`).
    #[error("invalid key {0:?}: empty segment")]
    EmptySegment(String),
    /// A `.` or `..` segment.
    #[error("invalid key {0:?}: '.' and '..' are not allowed")]
    DotSegment(String),
    /// A NUL byte.
    #[error("invalid key {0:?}: contains NUL")]
    Nul(String),
    /// A `/` inside what must be one segment ([`Key::child`]).
    #[error("invalid key segment {0:?}: contains '/'")]
    SlashInSegment(String),
    /// Longer than [`Key::MAX_LEN`].
    #[error("invalid key: {0} bytes is longer than the maximum of {max}", max = Key::MAX_LEN)]
    TooLong(usize),
}

/// A hierarchical key: a sequence of segments, written with `/` between
/// them and an optional leading `/` (`/a/b` and `a/b` are the same key).
///
/// Segments are non-empty, contain neither `/` nor NUL, and are not `.`
/// or `..`: a key can never escape the store it names (no path
/// traversal). The empty sequence is the root dictionary, written `/`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    // Segments joined by '/', no leading '/'; "" for the root.
    path: String,
}

impl Key {
    /// The longest key, in bytes: keys are bounded so that stores and
    /// their indexes are too.
    pub const MAX_LEN: usize = 4096;

    /// The root dictionary.
    pub const fn root() -> Key {
        Key { path: String::new() }
    }

    /// Parses `s`; see the type's documentation for the rules.
    pub fn parse(s: &str) -> Result<Key, KeyError> {
        let path = s.strip_prefix('/').unwrap_or(s);
        if path.len() > Self::MAX_LEN {
            return Err(KeyError::TooLong(path.len()));
        }
        if path.is_empty() {
            return Ok(Key::root());
        }
        for segment in path.split('/') {
            Self::check_segment(segment).map_err(|kind| kind(String::from(s)))?;
        }
        Ok(Key { path: String::from(path) })
    }

    fn check_segment(segment: &str) -> Result<(), fn(String) -> KeyError> {
        if segment.is_empty() {
            Err(KeyError::EmptySegment)
        } else if segment == "." || segment == ".." {
            Err(KeyError::DotSegment)
        } else if segment.contains('\0') {
            Err(KeyError::Nul)
        } else {
            Ok(())
        }
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    /// The segments, from the root down.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, or `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments().last()
    }

    /// The dictionary containing this key, or `None` for the root.
    pub fn parent(&self) -> Option<Key> {
        if self.is_root() {
            return None;
        }
        let parent = self.path.rsplit_once('/').map_or("", |(parent, _)| parent);
        Some(Key { path: String::from(parent) })
    }

    /// The key `segment` below this one; `segment` must be one valid
    /// segment (no `/`).
    pub fn child(&self, segment: &str) -> Result<Key, KeyError> {
        let mut path = self.path.clone();
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(segment);
        if segment.contains('/') {
            return Err(KeyError::SlashInSegment(String::from(segment)));
        }
        Self::check_segment(segment).map_err(|kind| kind(path.clone()))?;
        if path.len() > Self::MAX_LEN {
            return Err(KeyError::TooLong(path.len()));
        }
        Ok(Key { path })
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &Key) -> bool {
        other.is_root()
            || self.path == other.path
            || (self.path.starts_with(&other.path) && self.path.as_bytes().get(other.path.len()) == Some(&b'/'))
    }

    /// The key as text without the leading `/` (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.path)
    }
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Key, KeyError> {
        Key::parse(s)
    }
}

/// What a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Bytes.
    Value,
    /// A dictionary of further keys.
    Dictionary,
}

/// A store-defined digest of a value or dictionary: equal contents give
/// equal digests, different contents different digests with overwhelming
/// probability. The algorithm is the store's (its documentation says
/// which); compare digests only from the same store type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest(pub Vec<u8>);

impl fmt::Display for Digest {
    /// Lower-case hexadecimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A read-only key-value store.
///
/// All methods are cancel-safe: they have no effect on the store.
pub trait KvRead {
    /// The store's error.
    type Error: Error;

    /// What `key` names, or `None` if nothing.
    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, Self::Error>;

    /// The whole value at `key`.
    async fn get(&self, key: &Key) -> Result<Bytes, Self::Error>;

    /// Up to `len` bytes of the value at `key` from byte `offset`; shorter
    /// at the end of the value, empty at or past it.
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, Self::Error>;

    /// The entries directly below the dictionary `key`: each name (one
    /// segment) with its kind, sorted by name.
    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, Self::Error>;

    /// When `key` was last changed (for a dictionary: the latest change of
    /// anything below it).
    async fn last_modified(&self, key: &Key) -> Result<PosixTime, Self::Error>;

    /// A digest of the value or dictionary at `key`.
    async fn digest(&self, key: &Key) -> Result<Digest, Self::Error>;

    /// The length of the value at `key`, in bytes.
    async fn size(&self, key: &Key) -> Result<u64, Self::Error>;
}

/// A read-write key-value store. Every successful change is durable and
/// atomic (see the module documentation).
///
/// Not cancel-safe: if a future is dropped, the change may or may not
/// have happened, but it happened entirely or not at all.
pub trait KvWrite: KvRead {
    /// Sets the value at `key`, creating the dictionaries above it.
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), Self::Error>;

    /// Writes `data` into the value at `key` from byte `offset`, extending
    /// it (a gap past the old end reads as zeros). A missing key is
    /// created first as an empty value.
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), Self::Error>;

    /// Removes the value or whole dictionary at `key`.
    async fn remove(&self, key: &Key) -> Result<(), Self::Error>;

    /// Moves the value or dictionary at `from` to `to`, replacing what `to`
    /// held.
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), Self::Error>;
}

forward_handle!(KvRead {
    type Error = T::Error;
    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, Self::Error> {
        (**self).exists(key).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, Self::Error> {
        (**self).get(key).await
    }
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, Self::Error> {
        (**self).get_partial(key, offset, len).await
    }
    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, Self::Error> {
        (**self).list(key).await
    }
    async fn last_modified(&self, key: &Key) -> Result<PosixTime, Self::Error> {
        (**self).last_modified(key).await
    }
    async fn digest(&self, key: &Key) -> Result<Digest, Self::Error> {
        (**self).digest(key).await
    }
    async fn size(&self, key: &Key) -> Result<u64, Self::Error> {
        (**self).size(key).await
    }
});

forward_handle!(KvWrite {
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), Self::Error> {
        (**self).set(key, value).await
    }
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        (**self).set_partial(key, offset, data).await
    }
    async fn remove(&self, key: &Key) -> Result<(), Self::Error> {
        (**self).remove(key).await
    }
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), Self::Error> {
        (**self).rename(from, to).await
    }
});

/// One of two stores, chosen at run time: a store on a block device or
/// the files compiled into the application
/// ([`Devices::kv_ro_or`](crate::devices::Devices::kv_ro_or)). Each call
/// goes to the store it holds; errors keep their kind and message.
#[derive(Clone, Debug)]
pub enum Either<A, B> {
    /// The first store.
    Left(A),
    /// The second store.
    Right(B),
}

/// Calls `$method` on whichever store `$self` holds.
macro_rules! either_call {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            Either::Left(store) => store.$method($($arg),*).await.map_err(|e| KvError::from_error(&e)),
            Either::Right(store) => store.$method($($arg),*).await.map_err(|e| KvError::from_error(&e)),
        }
    };
}

impl<A: KvRead, B: KvRead> KvRead for Either<A, B> {
    type Error = KvError;
    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
        either_call!(self.exists(key))
    }
    async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
        either_call!(self.get(key))
    }
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
        either_call!(self.get_partial(key, offset, len))
    }
    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
        either_call!(self.list(key))
    }
    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
        either_call!(self.last_modified(key))
    }
    async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
        either_call!(self.digest(key))
    }
    async fn size(&self, key: &Key) -> Result<u64, KvError> {
        either_call!(self.size(key))
    }
}

/// The object-safe counterpart of [`KvRead`], for stores chosen at run
/// time. Every store implements it; `dyn DynKvRead` implements [`KvRead`].
#[async_trait::async_trait(?Send)]
pub trait DynKvRead {
    /// See [`KvRead::exists`].
    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError>;
    /// See [`KvRead::get`].
    async fn get(&self, key: &Key) -> Result<Bytes, KvError>;
    /// See [`KvRead::get_partial`].
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError>;
    /// See [`KvRead::list`].
    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError>;
    /// See [`KvRead::last_modified`].
    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError>;
    /// See [`KvRead::digest`].
    async fn digest(&self, key: &Key) -> Result<Digest, KvError>;
    /// See [`KvRead::size`].
    async fn size(&self, key: &Key) -> Result<u64, KvError>;
}

/// The object-safe counterpart of [`KvWrite`].
#[async_trait::async_trait(?Send)]
pub trait DynKvWrite: DynKvRead {
    /// See [`KvWrite::set`].
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), KvError>;
    /// See [`KvWrite::set_partial`].
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), KvError>;
    /// See [`KvWrite::remove`].
    async fn remove(&self, key: &Key) -> Result<(), KvError>;
    /// See [`KvWrite::rename`].
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), KvError>;
}

fn erase<E: Error>(e: E) -> KvError {
    KvError::from_error(&e)
}

#[async_trait::async_trait(?Send)]
impl<S: KvRead> DynKvRead for S {
    async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
        KvRead::exists(self, key).await.map_err(erase)
    }
    async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
        KvRead::get(self, key).await.map_err(erase)
    }
    async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
        KvRead::get_partial(self, key, offset, len).await.map_err(erase)
    }
    async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
        KvRead::list(self, key).await.map_err(erase)
    }
    async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
        KvRead::last_modified(self, key).await.map_err(erase)
    }
    async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
        KvRead::digest(self, key).await.map_err(erase)
    }
    async fn size(&self, key: &Key) -> Result<u64, KvError> {
        KvRead::size(self, key).await.map_err(erase)
    }
}

#[async_trait::async_trait(?Send)]
impl<S: KvWrite> DynKvWrite for S {
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), KvError> {
        KvWrite::set(self, key, value).await.map_err(erase)
    }
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), KvError> {
        KvWrite::set_partial(self, key, offset, data).await.map_err(erase)
    }
    async fn remove(&self, key: &Key) -> Result<(), KvError> {
        KvWrite::remove(self, key).await.map_err(erase)
    }
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), KvError> {
        KvWrite::rename(self, from, to).await.map_err(erase)
    }
}

/// Implements the static read trait for a `dyn` store type by calling the
/// object-safe methods.
macro_rules! kv_read_for_dyn {
    ($Dyn:ty) => {
        impl KvRead for $Dyn {
            type Error = KvError;
            async fn exists(&self, key: &Key) -> Result<Option<EntryKind>, KvError> {
                DynKvRead::exists(self, key).await
            }
            async fn get(&self, key: &Key) -> Result<Bytes, KvError> {
                DynKvRead::get(self, key).await
            }
            async fn get_partial(&self, key: &Key, offset: u64, len: usize) -> Result<Bytes, KvError> {
                DynKvRead::get_partial(self, key, offset, len).await
            }
            async fn list(&self, key: &Key) -> Result<Vec<(String, EntryKind)>, KvError> {
                DynKvRead::list(self, key).await
            }
            async fn last_modified(&self, key: &Key) -> Result<PosixTime, KvError> {
                DynKvRead::last_modified(self, key).await
            }
            async fn digest(&self, key: &Key) -> Result<Digest, KvError> {
                DynKvRead::digest(self, key).await
            }
            async fn size(&self, key: &Key) -> Result<u64, KvError> {
                DynKvRead::size(self, key).await
            }
        }
    };
}

kv_read_for_dyn!(dyn DynKvRead + '_);
kv_read_for_dyn!(dyn DynKvWrite + '_);

impl KvWrite for dyn DynKvWrite + '_ {
    async fn set(&self, key: &Key, value: &[u8]) -> Result<(), KvError> {
        DynKvWrite::set(self, key, value).await
    }
    async fn set_partial(&self, key: &Key, offset: u64, data: &[u8]) -> Result<(), KvError> {
        DynKvWrite::set_partial(self, key, offset, data).await
    }
    async fn remove(&self, key: &Key) -> Result<(), KvError> {
        DynKvWrite::remove(self, key).await
    }
    async fn rename(&self, from: &Key, to: &Key) -> Result<(), KvError> {
        DynKvWrite::rename(self, from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn keys_normalise_the_leading_slash() {
        assert_eq!(key("/a/b"), key("a/b"));
        assert_eq!(key("/a/b").to_string(), "/a/b");
        assert_eq!(key("/").to_string(), "/");
        assert!(key("").is_root() && key("/").is_root());
        assert_eq!(key("a/b/c").segments().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(key("a/b/c").name(), Some("c"));
        assert_eq!(Key::root().name(), None);
    }

    #[test]
    fn keys_refuse_traversal_and_empty_segments() {
        assert!(matches!(Key::parse("a/../b"), Err(KeyError::DotSegment(_))));
        assert!(matches!(Key::parse("/.."), Err(KeyError::DotSegment(_))));
        assert!(matches!(Key::parse("./a"), Err(KeyError::DotSegment(_))));
        assert!(matches!(Key::parse("a//b"), Err(KeyError::EmptySegment(_))));
        assert!(matches!(Key::parse("a/"), Err(KeyError::EmptySegment(_))));
        assert!(matches!(Key::parse("//"), Err(KeyError::EmptySegment(_))));
        assert!(matches!(Key::parse("a\0b"), Err(KeyError::Nul(_))));
        let long = "x".repeat(Key::MAX_LEN + 1);
        assert!(matches!(Key::parse(&long), Err(KeyError::TooLong(_))));
        // '..' inside a segment name is an ordinary name.
        assert!(Key::parse("a..b/..c").is_ok());
    }

    #[test]
    fn parent_child_and_prefixes() {
        assert_eq!(key("a/b/c").parent(), Some(key("a/b")));
        assert_eq!(key("a").parent(), Some(Key::root()));
        assert_eq!(Key::root().parent(), None);
        assert_eq!(key("a").child("b"), Ok(key("a/b")));
        assert_eq!(Key::root().child("b"), Ok(key("b")));
        assert!(key("a").child("b/c").is_err());
        assert!(key("a").child("..").is_err());
        assert!(key("a").child("").is_err());
        assert!(key("a/b").starts_with(&key("a")));
        assert!(key("a/b").starts_with(&key("a/b")));
        assert!(key("a/b").starts_with(&Key::root()));
        assert!(!key("ab/c").starts_with(&key("a")));
    }

    #[test]
    fn errors_name_the_key() {
        let e = KvError::NotFound(key("/etc/motd"));
        assert_eq!(e.to_string(), "/etc/motd: no such key");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e: KvError = Key::parse("a/../b").unwrap_err().into();
        assert_eq!(e.kind(), ErrorKind::InvalidKey);
        assert!(e.to_string().contains("'..'"), "{e}");
        assert_eq!(Digest(alloc::vec![0x0a, 0xff]).to_string(), "0aff");
    }
}
