//! The kv example: a persistent boot counter in a [`LogKv`] store.
//!
//! On every run the application mounts the LogKv store on its block device,
//! prints the value of the key given as its argument (if any), then counts
//! the decimal value at `/boot/count` up by one and logs the new count.
//!
//! A device that holds no store is formatted only if it is blank (every
//! byte zero): anything else might be someone's data, so the application
//! refuses and says why the mount failed.

#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;

use mirage_block::{FormatOptions, LogKv};
use mirage_types::block::{BlockDevice, Operation};
use mirage_types::kv::{Error as _, ErrorKind, Key, KvError, KvRead, KvWrite};
use mirage_types::platform::Platform;
use mirage_types::Bytes;

/// The key of the boot counter.
pub const COUNTER_KEY: &str = "/boot/count";

/// The most bytes one read of the blank check moves, and the size of its one
/// buffer (one sector if sectors are larger).
const BLANK_CHECK_CHUNK: usize = 1024 * 1024;

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the device was blank and got a new store.
    pub formatted: bool,
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
    /// The device holds something that is not a mountable store.
    #[error(
        "the block device holds data but no mountable LogKv store ({mount}); refusing to format over it: \
         zero the device (or recreate the image file) to start a new store"
    )]
    NotAStore {
        /// Why the mount failed.
        mount: KvError,
    },
    /// A block device request failed during the blank check.
    #[error("reading sector {sector} to check whether the device is blank: {message}")]
    Device {
        /// The first sector of the failed request.
        sector: u64,
        /// What the device said.
        message: String,
    },
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

fn store(what: &'static str) -> impl FnOnce(KvError) -> KvAppError {
    move |source| KvAppError::Store { what, source }
}

/// Runs the application once on `device`; see the crate documentation.
///
/// `Ok` means the new count is durable. Errors: [`KvAppError::Usage`] for
/// more than one argument or an invalid key, before the device is touched;
/// [`KvAppError::NotAStore`] if the device is neither a store nor blank
/// (nothing is written); [`KvAppError::BadCounter`] if the counter is not
/// a number (nothing is written); [`KvAppError::Device`] and
/// [`KvAppError::Store`] if the device or the store fail (the counter then
/// holds its old or its new value).
pub async fn start<P: Platform, B: BlockDevice>(platform: P, device: B) -> Result<Outcome, KvAppError> {
    let key = match platform.args() {
        [] => None,
        [key] => Some(Key::parse(key).map_err(|e| KvAppError::Usage(format!("{e}")))?),
        more => return Err(KvAppError::Usage(format!("expected at most one key, got {}", more.len()))),
    };
    let counter = Key::parse(COUNTER_KEY).unwrap_or_else(|_| unreachable!("{COUNTER_KEY} is a valid key"));

    let (kv, formatted) = match LogKv::mount(&device, platform.clone()).await {
        Ok(kv) => (kv, false),
        Err(mount) if mount.kind() == ErrorKind::Corrupt => {
            if !is_blank(&device).await? {
                return Err(KvAppError::NotAStore { mount });
            }
            log::info!("the block device is blank: formatting a new store");
            let kv = LogKv::format(&device, platform.clone(), FormatOptions::default())
                .await
                .map_err(store("formatting the blank device"))?;
            (kv, true)
        }
        Err(e) => return Err(KvAppError::Store { what: "mounting the store", source: e }),
    };

    let mut value = None;
    if let Some(key) = &key {
        match kv.get(key).await {
            Ok(bytes) => {
                match core::str::from_utf8(&bytes) {
                    Ok(text) => log::info!("{key} = {text:?}"),
                    Err(_) => log::info!("{key} = {} bytes of binary data", bytes.len()),
                }
                value = Some(bytes);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => log::info!("{key} is not set"),
            Err(e) => return Err(KvAppError::Store { what: "reading the key asked for", source: e }),
        }
    }

    let old = match kv.get(&counter).await {
        Ok(bytes) => {
            let text = core::str::from_utf8(&bytes).ok();
            text.and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| KvAppError::BadCounter(String::from_utf8_lossy(&bytes).into_owned()))?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(KvAppError::Store { what: "reading the boot counter", source: e }),
    };
    let count = old.checked_add(1).ok_or_else(|| KvAppError::BadCounter(format!("{old} (cannot count further)")))?;
    kv.set(&counter, format!("{count}").as_bytes()).await.map_err(store("writing the boot counter"))?;
    log::info!("boot count: {count}");
    Ok(Outcome { formatted, value, count })
}

/// Whether every byte of `device` is zero. Reads the whole device (only
/// done when no store mounts), [`BLANK_CHECK_CHUNK`] bytes at a time.
async fn is_blank<B: BlockDevice>(device: &B) -> Result<bool, KvAppError> {
    let info = device.info();
    let sector_size = info.sector_size as usize;
    let chunk_sectors = (BLANK_CHECK_CHUNK / sector_size.max(1)).max(1) as u64;
    let mut buffer = vec![0u8; chunk_sectors.min(info.sector_count) as usize * sector_size];
    let mut sector = 0;
    while sector < info.sector_count {
        let count = chunk_sectors.min(info.sector_count - sector);
        let chunk = &mut buffer[..count as usize * sector_size];
        device
            .read(sector, chunk)
            .await
            .map_err(|e| KvAppError::Device { sector, message: format!("{} failed: {e}", Operation::Read) })?;
        if chunk.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        sector += count;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use alloc::string::ToString;
    use alloc::vec::Vec;
    use core::cell::Cell;
    use core::future::Future;
    use core::pin::pin;
    use core::task::{Context, Poll, Waker};

    use mirage_block::MemBlock;
    use mirage_types::random::{Random, RandomError};
    use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};

    use super::*;

    /// Runs a future that never waits (MemBlock never does).
    fn run<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("MemBlock never returns Pending"),
        }
    }

    #[derive(Clone, Default)]
    struct FakePlatform {
        args: Vec<String>,
        ticks: std::rc::Rc<Cell<i64>>,
    }

    impl FakePlatform {
        fn with_args(args: &[&str]) -> FakePlatform {
            FakePlatform { args: args.iter().map(|a| a.to_string()).collect(), ..FakePlatform::default() }
        }
    }

    impl MonotonicClock for FakePlatform {
        fn now(&self) -> Instant {
            Instant::from_millis(self.ticks.get() as u64)
        }
    }
    impl Sleep for FakePlatform {
        async fn sleep_until(&self, _: Instant) {}
    }
    impl WallClock for FakePlatform {
        fn wall_time(&self) -> PosixTime {
            self.ticks.set(self.ticks.get() + 1);
            PosixTime::new(1_700_000_000 + self.ticks.get(), 0).expect("a valid time")
        }
    }
    impl Random for FakePlatform {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
            buf.fill(0x5a);
            Ok(())
        }
    }
    impl Platform for FakePlatform {
        fn spawn(&self, _: impl Future<Output = ()> + 'static) {
            unreachable!("the kv example spawns nothing")
        }
        fn args(&self) -> &[String] {
            &self.args
        }
        fn exit(&self, status: u8) -> ! {
            panic!("the kv example does not exit (status {status})")
        }
    }

    #[test]
    fn a_blank_device_is_formatted_and_the_count_goes_up_by_one_per_run() {
        let disk = MemBlock::new(512, 256).expect("a RAM disk");
        let first = run(start(FakePlatform::default(), &disk)).expect("first run");
        assert_eq!(first, Outcome { formatted: true, value: None, count: 1 });
        let second = run(start(FakePlatform::with_args(&["/boot/count"]), &disk)).expect("second run");
        assert_eq!(second, Outcome { formatted: false, value: Some(Bytes::from_static(b"1")), count: 2 });
        let third = run(start(FakePlatform::with_args(&["missing"]), &disk)).expect("third run");
        assert_eq!(third, Outcome { formatted: false, value: None, count: 3 });
    }

    #[test]
    fn a_device_with_other_data_is_refused_untouched() {
        let mut image = vec![0u8; 256 * 512];
        image[100 * 512 + 7] = 1;
        let disk = MemBlock::from_vec(512, image.clone()).expect("a RAM disk");
        let e = run(start(FakePlatform::default(), &disk)).expect_err("not blank");
        assert!(matches!(e, KvAppError::NotAStore { .. }), "{e}");
        let message = e.to_string();
        assert!(message.contains("not a LogKv store") && message.contains("refusing to format"), "{message}");
        assert_eq!(disk.into_vec(), image);
    }

    #[test]
    fn a_counter_that_is_not_a_number_is_left_alone() {
        let disk = MemBlock::new(512, 256).expect("a RAM disk");
        run(async {
            let kv = LogKv::format(&disk, FakePlatform::default(), FormatOptions::default()).await.expect("format");
            kv.set(&Key::parse(COUNTER_KEY).expect("key"), b"many").await.expect("set");
        });
        let e = run(start(FakePlatform::default(), &disk)).expect_err("bad counter");
        assert_eq!(e.to_string(), "/boot/count holds \"many\", not a decimal count; refusing to overwrite it");
    }

    #[test]
    fn bad_arguments_are_refused_before_the_device_is_touched() {
        let disk = MemBlock::new(512, 256).expect("a RAM disk");
        let e = run(start(FakePlatform::with_args(&["a", "b"]), &disk)).expect_err("two keys");
        assert!(matches!(e, KvAppError::Usage(_)), "{e}");
        let e = run(start(FakePlatform::with_args(&["a//b"]), &disk)).expect_err("bad key");
        assert!(matches!(e, KvAppError::Usage(_)), "{e}");
        assert!(disk.into_vec().iter().all(|&b| b == 0));
    }
}
