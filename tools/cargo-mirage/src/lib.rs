//! `cargo mirage`: create, build and run mirage-rs applications.
//!
//! A mirage-rs application is one crate that depends on `mirage-rs` (lib
//! name `mirage`): its generic code in `src/lib.rs` and the entry line
//! `mirage::main!(app::start);` in `src/main.rs`. This crate turns such a
//! crate into each of its three targets and runs them:
//!
//! | target | artifact | runs under |
//! |---|---|---|
//! | [`Target::Unix`] | a Linux program (`cargo build`) | the host, as a process |
//! | [`Target::Virtio`] | a PVH kernel image on virtio devices | QEMU microvm ([`qemu`]), libvirt ([`libvirt`]) |
//! | [`Target::Xen`] | a PVH kernel image on Xen's PV devices | a Xen host ([`xl`]), the Xen-under-QEMU harness ([`xen`]) |
//!
//! The modules:
//!
//! - [`build`]: builds an application for a target and returns the
//!   [`Image`] (path and size), with cargo's progress on stderr.
//! - [`qemu`]: the QEMU command line of a virtio image (microvm, TCG,
//!   `isa-debug-exit`, virtio-rng, disks, TAP or user networking) and the
//!   guest's exit status.
//! - [`libvirt`]: a libvirt domain (XML) for a virtio image.
//! - [`xl`]: an `xl` configuration for a Xen image on a Xen host.
//! - [`xen`]: Xen 4.17 with a Linux dom0 under QEMU, to boot a Xen image
//!   as dom0 or as a domU without a Xen host.
//! - [`run`]: runs an image on its target with disks and a network, as
//!   `cargo mirage run` does.
//! - [`template`]: the application `cargo mirage new` writes.
//! - [`apt`]: installs missing Debian packages (QEMU, the harness's tools).
//! - [`cli`]: the command-line options `cargo mirage run` shares with
//!   other runners (clap arguments).
//!
//! Every failure is an [`Error`] whose message says what to do about it.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//! use cargo_mirage::build::{build, Target};
//!
//! let image = build(Path::new("Cargo.toml"), None, Target::Virtio, false)?;
//! println!("{} ({} bytes)", image.path.display(), image.size);
//! # Ok::<(), cargo_mirage::Error>(())
//! ```

use std::fmt;
use std::path::PathBuf;

pub mod apt;
pub mod build;
pub mod cli;
pub mod libvirt;
pub mod qemu;
pub mod run;
pub mod template;
pub mod xen;
pub mod xl;

pub use build::{Image, Target};

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No `Cargo.toml` where one was looked for, or it is not a package.
    NotACrate,
    /// The package does not depend on `mirage-rs`.
    NoMirageDependency,
    /// The package has no binary (or not the one asked for).
    NoBinary,
    /// cargo failed or printed something unexpected.
    Cargo,
    /// A program that is needed is not installed (QEMU, virsh, ...).
    MissingTool,
    /// A malformed argument (`--forward`, `--disk`, a name).
    BadArgument,
    /// A file that was named does not exist.
    MissingFile,
    /// Reading or writing a file, or starting a program, failed.
    Io,
    /// The Xen harness failed to prepare or to boot a guest.
    Harness,
    /// A guest or program did not end the way it should have.
    Run,
}

/// A failure, with a message that says what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// An [`ErrorKind::Io`] error: `what` failed with `error`.
    pub fn io(what: impl fmt::Display, error: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{what}: {error}"))
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// A raw disk image given to a guest under a name: `--disk NAME=FILE`.
///
/// The name is what the application asks for (`devices.block("NAME")`);
/// the platform's `--block NAME=...` flag that connects it is added to the
/// command line by [`run`], [`qemu`], [`libvirt`] and [`xl`], in the order
/// the disks are given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// The device name the application asks for.
    pub name: String,
    /// The raw image on the host.
    pub path: PathBuf,
}

impl Disk {
    /// Parses `NAME=FILE`. The name is letters, digits, `-` and `_`; the
    /// file must exist (checked by [`Disk::check`], not here).
    pub fn parse(text: &str) -> Result<Disk, Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::BadArgument,
                format!("--disk {text:?}: {why}; expected NAME=FILE, e.g. data=disk.img"),
            )
        };
        let (name, path) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad("the name must be letters, digits, '-' or '_'"));
        }
        if path.is_empty() {
            return Err(bad("no file after '='"));
        }
        Ok(Disk { name: name.to_string(), path: PathBuf::from(path) })
    }

    /// Fails with what to do when the file does not exist.
    pub fn check(&self) -> Result<(), Error> {
        if self.path.is_file() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::MissingFile,
            format!(
                "--disk {}={}: no such file (create an empty one with `truncate -s 16M {}`)",
                self.name,
                self.path.display(),
                self.path.display()
            ),
        ))
    }
}

/// The `--block NAME=BACKING` flags naming `disks` in order, where
/// `backing(i)` is the platform's name of the `i`-th disk
/// (`virtio:0`, `xen:51712`, a host path).
pub fn block_flags(disks: &[Disk], backing: impl Fn(usize, &Disk) -> String) -> Vec<String> {
    disks
        .iter()
        .enumerate()
        .flat_map(|(i, disk)| ["--block".to_string(), format!("{}={}", disk.name, backing(i, disk))])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_parse_and_bad_ones_say_the_form() {
        assert_eq!(Disk::parse("data=a/b.img").unwrap(), Disk { name: "data".into(), path: "a/b.img".into() });
        assert_eq!(Disk::parse("d=x=y").unwrap().path, PathBuf::from("x=y"));
        for bad in ["data", "=x", "da ta=x", "d="] {
            let e = Disk::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadArgument);
            assert!(e.message().contains("NAME=FILE"), "{e}");
        }
        let missing = Disk::parse("d=/nonexistent/disk.img").unwrap().check().unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::MissingFile);
        assert!(missing.message().contains("truncate -s 16M"), "{missing}");
    }

    #[test]
    fn block_flags_follow_the_disks() {
        let disks = [Disk::parse("a=1").unwrap(), Disk::parse("b=2").unwrap()];
        assert_eq!(
            block_flags(&disks, |i, _| format!("virtio:{i}")),
            ["--block", "a=virtio:0", "--block", "b=virtio:1"]
        );
    }
}
