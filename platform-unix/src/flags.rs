//! The runner's command line: which host resources become which devices.
//!
//! In the MirageOS spirit, the application names the devices it needs and
//! the command line connects each name to something on the host:
//!
//! ```text
//! APP [--block NAME=PATH[:ro][:direct][:sector=BYTES]]... [--net NAME=tap:IFACE | --net socket]...
//!     [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR] [-l LEVEL[,MODULE=LEVEL]...] [-- APP-ARGS...]
//! ```

use std::collections::HashSet;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use mirage_console::LogFilter;
use mirage_types::ip::Ipv4Cidr;

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

/// One `--net` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NetSpec {
    /// `--net socket`: the host kernel's sockets.
    Socket,
    /// `--net NAME=tap:IFACE`.
    Tap { name: String, iface: String },
}

#[derive(Parser, Debug)]
#[command(
    about = "A mirage-rs application running as a Linux process",
    after_help = "Arguments after `--` are passed to the application."
)]
struct Flags {
    /// Connect the block device NAME to the file or host block device PATH.
    /// Suffixes: `:ro` read-only, `:direct` O_DIRECT, `:sector=BYTES` the
    /// sector size (default 512). Repeatable.
    #[arg(long = "block", value_name = "NAME=PATH[:ro]", value_parser = parse_block)]
    blocks: Vec<BlockSpec>,

    /// Connect the network device NAME to the host TAP interface IFACE
    /// (`NAME=tap:IFACE`), or give the application the host's sockets
    /// (`socket`, the default when no --net is given). Repeatable.
    #[arg(long = "net", value_name = "NAME=tap:IFACE|socket", value_parser = parse_net)]
    nets: Vec<NetSpec>,

    /// The IPv4 address and network of the application's own stack.
    #[arg(long, value_name = "ADDR/PREFIX")]
    ipv4: Option<Ipv4Cidr>,

    /// The IPv4 default gateway of the application's own stack.
    #[arg(long = "ipv4-gateway", value_name = "ADDR")]
    ipv4_gateway: Option<Ipv4Addr>,

    /// What to log: a default level (off, error, warn, info, debug, trace)
    /// and per-module levels.
    #[arg(short = 'l', long = "log", value_name = "LEVEL[,MODULE=LEVEL]", default_value = "info")]
    log: LogFilter,

    /// The application's own arguments.
    #[arg(last = true, value_name = "APP-ARGS")]
    app_args: Vec<String>,
}

/// The parsed and checked command line.
#[derive(Debug)]
pub(crate) struct Config {
    pub blocks: Vec<BlockSpec>,
    /// Never empty: `[Socket]` when no `--net` was given.
    pub nets: Vec<NetSpec>,
    pub ipv4: Option<Ipv4Cidr>,
    pub ipv4_gateway: Option<Ipv4Addr>,
    pub log: LogFilter,
    pub app_args: Vec<String>,
}

/// Parses `args` (the first being the program name) for the application
/// `app_name`. `Err` is a usage error (exit status 2) or a request for
/// help (exit status 0): print it with [`clap::Error::print`].
pub(crate) fn parse(app_name: &'static str, args: impl IntoIterator<Item = OsString>) -> Result<Config, clap::Error> {
    let mut command = Flags::command().name(app_name);
    let matches = command.try_get_matches_from_mut(args)?;
    let flags = Flags::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;

    let mut block_names = HashSet::new();
    for block in &flags.blocks {
        if !block_names.insert(block.name.as_str()) {
            return Err(command.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--block: the device name {:?} is given twice; each device needs its own name", block.name),
            ));
        }
    }
    let mut net_names = HashSet::new();
    let mut sockets = 0;
    for net in &flags.nets {
        match net {
            NetSpec::Socket => sockets += 1,
            NetSpec::Tap { name, .. } if !net_names.insert(name.as_str()) => {
                return Err(command.error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--net: the device name {name:?} is given twice; each device needs its own name"),
                ));
            }
            NetSpec::Tap { .. } => {}
        }
    }
    if sockets > 1 {
        return Err(command
            .error(clap::error::ErrorKind::ArgumentConflict, "--net socket is given twice; the host has one stack"));
    }
    if flags.ipv4_gateway.is_some_and(|gw| flags.ipv4.is_some_and(|net| !net.contains(gw))) {
        return Err(command.error(
            clap::error::ErrorKind::ValueValidation,
            format!(
                "--ipv4-gateway {} is not on the network of --ipv4 {}",
                flags.ipv4_gateway.unwrap_or(Ipv4Addr::UNSPECIFIED),
                flags.ipv4.map(|n| n.to_string()).unwrap_or_default()
            ),
        ));
    }

    let nets = if flags.nets.is_empty() { vec![NetSpec::Socket] } else { flags.nets };
    Ok(Config {
        blocks: flags.blocks,
        nets,
        ipv4: flags.ipv4,
        ipv4_gateway: flags.ipv4_gateway,
        log: flags.log,
        app_args: flags.app_args,
    })
}

/// A device name: what the application asks for in `Devices`.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the device name before '=' is empty".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.') {
        return Err(format!("the device name {name:?} may hold only letters, digits, '_', '-' and '.'"));
    }
    Ok(())
}

/// `NAME=PATH[:ro][:direct][:sector=BYTES]`.
fn parse_block(spec: &str) -> Result<BlockSpec, String> {
    let (name, rest) = spec.split_once('=').ok_or("expected NAME=PATH, e.g. disk=/tmp/disk.img")?;
    check_name(name)?;
    let mut options = FileBlockOptions::default();
    let mut path = rest;
    // Options are peeled from the right, so a path may itself contain ':'.
    while let Some((head, option)) = path.rsplit_once(':') {
        match option {
            "ro" => options.read_only = true,
            "direct" => options.direct = true,
            _ => match option.strip_prefix("sector=") {
                Some(bytes) => {
                    options.sector_size =
                        bytes.parse::<u32>().ok().filter(|s| s.is_power_of_two() && *s >= 512).ok_or_else(|| {
                            format!("sector={bytes}: a sector size is a power of two of at least 512")
                        })?;
                }
                None => break,
            },
        }
        path = head;
    }
    if path.is_empty() {
        return Err(format!("the path of block device {name:?} is empty"));
    }
    Ok(BlockSpec { name: name.to_string(), path: PathBuf::from(path), options })
}

/// `socket` or `NAME=tap:IFACE`.
fn parse_net(spec: &str) -> Result<NetSpec, String> {
    if spec == "socket" {
        return Ok(NetSpec::Socket);
    }
    let (name, target) = spec.split_once('=').ok_or("expected NAME=tap:IFACE or socket")?;
    check_name(name)?;
    let iface = target.strip_prefix("tap:").ok_or_else(|| format!("{target:?}: expected tap:IFACE"))?;
    if iface.is_empty() || iface.len() > MAX_IFACE_LEN || iface.bytes().any(|b| b == b'/' || b.is_ascii_whitespace()) {
        return Err(format!("{iface:?} is not an interface name (1 to {MAX_IFACE_LEN} bytes, no '/' or spaces)"));
    }
    Ok(NetSpec::Tap { name: name.to_string(), iface: iface.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Config, clap::Error> {
        parse("test-app", std::iter::once("test-app").chain(args.iter().copied()).map(OsString::from))
    }

    /// The rendered usage error, which must name `flag`.
    fn usage_error(args: &[&str], flag: &str) -> String {
        let e = parse_args(args).expect_err("a usage error");
        assert_eq!(e.exit_code(), 2, "{e}");
        let text = e.render().to_string();
        assert!(text.contains(flag), "error for {args:?} does not name {flag}: {text}");
        text
    }

    #[test]
    fn defaults() {
        let config = parse_args(&[]).expect("no flags is fine");
        assert!(config.blocks.is_empty());
        assert_eq!(config.nets, [NetSpec::Socket]);
        assert_eq!(config.log.to_string(), "info");
        assert!(config.ipv4.is_none() && config.ipv4_gateway.is_none() && config.app_args.is_empty());
    }

    #[test]
    fn good_flags() {
        let config = parse_args(&[
            "--block",
            "disk=/tmp/a:b.img:ro",
            "--block=cache=/dev/sdb:direct:sector=4096",
            "--net",
            "net0=tap:tap0",
            "--net",
            "socket",
            "--ipv4",
            "10.0.0.2/24",
            "--ipv4-gateway",
            "10.0.0.1",
            "-l",
            "warn,mirage_net_stack=debug",
            "--",
            "--port",
            "80",
        ])
        .expect("valid flags");
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
        assert_eq!(config.nets, [NetSpec::Tap { name: "net0".into(), iface: "tap0".into() }, NetSpec::Socket]);
        assert_eq!(config.ipv4.map(|c| c.to_string()).as_deref(), Some("10.0.0.2/24"));
        assert_eq!(config.ipv4_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(config.log.to_string(), "warn,mirage_net_stack=debug");
        assert_eq!(config.app_args, ["--port", "80"]);
    }

    #[test]
    fn malformed_block_flags_name_the_flag() {
        for bad in ["disk", "=/tmp/x", "disk=", "disk=:ro", "d isk=/x", "disk=/x:sector=1000", "disk=/x:sector=256"] {
            usage_error(&["--block", bad], "--block");
        }
        let text = usage_error(&["--block", "disk=/x:sector=1000"], "--block");
        assert!(text.contains("power of two"), "{text}");
    }

    #[test]
    fn malformed_net_flags_name_the_flag() {
        for bad in ["sockets", "net0", "net0=tun:x", "net0=tap:", "net0=tap:a/b", "net0=tap:sixteen-bytes-ab", "=tap:t"]
        {
            usage_error(&["--net", bad], "--net");
        }
    }

    #[test]
    fn malformed_ip_and_log_flags_name_the_flag() {
        usage_error(&["--ipv4", "10.0.0.2"], "--ipv4");
        usage_error(&["--ipv4", "10.0.0.2/33"], "--ipv4");
        usage_error(&["--ipv4-gateway", "10.0.0"], "--ipv4-gateway");
        usage_error(&["--ipv4", "10.0.0.2/24", "--ipv4-gateway", "10.0.1.1"], "--ipv4-gateway");
        usage_error(&["-l", "loud"], "--log");
        usage_error(&["--log", ""], "--log");
    }

    #[test]
    fn unknown_flags_and_missing_values_are_usage_errors() {
        usage_error(&["--blok", "disk=/x"], "--blok");
        usage_error(&["--block"], "--block");
        usage_error(&["stray"], "stray");
    }

    #[test]
    fn duplicate_names_are_refused() {
        usage_error(&["--block", "disk=/a", "--block", "disk=/b:ro"], "disk");
        usage_error(&["--net", "n=tap:a", "--net", "n=tap:b"], "--net");
        usage_error(&["--net", "socket", "--net", "socket"], "--net socket");
        // Block and network devices live in different name spaces.
        assert!(parse_args(&["--block", "x=/a", "--net", "x=tap:t"]).is_ok());
    }

    #[test]
    fn help_is_not_an_error() {
        let e = parse_args(&["--help"]).expect_err("help ends parsing");
        assert_eq!(e.exit_code(), 0);
        assert!(e.render().to_string().contains("--block"));
    }
}
