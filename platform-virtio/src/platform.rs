//! The platform handle, the devices and [`run`]: the entry point of a
//! virtio unikernel.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::future::Future;
use core::net::Ipv4Addr;

use mirage_block::devices::{log_store, tar_store};
use mirage_block::{LogKv, TarKv};
use mirage_kernel::{usage_exit, BootInfo, KernelClock, KernelPlatform, SerialConsole};
use mirage_net_stack::stack::NetStack;
use mirage_rng::{Drbg, DrbgConfig};
use mirage_types::devices::{CommandLine, DeviceError, DeviceErrorKind, Devices, UsageError};
use mirage_types::ip::Ipv4Cidr;
use mirage_types::platform::{App, AppError, Platform};
use mirage_types::random::{Random, RandomError};
use mirage_types::time::{Instant, MonotonicClock, PosixTime, Sleep, WallClock};
use virtio_drivers::transport::DeviceType;

use crate::blk::VirtioBlock;
use crate::discovery::{self, VirtioDevice};
use crate::flags::{device_specs, DeviceSpec};
use crate::net::VirtioNet;
use crate::rng::Entropy;

/// The platform handle of virtio unikernels: `mirage-kernel`'s clocks,
/// timers, executor and power-off, with a DRBG seeded from virtio-rng,
/// RDSEED and RDRAND. Cheap to clone; clones share one event loop.
#[derive(Clone)]
pub struct VirtioPlatform {
    kernel: KernelPlatform,
    random: Rc<Drbg<KernelClock>>,
}

impl fmt::Debug for VirtioPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioPlatform").field("random", &self.random).finish()
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
    /// From the platform's DRBG (`mirage_rng`), seeded and reseeded from
    /// virtio-rng (if the machine has one), RDSEED and RDRAND. Fails only at
    /// the first fill, with `Unavailable`, if none of them answers.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        self.random.fill(buf)
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

/// The stack a virtio application gets: ours, on a virtio-net device.
pub type VirtioStack = Rc<NetStack<VirtioNet, VirtioPlatform>>;

/// The virtio-net devices and the stacks started on them.
struct NetTable {
    /// Devices named by `--net` flags, until their stack is started.
    named: BTreeMap<String, VirtioDevice>,
    /// Without `--net` flags: the devices not yet given to a name, in
    /// discovery order (each new name takes the first).
    unnamed: Vec<VirtioDevice>,
    started: BTreeMap<String, VirtioStack>,
}

/// The devices of a virtio unikernel: virtio-blk devices, our stack on
/// virtio-net devices, the serial console. See
/// [`mirage_types::devices::Devices`] for the contract and [`crate::flags`]
/// for how flags name devices; without `--net` flags, each name the
/// application asks a stack for takes the next virtio-net device.
pub struct VirtioDevices {
    platform: VirtioPlatform,
    blocks: RefCell<BTreeMap<String, Option<VirtioDevice>>>,
    nets: RefCell<NetTable>,
    ipv4: Option<Ipv4Cidr>,
    ipv4_gateway: Option<Ipv4Addr>,
}

impl fmt::Debug for VirtioDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks: Vec<String> = self.blocks.borrow().keys().cloned().collect();
        f.debug_struct("VirtioDevices").field("blocks", &blocks).field("ipv4", &self.ipv4).finish()
    }
}

impl VirtioDevices {
    /// The virtio-blk device `--block name` named, connected once.
    fn take_block(&self, name: &str) -> Result<VirtioBlock, DeviceError> {
        let device = match self.blocks.borrow_mut().get_mut(name) {
            None => return Err(DeviceError::missing("--block", name, &format!("--block {name}[=virtio:N]"))),
            Some(slot) => slot.take().ok_or_else(|| DeviceError::taken(name))?,
        };
        VirtioBlock::new(device).map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, e.to_string()))
    }

    /// The virtio-net device for a new stack named `name`.
    fn take_net(&self, name: &str) -> Result<VirtioDevice, DeviceError> {
        let mut nets = self.nets.borrow_mut();
        if let Some(device) = nets.named.remove(name) {
            return Ok(device);
        }
        if nets.unnamed.is_empty() {
            let example = format!("--net {name}[=virtio:N] (and give the VM a virtio-net device)");
            return Err(DeviceError::missing("--net", name, &example));
        }
        Ok(nets.unnamed.remove(0))
    }
}

impl Devices for VirtioDevices {
    type Stack = VirtioStack;
    type Block = VirtioBlock;
    type KvRo = TarKv<VirtioBlock>;
    type KvRw = LogKv<VirtioBlock, VirtioPlatform>;
    type Console = SerialConsole;

    async fn stack(&self, name: &str) -> Result<VirtioStack, DeviceError> {
        if let Some(stack) = self.nets.borrow().started.get(name) {
            return Ok(stack.clone());
        }
        let device = self.take_net(name)?;
        let nic = VirtioNet::new(device).map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, e.to_string()))?;
        let first = self.nets.borrow().started.is_empty();
        let (ipv4, gateway) = if first { (self.ipv4, self.ipv4_gateway) } else { (None, None) };
        let stack =
            NetStack::start(nic, self.platform.clone(), name, ipv4, gateway).await.map_err(|e| e.for_device(name))?;
        self.nets.borrow_mut().started.insert(name.to_string(), stack.clone());
        Ok(stack)
    }

    async fn block(&self, name: &str) -> Result<VirtioBlock, DeviceError> {
        self.take_block(name)
    }

    fn has_block(&self, name: &str) -> bool {
        self.blocks.borrow().contains_key(name)
    }

    async fn kv_ro(&self, name: &str) -> Result<Option<TarKv<VirtioBlock>>, DeviceError> {
        if !self.has_block(name) {
            return Ok(None);
        }
        let store = tar_store(name, self.take_block(name)?).await?;
        log::info!("{name}: a tar archive of {} entries", store.stats().entries);
        Ok(Some(store))
    }

    async fn kv_rw(&self, name: &str) -> Result<LogKv<VirtioBlock, VirtioPlatform>, DeviceError> {
        let block = self.take_block(name)?;
        let (store, opened) = log_store(name, block, self.platform.clone()).await?;
        log::info!("{name}: {opened}");
        Ok(store)
    }

    fn console(&self) -> SerialConsole {
        SerialConsole
    }
}

/// Assigns the discovered devices of a kind to the flags' names; a flag
/// whose index has no device is a usage error.
fn assign(
    app_name: &str,
    specs: &[DeviceSpec],
    found: &mut [Option<VirtioDevice>],
    flag: &str,
    what: &str,
) -> BTreeMap<String, VirtioDevice> {
    let mut named = BTreeMap::new();
    for spec in specs {
        match found.get_mut(spec.index).and_then(Option::take) {
            Some(device) => {
                log::info!("{flag} {}: {what} virtio:{} at {}", spec.name, spec.index, device.location);
                named.insert(spec.name.clone(), device);
            }
            None => usage_exit(
                app_name,
                &UsageError::Bad(format!(
                    "{flag} {}=virtio:{}: there is no such device; this machine has {} {what} device(s), numbered \
                     from 0 in discovery order",
                    spec.name,
                    spec.index,
                    found.len()
                )),
            ),
        }
    }
    named
}

/// Runs `app` as this kernel (what `mirage::main!` calls): see
/// [`run_with`].
pub fn run(boot: BootInfo, app_name: &'static str, app: impl App + 'static) -> ! {
    run_with(boot, app_name, move |platform, devices| app.start(platform, devices))
}

/// Runs `start` as this kernel with the concrete platform and devices (for
/// the platform's own test images): parses the command line
/// ([`CommandLine`]; a usage error or a device that does not exist powers
/// off with status 2 after printing why and the usage on the serial port),
/// installs the logger on the serial port, discovers the virtio devices,
/// seeds the platform's DRBG from virtio-rng and the CPU, and awaits
/// `start(platform, devices)`.
///
/// Powers off with 0 when `start` returns `Ok`, and with
/// `mirage_kernel::platform::APP_ERROR_STATUS` after logging the error when
/// it returns `Err`.
pub fn run_with<F, Fut>(boot: BootInfo, app_name: &'static str, start: F) -> !
where
    F: FnOnce(VirtioPlatform, VirtioDevices) -> Fut + 'static,
    Fut: Future<Output = Result<(), AppError>> + 'static,
{
    let line =
        CommandLine::parse(boot.command_line.split_ascii_whitespace()).unwrap_or_else(|e| usage_exit(app_name, &e));
    let block_specs = device_specs(&line.blocks, "--block").unwrap_or_else(|e| usage_exit(app_name, &e));
    let net_specs = device_specs(&line.nets, "--net").unwrap_or_else(|e| usage_exit(app_name, &e));
    let rsdp_paddr = boot.rsdp_paddr;
    let (ipv4, ipv4_gateway) = (line.ipv4, line.ipv4_gateway);
    mirage_kernel::run_parsed(boot, &line.log, line.app_args, move |kernel| async move {
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
        let named_blocks = assign(app_name, &block_specs, &mut blocks, "--block", "virtio-blk");
        let named_nets = assign(app_name, &net_specs, &mut nets, "--net", "virtio-net");
        let unnamed = if net_specs.is_empty() { nets.into_iter().flatten().collect() } else { Vec::new() };
        let rng = if rngs.is_empty() { None } else { Some(rngs.remove(0)) };
        let mut random = Drbg::new(KernelClock, DrbgConfig::default());
        match rng.map(Entropy::new) {
            Some(Ok(device)) => random.add_source("virtio-rng", device),
            Some(Err(why)) => log::warn!("{why}; randomness comes from the CPU's sources only"),
            None => log::debug!("no virtio-rng device: randomness comes from the CPU's sources only"),
        }
        mirage_kernel::entropy::add_cpu_sources(&mut random);
        log::debug!("entropy sources: {}", mirage_kernel::entropy::describe(&random));
        let platform = VirtioPlatform { kernel, random: Rc::new(random) };
        let devices = VirtioDevices {
            platform: platform.clone(),
            blocks: RefCell::new(named_blocks.into_iter().map(|(name, device)| (name, Some(device))).collect()),
            nets: RefCell::new(NetTable { named: named_nets, unnamed, started: BTreeMap::new() }),
            ipv4,
            ipv4_gateway,
        };
        start(platform, devices).await.map_err(|error| AppFailure { app_name, error })
    })
}

/// An application's error, prefixed with its name when logged.
struct AppFailure {
    app_name: &'static str,
    error: AppError,
}

impl fmt::Display for AppFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.app_name, self.error)
    }
}
