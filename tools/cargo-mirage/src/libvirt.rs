//! A libvirt domain for a virtio image.
//!
//! ```sh
//! virsh -c qemu:///system define APP.xml && virsh -c qemu:///system start APP
//! tail -f APP.console.log
//! ```
//!
//! The domain ([`domain_xml`]) is a `type='qemu'` (TCG) guest on the
//! `q35` machine, booted directly from the image (`<kernel>`, with the
//! application's flags in `<cmdline>`). libvirt 9 refuses QEMU's
//! `microvm` ("No PCI buses available"), and the image finds its devices
//! on PCI bus 0 of a q35 just as well: every device gets an address on
//! bus 0 (`pcie.0`), since the image does not enumerate the buses behind
//! PCIe root ports. It has:
//!
//! - a virtio-rng device (the image's entropy);
//! - each disk as a virtio-blk device, named `--block NAME=virtio:N` on
//!   the command line in front of the application's flags;
//! - with a TAP interface, a virtio-net device on it
//!   (`<interface type='ethernet'>` with `managed='no'`: create the TAP
//!   first, e.g. `ip tuntap add dev IFACE mode tap && ip link set IFACE up`);
//! - the serial console written to a log file;
//! - no USB controller, no memory balloon, no graphics.
//!
//! The image powers the domain off through ACPI when the application ends
//! (`on_poweroff` destroys it); its exit status is in the console log.
//! Paths must be absolute and readable by the user QEMU runs as
//! (`libvirt-qemu` under `qemu:///system`).

use std::path::Path;

use crate::qemu::command_line;
use crate::{block_flags, Disk, Error, ErrorKind};

/// The most disks a domain gets (PCI slots 4 to 19 of bus 0).
pub const MAX_DISKS: usize = 16;

/// What the domain boots, with what.
#[derive(Clone, Debug)]
pub struct Domain<'a> {
    /// The domain's name.
    pub name: &'a str,
    /// The virtio image (absolute path).
    pub image: &'a Path,
    /// The guest's memory in MiB.
    pub memory_mib: u32,
    /// Raw disk images (absolute paths), `virtio:0`, `virtio:1`, ... in this order.
    pub disks: &'a [Disk],
    /// A host TAP interface for a virtio-net device.
    pub tap: Option<&'a str>,
    /// Where the serial console goes (absolute path).
    pub console_log: &'a Path,
    /// The application's command line, after the disks' `--block` flags.
    pub args: &'a [String],
}

/// `text` with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn absolute(what: &str, path: &Path) -> Result<String, Error> {
    if !path.is_absolute() {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!("{what} {}: libvirt needs an absolute path", path.display()),
        ));
    }
    Ok(escape(&path.display().to_string()))
}

fn pci_address(slot: usize) -> String {
    format!("<address type='pci' domain='0x0000' bus='0x00' slot='{slot:#04x}' function='0x0'/>")
}

/// The domain's XML (see the [module documentation](self)).
pub fn domain_xml(domain: &Domain) -> Result<String, Error> {
    if domain.disks.len() > MAX_DISKS {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!("{} disks: a libvirt domain here takes at most {MAX_DISKS}", domain.disks.len()),
        ));
    }
    if domain.name.is_empty() || domain.name.contains(['/', '\'', '"', '<', '>', '&']) {
        return Err(Error::new(ErrorKind::BadArgument, format!("{:?} cannot name a libvirt domain", domain.name)));
    }
    let mut line = block_flags(domain.disks, |i, _| format!("virtio:{i}"));
    line.extend(domain.args.iter().cloned());
    let cmdline = escape(&command_line(&line)?);
    let image = absolute("the image", domain.image)?;
    let log = absolute("the console log", domain.console_log)?;
    let mut devices = format!(
        "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n\
         \x20   <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n      {}\n    </rng>\n",
        pci_address(2)
    );
    match domain.tap {
        Some(tap) => devices.push_str(&format!(
            "    <interface type='ethernet'>\n      <target dev='{}' managed='no'/>\n      <model type='virtio'/>\n      {}\n    </interface>\n",
            escape(tap),
            pci_address(3)
        )),
        None => devices.push_str(
            "    <!-- No network device. For one on the TAP interface IFACE, build with the tap option or add\n\
             \x20        <interface type='ethernet'><target dev='IFACE' managed='no'/><model type='virtio'/></interface> -->\n",
        ),
    }
    for (i, disk) in domain.disks.iter().enumerate() {
        let dev = format!("vd{}", char::from(b'a' + i as u8));
        devices.push_str(&format!(
            "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='{}'/>\n\
             \x20     <target dev='{dev}' bus='virtio'/>\n      {}\n    </disk>\n",
            absolute(&format!("the disk {}", disk.name), &disk.path)?,
            pci_address(4 + i)
        ));
    }
    devices.push_str(&format!(
        "    <serial type='file'>\n      <source path='{log}'/>\n      <target type='isa-serial' port='0'/>\n    </serial>\n"
    ));
    Ok(format!(
        "<!-- A mirage-rs virtio image (written by cargo mirage build -t virtio):\n\
         \x20    virsh -c qemu:///system define FILE && virsh -c qemu:///system start {name}\n\
         \x20    The console goes to {log_comment}. -->\n\
         <domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>{memory}</memory>\n  <vcpu>1</vcpu>\n\
         \x20 <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{image}</kernel>\n\
         \x20   <cmdline>{cmdline}</cmdline>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n\
         \x20 <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n  <on_crash>destroy</on_crash>\n\
         \x20 <devices>\n{devices}  </devices>\n</domain>\n",
        name = domain.name,
        memory = domain.memory_mib,
        log_comment = log.replace("--", "- -"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn domain<'a>(disks: &'a [Disk], args: &'a [String], tap: Option<&'a str>) -> Domain<'a> {
        Domain {
            name: "greeter",
            image: Path::new("/t/greeter"),
            memory_mib: 64,
            disks,
            tap,
            console_log: Path::new("/t/greeter.console.log"),
            args,
        }
    }

    #[test]
    fn the_domain_boots_the_image_on_q35_with_its_devices_on_bus_0() {
        let disks = [Disk { name: "data".into(), path: PathBuf::from("/d/a&b.img") }];
        let args =
            ["--ipv4".to_string(), "10.0.0.2/24".to_string(), "--".to_string(), "--port".to_string(), "80".to_string()];
        let xml = domain_xml(&domain(&disks, &args, Some("tap0"))).unwrap();
        for expected in [
            "<domain type='qemu'>",
            "<name>greeter</name>",
            "machine='q35'",
            "<kernel>/t/greeter</kernel>",
            "<cmdline>--block data=virtio:0 --ipv4 10.0.0.2/24 -- --port 80</cmdline>",
            "<memory unit='MiB'>64</memory>",
            "<rng model='virtio'>",
            "<target dev='tap0' managed='no'/>",
            "<model type='virtio'/>",
            "<source file='/d/a&amp;b.img'/>",
            "<target dev='vda' bus='virtio'/>",
            "slot='0x04'",
            "<source path='/t/greeter.console.log'/>",
            "<memballoon model='none'/>",
        ] {
            assert!(xml.contains(expected), "{expected} missing:\n{xml}");
        }
        assert!(!xml.contains("bus='0x01'"), "{xml}");
    }

    #[test]
    fn no_tap_no_interface_and_relative_paths_are_refused() {
        let xml = domain_xml(&domain(&[], &[], None)).unwrap();
        let outside_comments: String =
            xml.split("<!--").map(|part| part.rsplit("-->").next().unwrap_or(part)).collect();
        assert!(!outside_comments.contains("<interface"), "{xml}");
        // XML comments may not hold a double hyphen.
        let comments: Vec<&str> = xml.split("<!--").skip(1).filter_map(|c| c.split("-->").next()).collect();
        assert_eq!(comments.len(), 2);
        assert!(comments.iter().all(|c| !c.contains("--")), "{comments:?}");
        let disks = [Disk { name: "d".into(), path: PathBuf::from("rel.img") }];
        let e = domain_xml(&domain(&disks, &[], None)).unwrap_err();
        assert!(e.message().contains("absolute"), "{e}");
        let e = domain_xml(&Domain { name: "a'b", ..domain(&[], &[], None) }).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadArgument);
    }

    #[test]
    fn escaping_covers_the_five_characters() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;");
    }
}
