//! The device contract: what every platform hands an application, and the
//! command line that names it.
//!
//! An application is started with two values: the [`Platform`] handle
//! (time, randomness, tasks, arguments, exit) and a [`Devices`] value from
//! which it takes, by name, the devices it needs: a network stack, block
//! devices, a read-only key-value store, a read-write key-value store, the
//! console. Every platform implements [`Devices`] and parses the same
//! [`CommandLine`], so an application's code and its users' flags are the
//! same on a Linux process, a virtio unikernel and a Xen guest.
//!
//! # The command line
//!
//! ```text
//! APP [--net NAME[=BACKING]]... [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR]
//!     [--block NAME[=BACKING]]... [-l LEVEL[,MODULE=LEVEL]...] [-- APP-ARGS...]
//! ```
//!
//! - `--net NAME[=BACKING]` connects the network device the application
//!   asks for as `NAME` ([`Devices::stack`]). Without any `--net`, every
//!   name gets the platform's default network.
//! - `--ipv4 ADDR/PREFIX` and `--ipv4-gateway ADDR` give the stack a static
//!   address; without them, a stack of our own asks DHCP.
//! - `--block NAME[=BACKING]` connects the block device the application
//!   asks for as `NAME` ([`Devices::block`], [`Devices::kv_ro`],
//!   [`Devices::kv_rw`]).
//! - `-l` (or `--log`) filters log lines: `-l debug`, `-l warn,mirage_net_stack=trace`.
//! - Everything after `--` is the application's own
//!   ([`Platform::args`](crate::platform::Platform::args)).
//!
//! What a `BACKING` is depends on the platform, and only on it:
//!
//! | platform | `--net` backing | `--block` backing |
//! |---|---|---|
//! | unix | `socket` (the host's sockets, the default) or `tap:IFACE` (our stack on a TAP interface) | `PATH[:ro][:direct][:sector=BYTES]`, required |
//! | virtio | `virtio:N`, the N-th virtio-net device (default: the next one) | `virtio:N`, the N-th virtio-blk device (default: the next one) |
//! | xen | `xen:ID`, the vif with that device id (default: the next one) | `xen:ID`, the vbd with that device id (default: the next one) |
//!
//! A malformed flag, an unknown flag, a name given twice or a backing the
//! platform does not have is a usage error: the platform prints the
//! message and [`CommandLine::USAGE`] and exits with status
//! [`USAGE_STATUS`] (2). `-h`/`--help` prints the usage and exits with 0.
//!
//! # For implementors
//!
//! Parse the command line with [`CommandLine::parse`], interpret each
//! backing with your own devices, and refuse what you cannot connect
//! before the application starts. Devices are connected when the
//! application asks for them. A stack is started and addressed before
//! [`Devices::stack`] returns it (a DHCP lease is waited for, bounded);
//! asking again for the same name returns the same stack. A block device is
//! connected once: asking again for the same name (as a block device or as
//! a store) is [`DeviceErrorKind::Taken`].
//!
//! # For users
//!
//! ```
//! use mirage_types::devices::Devices;
//! use mirage_types::kv::{Key, KvRead};
//! use mirage_types::platform::{AppError, Platform};
//!
//! /// Fails unless the store on the block device `data` has a `/motd`.
//! async fn start<P: Platform, D: Devices>(_platform: P, devices: D) -> Result<(), AppError> {
//!     let Some(store) = devices.kv_ro("data").await? else {
//!         return Err("give a tar archive with --block data=...".into());
//!     };
//!     let motd = Key::parse("motd")?;
//!     match store.size(&motd).await? {
//!         0 => Err("/motd is empty".into()),
//!         _ => Ok(()),
//!     }
//! }
//! ```
//!
//! [`Platform`]: crate::platform::Platform

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use crate::block::BlockDevice;
use crate::console::Console;
use crate::ip::Ipv4Cidr;
use crate::kv::{self, KvRead, KvWrite};
use crate::stack::Stack;

/// The exit status of a usage error, on every platform.
pub const USAGE_STATUS: u8 = 2;

/// The most `--net` plus `--block` flags one command line may give.
pub const MAX_DEVICE_FLAGS: usize = 64;

/// The most application arguments (after `--`).
pub const MAX_APP_ARGS: usize = 1024;

/// The log filter when no `-l` is given.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// The devices a platform hands an application, taken by name.
///
/// See the [module documentation](self) for the flags that name them and
/// the rules every implementation follows.
pub trait Devices {
    /// The network stack: UDP, TCP, ICMP echo.
    type Stack: Stack + 'static;
    /// A block device.
    type Block: BlockDevice + 'static;
    /// A read-only key-value store on a block device (a tar archive).
    type KvRo: KvRead + 'static;
    /// A read-write, crash-safe key-value store on a block device.
    type KvRw: KvWrite + 'static;
    /// The console.
    type Console: Console + 'static;

    /// The network stack on the network device `name`, started and with
    /// an address (static from `--ipv4`, else from DHCP, waited for up to
    /// a bound the platform documents). Asking again for the same name
    /// returns the same stack.
    ///
    /// Errors: [`DeviceErrorKind::Missing`] when `--net` flags were given
    /// but none names `name` (or the platform has no network device at
    /// all); [`DeviceErrorKind::Setup`] when the device or the stack fails
    /// to start; [`DeviceErrorKind::NoAddress`] when no address came in time.
    async fn stack(&self, name: &str) -> Result<Self::Stack, DeviceError>;

    /// The block device `--block name` connected.
    ///
    /// Errors: [`DeviceErrorKind::Missing`] when no flag names it,
    /// [`DeviceErrorKind::Taken`] when it was connected already,
    /// [`DeviceErrorKind::Setup`] when it fails to open.
    async fn block(&self, name: &str) -> Result<Self::Block, DeviceError>;

    /// Whether a `--block name` flag was given (connecting nothing).
    fn has_block(&self, name: &str) -> bool;

    /// The read-only store in the tar archive on the block device `name`,
    /// or `Ok(None)` when no `--block name` flag was given, so that the
    /// application can fall back to its own files (see
    /// [`Devices::kv_ro_or`]).
    ///
    /// Errors: those of [`Devices::block`], and [`DeviceErrorKind::Store`]
    /// when the archive cannot be read.
    async fn kv_ro(&self, name: &str) -> Result<Option<Self::KvRo>, DeviceError>;

    /// The read-write store (a crash-safe log) on the block device `name`:
    /// mounted if the device holds one, formatted if the device is blank
    /// (its first two sectors are zero). A device holding anything else is
    /// never formatted over.
    ///
    /// Errors: those of [`Devices::block`], and [`DeviceErrorKind::Store`]
    /// when the device holds something other than a store, or a damaged
    /// one.
    async fn kv_rw(&self, name: &str) -> Result<Self::KvRw, DeviceError>;

    /// The console (a process's stdin and stdout; a unikernel's serial or
    /// PV console).
    fn console(&self) -> Self::Console;

    /// The read-only store on the block device `name` if a flag names one,
    /// else `builtin` (typically the files compiled into the application).
    async fn kv_ro_or<K: KvRead + 'static>(
        &self,
        name: &str,
        builtin: K,
    ) -> Result<kv::Either<Self::KvRo, K>, DeviceError> {
        Ok(match self.kv_ro(name).await? {
            Some(store) => kv::Either::Left(store),
            None => kv::Either::Right(builtin),
        })
    }
}

/// What went wrong when connecting a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceErrorKind {
    /// No flag names the device, or the platform has no such device.
    Missing,
    /// The device was connected already.
    Taken,
    /// The device failed to open or start.
    Setup,
    /// The stack got no address in time.
    NoAddress,
    /// The key-value store on the device cannot be mounted.
    Store,
}

impl fmt::Display for DeviceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceErrorKind::Missing => "no such device",
            DeviceErrorKind::Taken => "device connected already",
            DeviceErrorKind::Setup => "device failed to start",
            DeviceErrorKind::NoAddress => "no network address",
            DeviceErrorKind::Store => "cannot mount the store",
        })
    }
}

/// Why a device could not be connected: its kind, the device's name, and
/// a message that names the device and says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct DeviceError {
    kind: DeviceErrorKind,
    name: String,
    text: String,
}

impl DeviceError {
    /// An error of `kind` for the device `name`; the text is
    /// `NAME: MESSAGE`.
    pub fn new(kind: DeviceErrorKind, name: &str, message: impl fmt::Display) -> DeviceError {
        DeviceError { kind, name: name.to_string(), text: format!("{name}: {message}") }
    }

    /// The same message on every platform for a device no flag names;
    /// `example` is a flag that would name it on this platform.
    pub fn missing(flag: &str, name: &str, example: &str) -> DeviceError {
        let text = format!("this application needs a {} named {name}: pass {example}", flag_noun(flag));
        DeviceError { kind: DeviceErrorKind::Missing, name: name.to_string(), text }
    }

    /// The same message on every platform for a device asked for twice.
    pub fn taken(name: &str) -> DeviceError {
        DeviceError::new(
            DeviceErrorKind::Taken,
            name,
            "connected already: a device is connected once; share the handle (Rc) instead",
        )
    }

    /// What went wrong.
    pub fn kind(&self) -> DeviceErrorKind {
        self.kind
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn flag_noun(flag: &str) -> &'static str {
    if flag == "--net" {
        "network device"
    } else {
        "block device"
    }
}

/// One `--net` or `--block` flag: the name the application asks for and
/// the platform's backing, if one was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFlag {
    /// The name: letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// What follows `=`: interpreted by the platform (see the module
    /// documentation's table).
    pub backing: Option<String>,
}

/// The command line every platform takes, parsed; see the [module
/// documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// `--net` flags, in order.
    pub nets: Vec<DeviceFlag>,
    /// `--block` flags, in order.
    pub blocks: Vec<DeviceFlag>,
    /// `--ipv4`.
    pub ipv4: Option<Ipv4Cidr>,
    /// `--ipv4-gateway` (on the `--ipv4` network).
    pub ipv4_gateway: Option<Ipv4Addr>,
    /// `-l`: the log filter's text, [`DEFAULT_LOG_FILTER`] by default. Its
    /// syntax is the logger's: the platform checks it.
    pub log: String,
    /// Everything after `--`.
    pub app_args: Vec<String>,
}

impl Default for CommandLine {
    fn default() -> CommandLine {
        CommandLine {
            nets: Vec::new(),
            blocks: Vec::new(),
            ipv4: None,
            ipv4_gateway: None,
            log: DEFAULT_LOG_FILTER.to_string(),
            app_args: Vec::new(),
        }
    }
}

/// Why a command line was refused, or a request for help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// `-h` or `--help`: print [`CommandLine::USAGE`], exit with 0.
    Help,
    /// A bad command line: print the message and the usage, exit with
    /// [`USAGE_STATUS`].
    Bad(String),
}

impl UsageError {
    /// The process or VM exit status this calls for.
    pub fn status(&self) -> u8 {
        match self {
            UsageError::Help => 0,
            UsageError::Bad(_) => USAGE_STATUS,
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Help => f.write_str(CommandLine::USAGE),
            UsageError::Bad(message) => write!(f, "error: {message}\n\n{}", CommandLine::USAGE),
        }
    }
}

impl core::error::Error for UsageError {}

fn bad(message: String) -> UsageError {
    UsageError::Bad(message)
}

impl CommandLine {
    /// The usage text, the same on every platform.
    pub const USAGE: &'static str = "\
usage: APP [--net NAME[=BACKING]]... [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR]
           [--block NAME[=BACKING]]... [-l LEVEL[,MODULE=LEVEL]...] [-- APP-ARGS...]

  --net NAME[=BACKING]    connect the network device NAME
                            unix: socket (host sockets, the default) or tap:IFACE
                            virtio: virtio:N    xen: xen:ID    (default: the next device)
  --ipv4 ADDR/PREFIX      static address of our own stack (default: DHCP)
  --ipv4-gateway ADDR     default gateway, on the --ipv4 network
  --block NAME[=BACKING]  connect the block device NAME
                            unix: PATH[:ro][:direct][:sector=BYTES]
                            virtio: virtio:N    xen: xen:ID    (default: the next device)
  -l, --log FILTER        log levels: off, error, warn, info (default), debug, trace,
                            and MODULE=LEVEL pairs, comma-separated
  -h, --help              print this and exit
  --                      the application's own arguments follow
";

    /// Parses `words` (without a program name).
    ///
    /// Errors: [`UsageError::Help`] for `-h`/`--help`; [`UsageError::Bad`]
    /// naming the flag for an unknown flag, a missing or malformed value, a
    /// device name given twice, more than [`MAX_DEVICE_FLAGS`] device flags
    /// or [`MAX_APP_ARGS`] application arguments, or a gateway off the
    /// `--ipv4` network.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<CommandLine, UsageError> {
        let mut line = CommandLine::default();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            if word == "--" {
                for arg in words.by_ref() {
                    if line.app_args.len() == MAX_APP_ARGS {
                        return Err(bad(format!("more than {MAX_APP_ARGS} application arguments")));
                    }
                    line.app_args.push(arg.to_string());
                }
                break;
            }
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (word, None),
            };
            let mut value = |flag: &str| match inline {
                Some(value) => Ok(value),
                None => words.next().ok_or_else(|| bad(format!("{flag} needs a value"))),
            };
            match flag {
                "-h" | "--help" => return Err(UsageError::Help),
                "--net" => {
                    let spec = device_flag("--net", value("--net")?)?;
                    line.push_device(spec, "--net")?;
                }
                "--block" => {
                    let spec = device_flag("--block", value("--block")?)?;
                    line.push_device(spec, "--block")?;
                }
                "--ipv4" => {
                    let text = value("--ipv4")?;
                    let cidr = text.parse::<Ipv4Cidr>().map_err(|e| bad(format!("--ipv4 {text:?}: {e}")))?;
                    line.ipv4 = Some(cidr);
                }
                "--ipv4-gateway" => {
                    let text = value("--ipv4-gateway")?;
                    let gateway = text
                        .parse::<Ipv4Addr>()
                        .map_err(|_| bad(format!("--ipv4-gateway {text:?} is not an IPv4 address")))?;
                    line.ipv4_gateway = Some(gateway);
                }
                "-l" | "--log" => {
                    let text = value("--log")?;
                    if text.is_empty() {
                        return Err(bad("--log needs a filter, e.g. -l debug".to_string()));
                    }
                    line.log = text.to_string();
                }
                _ if word.starts_with('-') => {
                    return Err(bad(format!("unknown flag {word:?} (the application's own flags go after `--`)")))
                }
                _ => {
                    return Err(bad(format!(
                        "unexpected argument {word:?} (the application's own arguments go after `--`)"
                    )))
                }
            }
        }
        if let Some(gateway) = line.ipv4_gateway {
            match line.ipv4 {
                None => return Err(bad(format!("--ipv4-gateway {gateway} needs --ipv4"))),
                Some(net) if !net.contains(gateway) => {
                    return Err(bad(format!("--ipv4-gateway {gateway} is not on the network of --ipv4 {net}")))
                }
                Some(_) => {}
            }
        }
        Ok(line)
    }

    fn push_device(&mut self, spec: DeviceFlag, flag: &str) -> Result<(), UsageError> {
        if self.nets.len() + self.blocks.len() >= MAX_DEVICE_FLAGS {
            return Err(bad(format!("more than {MAX_DEVICE_FLAGS} --net and --block flags")));
        }
        let list = if flag == "--net" { &mut self.nets } else { &mut self.blocks };
        if list.iter().any(|other| other.name == spec.name) {
            return Err(bad(format!(
                "{flag}: the device name {:?} is given twice; each device needs its own name",
                spec.name
            )));
        }
        list.push(spec);
        Ok(())
    }

    /// The `--net` flag naming `name`, if any.
    pub fn net(&self, name: &str) -> Option<&DeviceFlag> {
        self.nets.iter().find(|flag| flag.name == name)
    }

    /// The `--block` flag naming `name`, if any.
    pub fn block(&self, name: &str) -> Option<&DeviceFlag> {
        self.blocks.iter().find(|flag| flag.name == name)
    }
}

/// `NAME` or `NAME=BACKING`.
fn device_flag(flag: &str, value: &str) -> Result<DeviceFlag, UsageError> {
    let (name, backing) = match value.split_once('=') {
        None => (value, None),
        Some((_, "")) => return Err(bad(format!("{flag} {value:?}: nothing after '=' (give NAME or NAME=BACKING)"))),
        Some((name, backing)) => (name, Some(backing.to_string())),
    };
    check_name(flag, name)?;
    Ok(DeviceFlag { name: name.to_string(), backing })
}

/// The longest device name.
const MAX_NAME_LEN: usize = 64;

fn check_name(flag: &str, name: &str) -> Result<(), UsageError> {
    if name.is_empty() {
        return Err(bad(format!("{flag}: the device name before '=' is empty")));
    }
    if name.len() > MAX_NAME_LEN
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(bad(format!(
            "{flag}: the device name {name:?} may hold only letters, digits, '_', '-' and '.' (at most \
             {MAX_NAME_LEN})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<CommandLine, UsageError> {
        CommandLine::parse(line.split_ascii_whitespace())
    }

    fn flag(name: &str, backing: Option<&str>) -> DeviceFlag {
        DeviceFlag { name: name.into(), backing: backing.map(Into::into) }
    }

    /// The message of a usage error, which must contain `needle`.
    fn refused(line: &str, needle: &str) {
        match parse(line) {
            Err(UsageError::Bad(message)) => assert!(message.contains(needle), "{line:?}: {message}"),
            other => panic!("{line:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn an_empty_line_is_the_defaults() {
        assert_eq!(parse("").unwrap(), CommandLine::default());
        assert_eq!(CommandLine::default().log, "info");
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let line = parse(
            "--net net0 --net=lan=tap:tap0 --block disk=/tmp/a:b.img:ro --block=htdocs --ipv4 10.0.0.2/24 \
             --ipv4-gateway=10.0.0.1 -l warn,mirage_net_stack=debug -- --port 80 --net x",
        )
        .unwrap();
        assert_eq!(line.nets, [flag("net0", None), flag("lan", Some("tap:tap0"))]);
        assert_eq!(line.blocks, [flag("disk", Some("/tmp/a:b.img:ro")), flag("htdocs", None)]);
        assert_eq!(line.ipv4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(line.ipv4_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(line.log, "warn,mirage_net_stack=debug");
        assert_eq!(line.app_args, ["--port", "80", "--net", "x"], "after -- everything is the application's");
        assert_eq!(line.net("lan"), Some(&flag("lan", Some("tap:tap0"))));
        assert_eq!(line.block("nope"), None);
        assert_eq!(parse("--log=debug").unwrap().log, "debug");
    }

    #[test]
    fn malformed_flags_are_named() {
        refused("--block", "--block needs a value");
        refused("--net =tap:x", "device name before '=' is empty");
        refused("--block d!sk=/x", "may hold only");
        refused("--block disk=", "nothing after '='");
        refused("--block d --block d", "given twice");
        refused("--ipv4 10.0.0.2", "--ipv4 \"10.0.0.2\"");
        refused("--ipv4 10.0.0.2/33", "--ipv4");
        refused("--ipv4 10.0.0.2/24 --ipv4-gateway 10.0.0", "is not an IPv4 address");
        refused("--ipv4-gateway 10.0.0.1", "needs --ipv4");
        refused("--ipv4 10.0.0.2/24 --ipv4-gateway 10.0.1.1", "not on the network");
        refused("-l", "--log needs a value");
        refused("--log=", "needs a filter");
        refused("--port 80", "unknown flag \"--port\"");
        refused("stray", "unexpected argument \"stray\"");
    }

    #[test]
    fn names_may_repeat_across_kinds_but_counts_are_bounded() {
        assert!(parse("--block x=/a --net x=tap:t").is_ok(), "block and network names are separate");
        let many: String = (0..=MAX_DEVICE_FLAGS).map(|i| format!("--block d{i} ")).collect();
        refused(&many, "more than");
        let args = format!("-- {}", "a ".repeat(MAX_APP_ARGS + 1));
        refused(&args, "application arguments");
    }

    #[test]
    fn help_is_not_an_error_and_errors_carry_the_usage() {
        assert_eq!(parse("--ipv4 10.0.0.2/24 -h").unwrap_err(), UsageError::Help);
        assert_eq!(UsageError::Help.status(), 0);
        let e = parse("--frob").unwrap_err();
        assert_eq!(e.status(), USAGE_STATUS);
        assert!(e.to_string().contains("usage: APP [--net"), "{e}");
    }

    #[test]
    fn device_errors_say_what_to_pass() {
        let e = DeviceError::missing("--block", "htdocs", "--block htdocs=PATH");
        assert_eq!(e.kind(), DeviceErrorKind::Missing);
        assert_eq!(e.to_string(), "this application needs a block device named htdocs: pass --block htdocs=PATH");
        assert_eq!(e.name(), "htdocs");
        let e = DeviceError::new(DeviceErrorKind::Setup, "disk", "cannot open /x");
        assert_eq!(e.to_string(), "disk: cannot open /x");
        assert_eq!(DeviceError::taken("disk").kind(), DeviceErrorKind::Taken);
    }
}
