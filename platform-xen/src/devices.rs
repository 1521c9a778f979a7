//! [`XenDevices`]: the device contract of `mirage-types` on Xen — blkfront
//! block devices, our stack on netfront, the domain's console.
//!
//! The shared command line's backings name Xen devices by their xenstore
//! id:
//!
//! - `--net NAME=xen:ID` is the vif `device/vif/ID`; `--block NAME=xen:ID`
//!   the vbd `device/vbd/ID` (e.g. `51712` for `xvda`);
//! - `NAME` alone is the `k`-th device of its kind in id order, where `k`
//!   counts the flags of its kind before it: `--block a --block b` is the
//!   first two vbds. Without any `--net`, each name the application asks a
//!   stack for takes the next vif.
//!
//! A backing that is not `xen:ID` is a usage error at boot; whether the
//! device exists is known only once xenstore is asked, so a missing one is
//! the application's [`DeviceError`] when it asks for it.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;
use core::net::Ipv4Addr;

use mirage_block::devices::{log_store, tar_store};
use mirage_block::{LogKv, TarKv};
use mirage_net_stack::stack::NetStack;
use mirage_types::devices::{DeviceError, DeviceErrorKind, DeviceFlag, Devices, UsageError};
use mirage_types::ip::Ipv4Cidr;

use crate::blkfront::BlockFront;
use crate::netfront::NetFront;
use crate::platform::XenPlatform;
use crate::xenbus::Frontend;
use crate::xenstore::{Xenstore, XenstoreError};
use crate::DomainConsole;

/// The stack a Xen application gets: ours, on a netfront vif.
pub type XenStack = Rc<NetStack<NetFront, XenPlatform>>;

/// Which device of a kind a flag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum XenDevice {
    /// `xen:ID`.
    Id(String),
    /// The `k`-th in id order.
    Nth(usize),
}

/// The Xen devices that `flags` (all of one kind, `flag` says which) name.
pub(crate) fn xen_specs(flags: &[DeviceFlag], flag: &str) -> Result<Vec<(String, XenDevice)>, UsageError> {
    let mut specs = Vec::with_capacity(flags.len());
    for (position, device) in flags.iter().enumerate() {
        let which = match device.backing.as_deref() {
            None => XenDevice::Nth(position),
            Some(backing) => match backing.strip_prefix("xen:") {
                Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => XenDevice::Id(id.to_string()),
                _ => {
                    return Err(UsageError::Bad(format!(
                        "{flag} {}={backing}: on xen the device is xen:ID, ID its xenstore device id (a number)",
                        device.name
                    )))
                }
            },
        };
        specs.push((device.name.clone(), which));
    }
    Ok(specs)
}

/// The ids of the devices of `kind` in order: numerically (`xvda` is 51712,
/// `xvdb` 51728).
async fn device_ids(store: &Xenstore, kind: &str) -> Result<Vec<String>, XenstoreError> {
    let mut ids = Frontend::list(store, kind).await?;
    ids.sort_by_key(|id| (id.len(), id.clone()));
    Ok(ids)
}

/// The devices of a Xen guest. See the module documentation for how flags
/// name them, and [`mirage_types::devices::Devices`] for the contract.
pub struct XenDevices {
    platform: XenPlatform,
    store: RefCell<Option<Rc<Xenstore>>>,
    blocks: Vec<(String, XenDevice)>,
    nets: Vec<(String, XenDevice)>,
    /// Block names connected already.
    taken: RefCell<Vec<String>>,
    /// Vif ids connected already (for names without a flag).
    vifs_used: RefCell<Vec<String>>,
    started: RefCell<BTreeMap<String, XenStack>>,
    ipv4: Option<Ipv4Cidr>,
    ipv4_gateway: Option<Ipv4Addr>,
}

impl fmt::Debug for XenDevices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XenDevices").field("blocks", &self.blocks).field("nets", &self.nets).finish()
    }
}

impl XenDevices {
    pub(crate) fn new(
        platform: XenPlatform,
        blocks: Vec<(String, XenDevice)>,
        nets: Vec<(String, XenDevice)>,
        ipv4: Option<Ipv4Cidr>,
        ipv4_gateway: Option<Ipv4Addr>,
    ) -> XenDevices {
        XenDevices {
            platform,
            store: RefCell::new(None),
            blocks,
            nets,
            taken: RefCell::new(Vec::new()),
            vifs_used: RefCell::new(Vec::new()),
            started: RefCell::new(BTreeMap::new()),
            ipv4,
            ipv4_gateway,
        }
    }

    /// The domain's xenstore connection, made on first use and shared by
    /// every device (a domain has one xenstore ring).
    pub fn xenstore(&self) -> Result<Rc<Xenstore>, XenstoreError> {
        if let Some(store) = self.store.borrow().as_ref() {
            return Ok(store.clone());
        }
        let store = Xenstore::connect()?;
        *self.store.borrow_mut() = Some(store.clone());
        Ok(store)
    }

    fn store_for(&self, name: &str) -> Result<Rc<Xenstore>, DeviceError> {
        self.xenstore().map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("xenstore: {e}")))
    }

    /// The vbd id `which` names, looked up in xenstore.
    async fn resolve(&self, name: &str, kind: &str, which: &XenDevice) -> Result<String, DeviceError> {
        let store = self.store_for(name)?;
        let ids = device_ids(&store, kind)
            .await
            .map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("listing device/{kind}: {e}")))?;
        let flag = if kind == "vif" { "--net" } else { "--block" };
        let found = match which {
            XenDevice::Id(id) => ids.iter().find(|i| *i == id).cloned(),
            XenDevice::Nth(k) => ids.get(*k).cloned(),
        };
        found.ok_or_else(|| {
            let wanted = match which {
                XenDevice::Id(id) => format!("xen:{id}"),
                XenDevice::Nth(k) => format!("the {}-th {kind} (from 0)", k),
            };
            DeviceError::new(
                DeviceErrorKind::Missing,
                name,
                format!("{flag} {name}: this domain has no {wanted}; its {kind} ids are {ids:?}"),
            )
        })
    }

    /// Connects the vbd `--block name` names, once.
    async fn take_block(&self, name: &str) -> Result<BlockFront, DeviceError> {
        let Some((_, which)) = self.blocks.iter().find(|(n, _)| n == name) else {
            return Err(DeviceError::missing("--block", name, &format!("--block {name}[=xen:ID]")));
        };
        if self.taken.borrow().iter().any(|n| n == name) {
            return Err(DeviceError::taken(name));
        }
        self.taken.borrow_mut().push(name.to_string());
        let id = self.resolve(name, "vbd", which).await?;
        let block = BlockFront::open(self.store_for(name)?, &id)
            .await
            .map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("vbd {id}: {e}")))?;
        log::info!("--block {name}: blkfront {} connected", block.node());
        Ok(block)
    }

    /// The vif for a new stack named `name`.
    async fn vif_for(&self, name: &str) -> Result<String, DeviceError> {
        if let Some((_, which)) = self.nets.iter().find(|(n, _)| n == name) {
            return self.resolve(name, "vif", which).await;
        }
        if !self.nets.is_empty() {
            return Err(DeviceError::missing("--net", name, &format!("--net {name}[=xen:ID]")));
        }
        let store = self.store_for(name)?;
        let ids = device_ids(&store, "vif")
            .await
            .map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("listing device/vif: {e}")))?;
        let used = self.vifs_used.borrow();
        ids.into_iter().find(|id| !used.contains(id)).ok_or_else(|| {
            DeviceError::missing("--net", name, &format!("--net {name}[=xen:ID] (and give the domain a vif)"))
        })
    }
}

impl Devices for XenDevices {
    type Stack = XenStack;
    type Block = BlockFront;
    type KvRo = TarKv<BlockFront>;
    type KvRw = LogKv<BlockFront, XenPlatform>;
    type Console = DomainConsole;

    async fn stack(&self, name: &str) -> Result<XenStack, DeviceError> {
        if let Some(stack) = self.started.borrow().get(name) {
            return Ok(stack.clone());
        }
        let id = self.vif_for(name).await?;
        self.vifs_used.borrow_mut().push(id.clone());
        let nic = NetFront::open(self.store_for(name)?, &id)
            .await
            .map_err(|e| DeviceError::new(DeviceErrorKind::Setup, name, format!("vif {id}: {e}")))?;
        log::info!(
            "--net {name}: netfront {} connected, MAC {}",
            nic.node(),
            mirage_types::net::NetworkDevice::mac(&nic)
        );
        let first = self.started.borrow().is_empty();
        let (ipv4, gateway) = if first { (self.ipv4, self.ipv4_gateway) } else { (None, None) };
        let stack =
            NetStack::start(nic, self.platform.clone(), name, ipv4, gateway).await.map_err(|e| e.for_device(name))?;
        self.started.borrow_mut().insert(name.to_string(), stack.clone());
        Ok(stack)
    }

    async fn block(&self, name: &str) -> Result<BlockFront, DeviceError> {
        self.take_block(name).await
    }

    fn has_block(&self, name: &str) -> bool {
        self.blocks.iter().any(|(n, _)| n == name)
    }

    async fn kv_ro(&self, name: &str) -> Result<Option<TarKv<BlockFront>>, DeviceError> {
        if !self.has_block(name) {
            return Ok(None);
        }
        let store = tar_store(name, self.take_block(name).await?).await?;
        log::info!("{name}: a tar archive of {} entries", store.stats().entries);
        Ok(Some(store))
    }

    async fn kv_rw(&self, name: &str) -> Result<LogKv<BlockFront, XenPlatform>, DeviceError> {
        let block = self.take_block(name).await?;
        let (store, opened) = log_store(name, block, self.platform.clone()).await?;
        log::info!("{name}: {opened}");
        Ok(store)
    }

    fn console(&self) -> DomainConsole {
        DomainConsole::detect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirage_types::devices::CommandLine;

    fn specs(line: &str) -> Result<Vec<(String, XenDevice)>, UsageError> {
        let line = CommandLine::parse(line.split_ascii_whitespace()).unwrap();
        xen_specs(&line.blocks, "--block")
    }

    #[test]
    fn implicit_and_explicit_devices() {
        assert_eq!(
            specs("--block disk --block=data=xen:51728 --block c").unwrap(),
            [
                ("disk".to_string(), XenDevice::Nth(0)),
                ("data".to_string(), XenDevice::Id("51728".into())),
                ("c".to_string(), XenDevice::Nth(2))
            ]
        );
    }

    #[test]
    fn other_backings_are_usage_errors() {
        for bad in ["--block d=virtio:0", "--block d=xen:", "--block d=xen:xvda"] {
            let e = specs(bad).unwrap_err().to_string();
            assert!(e.contains("xen:ID"), "{bad}: {e}");
        }
    }
}
