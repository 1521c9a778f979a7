//! virtio-rng as the platform's entropy source, RDRAND without one.
//!
//! [`mirage_types::random::Random::fill`] is synchronous, so each fill
//! asks the device for bytes and spins until it answers (virtio-drivers
//! 0.13's `request_entropy`); QEMU answers from the host's `getrandom`
//! within microseconds. The bytes are the device's own, unmixed: the
//! device is the host's CSPRNG. Without a virtio-rng device, fills go to
//! `mirage_kernel::KernelPlatform`'s RDRAND, which fails with
//! `Unavailable` on CPUs without it.

use alloc::format;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt;

use mirage_kernel::KernelPlatform;
use mirage_types::random::{Random, RandomError};
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::{DeviceType, SomeTransport};

use crate::discovery::VirtioDevice;
use crate::hal::KernelHal;

/// How many empty answers in a row make the device count as broken.
pub const MAX_EMPTY_ANSWERS: u32 = 16;

/// The entropy source: a virtio-rng device, or RDRAND.
pub struct Entropy {
    device: Option<RefCell<VirtIORng<KernelHal, SomeTransport<'static>>>>,
    fallback: KernelPlatform,
}

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entropy").field("virtio_rng", &self.device.is_some()).finish()
    }
}

impl Entropy {
    /// Entropy from `device` (a virtio-rng device) if given and it
    /// initialises, else RDRAND through `fallback`. Returns a warning to log
    /// when a device was given and could not be used.
    pub fn new(device: Option<VirtioDevice>, fallback: KernelPlatform) -> (Entropy, Option<String>) {
        let mut warning = None;
        let device = device.and_then(|device| {
            if device.kind != DeviceType::EntropySource {
                warning = Some(format!("{} is a {:?} device, not virtio-rng", device.location, device.kind));
                return None;
            }
            match VirtIORng::<KernelHal, _>::new(device.transport) {
                Ok(rng) => Some(RefCell::new(rng)),
                Err(e) => {
                    warning =
                        Some(format!("virtio-rng at {} failed to initialise ({e}); using RDRAND", device.location));
                    None
                }
            }
        });
        (Entropy { device, fallback }, warning)
    }

    /// Whether a virtio-rng device is the source.
    pub fn has_device(&self) -> bool {
        self.device.is_some()
    }
}

impl Random for Entropy {
    /// Fills `buf` from the virtio-rng device (several requests if it
    /// answers with fewer bytes), or RDRAND without one. `Unavailable` if
    /// the device fails a request or answers [`MAX_EMPTY_ANSWERS`] times in
    /// a row with nothing, or, without a device, if RDRAND is unavailable.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let Some(device) = &self.device else { return self.fallback.fill(buf) };
        let mut device = device.borrow_mut();
        let (mut filled, mut empty) = (0, 0);
        while filled < buf.len() {
            let n = device
                .request_entropy(&mut buf[filled..])
                .map_err(|e| RandomError::Unavailable(format!("the virtio-rng device failed a request: {e}")))?;
            if n == 0 {
                empty += 1;
                if empty == MAX_EMPTY_ANSWERS {
                    return Err(RandomError::Unavailable(format!(
                        "the virtio-rng device answered {MAX_EMPTY_ANSWERS} requests in a row with no bytes"
                    )));
                }
            } else {
                empty = 0;
            }
            filled += n.min(buf.len() - filled);
        }
        Ok(())
    }
}
