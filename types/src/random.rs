//! Randomness from a cryptographically secure source.
//!
//! # For implementors
//!
//! [`Random::fill`] must return bytes from a CSPRNG seeded from real entropy
//! (the host's `getrandom`, virtio-rng, RDSEED/RDRAND). If no such source is
//! available, fail with [`ErrorKind::Unavailable`]; never fall back to a
//! predictable generator silently.
//!
//! # For users
//!
//! Security depends on this: TCP initial sequence numbers, SYN cookie
//! secrets, DHCP transaction ids and key material all come from here.
//!
//! ```
//! use mirage_types::random::{Random, RandomError};
//!
//! /// A fresh 128-bit secret.
//! fn new_secret<R: Random>(rng: &R) -> Result<[u8; 16], RandomError> {
//!     let mut key = [0u8; 16];
//!     rng.fill(&mut key)?;
//!     Ok(key)
//! }
//! ```

use alloc::string::String;

error_family!("random" {
    /// No entropy source is available or it failed its health check.
    Unavailable => "no entropy source available",
    /// Any other failure.
    Other => "random source failure",
});

/// The ready-made error of this family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RandomError {
    /// No source of entropy; the message names what was tried.
    #[error("no entropy source available: {0}")]
    Unavailable(String),
    /// Another failure.
    #[error("{message}")]
    Other {
        /// The kind reported.
        kind: ErrorKind,
        /// What failed.
        message: String,
    },
}

impl Error for RandomError {
    fn kind(&self) -> ErrorKind {
        match self {
            RandomError::Unavailable(_) => ErrorKind::Unavailable,
            RandomError::Other { kind, .. } => *kind,
        }
    }
}

/// A cryptographically secure random source.
pub trait Random {
    /// Fills `buf` entirely with random bytes.
    ///
    /// On `Err` the contents of `buf` are unspecified and must not be used.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;

    /// A random `u64`.
    fn next_u64(&self) -> Result<u64, RandomError> {
        let mut bytes = [0u8; 8];
        self.fill(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

forward_handle!(Random {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        (**self).fill(buf)
    }
});
