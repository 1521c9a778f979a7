//! The unix meaning of the shared command line
//! ([`mirage_types::devices::CommandLine`]): which host resources the
//! `--net` and `--block` backings name.
//!
//! ```text
//! --net NAME[=socket]          the host kernel's sockets (the default when no --net is given)
//! --net NAME=tap:IFACE         our own stack on the host TAP interface IFACE
//! --block NAME=PATH[:ro][:direct][:sector=BYTES]
//! ```

use std::ffi::OsString;
use std::path::PathBuf;

use mirage_console::LogFilter;
use mirage_types::devices::{CommandLine, DeviceFlag, UsageError};

use crate::file_block::FileBlockOptions;

/// Linux's interface names are at most 15 bytes (IFNAMSIZ less the NUL).
const MAX_IFACE_LEN: usize = 15;

/// One `--block` flag: a device name and the file behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlockSpec {
    pub name: String,
    pub path: PathBuf,
    pub options: FileBlockOptions,
}

/// How the application's stacks reach the network: all through the host's
/// sockets, or each on a TAP interface with our own stack. The two do not
/// mix in one process (the application is built for one stack type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NetSpecs {
    /// Host sockets; `names` are the names flagged, empty when every name
    /// gets the host's sockets (no `--net` flag).
    Sockets { names: Vec<String> },
    /// `(name, interface)` pairs.
    Taps(Vec<(String, String)>),
}

/// The parsed and checked command line.
#[derive(Debug)]
pub(crate) struct Config {
    pub line: CommandLine,
    pub blocks: Vec<BlockSpec>,
    pub nets: NetSpecs,
    pub log: LogFilter,
}

fn bad(message: String) -> UsageError {
    UsageError::Bad(message)
}

/// Parses the process's arguments (the first being the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Config, UsageError> {
    let words: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|arg| arg.into_string().map_err(|arg| bad(format!("the argument {arg:?} is not UTF-8"))))
        .collect::<Result<_, _>>()?;
    let line = CommandLine::parse(words.iter().map(String::as_str))?;
    let log = line.log.parse::<LogFilter>().map_err(|e| bad(format!("--log {:?}: {e}", line.log)))?;
    let blocks = line.blocks.iter().map(block_spec).collect::<Result<_, _>>()?;
    let nets = net_specs(&line.nets)?;
    Ok(Config { blocks, nets, log, line })
}

/// `NAME=PATH[:ro][:direct][:sector=BYTES]`.
fn block_spec(flag: &DeviceFlag) -> Result<BlockSpec, UsageError> {
    let name = &flag.name;
    let Some(backing) = flag.backing.as_deref() else {
        return Err(bad(format!("--block {name}: give the file on unix: --block {name}=PATH")));
    };
    let mut options = FileBlockOptions::default();
    let mut path = backing;
    // Options are peeled from the right, so a path may itself contain ':'.
    while let Some((head, option)) = path.rsplit_once(':') {
        match option {
            "ro" => options.read_only = true,
            "direct" => options.direct = true,
            _ => match option.strip_prefix("sector=") {
                Some(bytes) => {
                    options.sector_size =
                        bytes.parse::<u32>().ok().filter(|s| s.is_power_of_two() && *s >= 512).ok_or_else(|| {
                            bad(format!(
                                "--block {name}: sector={bytes}: a sector size is a power of two of at least 512"
                            ))
                        })?;
                }
                None => break,
            },
        }
        path = head;
    }
    if path.is_empty() {
        return Err(bad(format!("--block {name}: the path is empty")));
    }
    Ok(BlockSpec { name: name.clone(), path: PathBuf::from(path), options })
}

/// `NAME`, `NAME=socket` or `NAME=tap:IFACE`, all of one kind.
fn net_specs(flags: &[DeviceFlag]) -> Result<NetSpecs, UsageError> {
    let mut sockets = Vec::new();
    let mut taps = Vec::new();
    for flag in flags {
        let name = &flag.name;
        match flag.backing.as_deref() {
            None | Some("socket") => sockets.push(name.clone()),
            Some(backing) => {
                let iface = backing.strip_prefix("tap:").ok_or_else(|| {
                    bad(format!("--net {name}={backing}: on unix a network device is socket or tap:IFACE"))
                })?;
                if iface.is_empty()
                    || iface.len() > MAX_IFACE_LEN
                    || iface.bytes().any(|b| b == b'/' || b.is_ascii_whitespace())
                {
                    return Err(bad(format!(
                        "--net {name}={backing}: {iface:?} is not an interface name (1 to {MAX_IFACE_LEN} bytes, \
                         no '/' or spaces)"
                    )));
                }
                taps.push((name.clone(), iface.to_string()));
            }
        }
    }
    match (sockets.is_empty(), taps.is_empty()) {
        (_, true) => Ok(NetSpecs::Sockets { names: sockets }),
        (true, false) => Ok(NetSpecs::Taps(taps)),
        (false, false) => Err(bad(format!(
            "--net {} uses the host's sockets and --net {} a TAP device: an application's stacks are all of one \
             kind",
            sockets[0], taps[0].0
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Config, UsageError> {
        parse(std::iter::once("test-app").chain(args.iter().copied()).map(OsString::from))
    }

    /// The usage error's message, which must contain `needle`.
    fn refused(args: &[&str], needle: &str) {
        match parse_args(args) {
            Err(UsageError::Bad(message)) => assert!(message.contains(needle), "{args:?}: {message}"),
            other => panic!("{args:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_host_sockets_and_info() {
        let config = parse_args(&[]).unwrap();
        assert!(config.blocks.is_empty());
        assert_eq!(config.nets, NetSpecs::Sockets { names: Vec::new() });
        assert_eq!(config.log.to_string(), "info");
    }

    #[test]
    fn block_backings_with_options() {
        let config =
            parse_args(&["--block", "disk=/tmp/a:b.img:ro", "--block=cache=/dev/sdb:direct:sector=4096"]).unwrap();
        assert_eq!(
            config.blocks,
            [
                BlockSpec {
                    name: "disk".into(),
                    path: "/tmp/a:b.img".into(),
                    options: FileBlockOptions { read_only: true, ..FileBlockOptions::default() },
                },
                BlockSpec {
                    name: "cache".into(),
                    path: "/dev/sdb".into(),
                    options: FileBlockOptions { read_only: false, sector_size: 4096, direct: true },
                },
            ]
        );
    }

    #[test]
    fn net_backings() {
        let taps = parse_args(&["--net", "net0=tap:tap0", "--net", "lan=tap:t1", "--ipv4", "10.0.0.2/24"]).unwrap();
        assert_eq!(taps.nets, NetSpecs::Taps(vec![("net0".into(), "tap0".into()), ("lan".into(), "t1".into())]));
        let sockets = parse_args(&["--net", "net0", "--net", "b=socket"]).unwrap();
        assert_eq!(sockets.nets, NetSpecs::Sockets { names: vec!["net0".into(), "b".into()] });
    }

    #[test]
    fn bad_backings_are_usage_errors() {
        refused(&["--block", "disk"], "--block disk=PATH");
        refused(&["--block", "disk=:ro"], "path is empty");
        refused(&["--block", "d=/x:sector=1000"], "power of two");
        refused(&["--net", "n=tun:x"], "socket or tap:IFACE");
        refused(&["--net", "n=tap:"], "not an interface name");
        refused(&["--net", "n=tap:sixteen-bytes-ab"], "not an interface name");
        refused(&["--net", "a", "--net", "b=tap:t0"], "all of one kind");
        refused(&["-l", "loud"], "--log");
    }

    #[test]
    fn help_is_not_an_error() {
        assert_eq!(parse_args(&["--help"]).unwrap_err(), UsageError::Help);
    }
}
