//! The entry point of a mirage-rs application on unix: parse the command
//! line, install the logger, build the event loop, hand the application
//! its platform and devices.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::process::ExitCode;
use std::rc::Rc;

use mirage_block::devices::{log_store, tar_store};
use mirage_block::{LogKv, TarKv};
use mirage_console::Logger;
use mirage_net_stack::stack::NetStack;
use mirage_types::devices::{CommandLine, DeviceError, DeviceErrorKind, Devices, UsageError};
use mirage_types::platform::{App, AppError};

use crate::console::StdioConsole;
use crate::file_block::FileBlock;
use crate::flags::{self, BlockSpec, NetSpecs};
use crate::platform::{HostClock, UnixPlatform};
use crate::socket_stack::SocketStack;
use crate::tap::TapNetwork;

/// Exit status of an application whose `start` returned an error, or
/// that could not start.
const EXIT_APP_ERROR: u8 = 1;

/// Runs `app` as this process and returns its exit status: return it from
/// `main` (`mirage::main!` does).
///
/// Parses the process's command line (the flags of
/// [`mirage_types::devices`]; see the [crate documentation](crate) for what
/// their backings mean here), installs a logger over [`StdioConsole`] with
/// the `-l` filter, builds tokio's current-thread runtime with a
/// [`tokio::task::LocalSet`] and awaits [`App::start`] on it with a
/// [`UnixPlatform`] and [`UnixDevices`]: over [`SocketNet`] (the host's
/// sockets) unless `--net NAME=tap:IFACE` flags ask for [`TapNet`] (our own
/// stack on TAP interfaces).
///
/// The application ends when `start` returns, as a unikernel ends when its
/// main function returns: tasks it spawned and did not wait for are dropped.
///
/// Exit status: 0 when `start` returns `Ok` (or for `--help`); 1 when it
/// returns `Err` (the error is logged at error level, or printed to stderr
/// if the log filter drops errors) or the runtime cannot be built; 2 for a
/// usage error (printed with the usage to stderr).
/// [`mirage_types::platform::Platform::exit`] ends the process at once with
/// the status it is given.
pub fn run(app_name: &'static str, app: impl App) -> ExitCode {
    run_with_args(app_name, std::env::args_os(), app)
}

/// [`run`] with an explicit command line (`args[0]` is the program name),
/// for tests and wrappers.
pub fn run_with_args(app_name: &'static str, args: impl IntoIterator<Item = OsString>, app: impl App) -> ExitCode {
    let config = match flags::parse(args) {
        Ok(config) => config,
        Err(UsageError::Help) => {
            print!("{app_name}: a mirage-rs application\n\n{}", CommandLine::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(usage) => {
            eprintln!("{app_name}: {usage}");
            return ExitCode::from(usage.status());
        }
    };
    if Logger::new(StdioConsole::new(), HostClock, config.log.clone()).install().is_err() {
        // Only when the process runs several applications (tests): the
        // first logger stays, with its own filter.
        log::debug!("a logger is already installed; keeping it");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("{app_name}: cannot start the tokio event loop: {e}");
            return ExitCode::from(EXIT_APP_ERROR);
        }
    };
    let platform = UnixPlatform::new(config.line.app_args.clone());
    let blocks = BlockTable::new(config.blocks);
    let outcome = match config.nets {
        NetSpecs::Sockets { names } => {
            let net = SocketNet { names };
            let devices = UnixDevices { platform: platform.clone(), blocks, net };
            tokio::task::LocalSet::new().block_on(&runtime, app.start(platform, devices))
        }
        NetSpecs::Taps(taps) => {
            let net = TapNet {
                platform: platform.clone(),
                taps,
                ipv4: config.line.ipv4,
                ipv4_gateway: config.line.ipv4_gateway,
                started: RefCell::new(BTreeMap::new()),
            };
            let devices = UnixDevices { platform: platform.clone(), blocks, net };
            tokio::task::LocalSet::new().block_on(&runtime, app.start(platform, devices))
        }
    };
    report(app_name, outcome)
}

/// The exit status of an application's outcome, logging its error.
fn report(app_name: &str, outcome: Result<(), AppError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The reason for a failure must get out even under `-l off`.
            if log::log_enabled!(log::Level::Error) {
                log::error!("{app_name}: {e}");
            } else {
                eprintln!("{app_name}: {e}");
            }
            ExitCode::from(EXIT_APP_ERROR)
        }
    }
}

/// How a unix application's stacks reach the network: [`SocketNet`] or
/// [`TapNet`], chosen by the `--net` flags. Not for implementation outside
/// this crate.
pub trait UnixNet {
    /// The stack handed out.
    type Stack: mirage_types::stack::Stack + 'static;

    /// The stack for the network device `name`.
    #[allow(async_fn_in_trait)]
    async fn stack(&self, name: &str) -> Result<Self::Stack, DeviceError>;
}

/// The host kernel's sockets (`--net NAME`, `--net NAME=socket`, or no
/// `--net` at all, which gives them to every name).
#[derive(Debug)]
pub struct SocketNet {
    /// The names flagged; empty means every name.
    names: Vec<String>,
}

impl UnixNet for SocketNet {
    type Stack = SocketStack;

    async fn stack(&self, name: &str) -> Result<SocketStack, DeviceError> {
        if self.names.is_empty() || self.names.iter().any(|n| n == name) {
            Ok(SocketStack::new())
        } else {
            Err(DeviceError::missing("--net", name, &format!("--net {name} (host sockets) or --net {name}=tap:IFACE")))
        }
    }
}

/// Our own stack on host TAP interfaces (`--net NAME=tap:IFACE`), with
/// `--ipv4`/`--ipv4-gateway` for the first one started, DHCP for the
/// others. Each name's stack is started once and shared.
pub struct TapNet {
    platform: UnixPlatform,
    taps: Vec<(String, String)>,
    ipv4: Option<mirage_types::ip::Ipv4Cidr>,
    ipv4_gateway: Option<std::net::Ipv4Addr>,
    started: RefCell<BTreeMap<String, Rc<NetStack<TapNetwork, UnixPlatform>>>>,
}

impl std::fmt::Debug for TapNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapNet").field("taps", &self.taps).field("ipv4", &self.ipv4).finish()
    }
}

impl UnixNet for TapNet {
    type Stack = Rc<NetStack<TapNetwork, UnixPlatform>>;

    async fn stack(&self, name: &str) -> Result<Self::Stack, DeviceError> {
        if let Some(stack) = self.started.borrow().get(name) {
            return Ok(stack.clone());
        }
        let Some((_, iface)) = self.taps.iter().find(|(n, _)| n == name) else {
            return Err(DeviceError::missing("--net", name, &format!("--net {name}=tap:IFACE")));
        };
        let tap = TapNetwork::open(iface)
            .map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("TAP interface {iface}: {e}")))?;
        let (ipv4, gateway) =
            if self.started.borrow().is_empty() { (self.ipv4, self.ipv4_gateway) } else { (None, None) };
        let stack =
            NetStack::start(tap, self.platform.clone(), name, ipv4, gateway).await.map_err(|e| e.for_device(name))?;
        self.started.borrow_mut().insert(name.to_string(), stack.clone());
        Ok(stack)
    }
}

/// The `--block` flags, each connected at most once.
#[derive(Debug)]
struct BlockTable {
    specs: Vec<BlockSpec>,
    taken: RefCell<HashSet<String>>,
}

impl BlockTable {
    fn new(specs: Vec<BlockSpec>) -> BlockTable {
        BlockTable { specs, taken: RefCell::new(HashSet::new()) }
    }

    fn spec(&self, name: &str) -> Option<&BlockSpec> {
        self.specs.iter().find(|spec| spec.name == name)
    }

    fn open(&self, name: &str) -> Result<FileBlock, DeviceError> {
        let spec =
            self.spec(name).ok_or_else(|| DeviceError::missing("--block", name, &format!("--block {name}=PATH")))?;
        if !self.taken.borrow_mut().insert(name.to_string()) {
            return Err(DeviceError::taken(name));
        }
        FileBlock::open(&spec.path, spec.options).map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, e))
    }
}

/// The devices of a unix application: host files as block devices, the
/// network through `N` ([`SocketNet`] or [`TapNet`]), stdio as the console.
/// See [`mirage_types::devices::Devices`] for the contract.
#[derive(Debug)]
pub struct UnixDevices<N> {
    platform: UnixPlatform,
    blocks: BlockTable,
    net: N,
}

impl<N: UnixNet> Devices for UnixDevices<N> {
    type Stack = N::Stack;
    type Block = FileBlock;
    type KvRo = TarKv<FileBlock>;
    type KvRw = LogKv<FileBlock, UnixPlatform>;
    type Console = StdioConsole;

    async fn stack(&self, name: &str) -> Result<N::Stack, DeviceError> {
        self.net.stack(name).await
    }

    async fn block(&self, name: &str) -> Result<FileBlock, DeviceError> {
        self.blocks.open(name)
    }

    fn has_block(&self, name: &str) -> bool {
        self.blocks.spec(name).is_some()
    }

    async fn kv_ro(&self, name: &str) -> Result<Option<TarKv<FileBlock>>, DeviceError> {
        if !self.has_block(name) {
            return Ok(None);
        }
        let block = self.blocks.open(name)?;
        let store = tar_store(name, block).await?;
        log::info!("{name}: a tar archive of {} entries", store.stats().entries);
        Ok(Some(store))
    }

    async fn kv_rw(&self, name: &str) -> Result<LogKv<FileBlock, UnixPlatform>, DeviceError> {
        let block = self.blocks.open(name)?;
        let (store, opened) = log_store(name, block, self.platform.clone()).await?;
        log::info!("{name}: {opened}");
        Ok(store)
    }

    fn console(&self) -> StdioConsole {
        StdioConsole::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirage_types::block::BlockDevice;
    use mirage_types::kv::{Key, KvRead, KvWrite};
    use mirage_types::platform::Platform;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("test-app").chain(list.iter().copied()).map(OsString::from).collect()
    }

    /// An application given as a closure over the socket-network devices
    /// (what every test here uses).
    struct Closure<F>(F);

    impl<F, Fut> App for Closure<F>
    where
        F: FnOnce(Vec<String>, Box<dyn std::any::Any>) -> Fut,
        Fut: std::future::Future<Output = Result<(), AppError>>,
    {
        async fn start<P: Platform, D: Devices>(self, platform: P, devices: D) -> Result<(), AppError> {
            (self.0)(platform.args().to_vec(), Box::new(DevicesProbe::probe(&devices).await)).await
        }
    }

    /// What the tests look at, taken through the generic contract.
    struct DevicesProbe {
        disk_sectors: Option<u64>,
        disk_again: Option<DeviceErrorKind>,
        other: Option<String>,
        store_value: Option<Vec<u8>>,
    }

    impl DevicesProbe {
        async fn probe<D: Devices>(devices: &D) -> DevicesProbe {
            let disk = devices.block("disk").await;
            let disk_sectors = disk.as_ref().ok().map(|d| d.info().sector_count);
            let disk_again = devices.block("disk").await.err().map(|e| e.kind());
            let other = devices.block("other").await.err().map(|e| e.to_string());
            let store_value = match devices.kv_rw("store").await {
                Ok(store) => {
                    let key = Key::parse("count").unwrap();
                    store.set(&key, b"1").await.unwrap();
                    Some(store.get(&key).await.unwrap().to_vec())
                }
                Err(_) => None,
            };
            DevicesProbe { disk_sectors, disk_again, other, store_value }
        }
    }

    #[test]
    fn start_receives_arguments_and_devices_by_name() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0u8; 4096]).expect("write image");
        let store = dir.path().join("store.img");
        std::fs::write(&store, vec![0u8; 64 * 512]).expect("write store image");
        let block_flag = format!("disk={}:ro", image.display());
        let store_flag = format!("store={}", store.display());
        let status = run_with_args(
            "test-app",
            args(&["--block", &block_flag, "--block", &store_flag, "--", "x", "y"]),
            Closure(|app_args: Vec<String>, probe: Box<dyn std::any::Any>| async move {
                let probe = probe.downcast::<DevicesProbe>().expect("a probe");
                assert_eq!(app_args, ["x", "y"]);
                assert_eq!(probe.disk_sectors, Some(8));
                assert_eq!(probe.disk_again, Some(DeviceErrorKind::Taken));
                assert_eq!(
                    probe.other.as_deref(),
                    Some("this application needs a block device named other: pass --block other=PATH")
                );
                assert_eq!(probe.store_value.as_deref(), Some(&b"1"[..]), "a blank device is formatted as a store");
                Ok(())
            }),
        );
        assert_eq!(status, ExitCode::SUCCESS);
    }

    #[test]
    fn app_error_and_usage_error_statuses() {
        let failed = run_with_args("test-app", args(&[]), Closure(|_, _| async { Err("it broke".into()) }));
        assert_eq!(failed, ExitCode::from(EXIT_APP_ERROR));
        let usage = run_with_args(
            "test-app",
            args(&["--bogus"]),
            Closure(|_, _| async { panic!("start must not run after a usage error") }),
        );
        assert_eq!(usage, ExitCode::from(2));
        let help = run_with_args("test-app", args(&["--help"]), Closure(|_, _| async { panic!("not after --help") }));
        assert_eq!(help, ExitCode::SUCCESS);
    }

    #[test]
    fn socket_names_are_checked_when_flagged() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let every = SocketNet { names: Vec::new() };
            assert!(every.stack("anything").await.is_ok());
            let flagged = SocketNet { names: vec!["net0".into()] };
            assert!(flagged.stack("net0").await.is_ok());
            let e = flagged.stack("lan").await.unwrap_err();
            assert_eq!(e.kind(), DeviceErrorKind::Missing);
            assert!(e.to_string().contains("--net lan"), "{e}");
        });
    }
}
