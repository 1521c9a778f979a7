//! The virtio meaning of the shared command line
//! ([`mirage_types::devices::CommandLine`]): which virtio device each
//! `--net` and `--block` names.
//!
//! - `--block NAME=virtio:N` names the `N`-th virtio-blk device (from 0,
//!   in discovery order, see [`crate::discovery`]);
//! - `--block NAME` alone names the `k`-th virtio-blk device, where `k`
//!   counts the `--block` flags before it on the line: `--block a --block b`
//!   is `a=virtio:0 b=virtio:1`. Same for `--net` and virtio-net devices.
//!
//! Two names for one device, a backing other than `virtio:N`, or (once
//! devices are discovered) an index with no device behind it is a usage
//! error.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use mirage_types::devices::{DeviceFlag, UsageError};

/// One device flag: a name and the index among devices of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The name the application asks for.
    pub name: String,
    /// Which device of the kind, in discovery order, from 0.
    pub index: usize,
}

/// The devices `flags` (all `--block` or all `--net`, `flag` says which)
/// name, with implicit indices resolved.
pub fn device_specs(flags: &[DeviceFlag], flag: &str) -> Result<Vec<DeviceSpec>, UsageError> {
    let mut specs: Vec<DeviceSpec> = Vec::with_capacity(flags.len());
    for (position, device) in flags.iter().enumerate() {
        let index = match device.backing.as_deref() {
            None => position,
            Some(backing) => {
                backing.strip_prefix("virtio:").and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| {
                    UsageError::Bad(format!(
                        "{flag} {}={backing}: on virtio the device is virtio:N, N a number from 0",
                        device.name
                    ))
                })?
            }
        };
        if let Some(other) = specs.iter().find(|s| s.index == index) {
            return Err(UsageError::Bad(format!(
                "{flag}: {:?} and {:?} both name device virtio:{index}",
                other.name, device.name
            )));
        }
        specs.push(DeviceSpec { name: device.name.clone(), index });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use mirage_types::devices::CommandLine;

    fn specs(line: &str, block: bool) -> Result<Vec<DeviceSpec>, UsageError> {
        let line = CommandLine::parse(line.split_ascii_whitespace()).unwrap();
        if block {
            device_specs(&line.blocks, "--block")
        } else {
            device_specs(&line.nets, "--net")
        }
    }

    fn spec(name: &str, index: usize) -> DeviceSpec {
        DeviceSpec { name: name.into(), index }
    }

    #[test]
    fn implicit_and_explicit_indices() {
        assert_eq!(specs("--block disk --block=cache=virtio:3", true).unwrap(), [spec("disk", 0), spec("cache", 3)]);
        assert_eq!(specs("--net net0 --block x", false).unwrap(), [spec("net0", 0)]);
    }

    #[test]
    fn bad_backings_and_shared_devices_are_refused() {
        for (line, needle) in [
            ("--block d=virtio:x", "virtio:N"),
            ("--block d=file:/x", "virtio:N"),
            ("--block a=virtio:1 --block b=virtio:1", "both name device virtio:1"),
            ("--block a --block b=virtio:0", "both name device virtio:0"),
        ] {
            let e = specs(line, true).unwrap_err().to_string();
            assert!(e.contains(needle), "{line:?}: {e}");
        }
    }
}
