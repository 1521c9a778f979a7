//! The stores every platform hands out through
//! [`Devices`](mirage_types::devices::Devices): one place for how they are
//! mounted and how a failure reads, so that it is the same everywhere.

use alloc::format;

use mirage_types::block::BlockDevice;
use mirage_types::devices::{DeviceError, DeviceErrorKind};
use mirage_types::time::WallClock;

use crate::{FormatOptions, LogKv, Opened, TarKv};

/// `Devices::kv_ro`'s store: the tar archive on `block`, the block device
/// named `name`. Errors: [`DeviceErrorKind::Store`] naming the device and
/// saying why the archive cannot be read.
pub async fn tar_store<B: BlockDevice>(name: &str, block: B) -> Result<TarKv<B>, DeviceError> {
    TarKv::mount(block)
        .await
        .map_err(|e| DeviceError::new(DeviceErrorKind::Store, name, format!("cannot read the tar archive: {e}")))
}

/// `Devices::kv_rw`'s store: the [`LogKv`] on `block`, the block device
/// named `name`, mounted, or formatted with the default options if the
/// device is blank ([`LogKv::mount_or_format`]). Errors:
/// [`DeviceErrorKind::Store`] naming the device and saying why (a device
/// that holds something else is left alone, and the message says so).
pub async fn log_store<B: BlockDevice, C: WallClock>(
    name: &str,
    block: B,
    clock: C,
) -> Result<(LogKv<B, C>, Opened), DeviceError> {
    LogKv::mount_or_format(block, clock, FormatOptions::default())
        .await
        .map_err(|e| DeviceError::new(DeviceErrorKind::Store, name, format!("cannot mount the store: {e}")))
}
