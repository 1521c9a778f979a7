//! Running a built application on its target, as `cargo mirage run` does,
//! with disks and a network, and returning its exit status.
//!
//! | target | how | disks | `tap` | `forward` |
//! |---|---|---|---|---|
//! | unix | the program itself | `--block NAME=FILE` | `--net net0=tap:IFACE` (our stack) | refused: the program uses the host's ports |
//! | virtio | QEMU ([`crate::qemu`]) | virtio-blk, `--block NAME=virtio:N` | a virtio-net on the TAP | QEMU user networking |
//! | xen | a domU in the Xen harness ([`crate::xen`]) | copies as vbds, `--block NAME=xen:ID` | refused | refused (the guest is 10.0.0.2 behind dom0) |
//!
//! The device flags go in front of the caller's arguments, which may hold
//! the platform's flags and, after `--`, the application's. Children get
//! SIGTERM when this process dies, so that no guest outlives it.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::build::Target;
use crate::qemu::{self, Machine, Network};
use crate::xen::{DomuOptions, Guest, Harness};
use crate::{block_flags, Disk, Error, ErrorKind};

/// What an application runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Raw disk images under the names the application asks for.
    pub disks: Vec<Disk>,
    /// Its network device (virtio), or TAP interface (unix).
    pub network: Network,
    /// The machine (virtio).
    pub machine: Machine,
    /// The guest's memory in MiB (virtio, xen); `None` for the default.
    pub memory_mib: Option<u32>,
    /// Where the Xen harness lives (xen); `None` for [`crate::xen::default_dir`].
    pub xen_harness: Option<PathBuf>,
}

/// Makes `command`'s child get SIGTERM when the thread that started it
/// ends (the process dying, typically), so that a QEMU or an application
/// does not outlive `cargo mirage`.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec; prctl
    // is a system call that is async-signal-safe, and the closure touches
    // no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child's exit status as a shell reports it: its code, or 128 plus
/// the signal that ended it.
pub fn status_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

fn refused(target: Target, what: &str, instead: &str) -> Error {
    Error::new(ErrorKind::BadArgument, format!("{what} does not apply to -t {target}: {instead}"))
}

/// The command running the unix program `binary` with `options`' disks
/// and TAP interface in front of `args`.
pub fn unix_command(binary: &Path, options: &Options, args: &[String]) -> Result<Command, Error> {
    let mut words = block_flags(&options.disks, |_, disk| disk.path.display().to_string());
    match &options.network {
        Network::None => {}
        Network::Tap(iface) => words.extend(["--net".to_string(), format!("net0=tap:{iface}")]),
        Network::User(_) => {
            return Err(refused(
                Target::Unix,
                "--forward",
                "a Linux process serves on the host's own ports (pass --port to the application after `-- --`)",
            ))
        }
    }
    words.extend(args.iter().cloned());
    let mut command = Command::new(binary);
    command.args(words);
    Ok(command)
}

/// Runs `image`, built for `target`, with `options` and `args`; returns
/// its exit status (for xen: 0 if the guest powered off or was still
/// running at the harness's time limit, 1 if it crashed, which is how a
/// Xen guest ends with a non-zero status).
pub fn run(target: Target, image: &Path, options: &Options, args: &[String]) -> Result<u8, Error> {
    for disk in &options.disks {
        disk.check()?;
    }
    match target {
        Target::Unix => unix(image, options, args),
        Target::Virtio => virtio(image, options, args),
        Target::Xen => xen(image, options, args),
    }
}

/// Runs a unix program (see [`run`]).
pub fn unix(binary: &Path, options: &Options, args: &[String]) -> Result<u8, Error> {
    let mut command = unix_command(binary, options, args)?;
    die_with_parent(&mut command);
    let status = command.status().map_err(|e| Error::io(format!("cannot run {}", binary.display()), e))?;
    Ok(status_code(status))
}

/// The QEMU options of `options`.
pub fn qemu_options(options: &Options) -> qemu::Options {
    qemu::Options {
        machine: options.machine,
        memory_mib: options.memory_mib.unwrap_or(qemu::DEFAULT_MEMORY_MIB),
        disks: options.disks.clone(),
        network: options.network.clone(),
    }
}

/// Boots a virtio image under QEMU, its console on this terminal (see
/// [`run`]).
pub fn virtio(image: &Path, options: &Options, args: &[String]) -> Result<u8, Error> {
    qemu::check_installed()?;
    let mut command = qemu::command(image, &qemu_options(options), args)?;
    if let Network::User(forwards) = &options.network {
        for forward in forwards {
            println!(
                "==> 127.0.0.1:{} goes to the guest's port {} (QEMU user networking)",
                forward.host, forward.guest
            );
        }
    }
    die_with_parent(&mut command);
    let status = command.status().map_err(|e| Error::io(format!("cannot start {}", qemu::QEMU), e))?;
    status
        .code()
        .and_then(qemu::guest_status)
        .ok_or_else(|| Error::new(ErrorKind::Run, format!("QEMU ended without the guest's exit status ({status})")))
}

/// Boots a Xen image as a domU of the Xen harness (see [`run`]).
pub fn xen(image: &Path, options: &Options, args: &[String]) -> Result<u8, Error> {
    match &options.network {
        Network::None => {}
        Network::Tap(_) => {
            return Err(refused(Target::Xen, "--tap", "the guest's vif is 10.0.0.2/24 behind dom0's 10.0.0.1"))
        }
        Network::User(_) => {
            return Err(refused(Target::Xen, "--forward", "the guest's vif is 10.0.0.2/24 behind dom0's 10.0.0.1"))
        }
    }
    let harness = options.xen_harness.as_deref().map(Harness::at).unwrap_or_default();
    let mut domu = DomuOptions { disks: options.disks.clone(), ..DomuOptions::default() };
    if let Some(memory) = options.memory_mib {
        domu.memory = memory;
    }
    let guest = Guest { memory_mib: domu.memory, ..Guest::pvh(image, args) };
    let log = harness.domu(&guest, &domu)?;
    let harness_said = |what: &str| log.lines().any(|l| l.starts_with("harness: ") && l.contains(what));
    if harness_said(" guest crashed") {
        return Ok(1);
    }
    if harness_said("guest still running") {
        println!("==> the guest was still running at the harness's time limit, which destroyed it");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::words;

    #[test]
    fn unix_devices_become_flags_in_front_of_the_arguments() {
        let options = Options {
            disks: vec![Disk::parse("data=d.img").unwrap()],
            network: Network::Tap("tap3".into()),
            ..Options::default()
        };
        let args = ["--".to_string(), "--port".to_string(), "1".to_string()];
        let command = unix_command(Path::new("/bin/app"), &options, &args).unwrap();
        assert_eq!(words(&command), ["--block", "data=d.img", "--net", "net0=tap:tap3", "--", "--port", "1"]);
        let forward = Options { network: Network::User(vec!["1:1".parse().unwrap()]), ..Options::default() };
        assert_eq!(unix_command(Path::new("/bin/app"), &forward, &[]).unwrap_err().kind(), ErrorKind::BadArgument);
    }

    #[test]
    fn statuses_follow_the_shell() {
        assert_eq!(status_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(status_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn a_missing_disk_is_refused_before_anything_runs() {
        let options = Options { disks: vec![Disk::parse("d=/nonexistent.img").unwrap()], ..Options::default() };
        let e = run(Target::Virtio, Path::new("/img"), &options, &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingFile);
    }

    #[test]
    fn the_child_dies_with_its_parent_flag_is_harmless() {
        let mut command = Command::new("true");
        die_with_parent(&mut command);
        assert!(command.status().unwrap().success());
    }
}
