//! The entry point of a mirage-rs application on unix: parse the command
//! line, install the logger, build the event loop, connect devices, run.

use std::error::Error;
use std::ffi::OsString;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use mirage_console::Logger;
use mirage_types::ip::Ipv4Cidr;

use crate::console::StdioConsole;
use crate::file_block::{FileBlock, OpenError};
use crate::flags::{self, BlockSpec, NetSpec};
use crate::platform::{HostClock, UnixPlatform};
use crate::socket_stack::SocketStack;
use crate::tap::{TapError, TapNetwork};

/// Exit status of an application whose `start` returned an error, or
/// that could not start.
const EXIT_APP_ERROR: u8 = 1;

/// Runs the application `app_name` as this process and returns its exit
/// status: return it from `main`.
///
/// Parses the process's command line (see the [crate documentation](crate)
/// for the flags), installs a logger over [`StdioConsole`] with the `-l`
/// filter, builds tokio's current-thread runtime with a
/// [`tokio::task::LocalSet`] and awaits `start(platform, devices)` on it.
///
/// The application ends when the future `start` returns completes, as a
/// unikernel ends when its main function returns: tasks it spawned and did
/// not wait for are dropped.
///
/// Exit status: 0 when `start` returns `Ok` (or for `--help`); 1 when it
/// returns `Err` (the error is logged at error level, or printed to
/// stderr if the log filter drops errors) or the runtime cannot
/// be built; 2 for a usage error (unknown or malformed flag, printed with
/// the usage to stderr). [`mirage_types::platform::Platform::exit`] ends
/// the process at once with the status it is given.
pub fn run<F, Fut>(app_name: &'static str, start: F) -> ExitCode
where
    F: FnOnce(UnixPlatform, Devices) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn Error>>>,
{
    run_with_args(app_name, std::env::args_os(), start)
}

/// [`run`] with an explicit command line (`args[0]` is the program name),
/// for tests and wrappers.
pub fn run_with_args<F, Fut>(app_name: &'static str, args: impl IntoIterator<Item = OsString>, start: F) -> ExitCode
where
    F: FnOnce(UnixPlatform, Devices) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn Error>>>,
{
    let config = match flags::parse(app_name, args) {
        Ok(config) => config,
        Err(usage) => {
            // If even stderr is gone, the exit status still tells.
            let _ = usage.print();
            return ExitCode::from(u8::try_from(usage.exit_code()).unwrap_or(2));
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
    let platform = UnixPlatform::new(config.app_args);
    let devices = Devices {
        blocks: config.blocks,
        nets: config.nets,
        ipv4: config.ipv4,
        ipv4_gateway: config.ipv4_gateway,
        console: StdioConsole::new(),
    };
    let outcome = tokio::task::LocalSet::new().block_on(&runtime, start(platform, devices));
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

/// Why an application could not have a device it asked for. The message
/// says which flag to pass or what the host refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// No `--block NAME=...` flag for this name.
    #[error("this application needs a block device named {0}: pass --block {0}=PATH")]
    MissingBlock(String),
    /// No `--net NAME=tap:...` flag for this name.
    #[error("this application needs a network device named {0}: pass --net {0}=tap:IFACE")]
    MissingTap(String),
    /// `--net` flags were given, but not `--net socket`.
    #[error("this application uses the host's sockets: pass --net socket (or no --net at all)")]
    NoSocketStack,
    /// The block device's file could not be opened.
    #[error("block device {name}: {source}")]
    Block {
        /// The device name.
        name: String,
        /// What went wrong.
        source: OpenError,
    },
    /// The TAP interface could not be opened.
    #[error("network device {name}: {source}")]
    Tap {
        /// The device name.
        name: String,
        /// What went wrong.
        source: TapError,
    },
}

/// The devices the command line connected, for the application to take by
/// name.
///
/// Devices are opened when the application asks for them, so an
/// application that does not use a device never touches its host
/// resource. Each call opens the host resource again: ask once and share
/// the handle (`Rc`) if several tasks need it.
#[derive(Debug)]
pub struct Devices {
    blocks: Vec<BlockSpec>,
    nets: Vec<NetSpec>,
    ipv4: Option<Ipv4Cidr>,
    ipv4_gateway: Option<Ipv4Addr>,
    console: StdioConsole,
}

impl Devices {
    /// Opens the block device `name` (from `--block name=PATH`).
    ///
    /// Errors: [`DeviceError::MissingBlock`] when no flag names it,
    /// [`DeviceError::Block`] when the file cannot be opened as asked.
    pub fn block(&self, name: &str) -> Result<FileBlock, DeviceError> {
        let spec =
            self.blocks.iter().find(|b| b.name == name).ok_or_else(|| DeviceError::MissingBlock(name.to_string()))?;
        FileBlock::open(&spec.path, spec.options)
            .map_err(|source| DeviceError::Block { name: name.to_string(), source })
    }

    /// The names of the block devices the command line connected, in order.
    pub fn block_names(&self) -> impl Iterator<Item = &str> {
        self.blocks.iter().map(|b| b.name.as_str())
    }

    /// Opens the network device `name` (from `--net name=tap:IFACE`).
    ///
    /// Errors: [`DeviceError::MissingTap`] when no flag names it,
    /// [`DeviceError::Tap`] when the interface cannot be opened.
    pub fn tap(&self, name: &str) -> Result<TapNetwork, DeviceError> {
        let iface = self
            .nets
            .iter()
            .find_map(|net| match net {
                NetSpec::Tap { name: n, iface } if n == name => Some(iface),
                _ => None,
            })
            .ok_or_else(|| DeviceError::MissingTap(name.to_string()))?;
        TapNetwork::open(iface).map_err(|source| DeviceError::Tap { name: name.to_string(), source })
    }

    /// The host's sockets as a network stack: available with `--net socket`
    /// or when no `--net` flag is given; [`DeviceError::NoSocketStack`]
    /// otherwise.
    pub fn socket_stack(&self) -> Result<SocketStack, DeviceError> {
        if self.nets.contains(&NetSpec::Socket) {
            Ok(SocketStack::new())
        } else {
            Err(DeviceError::NoSocketStack)
        }
    }

    /// The address and network given with `--ipv4`, for the application's
    /// own stack on a TAP device.
    pub fn ipv4(&self) -> Option<Ipv4Cidr> {
        self.ipv4
    }

    /// The gateway given with `--ipv4-gateway` (on the `--ipv4` network
    /// when both are given).
    pub fn ipv4_gateway(&self) -> Option<Ipv4Addr> {
        self.ipv4_gateway
    }

    /// The process's console (stdin and stdout).
    pub fn console(&self) -> StdioConsole {
        self.console.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirage_types::block::BlockDevice;
    use mirage_types::platform::Platform;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("test-app").chain(list.iter().copied()).map(OsString::from).collect()
    }

    #[test]
    fn start_receives_arguments_and_devices() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0u8; 4096]).expect("write image");
        let block_flag = format!("disk={}:ro", image.display());
        let status = run_with_args(
            "test-app",
            args(&["--block", &block_flag, "--", "x", "y"]),
            |platform, devices| async move {
                assert_eq!(platform.args(), ["x", "y"]);
                let disk = devices.block("disk")?;
                assert_eq!(disk.info().sector_count, 8);
                assert!(!disk.info().read_write);
                assert_eq!(devices.block_names().collect::<Vec<_>>(), ["disk"]);
                let missing = devices.block("other").expect_err("no such device");
                assert_eq!(
                    missing.to_string(),
                    "this application needs a block device named other: pass --block other=PATH"
                );
                assert!(matches!(devices.tap("net0"), Err(DeviceError::MissingTap(_))));
                assert!(devices.socket_stack().is_ok(), "sockets are the default");
                assert_eq!(devices.ipv4(), None);
                Ok(())
            },
        );
        assert_eq!(status, ExitCode::SUCCESS);
    }

    #[test]
    fn app_error_and_usage_error_statuses() {
        let failed = run_with_args("test-app", args(&[]), |_, _| async { Err("it broke".into()) });
        assert_eq!(failed, ExitCode::from(EXIT_APP_ERROR));
        let mut started = false;
        let usage = run_with_args("test-app", args(&["--bogus"]), |_, _| {
            started = true;
            async { Ok(()) }
        });
        assert_eq!(usage, ExitCode::from(2));
        assert!(!started, "start must not run after a usage error");
    }

    #[test]
    fn socket_stack_needs_the_flag_when_other_nets_are_given() {
        let status = run_with_args("test-app", args(&["--net", "n=tap:mirage-none"]), |_, devices| async move {
            let e = devices.socket_stack().expect_err("only a tap was given");
            assert!(e.to_string().contains("--net socket"), "{e}");
            Ok(())
        });
        assert_eq!(status, ExitCode::SUCCESS);
    }
}
