//! virtio-rng as an entropy source of the platform's DRBG.
//!
//! [`mirage_types::random::Random::fill`] is synchronous, so each fill
//! asks the device for bytes and spins until it answers (virtio-drivers
//! 0.13's `request_entropy`); QEMU answers from the host's `getrandom`
//! within microseconds. The DRBG asks only when it seeds or reseeds
//! (`mirage_rng`), beside RDSEED and RDRAND.

use alloc::format;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt;

use mirage_types::random::{Random, RandomError};
use virtio_drivers::device::rng::VirtIORng;
use virtio_drivers::transport::{DeviceType, SomeTransport};

use crate::discovery::VirtioDevice;
use crate::hal::KernelHal;

/// How many empty answers in a row make the device count as broken.
pub const MAX_EMPTY_ANSWERS: u32 = 16;

/// A virtio-rng device.
pub struct Entropy {
    device: RefCell<VirtIORng<KernelHal, SomeTransport<'static>>>,
}

impl fmt::Debug for Entropy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entropy").finish_non_exhaustive()
    }
}

impl Entropy {
    /// The virtio-rng device `device`, or why it cannot be used (not an
    /// entropy device, or it failed to initialise).
    pub fn new(device: VirtioDevice) -> Result<Entropy, String> {
        if device.kind != DeviceType::EntropySource {
            return Err(format!("{} is a {:?} device, not virtio-rng", device.location, device.kind));
        }
        let location = device.location;
        VirtIORng::<KernelHal, _>::new(device.transport)
            .map(|rng| Entropy { device: RefCell::new(rng) })
            .map_err(|e| format!("virtio-rng at {location} failed to initialise ({e})"))
    }
}

impl Random for Entropy {
    /// Fills `buf` from the device (several requests if it answers with
    /// fewer bytes). `Unavailable` if the device fails a request or answers
    /// [`MAX_EMPTY_ANSWERS`] times in a row with nothing.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let mut device = self.device.borrow_mut();
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
