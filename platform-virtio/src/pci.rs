//! PCI configuration space through the PC's I/O ports `0xcf8`/`0xcfc`
//! (configuration mechanism #1), as `virtio_drivers`' `ConfigurationAccess`.
//!
//! virtio-drivers 0.13 offers only memory-mapped access (its `MmioCam`,
//! which discovery uses on q35 when ACPI's MCFG gives the ECAM window, see
//! [`crate::acpi`]); the ports are the fallback, always there on
//! PC-compatible machines (i440fx has no ECAM), and the test for a PCI
//! host bridge. Only bus 0 is enumerated: QEMU puts plugged devices there
//! unless told to use a bridge.

use mirage_kernel::arch::port::Port;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// Port I/O configuration access.
#[derive(Debug)]
pub struct PortCam {
    address: Port,
    data: Port,
}

impl PortCam {
    /// Access through `0xcf8`/`0xcfc`.
    ///
    /// # Safety
    ///
    /// Only one `PortCam` may be used at a time (an access is two port
    /// writes that must not interleave), and its user must not program a
    /// BAR over RAM: virtio-drivers only sizes BARs (writing all ones and
    /// restoring the value with decoding disabled) and the platform only
    /// sets the command register's enable bits.
    pub unsafe fn new() -> PortCam {
        // SAFETY: 0xcf8/0xcfc are the configuration address and data ports;
        // the caller's contract covers what is written through them.
        unsafe { PortCam { address: Port::new(0xcf8), data: Port::new(0xcfc) } }
    }

    fn select(&self, function: DeviceFunction, offset: u8) {
        let address = 0x8000_0000
            | u32::from(function.bus) << 16
            | u32::from(function.device & 0x1f) << 11
            | u32::from(function.function & 0x7) << 8
            | u32::from(offset & 0xfc);
        self.address.write_u32(address);
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        self.select(device_function, register_offset);
        self.data.read_u32()
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        self.select(device_function, register_offset);
        self.data.write_u32(data);
    }

    unsafe fn unsafe_clone(&self) -> PortCam {
        PortCam { address: self.address, data: self.data }
    }
}
