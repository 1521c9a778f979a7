//! An `xl` configuration for a Xen image on a Xen host of your own:
//!
//! ```sh
//! xl create APP.cfg -c
//! ```
//!
//! The guest ([`config`]) is PVH with one vCPU, the image as its kernel
//! and the application's flags as its `cmdline`. Each disk is a vbd
//! (`xvda`, `xvdb`, ...) named on the command line with
//! `--block NAME=xen:ID`, ID the vbd's xenstore id ([`vbd_id`]: 51712 for
//! `xvda`), in front of the application's flags. The network interface is
//! a vif whose dom0 end is named after the given interface
//! (`vifname=IFACE`); without one, a commented-out `vif` line on the
//! bridge `xenbr0` shows the usual set-up.

use std::path::Path;

use crate::qemu::command_line;
use crate::{block_flags, Disk, Error, ErrorKind};

/// The guest's memory when none is given, in MiB (what the harness gives).
pub const DEFAULT_MEMORY_MIB: u32 = 32;

/// The most disks (`xvda` to `xvdp`).
pub const MAX_DISKS: usize = 16;

/// The xenstore id of the `index`-th vbd, `xvda` being 0: `(202 << 8) |
/// (index << 4)` (Linux's `xvd` major number and 16 minors per disk).
pub fn vbd_id(index: usize) -> u32 {
    (202 << 8) | ((index as u32) << 4)
}

/// The name of the `index`-th vbd: `xvda`, `xvdb`, ...
pub fn vdev(index: usize) -> String {
    format!("xvd{}", char::from(b'a' + (index % 26) as u8))
}

/// The `--block NAME=xen:ID` flags naming `disks` as `xvda`, `xvdb`, ...
pub fn disk_flags(disks: &[Disk]) -> Vec<String> {
    block_flags(disks, |i, _| format!("xen:{}", vbd_id(i)))
}

/// What the guest boots, with what.
#[derive(Clone, Debug)]
pub struct Config<'a> {
    /// The domain's name.
    pub name: &'a str,
    /// The Xen image (an absolute path on the Xen host).
    pub kernel: &'a Path,
    /// The guest's memory in MiB.
    pub memory_mib: u32,
    /// Raw disk images, `xvda`, `xvdb`, ... in this order.
    pub disks: &'a [Disk],
    /// The name of the dom0 end of a vif, if the guest gets one.
    pub vif: Option<&'a str>,
    /// The application's command line, after the disks' `--block` flags.
    pub args: &'a [String],
}

/// `text` as an xl string, refusing what xl's strings cannot hold (and,
/// with `in_list`, a comma, which separates an xl list item's settings).
fn quoted(what: &str, text: &str, in_list: bool) -> Result<String, Error> {
    if text.contains(['"', '\n', '\\']) || (in_list && text.contains(',')) {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!(
                "{what} {text:?}: an xl configuration cannot hold a quote, backslash, newline{}",
                if in_list { " or comma there" } else { "" }
            ),
        ));
    }
    Ok(format!("\"{text}\""))
}

/// The configuration (see the [module documentation](self)).
pub fn config(config: &Config) -> Result<String, Error> {
    if config.disks.len() > MAX_DISKS {
        return Err(Error::new(
            ErrorKind::BadArgument,
            format!("{} disks: an xl guest here takes at most {MAX_DISKS}", config.disks.len()),
        ));
    }
    let mut line = disk_flags(config.disks);
    line.extend(config.args.iter().cloned());
    let kernel = config.kernel.display().to_string();
    let mut text = format!(
        "# xl create {name}.cfg -c   (written by cargo mirage build -t xen)\n\
         name = {quoted_name}\ntype = \"pvh\"\nkernel = {kernel}\nmemory = {memory}\nvcpus = 1\n\
         on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"preserve\"\n\
         cmdline = {cmdline}\n",
        name = config.name,
        quoted_name = quoted("the name", config.name, false)?,
        kernel = quoted("the image", &kernel, false)?,
        memory = config.memory_mib,
        cmdline = quoted("the command line", &command_line(&line)?, false)?,
    );
    if config.disks.is_empty() {
        text.push_str("# A disk (named with --block NAME=xen:51712 in cmdline):\n# disk = [ \"format=raw, vdev=xvda, access=rw, target=/path/to/disk.img\" ]\n");
    } else {
        let disks: Vec<String> = config
            .disks
            .iter()
            .enumerate()
            .map(|(i, disk)| {
                let path = disk.path.display().to_string();
                quoted(&format!("the disk {}", disk.name), &path, true)?;
                Ok(format!("\"format=raw, vdev={}, access=rw, target={path}\"", vdev(i)))
            })
            .collect::<Result<_, _>>()?;
        text.push_str(&format!("disk = [ {} ]\n", disks.join(", ")));
    }
    match config.vif {
        Some(vif) => {
            text.push_str(&format!("vif = [ {} ]\n", quoted("the vif name", &format!("vifname={vif}"), true)?))
        }
        None => text.push_str("# A network interface on dom0's bridge xenbr0:\n# vif = [ \"bridge=xenbr0\" ]\n"),
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn vbd_ids_follow_the_xvd_numbering() {
        assert_eq!((vbd_id(0), vdev(0)), (51712, "xvda".to_string()));
        assert_eq!((vbd_id(1), vdev(1)), (51728, "xvdb".to_string()));
    }

    #[test]
    fn the_config_carries_kernel_disks_vif_and_command_line() {
        let disks = [
            Disk { name: "data".into(), path: PathBuf::from("/d/a.img") },
            Disk { name: "b".into(), path: "/b".into() },
        ];
        let args = ["--".to_string(), "--ipv4".to_string()];
        let text = config(&Config {
            name: "greeter",
            kernel: Path::new("/t/greeter"),
            memory_mib: 32,
            disks: &disks,
            vif: Some("vif-greeter"),
            args: &args,
        })
        .unwrap();
        for expected in [
            "name = \"greeter\"",
            "type = \"pvh\"",
            "kernel = \"/t/greeter\"",
            "memory = 32",
            "cmdline = \"--block data=xen:51712 --block b=xen:51728 -- --ipv4\"",
            "disk = [ \"format=raw, vdev=xvda, access=rw, target=/d/a.img\", \"format=raw, vdev=xvdb, access=rw, target=/b\" ]",
            "vif = [ \"vifname=vif-greeter\" ]",
        ] {
            assert!(text.contains(expected), "{expected} missing:\n{text}");
        }
    }

    #[test]
    fn without_disks_or_vif_the_lines_are_examples_and_quotes_are_refused() {
        let base = Config { name: "g", kernel: Path::new("/k"), memory_mib: 32, disks: &[], vif: None, args: &[] };
        let text = config(&base).unwrap();
        assert!(text.contains("# disk = [") && text.contains("# vif = [") && text.contains("cmdline = \"\""), "{text}");
        let commas = [Disk { name: "d".into(), path: "/a,b".into() }];
        assert_eq!(config(&Config { disks: &commas, ..base.clone() }).unwrap_err().kind(), ErrorKind::BadArgument);
        assert!(config(&Config { name: "a\"b", ..base }).is_err());
    }
}
