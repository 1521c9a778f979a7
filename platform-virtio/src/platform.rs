//! The platform handle and [`run`]: the entry point of a virtio unikernel.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt::{self, Write as _};
use core::future::Future;
use core::net::Ipv4Addr;

use mirage_kernel::arch::power;
use mirage_kernel::arch::serial::Uart16550;
use mirage_kernel::platform::USAGE_STATUS;
use mirage_kernel::{BootInfo, KernelPlatform};
use mirage_types::ip::Ipv4Cidr;
use mirage_types::platform::Platform;
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};
use virtio_drivers::transport::DeviceType;

use crate::blk::{BlockSetupError, VirtioBlock};
use crate::discovery::{self, VirtioDevice};
use crate::flags::{DeviceSpec, PlatformFlags};
use crate::net::{NetSetupError, VirtioNet};
use crate::rng::Entropy;

/// The platform handle of virtio unikernels: `mirage-kernel`'s clocks,
/// timers, executor and power-off, with virtio-rng as the entropy source.
/// Cheap to clone; clones share one event loop.
#[derive(Clone)]
pub struct VirtioPlatform {
    kernel: KernelPlatform,
    entropy: Rc<Entropy>,
}

impl fmt::Debug for VirtioPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioPlatform").field("entropy", &self.entropy).finish()
    }
}

impl VirtioPlatform {
    /// The kernel's own handle, for what only it offers.
    pub fn kernel(&self) -> &KernelPlatform {
        &self.kernel
    }
}

impl MonotonicClock for VirtioPlatform {
    fn now(&self) -> Instant {
        self.kernel.now()
    }
}

impl WallClock for VirtioPlatform {
    fn wall_time(&self) -> PosixTime {
        self.kernel.wall_time()
    }
}

impl Sleep for VirtioPlatform {
    /// Cancel-safe, as the kernel's.
    async fn sleep_until(&self, deadline: Instant) {
        self.kernel.sleep_until(deadline).await
    }
}

impl Random for VirtioPlatform {
    /// See [`Entropy`]: virtio-rng, or RDRAND without it.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.entropy.fill(buf)
    }
}

impl Platform for VirtioPlatform {
    fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.kernel.spawn(task)
    }

    fn args(&self) -> &[String] {
        self.kernel.args()
    }

    fn exit(&self, status: u8) -> ! {
        self.kernel.exit(status)
    }
}

/// Why an application could not have a device it asked for.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeviceError {
    /// No `--block NAME` flag for this name.
    MissingBlock(String),
    /// No `--net NAME` flag for this name.
    MissingNet(String),
    /// The device was taken already (each is connected once).
    Taken(String),
    /// The block device could not be set up.
    Block(BlockSetupError),
    /// The network device could not be set up.
    Net(NetSetupError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::MissingBlock(name) => write!(
                f,
                "this application needs a block device named {name}: pass --block {name} (the first virtio-blk \
                 device) or --block {name}=virtio:N on the kernel command line"
            ),
            DeviceError::MissingNet(name) => write!(
                f,
                "this application needs a network device named {name}: pass --net {name} or \
                 --net {name}=virtio:N on the kernel command line"
            ),
            DeviceError::Taken(name) => write!(f, "the device {name} is connected already"),
            DeviceError::Block(e) => write!(f, "{e}"),
            DeviceError::Net(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for DeviceError {}

/// The devices the command line named, for the application to take by
/// name. Each device can be taken once.
#[derive(Debug)]
pub struct Devices {
    blocks: RefCell<BTreeMap<String, Option<VirtioDevice>>>,
    nets: RefCell<BTreeMap<String, Option<VirtioDevice>>>,
    ipv4: Option<Ipv4Cidr>,
    ipv4_gateway: Option<Ipv4Addr>,
}

impl Devices {
    /// Connects the block device `--block NAME` named.
    ///
    /// Errors: no such flag, taken already, or the device failed to set up.
    pub fn block(&self, name: &str) -> Result<VirtioBlock, DeviceError> {
        let device = take(&self.blocks, name, DeviceError::MissingBlock)?;
        VirtioBlock::new(device).map_err(DeviceError::Block)
    }

    /// Connects the network device `--net NAME` named, with this crate's
    /// driver ([`VirtioNet`]).
    ///
    /// Errors: no such flag, taken already, or the device failed to set up.
    pub fn net(&self, name: &str) -> Result<VirtioNet, DeviceError> {
        VirtioNet::new(self.net_device(name)?).map_err(DeviceError::Net)
    }

    /// The virtio-net device `--net NAME` named, for a network driver to
    /// set up (use [`Devices::net`] for this crate's driver). Errors: no
    /// such flag, or taken already.
    pub fn net_device(&self, name: &str) -> Result<VirtioDevice, DeviceError> {
        take(&self.nets, name, DeviceError::MissingNet)
    }

    /// `--ipv4`, if given.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.ipv4
    }

    /// `--ipv4-gateway`, if given.
    pub fn ipv4_gateway(&self) -> Option<Ipv4Addr> {
        self.ipv4_gateway
    }
}

fn take(
    map: &RefCell<BTreeMap<String, Option<VirtioDevice>>>,
    name: &str,
    missing: fn(String) -> DeviceError,
) -> Result<VirtioDevice, DeviceError> {
    match map.borrow_mut().get_mut(name) {
        None => Err(missing(name.to_string())),
        Some(slot) => slot.take().ok_or_else(|| DeviceError::Taken(name.to_string())),
    }
}

/// Prints a usage error and powers off with [`USAGE_STATUS`]. The logger
/// may not be installed yet, so this writes to the serial port itself.
fn usage_error(message: &dyn fmt::Display) -> ! {
    let _ = writeln!(Uart16550::com1(), "mirage-platform-virtio: {message}");
    Uart16550::com1().flush();
    power::power_off(USAGE_STATUS)
}

/// Assigns the discovered devices of `kind` to the flags' names; a flag
/// whose index has no device is a usage error.
fn assign(
    specs: &[DeviceSpec],
    found: &mut [Option<VirtioDevice>],
    flag: &str,
    what: &str,
) -> BTreeMap<String, Option<VirtioDevice>> {
    let mut named = BTreeMap::new();
    for spec in specs {
        match found.get_mut(spec.index).and_then(Option::take) {
            Some(device) => {
                log::info!("{flag} {}: {what} virtio:{} at {}", spec.name, spec.index, device.location);
                named.insert(spec.name.clone(), Some(device));
            }
            None => usage_error(&format_args!(
                "{flag} {}=virtio:{}: there is no such device; this machine has {} {what} device(s), \
                 numbered from 0 in discovery order",
                spec.name,
                spec.index,
                found.len()
            )),
        }
    }
    named
}

/// Runs the application `app_name` as this kernel: takes the platform's
/// flags off the command line (see [`crate::flags`]; a malformed flag or a
/// device that does not exist powers off with [`USAGE_STATUS`] after
/// saying why), lets `mirage_kernel::run` take the rest (`-l`, `--`),
/// discovers the virtio devices, sets up virtio-rng as the entropy source,
/// and awaits `start(platform, devices)`.
///
/// Powers off with 0 when `start` returns `Ok`, and with
/// `mirage_kernel::platform::APP_ERROR_STATUS` after logging the error when
/// it returns `Err`.
pub fn run<F, Fut>(boot: BootInfo, app_name: &'static str, start: F) -> !
where
    F: FnOnce(VirtioPlatform, Devices) -> Fut + 'static,
    Fut: Future<Output = Result<(), Box<dyn core::error::Error>>> + 'static,
{
    let (flags, kernel_line) = PlatformFlags::parse(&boot.command_line).unwrap_or_else(|e| usage_error(&e));
    let boot = BootInfo { command_line: kernel_line, ..boot };
    let rsdp_paddr = boot.rsdp_paddr;
    mirage_kernel::run(boot, move |kernel| async move {
        let (found, skipped) = discovery::discover(rsdp_paddr);
        for skip in &skipped {
            log::warn!("{skip}");
        }
        let (mut blocks, mut nets, mut rngs) = (Vec::new(), Vec::new(), Vec::new());
        for device in found {
            log::debug!("found a virtio {:?} device at {} (GSI {})", device.kind, device.location, device.gsi);
            match device.kind {
                DeviceType::Block => blocks.push(Some(device)),
                DeviceType::Network => nets.push(Some(device)),
                DeviceType::EntropySource => rngs.push(device),
                _ => {}
            }
        }
        let devices = Devices {
            blocks: RefCell::new(assign(&flags.blocks, &mut blocks, "--block", "virtio-blk")),
            nets: RefCell::new(assign(&flags.nets, &mut nets, "--net", "virtio-net")),
            ipv4: flags.ipv4,
            ipv4_gateway: flags.ipv4_gateway,
        };
        let rng = if rngs.is_empty() { None } else { Some(rngs.remove(0)) };
        let (entropy, warning) = Entropy::new(rng, kernel.clone());
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
        if !entropy.has_device() {
            log::debug!("no virtio-rng device: randomness comes from RDRAND");
        }
        let platform = VirtioPlatform { kernel, entropy: Rc::new(entropy) };
        start(platform, devices).await.map_err(|e| AppError { app_name, error: e })
    })
}

/// An application's error, prefixed with its name when logged.
struct AppError {
    app_name: &'static str,
    error: Box<dyn core::error::Error>,
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.app_name, self.error)
    }
}
