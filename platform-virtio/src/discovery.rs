//! Finding virtio devices: virtio-mmio slots on QEMU's microvm, PCI bus 0
//! on q35 (and i440fx), each with the interrupt line (GSI) it raises.
//!
//! # How the machine is told apart
//!
//! A PC with a PCI host bridge answers at 00:00.0 through the configuration
//! ports; then bus 0 is enumerated and virtio-mmio is not probed (on q35
//! the microvm window may hold PCI BARs, whose registers must not be read
//! blindly). Bus 0 is then read through ECAM when the ACPI MCFG gives a
//! window for segment 0 (q35: `0xb0000000`) that lies within the
//! identity-mapped 4 GiB, else through the ports (i440fx has no MCFG);
//! which one is logged at debug level. The ports stay the test for a host
//! bridge so that microvm, whose `pcie=on` has an MCFG too, keeps using
//! its virtio-mmio slots. Otherwise the virtio-mmio window of microvm is probed:
//! [`MMIO_SLOTS`] slots of [`MMIO_SLOT_SIZE`] bytes from [`MMIO_BASE`]
//! (QEMU `hw/i386/microvm.c`); a slot whose magic reads `virt` and whose
//! device id is not 0 holds a device. QEMU fills the slots from the top,
//! so the first `-device` on the command line is found *last*: discovery
//! order is slot order, which is the reverse of the command line's.
//!
//! # Interrupt lines
//!
//! - microvm: slot `n` raises GSI `24 + n` when the machine has its second
//!   I/O APIC (`ioapic2=on`, the default), else GSI `16 + n`
//!   (`ioapic2=off`, ACPI on; with `acpi=off` QEMU uses `5 + n`, which
//!   this platform does not support).
//! - PCI: the function's INTx line as the firmware (SeaBIOS, which q35
//!   runs before the PVH entry) wrote it in the Interrupt Line register; on
//!   the PC chipsets QEMU emulates, that ISA IRQ is also an I/O APIC GSI
//!   below 16. MSI-X is not used: virtio-drivers 0.13 does not program the
//!   virtqueues' MSI-X vectors, and without them a device with MSI-X
//!   enabled raises no interrupt at all.
//!
//! # Bounds
//!
//! At most [`MMIO_SLOTS`] mmio devices and the 256 functions of bus 0.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;

use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::pci::bus::{
    BarInfo, Cam, Command, ConfigurationAccess, DeviceFunction, MmioCam, PciRoot,
};
use virtio_drivers::transport::pci::{virtio_device_type, PciTransport};
use virtio_drivers::transport::{DeviceType, SomeTransport, Transport};

use crate::acpi::{self, IdentityMapped};
use crate::hal::{KernelHal, MAPPED_END};
use crate::pci::PortCam;

/// The start of microvm's virtio-mmio window.
pub const MMIO_BASE: u64 = 0xfeb0_0000;
/// The size of one virtio-mmio slot.
pub const MMIO_SLOT_SIZE: u64 = 0x200;
/// How many slots microvm has (24 with `ioapic2=on`, 8 without; the
/// empty ones read as no device).
pub const MMIO_SLOTS: u64 = 24;

/// The magic value at the start of a virtio-mmio register block ("virt").
const MMIO_MAGIC: u32 = 0x7472_6976;

/// Where a device was found, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// virtio-mmio slot `slot` at physical address `base`.
    Mmio {
        /// The slot number.
        slot: u64,
        /// Its registers' physical address.
        base: u64,
    },
    /// PCI bus, device and function.
    Pci {
        /// Bus.
        bus: u8,
        /// Device.
        device: u8,
        /// Function.
        function: u8,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Mmio { slot, base } => write!(f, "virtio-mmio slot {slot} at {base:#x}"),
            Location::Pci { bus, device, function } => write!(f, "PCI {bus:02x}:{device:02x}.{function}"),
        }
    }
}

/// A virtio device ready for its driver.
#[derive(Debug)]
pub struct VirtioDevice {
    /// What kind of device it is.
    pub kind: DeviceType,
    /// Its transport, not yet initialised by a driver.
    pub transport: SomeTransport<'static>,
    /// The GSI it interrupts on, for [`mirage_kernel::interrupt::InterruptLine::claim`].
    pub gsi: u32,
    /// Where it was found.
    pub location: Location,
}

/// A device that was seen but cannot be used; discovery logs these and
/// goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedDevice {
    /// Where it is.
    pub location: Location,
    /// Why it is skipped.
    pub reason: String,
}

impl fmt::Display for SkippedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignoring the virtio device at {}: {}", self.location, self.reason)
    }
}

/// Finds every virtio device; see the [module documentation](self).
/// `rsdp_paddr` is the ACPI RSDP the boot loader gave
/// ([`mirage_kernel::BootInfo::rsdp_paddr`]), for the ECAM window.
/// Returns the usable ones in discovery order and the skipped ones.
///
/// Only meaningful in a kernel image: on a host it reads I/O ports it has
/// no permission for. Call it once: two transports for one device would
/// drive it twice.
pub fn discover(rsdp_paddr: Option<u64>) -> (Vec<VirtioDevice>, Vec<SkippedDevice>) {
    // SAFETY: discovery is the only user of the configuration ports, runs
    // once, and only reads, sizes BARs (virtio-drivers restores them) and
    // sets enable bits in command registers.
    let cam = unsafe { PortCam::new() };
    let has_pci = PciRoot::new(cam).enumerate_bus(0).next().is_some();
    if !has_pci {
        return discover_mmio();
    }
    match ecam_base(rsdp_paddr) {
        Ok(base) => {
            log::debug!("PCI configuration access: ECAM at {base:#x} (ACPI MCFG)");
            // SAFETY: `ecam_base` checked that the 256 MiB window is
            // 1 MiB-aligned and inside the identity-mapped, never-unmapped
            // 4 GiB; the firmware says it is configuration space, which
            // nothing else in the kernel maps or touches; discovery runs
            // once, so this is its only user, with the contract of
            // `PortCam::new` for what is written.
            let cam = unsafe { MmioCam::new(base as *mut u8, Cam::Ecam) };
            discover_pci(cam)
        }
        Err(reason) => {
            log::debug!("PCI configuration access: ports 0xcf8/0xcfc ({reason})");
            // SAFETY: as above; the first `PortCam` is gone with its root.
            discover_pci(unsafe { PortCam::new() })
        }
    }
}

/// The ECAM window from the ACPI MCFG, if there is one this kernel can
/// use; else why not, for the log.
fn ecam_base(rsdp_paddr: Option<u64>) -> Result<u64, String> {
    let rsdp = rsdp_paddr.filter(|&p| p != 0).ok_or_else(|| String::from("the boot loader gave no ACPI RSDP"))?;
    // SAFETY: this runs in the kernel image (discovery is only meaningful
    // there), which identity-maps the first 4 GiB and never writes ACPI
    // tables.
    let memory = unsafe { IdentityMapped::new() };
    let ecam = acpi::find_ecam(&memory, rsdp).map_err(|e| format!("{e}"))?;
    let end = ecam.base.checked_add(u64::from(Cam::Ecam.size()));
    if ecam.base == 0 || ecam.base % (1 << 20) != 0 || end.is_none_or(|end| end > MAPPED_END) {
        return Err(format!(
            "the MCFG's ECAM window at {:#x} is not 1 MiB-aligned inside the identity-mapped 4 GiB",
            ecam.base
        ));
    }
    Ok(ecam.base)
}

fn discover_mmio() -> (Vec<VirtioDevice>, Vec<SkippedDevice>) {
    let (mut devices, mut skipped) = (Vec::new(), Vec::new());
    let gsi_base = if mirage_kernel::interrupt::is_routable(24) { 24 } else { 16 };
    for slot in 0..MMIO_SLOTS {
        let base = MMIO_BASE + slot * MMIO_SLOT_SIZE;
        let location = Location::Mmio { slot, base };
        let header = base as *const u32;
        // SAFETY: the window is in the uncached device GiB the boot page
        // tables identity-map; on microvm (no PCI host bridge, checked by
        // the caller) it holds virtio-mmio register blocks or nothing, and
        // reading the magic and device id registers has no effect.
        let (magic, device_id) = unsafe { (header.read_volatile(), header.add(2).read_volatile()) };
        if magic != MMIO_MAGIC || device_id == 0 {
            continue;
        }
        let Some(pointer) = NonNull::new(base as *mut VirtIOHeader) else { continue };
        // SAFETY: `base` holds a virtio-mmio register block (magic checked)
        // of MMIO_SLOT_SIZE bytes, mapped for the life of the kernel, and
        // this is the only transport built for it (discovery runs once).
        match unsafe { MmioTransport::new(pointer, MMIO_SLOT_SIZE as usize) } {
            Ok(transport) => {
                let kind = transport.device_type();
                devices.push(VirtioDevice {
                    kind,
                    transport: SomeTransport::Mmio(transport),
                    gsi: gsi_base + slot as u32,
                    location,
                });
            }
            Err(e) => skipped.push(SkippedDevice { location, reason: format!("{e}") }),
        }
    }
    (devices, skipped)
}

fn discover_pci<C: ConfigurationAccess>(cam: C) -> (Vec<VirtioDevice>, Vec<SkippedDevice>) {
    // `PciRoot` keeps its access to itself and has no accessor for the
    // Interrupt Line register: keep a clone for reading that one.
    // SAFETY: the clone only reads the Interrupt Line/Pin register, which
    // has no effect, and never while one of the root's accesses is under
    // way (one CPU, and the root's accesses complete before it returns).
    let reader = unsafe { cam.unsafe_clone() };
    let mut root = PciRoot::new(cam);
    let (mut devices, mut skipped) = (Vec::new(), Vec::new());
    let functions: Vec<_> = root.enumerate_bus(0).collect();
    for (function, info) in functions {
        let Some(kind) = virtio_device_type(&info) else { continue };
        let location = Location::Pci { bus: function.bus, device: function.device, function: function.function };
        match pci_device(&mut root, &reader, function, kind) {
            Ok((transport, gsi)) => {
                devices.push(VirtioDevice { kind, transport: SomeTransport::Pci(transport), gsi, location })
            }
            Err(reason) => skipped.push(SkippedDevice { location, reason }),
        }
    }
    (devices, skipped)
}

/// Checks the BARs are reachable, turns on memory decoding and bus
/// mastering, reads the INTx line and builds the transport.
fn pci_device<C: ConfigurationAccess>(
    root: &mut PciRoot<C>,
    reader: &C,
    function: DeviceFunction,
    kind: DeviceType,
) -> Result<(PciTransport, u32), String> {
    let bars = root.bars(function).map_err(|e| format!("cannot read its BARs: {e}"))?;
    for (index, bar) in bars.iter().enumerate() {
        if let Some(BarInfo::Memory { address, size, .. }) = bar {
            let end = address.checked_add(*size);
            if *size != 0 && (*address == 0 || end.is_none_or(|end| end > MAPPED_END)) {
                return Err(format!(
                    "BAR {index} at {address:#x} (size {size:#x}) is unassigned or above the identity-mapped 4 GiB"
                ));
            }
        }
    }
    let line_register = reader.read_word(function, 0x3c);
    let (line, pin) = (line_register & 0xff, (line_register >> 8) & 0xff);
    if pin == 0 {
        return Err(format!("the {kind:?} device has no INTx pin, and MSI-X is not supported"));
    }
    if line == 0 || line >= 16 {
        return Err(format!(
            "its Interrupt Line register reads {line:#x}: the firmware routed no INTx line (is SeaBIOS running?)"
        ));
    }
    let (_, command) = root.get_status_command(function);
    root.set_command(function, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
    let transport = PciTransport::new::<KernelHal, C>(root, function).map_err(|e| format!("{e}"))?;
    Ok((transport, line))
}
