//! Command-line options shared by `cargo mirage run` and the workspace's
//! `cargo xtask run`, as clap arguments to flatten into a command.

use clap::Args;

use crate::qemu::{Forward, Network};
use crate::{Disk, Error};

/// How the guest's network device is connected, if it has one: `--tap`
/// or `--forward`, never both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct NetworkArgs {
    /// unix: our own stack on this TAP interface (`--net net0=tap:IFACE`);
    /// virtio: a virtio-net device on it. Create it first:
    /// `ip tuntap add dev IFACE mode tap && ip link set IFACE up`.
    #[arg(long, value_name = "IFACE", conflicts_with = "forward")]
    pub tap: Option<String>,
    /// virtio: a virtio-net device on QEMU's user network (the guest gets
    /// 10.0.2.15 by DHCP) with TCP port HOST of 127.0.0.1 forwarded to the
    /// guest's GUEST. Repeatable.
    #[arg(long, value_name = "HOST:GUEST", value_parser = parse_forward)]
    pub forward: Vec<Forward>,
}

impl NetworkArgs {
    /// The network these options ask for.
    pub fn network(&self) -> Network {
        match (&self.tap, self.forward.is_empty()) {
            (Some(tap), _) => Network::Tap(tap.clone()),
            (None, true) => Network::None,
            (None, false) => Network::User(self.forward.clone()),
        }
    }
}

/// Parses `--disk NAME=FILE`, for clap's `value_parser`.
pub fn parse_disk(text: &str) -> Result<Disk, String> {
    Disk::parse(text).map_err(|e| e.to_string())
}

fn parse_forward(text: &str) -> Result<Forward, String> {
    text.parse().map_err(|e: Error| e.to_string())
}
