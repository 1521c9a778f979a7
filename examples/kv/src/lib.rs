//! The kv example: a persistent boot counter in a `LogKv` store (`mirage-block`).
//!
//! On every run the application mounts the LogKv store on its block device,
//! prints the value of the key given as its argument (if any), then counts
//! the decimal value at `/boot/count` up by one and logs the new count.
//!
//! The store is the platform's read-write store on the block device named
//! `store` ([`Devices::kv_rw`]): a device that holds no store is formatted
//! only if it is blank (every byte zero); anything else might be someone's
//! data, so the platform refuses and says why the mount failed.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;

use mirage::devices::{DeviceError, Devices};
use mirage::kv::{Error as _, ErrorKind, Key, KvError, KvWrite};
use mirage::platform::Platform;
use mirage::Bytes;

/// The key of the boot counter.
pub const COUNTER_KEY: &str = "/boot/count";

/// The block device the store is on.
pub const STORE_DEVICE: &str = "store";

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The value of the key asked for: `None` if no key was asked for or it
    /// is not set.
    pub value: Option<Bytes>,
    /// The boot count after this run (1 on the first run).
    pub count: u64,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvAppError {
    /// The arguments are not one optional key.
    #[error("usage: kv [KEY]: {0}")]
    Usage(String),
    /// The store could not be had: no such device, or it holds something
    /// other than a store (the platform says which, and never formats over
    /// data).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The counter holds something other than a decimal number.
    #[error("{COUNTER_KEY} holds {0:?}, not a decimal count; refusing to overwrite it")]
    BadCounter(String),
    /// A store operation failed.
    #[error("{what}: {source}")]
    Store {
        /// What the application was doing.
        what: &'static str,
        /// The store's error.
        source: KvError,
    },
}

fn store<E: mirage::kv::Error>(what: &'static str) -> impl FnOnce(E) -> KvAppError {
    move |e| KvAppError::Store { what, source: KvError::from_error(&e) }
}

/// Runs the application once: counts up the store on the block device
/// [`STORE_DEVICE`]; see [`count`].
///
/// Errors: [`KvAppError::Usage`] for more than one argument or an invalid
/// key, before the device is touched; [`KvAppError::Device`] if the store
/// cannot be had; then those of [`count`].
pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<(), KvAppError> {
    let key = match platform.args() {
        [] => None,
        [key] => Some(Key::parse(key).map_err(|e| KvAppError::Usage(format!("{e}")))?),
        more => return Err(KvAppError::Usage(format!("expected at most one key, got {}", more.len()))),
    };
    let store = devices.kv_rw(STORE_DEVICE).await?;
    count(&store, key.as_ref()).await.map(|_| ())
}

/// Logs the value of `key` (if given) and counts the boot counter up.
///
/// `Ok` means the new count is durable. Errors: [`KvAppError::BadCounter`]
/// if the counter is not a number (nothing is written);
/// [`KvAppError::Store`] if the store fails (the counter then holds its
/// old or its new value).
pub async fn count<S: KvWrite>(kv: &S, key: Option<&Key>) -> Result<Outcome, KvAppError> {
    let counter = Key::parse(COUNTER_KEY).unwrap_or_else(|_| unreachable!("{COUNTER_KEY} is a valid key"));
    let mut value = None;
    if let Some(key) = key {
        match kv.get(key).await {
            Ok(bytes) => {
                match core::str::from_utf8(&bytes) {
                    Ok(text) => log::info!("{key} = {text:?}"),
                    Err(_) => log::info!("{key} = {} bytes of binary data", bytes.len()),
                }
                value = Some(bytes);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => log::info!("{key} is not set"),
            Err(e) => return Err(store("reading the key asked for")(e)),
        }
    }

    let old = match kv.get(&counter).await {
        Ok(bytes) => {
            let text = core::str::from_utf8(&bytes).ok();
            text.and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| KvAppError::BadCounter(String::from_utf8_lossy(&bytes).into_owned()))?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(store("reading the boot counter")(e)),
    };
    let count = old.checked_add(1).ok_or_else(|| KvAppError::BadCounter(format!("{old} (cannot count further)")))?;
    kv.set(&counter, format!("{count}").as_bytes()).await.map_err(store("writing the boot counter"))?;
    log::info!("boot count: {count}");
    Ok(Outcome { value, count })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    use alloc::string::ToString;
    use mirage::kv::KvRead;
    use mirage::time::PosixTime;
    use mirage_block::{FormatOptions, LogKv, MemBlock};

    use super::*;

    /// Runs a future that never waits (MemBlock never does).
    fn run<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("MemBlock never returns Pending"),
        }
    }

    /// Modification times for the store: the epoch will do.
    #[derive(Clone, Copy)]
    struct Epoch;

    impl mirage::time::WallClock for Epoch {
        fn wall_time(&self) -> PosixTime {
            PosixTime::EPOCH
        }
    }

    fn store() -> LogKv<MemBlock, Epoch> {
        let disk = MemBlock::new(512, 256).expect("a RAM disk");
        run(LogKv::format(disk, Epoch, FormatOptions::default())).expect("format")
    }

    fn key(text: &str) -> Key {
        Key::parse(text).expect("a valid key")
    }

    #[test]
    fn the_count_goes_up_by_one_per_run_and_a_key_is_read() {
        let kv = store();
        assert_eq!(run(count(&kv, None)).expect("first run"), Outcome { value: None, count: 1 });
        let second = run(count(&kv, Some(&key(COUNTER_KEY)))).expect("second run");
        assert_eq!(second, Outcome { value: Some(Bytes::from_static(b"1")), count: 2 });
        let third = run(count(&kv, Some(&key("missing")))).expect("third run");
        assert_eq!(third, Outcome { value: None, count: 3 });
    }

    #[test]
    fn a_counter_that_is_not_a_number_is_left_alone() {
        let kv = store();
        run(kv.set(&key(COUNTER_KEY), b"many")).expect("set");
        let e = run(count(&kv, None)).expect_err("bad counter");
        assert_eq!(e.to_string(), "/boot/count holds \"many\", not a decimal count; refusing to overwrite it");
        assert_eq!(&run(kv.get(&key(COUNTER_KEY))).expect("get")[..], b"many");
    }
}
