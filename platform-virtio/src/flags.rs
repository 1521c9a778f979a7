//! The platform's kernel command-line flags, the same as the unix
//! runner's where they mean the same thing:
//!
//! ```text
//! [--block NAME[=virtio:N]]... [--net NAME[=virtio:N]]...
//!     [--ipv4 ADDR/PREFIX] [--ipv4-gateway ADDR] [-l FILTER] [-- APP-ARGS...]
//! ```
//!
//! - `--block NAME=virtio:N` names the `N`-th virtio-blk device (from 0,
//!   in discovery order, see [`crate::discovery`]);
//! - `--block NAME` alone names the `k`-th virtio-blk device, where `k`
//!   counts the `--block` flags before it on the line: `--block a --block b`
//!   is `a=virtio:0 b=virtio:1`. Same for `--net` and virtio-net devices.
//! - `--ipv4`, `--ipv4-gateway` configure the application's own stack;
//! - `-l` and everything from `--` on are left for `mirage_kernel::run`.
//!
//! Words are separated by spaces; there is no quoting. A flag given twice
//! for one name or one device, a malformed value, or (once devices are
//! discovered) an index with no device behind it is a usage error.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;

use mirage_types::ip::Ipv4Cidr;

/// The most `--block` plus `--net` flags: more than any VMM attaches.
pub const MAX_DEVICE_FLAGS: usize = 64;

/// One device flag: a name and the index among devices of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The name the application asks for.
    pub name: String,
    /// Which device of the kind, in discovery order, from 0.
    pub index: usize,
}

/// The platform's flags, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlatformFlags {
    /// `--block` flags.
    pub blocks: Vec<DeviceSpec>,
    /// `--net` flags.
    pub nets: Vec<DeviceSpec>,
    /// `--ipv4`.
    pub ipv4: Option<Ipv4Cidr>,
    /// `--ipv4-gateway`.
    pub ipv4_gateway: Option<Ipv4Addr>,
}

/// A malformed platform flag; the message names it and says what is
/// expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (usage: [--block NAME[=virtio:N]]... [--net NAME[=virtio:N]]... [--ipv4 ADDR/PREFIX] \
             [--ipv4-gateway ADDR] [-l FILTER] [-- APP-ARGS...])",
            self.0
        )
    }
}

impl core::error::Error for FlagError {}

impl PlatformFlags {
    /// Takes the platform's flags out of `line`; returns them and the rest
    /// of the line for the kernel (`-l`, `--` and what follows), in order.
    pub fn parse(line: &str) -> Result<(PlatformFlags, String), FlagError> {
        let mut flags = PlatformFlags::default();
        let mut rest: Vec<&str> = Vec::new();
        let mut words = line.split_ascii_whitespace();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
                _ => (word, None),
            };
            let mut value =
                |name: &str| inline.or_else(|| words.next()).ok_or_else(|| FlagError(format!("{name} needs a value")));
            match flag {
                "--" => {
                    rest.push(word);
                    rest.extend(words.by_ref());
                }
                "--block" => {
                    let spec = device_spec("--block", value("--block")?, flags.blocks.len())?;
                    push_device(&mut flags.blocks, spec, "--block", flags.nets.len())?;
                }
                "--net" => {
                    let spec = device_spec("--net", value("--net")?, flags.nets.len())?;
                    push_device(&mut flags.nets, spec, "--net", flags.blocks.len())?;
                }
                "--ipv4" => {
                    let text = value("--ipv4")?;
                    let cidr = text.parse().map_err(|e| FlagError(format!("--ipv4 {text:?}: {e}")))?;
                    flags.ipv4 = Some(cidr);
                }
                "--ipv4-gateway" => {
                    let text = value("--ipv4-gateway")?;
                    let gateway = text
                        .parse()
                        .map_err(|_| FlagError(format!("--ipv4-gateway {text:?} is not an IPv4 address")))?;
                    flags.ipv4_gateway = Some(gateway);
                }
                "-l" => {
                    rest.push(word);
                    if let Some(filter) = words.next() {
                        rest.push(filter);
                    }
                }
                // Unknown words go to the kernel, which names them.
                _ => rest.push(word),
            }
        }
        if let (Some(gateway), None) = (flags.ipv4_gateway, flags.ipv4) {
            return Err(FlagError(format!("--ipv4-gateway {gateway} needs --ipv4")));
        }
        Ok((flags, rest.join(" ")))
    }
}

/// `NAME` or `NAME=virtio:N`; `implicit` is the index `NAME` alone means.
fn device_spec(flag: &str, value: &str, implicit: usize) -> Result<DeviceSpec, FlagError> {
    let (name, index) = match value.split_once('=') {
        None => (value, implicit),
        Some((name, device)) => {
            let index = device.strip_prefix("virtio:").and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
                FlagError(format!("{flag} {value:?}: the device must be virtio:N, N a number from 0"))
            })?;
            (name, index)
        }
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(FlagError(format!("{flag} {value:?}: a device name is letters, digits, '_' and '-'")));
    }
    Ok(DeviceSpec { name: name.to_string(), index })
}

fn push_device(list: &mut Vec<DeviceSpec>, spec: DeviceSpec, flag: &str, others: usize) -> Result<(), FlagError> {
    if list.len() + others >= MAX_DEVICE_FLAGS {
        return Err(FlagError(format!("more than {MAX_DEVICE_FLAGS} device flags")));
    }
    if list.iter().any(|s| s.name == spec.name) {
        return Err(FlagError(format!("{flag}: the device name {:?} is given twice", spec.name)));
    }
    if let Some(other) = list.iter().find(|s| s.index == spec.index) {
        return Err(FlagError(format!(
            "{flag}: {:?} and {:?} both name device virtio:{}",
            other.name, spec.name, spec.index
        )));
    }
    list.push(spec);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, index: usize) -> DeviceSpec {
        DeviceSpec { name: name.into(), index }
    }

    #[test]
    fn device_flags_implicit_and_explicit() {
        let (flags, rest) =
            PlatformFlags::parse("--block disk --block=cache=virtio:3 -l debug --net net0 -- --block x").unwrap();
        assert_eq!(flags.blocks, [spec("disk", 0), spec("cache", 3)]);
        assert_eq!(flags.nets, [spec("net0", 0)]);
        assert_eq!(rest, "-l debug -- --block x", "flags after -- are the application's");
    }

    #[test]
    fn addresses_parse() {
        let (flags, rest) = PlatformFlags::parse("--ipv4 10.0.0.2/24 --ipv4-gateway=10.0.0.1").unwrap();
        assert_eq!(flags.ipv4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(flags.ipv4_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(rest, "");
    }

    #[test]
    fn malformed_flags_are_named() {
        for (line, needle) in [
            ("--block", "--block needs a value"),
            ("--block d=virtio:x", "virtio:N"),
            ("--block d=file:/x", "virtio:N"),
            ("--block =virtio:0", "device name"),
            ("--block d --block d", "given twice"),
            ("--block a=virtio:1 --block b=virtio:1", "both name device virtio:1"),
            ("--ipv4 10.0.0.2", "--ipv4 \"10.0.0.2\""),
            ("--ipv4 10.0.0.2/24 --ipv4-gateway 10.0.0", "is not an IPv4 address"),
            ("--ipv4-gateway 10.0.0.1", "needs --ipv4"),
        ] {
            let e = PlatformFlags::parse(line).unwrap_err();
            assert!(e.to_string().contains(needle), "{line:?}: {e}");
            assert!(e.to_string().contains("usage"), "{e}");
        }
        let many: String = (0..=MAX_DEVICE_FLAGS).map(|i| format!("--block d{i} ")).collect();
        assert!(PlatformFlags::parse(&many).unwrap_err().to_string().contains("more than"));
    }

    #[test]
    fn unknown_words_are_left_for_the_kernel() {
        let (flags, rest) = PlatformFlags::parse("--frob -l info").unwrap();
        assert_eq!(flags, PlatformFlags::default());
        assert_eq!(rest, "--frob -l info");
    }
}
