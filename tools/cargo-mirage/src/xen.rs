//! Xen 4.17 with Debian's packages under QEMU's software emulation, to
//! boot PVH images on the real hypervisor without a Xen host.
//!
//! - [`Harness::prepare`] makes sure QEMU is version 10 or later
//!   (installing it from bookworm-backports, adding that apt source if
//!   missing), downloads the Debian packages of Xen, its toolstack and a
//!   Linux kernel with `apt-get download` into `DIR/debs` (nothing is
//!   installed on the host), unpacks them, and builds the dom0 root file
//!   system. Reused when present; delete the directory to redo it.
//! - [`Harness::dom0`] boots the image as Xen's PVH dom0 (no toolstack):
//!   Xen and the guest both print on the serial line, and the guest's
//!   status comes back through QEMU's `isa-debug-exit`.
//! - [`Harness::domu`] boots Xen with Debian's Linux as dom0, which starts
//!   xenstored and xenconsoled and `xl create`s the image as a PVH domU
//!   with a network interface (dom0's end 10.0.0.1/24; the guest uses
//!   10.0.0.2/24) and its disks: by default one blank 8 MiB disk (`xvda`);
//!   with [`DomuOptions::disks`], a copy of each file (`xvda`, `xvdb`, ...,
//!   named on the guest's command line with `--block NAME=xen:ID`). The
//!   copies live in dom0's memory: the guest's writes do not reach the
//!   files. The guest's console, read with `xl console`, is printed
//!   between [`GUEST_CONSOLE_START`] and [`GUEST_CONSOLE_END`].
//!   `runs` creates the guest several times in a row on the same disks
//!   (one console each); `dom0_script` runs a busybox script in dom0
//!   beside the first run (e.g. `nc` to the guest), printed between its
//!   own markers, and runs it again if its shell dies of a signal such as
//!   SIGSEGV (at most three runs: a defence, since a static busybox in this
//!   dom0 did now and then under TCG). The log carries `harness: at SECONDS ...` lines (dom0 uptime)
//!   for `xl create`, the unpause and the guest's first console output.
//!
//! Every run has a timeout; one that times out is retried once (the
//! Linux dom0 hangs before its init in about 1 boot in 17 under TCG), and
//! a second timeout fails with the log's path and its end. QEMU runs with
//! `-cpu EPYC,+svm,-monitor`: Xen needs SVM with nested paging for PVH
//! guests, and its idle loop faults on MWAIT under TCG. Everything QEMU
//! prints is echoed on stdout as it comes.
//!
//! # Where the harness lives
//!
//! In a directory of about 550 MiB ([`Harness::at`]); [`default_dir`] is
//! `$MIRAGE_XEN_HARNESS_DIR` if set, else
//! `$XDG_CACHE_HOME/mirage-rs/xen-harness`, else
//! `~/.cache/mirage-rs/xen-harness`: one per user, shared by every
//! application. The mirage-rs repository's own `cargo xtask xen` and tests
//! keep theirs in the workspace's `target/xen-harness`. Each run works in
//! `DIR/runs/PID-N`, which keeps the serial log (`serial-domu.log`,
//! `serial-dom0.log`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Disk, Error, ErrorKind};

/// The harness's internal failures: a message, made an [`Error`] of kind
/// [`ErrorKind::Harness`] at the public functions.
type TaskError = String;

fn harness_error(message: String) -> Error {
    Error::new(ErrorKind::Harness, message)
}

/// The Debian packages `prepare` downloads, besides the kernel (whose name
/// changes with security updates and is asked of apt).
const PACKAGES: &[&str] = &[
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "libxenmisc4.17",
    "libxenstore4",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
    "xenstore-utils",
    // The dynamic build: busybox-static's processes died of SIGSEGV now
    // and then under TCG as they started (glibc's static TLS set-up read
    // its thread's locale pointer as null), in 7 of 20 runs of www's Xen
    // test. The dynamic build crashed once in 20 (a forked child, which
    // the scripts tolerate); why a fresh process sometimes sees a bad
    // page under TCG is not known.
    "busybox",
    "libc6",
    "libgcc-s1",
    "liblzma5",
    "libuuid1",
    "zlib1g",
    "libzstd1",
];

/// The toolstack programs dom0 runs.
const XEN_PROGRAMS: &[&str] = &["xl", "xenstored", "xenconsoled", "xenconsole", "xen-init-dom0", "libxl-save-helper"];

/// The kernel modules dom0 loads, in order, relative to the modules tree.
const MODULES: &[&str] = &[
    "drivers/xen/xen-evtchn.ko",
    "drivers/xen/xen-gntdev.ko",
    "drivers/xen/xen-gntalloc.ko",
    "drivers/xen/xen-privcmd.ko",
    "drivers/xen/xenfs/xenfs.ko",
    "drivers/block/xen-blkback/xen-blkback.ko",
    "drivers/net/xen-netback/xen-netback.ko",
    "drivers/block/loop.ko",
];

/// The apt source file `prepare` adds for QEMU 10 when apt has none for
/// bookworm-backports.
const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

/// Path A's run time is about 1.5 s plus the guest's own; path B's about
/// 15 s plus the guest's own on an idle machine, but over 2 minutes when
/// other builds share the 2 cores. Both limits leave room for that.
pub const DOM0_TIMEOUT: Duration = Duration::from_secs(90);
/// See [`DOM0_TIMEOUT`].
pub const DOMU_TIMEOUT: Duration = Duration::from_secs(420);

/// The markers around the domU's console in the serial log.
pub const GUEST_CONSOLE_START: &str = "===== guest console =====";
/// See [`GUEST_CONSOLE_START`].
pub const GUEST_CONSOLE_END: &str = "===== end guest console =====";
/// The markers around the output of `--dom0-script`.
pub const DOM0_SCRIPT_START: &str = "===== dom0 script =====";
/// See [`DOM0_SCRIPT_START`].
pub const DOM0_SCRIPT_END: &str = "===== end dom0 script =====";

/// How long one guest run may last before dom0 destroys it, and the
/// dom0 script's limit.
const GUEST_SECONDS: u32 = 120;
/// See [`GUEST_SECONDS`].
const DOM0_SCRIPT_SECONDS: u32 = 100;

/// How `domu` runs the guest.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct DomuOptions {
    /// A busybox `sh` script dom0 runs once the (first) guest is unpaused,
    /// beside it (at most 100 s); its output is printed between
    /// `===== dom0 script =====` and `===== end dom0 script =====`.
    #[arg(long, value_name = "FILE")]
    pub dom0_script: Option<PathBuf>,
    /// Create the guest this many times in a row on the same disk (1 to 5).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    pub runs: u32,
    /// An initial RAM disk for the guest (to boot a Linux domU).
    #[arg(long, value_name = "FILE")]
    pub ramdisk: Option<PathBuf>,
    /// The guest's memory in MiB.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=256))]
    pub memory: u32,
    /// Boot the guest as a PV domU instead of PVH (a Linux kernel; ours
    /// are PVH only).
    #[arg(long)]
    pub pv: bool,
    /// A raw disk image for the guest, `NAME=FILE`: the guest gets a copy
    /// as its next vbd (`xvda`, `xvdb`, ...), named on its command line
    /// with `--block NAME=xen:ID`. May be given up to 8 times; without
    /// any, the guest gets one blank 8 MiB `xvda`.
    #[arg(long = "disk", value_name = "NAME=FILE", value_parser = Disk::parse)]
    pub disks: Vec<Disk>,
}

/// The harness's directory when none is chosen: see the [module
/// documentation](self#where-the-harness-lives).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MIRAGE_XEN_HARNESS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("mirage-rs").join("xen-harness")
}

/// The Xen harness in a directory (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Harness {
    dir: PathBuf,
}

impl Default for Harness {
    /// The harness in [`default_dir`].
    fn default() -> Harness {
        Harness::at(&default_dir())
    }
}

impl Harness {
    /// The harness in `dir` (prepared there by [`Harness::prepare`]).
    pub fn at(dir: &Path) -> Harness {
        Harness { dir: dir.to_path_buf() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether [`Harness::prepare`] has left everything a run needs.
    pub fn is_prepared(&self) -> bool {
        Files::at(&self.dir).is_complete()
    }

    /// Why a run would have to prepare first, if it would: the harness's
    /// files are not in its directory, or QEMU >= 10, `cpio` or `gzip` is
    /// not installed. Only looks: installs and downloads nothing (for
    /// callers that must not reach the network, such as tests).
    pub fn missing(&self) -> Option<String> {
        if !self.is_prepared() {
            return Some(format!("the Xen harness is not prepared in {}", self.dir.display()));
        }
        match qemu_major() {
            Some(major) if major >= 10 => {}
            Some(major) => {
                return Some(format!(
                    "the Xen harness needs QEMU >= 10 and QEMU {major} is installed \
                     (Debian package qemu-system-x86 from bookworm-backports)"
                ))
            }
            None => return Some("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)".into()),
        }
        ["cpio", "gzip"].into_iter().find(|package| !crate::apt::installed(package)).map(|package| {
            format!("`{package}` is not installed (Debian package {package}), which the Xen harness runs")
        })
    }

    /// Installs QEMU >= 10 if needed, downloads and unpacks Xen, Linux and
    /// the toolstack, and builds dom0's root file system; does nothing
    /// when that was done. Needs root for the installs and a Debian mirror.
    pub fn prepare(&self) -> Result<(), Error> {
        prepare(&self.dir).map_err(harness_error)
    }

    /// Boots `image` as Xen's PVH dom0 with the command line `args`;
    /// returns the guest's exit status and the serial log.
    pub fn dom0(&self, image: &Path, args: &[String]) -> Result<Dom0Run, Error> {
        dom0(&self.dir, image, args).map_err(harness_error)
    }

    /// Boots Xen with the Linux dom0 and runs `guest` as its domU as
    /// `options` say; returns the serial log once dom0 printed every run's
    /// console (and the script's output, with one). [`guest_consoles`]
    /// and [`dom0_script_output`] cut them from it.
    pub fn domu(&self, guest: &Guest, options: &DomuOptions) -> Result<String, Error> {
        boot_domu(&self.dir, guest, options).map_err(harness_error)
    }
}

/// Runs `command`, failing with `what` and its status.
fn checked(what: &str, command: &mut Command) -> Result<(), TaskError> {
    let status = command.status().map_err(|e| format!("{what}: cannot start {command:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{what} failed ({status}): {command:?}"));
    }
    Ok(())
}

/// QEMU's major version, from `qemu-system-x86_64 --version`.
fn qemu_major() -> Option<u32> {
    let out = Command::new("qemu-system-x86_64").arg("--version").output().ok()?;
    parse_qemu_major(&String::from_utf8_lossy(&out.stdout))
}

/// The major version in "QEMU emulator version 10.0.2 (Debian ...)".
fn parse_qemu_major(text: &str) -> Option<u32> {
    let version = text.split("version ").nth(1)?;
    version.split('.').next()?.trim().parse().ok()
}

/// Installs QEMU 10 from bookworm-backports unless QEMU >= 10 is there.
fn ensure_qemu_10() -> Result<(), TaskError> {
    if qemu_major().is_some_and(|major| major >= 10) {
        return Ok(());
    }
    println!("==> QEMU >= 10 is needed for Xen domUs; installing it from bookworm-backports");
    let sources_mention_backports = fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
        .chain(fs::read_dir("/etc/apt").into_iter().flatten().flatten())
        .filter(|e| e.path().is_file())
        .any(|e| fs::read_to_string(e.path()).is_ok_and(|t| t.contains("bookworm-backports")));
    if !sources_mention_backports {
        println!("==> adding the apt source {BACKPORTS_SOURCE}");
        fs::write(
            BACKPORTS_SOURCE,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .map_err(|e| format!("cannot write {BACKPORTS_SOURCE} (run as root): {e}"))?;
    }
    println!("==> apt-get update");
    checked("apt-get update", Command::new("apt-get").arg("update"))?;
    println!("==> apt-get install -y -t bookworm-backports qemu-system-x86");
    checked(
        "installing QEMU from bookworm-backports",
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "-t", "bookworm-backports", "qemu-system-x86"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    match qemu_major() {
        Some(major) if major >= 10 => Ok(()),
        other => Err(format!("QEMU is still version {other:?} after installing from bookworm-backports")),
    }
}

/// The files `prepare` leaves, which the runs need.
struct Files {
    xen: PathBuf,
    vmlinuz: PathBuf,
    rootfs: PathBuf,
}

impl Files {
    fn at(dir: &Path) -> Files {
        Files { xen: dir.join("xen"), vmlinuz: dir.join("vmlinuz"), rootfs: dir.join("rootfs") }
    }

    fn is_complete(&self) -> bool {
        let recipe = fs::read_to_string(self.rootfs.join(ROOTFS_RECIPE_FILE)).unwrap_or_default();
        self.xen.is_file()
            && self.vmlinuz.is_file()
            && self.rootfs.join("init").is_file()
            && recipe.trim() == ROOTFS_RECIPE.to_string()
    }
}

/// The version of what [`build_rootfs`] puts in dom0's root file system;
/// a harness prepared with another is prepared again.
const ROOTFS_RECIPE: u32 = 2;
/// Where the root file system records its recipe.
const ROOTFS_RECIPE_FILE: &str = ".recipe";

/// [`Harness::prepare`] in `dir`.
fn prepare(dir: &Path) -> Result<(), TaskError> {
    ensure_qemu_10()?;
    crate::apt::ensure(&["cpio", "gzip"]).map_err(|e| e.to_string())?;
    let harness = Files::at(dir);
    if harness.is_complete() {
        println!("==> Xen harness already prepared in {}", dir.display());
        return Ok(());
    }
    let debs = dir.join("debs");
    let unpacked = dir.join("unpacked");
    // Packages of an older recipe would be unpacked too.
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs).map_err(|e| format!("cannot create {}: {e}", debs.display()))?;
    let kernel = linux_package()?;
    println!("==> downloading {} Debian packages and {kernel} into {}", PACKAGES.len(), debs.display());
    checked(
        "apt-get download (is the Debian mirror reachable?)",
        Command::new("apt-get").arg("download").args(PACKAGES).arg(&kernel).current_dir(&debs),
    )?;
    let _ = fs::remove_dir_all(&unpacked);
    for entry in fs::read_dir(&debs).map_err(|e| format!("cannot list {}: {e}", debs.display()))?.flatten() {
        if entry.path().extension().is_some_and(|x| x == "deb") {
            checked("unpacking a package", Command::new("dpkg-deb").arg("-x").arg(entry.path()).arg(&unpacked))?;
        }
    }
    let xen_gz = unpacked.join("boot/xen-4.17-amd64.gz");
    let xen = Command::new("zcat").arg(&xen_gz).output().map_err(|e| format!("cannot run zcat: {e}"))?;
    if !xen.status.success() || xen.stdout.is_empty() {
        return Err(format!("cannot decompress {}", xen_gz.display()));
    }
    fs::write(&harness.xen, &xen.stdout).map_err(|e| format!("cannot write {}: {e}", harness.xen.display()))?;
    let vmlinuz = only_entry(&unpacked.join("boot"), "vmlinuz-")?;
    copy(&vmlinuz, &harness.vmlinuz)?;
    build_rootfs(&unpacked, &harness.rootfs)?;
    println!("==> Xen harness prepared in {}", dir.display());
    Ok(())
}

/// The current `linux-image-6.1.0-NN-amd64` package, which
/// `linux-image-amd64` depends on.
fn linux_package() -> Result<String, TaskError> {
    let out = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .map_err(|e| format!("cannot run apt-cache: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-") && name.as_bytes().get(12).is_some_and(u8::is_ascii_digit))
        .map(str::to_string)
        .ok_or_else(|| "apt-cache names no kernel package for linux-image-amd64 (apt-get update?)".to_string())
}

/// The one entry of `dir` whose name starts with `prefix`.
fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf, TaskError> {
    fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix)))
        .ok_or_else(|| format!("no {prefix}* in {}", dir.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), TaskError> {
    fs::copy(from, to).map(|_| ()).map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), to.display()))
}

fn write_executable(path: &Path, text: &str) -> Result<(), TaskError> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", path.display()))
}

/// Copies the shared libraries (`lib*.so.*`) of `from` into `to`, links
/// as links.
fn copy_libraries(from: &Path, to: &Path) -> Result<(), TaskError> {
    let Ok(entries) = fs::read_dir(from) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("lib") && name.contains(".so.")) {
            continue;
        }
        let target = to.join(&name);
        match fs::read_link(entry.path()) {
            Ok(link) => std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| format!("cannot link {}: {e}", target.display()))?,
            Err(_) => copy(&entry.path(), &target)?,
        }
    }
    Ok(())
}

/// dom0's root file system: busybox, the toolstack and its libraries, the
/// Xen back-end modules, hotplug scripts that need no udev, and `/init`.
fn build_rootfs(unpacked: &Path, rootfs: &Path) -> Result<(), TaskError> {
    let _ = fs::remove_dir_all(rootfs);
    for dir in [
        "bin",
        "sbin",
        "etc/xen/scripts",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "var/lib/xen",
        "var/log/xen/console",
        "lib64",
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/xen-4.17/bin",
        "lib/modules",
    ] {
        fs::create_dir_all(rootfs.join(dir)).map_err(|e| format!("cannot create {dir} in the rootfs: {e}"))?;
    }
    let busybox = unpacked.join("bin/busybox");
    copy(&busybox, &rootfs.join("bin/busybox"))?;
    let applets = Command::new(&busybox).arg("--list").output().map_err(|e| format!("cannot run busybox: {e}"))?;
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| *a != "busybox" && !a.is_empty()) {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    std::os::unix::fs::symlink("/run", rootfs.join("var/run")).map_err(|e| format!("cannot link var/run: {e}"))?;
    let loader = fs::canonicalize(unpacked.join("lib64/ld-linux-x86-64.so.2"))
        .map_err(|e| format!("no dynamic loader among the unpacked packages: {e}"))?;
    copy(&loader, &rootfs.join("lib64/ld-linux-x86-64.so.2"))?;
    for dir in ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"] {
        copy_libraries(&unpacked.join(dir), &rootfs.join(dir))?;
    }
    for program in XEN_PROGRAMS {
        let path = format!("usr/lib/xen-4.17/bin/{program}");
        copy(&unpacked.join(&path), &rootfs.join(&path))?;
    }
    for entry in fs::read_dir(unpacked.join("usr/bin")).map_err(|e| format!("no usr/bin unpacked: {e}"))?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("xenstore") {
            copy(&entry.path(), &rootfs.join("bin").join(entry.file_name()))?;
        }
    }
    copy(&unpacked.join("etc/xen/xl.conf"), &rootfs.join("etc/xen/xl.conf"))?;
    let modules = only_entry(&unpacked.join("lib/modules"), "")?.join("kernel");
    for module in MODULES {
        let name = Path::new(module).file_name().unwrap_or_default();
        copy(&modules.join(module), &rootfs.join("lib/modules").join(name))?;
    }
    write_executable(&rootfs.join("etc/xen/scripts/block-attach"), BLOCK_SCRIPT)?;
    write_executable(&rootfs.join("etc/xen/scripts/vif-attach"), VIF_SCRIPT)?;
    write_executable(&rootfs.join("init"), &init_script(1, 0))?;
    fs::write(rootfs.join(ROOTFS_RECIPE_FILE), format!("{ROOTFS_RECIPE}\n"))
        .map_err(|e| format!("cannot write the root file system's recipe: {e}"))
}

/// The block hotplug script: Xen's needs udev and bash; blkback only needs
/// to be told the device.
const BLOCK_SCRIPT: &str = r#"#!/bin/sh
# xl runs this with add|remove and XENBUS_PATH; the target is a loop device.
[ "$1" = add ] || exit 0
dev=$(xenstore-read "$XENBUS_PATH/params")
xenstore-write "$XENBUS_PATH/physical-device" "$(stat -L -c '%t:%T' "$dev")" \
  "$XENBUS_PATH/physical-device-path" "$dev" "$XENBUS_PATH/hotplug-status" connected
"#;

/// The network hotplug script: dom0's end of the domU's interface is
/// 10.0.0.1/24, routed, no bridge.
const VIF_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  online|add)
    ip link set "$vif" up
    ip addr add 10.0.0.1/24 dev "$vif"
    xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
esac
exit 0
"#;

/// dom0's `/init`: brings up the toolstack, attaches the guest's disks
/// to loop devices (`disks` files `/disks/N.img`, or with none a blank
/// 8 MiB `/disk.img`), then `runs` times: creates
/// the guest paused, attaches `xl console` to a file, unpauses it and
/// waits until it ends or [`GUEST_SECONDS`]. The first run also starts
/// `/dom0-script` if there is one. Prints each run's console and the
/// script's output between their markers, with the times of the
/// milestones (seconds of dom0 uptime, `harness: at`), and powers off.
fn init_script(runs: u32, disks: usize) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/sbin:/bin:/usr/lib/xen-4.17/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run; mkdir -p /run/xen /run/xenstored /run/lock
# xl console takes its lock in /var/lock and fails without the directory.
ln -s /run/lock /var/lock
for m in {modules}; do insmod /lib/modules/$m || echo "harness: insmod $m failed"; done
mkdir -p /proc/xen; mount -t xenfs xenfs /proc/xen
xenstored --pid-file /run/xenstored.pid
xen-init-dom0 >/dev/null
xenconsoled --log=guest --log-dir=/var/log/xen/console --pid-file=/run/xenconsoled.pid
{disks}
now() {{ cut -d' ' -f1 /proc/uptime; }}
# Whole seconds of uptime; 0 if the read fails (a command that dies under
# TCG), which never ends a wait.
secs() {{ t=$(cut -d. -f1 /proc/uptime 2>/dev/null); echo "${{t:-0}}"; }}
echo "harness: toolstack up"
run=1
while [ $run -le {runs} ]; do
  echo "harness: at $(now) xl create (run $run)"
  if xl create -p /etc/xen/guest.cfg; then
    echo "harness: at $(now) created"
    timeout 120 xl console guest </dev/null >/console.$run.txt 2>&1 &
    sleep 1
    xl unpause guest
    echo "harness: at $(now) guest running (run $run)"
    if [ $run = 1 ] && [ -f /dom0-script ]; then
      # In a session of its own, so that it can be stopped with all it started.
      setsid sh -c '{script_runner}' &
      script=$!
    fi
    # The limit is in dom0's uptime, not loop turns: under load one turn
    # (an `xl list`) takes far longer than its 0.1 s sleep.
    # A crashed guest (on_crash = "preserve") stays listed, state "c".
    seen=0; limit=$(( $(secs) + {guest_seconds} )); ended=
    while [ "$(secs)" -lt $limit ]; do
      listed=$(xl list guest 2>/dev/null) || {{ ended=1; break; }}
      case "$(echo "$listed" | tail -n 1 | awk '{{print $5}}')" in
        *c*) echo "harness: at $(now) guest crashed (run $run)"; ended=1; break ;;
      esac
      if [ $seen = 0 ] && [ -s /console.$run.txt ]; then echo "harness: at $(now) first console output"; seen=1; fi
      sleep 0.1
    done
    [ -z "$ended" ] && echo "harness: guest still running after {guest_seconds}s, destroying"
    xl list guest >/dev/null 2>&1 && xl destroy guest
    echo "harness: at $(now) guest gone (run $run)"
    sleep 1
    # xenconsoled logs what it reads from the ring as it reads it; `xl
    # console` can lose the last lines when the domain is destroyed before
    # they reach its terminal. Print the fuller of the two.
    out=/console.$run.txt; log=/var/log/xen/console/guest-guest.log
    if [ -f $log ]; then
      mv $log /console-log.$run.txt
      [ "$(wc -c </console-log.$run.txt)" -ge "$(wc -c <$out 2>/dev/null || echo 0)" ] && out=/console-log.$run.txt
    fi
    echo "{start}"; cat $out 2>/dev/null; echo "{end}"
  else
    echo "harness: xl create failed"
  fi
  run=$((run+1))
done
# The script gets a few seconds after the last run, then is stopped.
i=0; while [ -n "$script" ] && kill -0 $script 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
[ -n "$script" ] && kill -0 $script 2>/dev/null && {{ echo "harness: stopping the dom0 script"; kill -TERM -- -$script 2>/dev/null || kill $script; }}
if [ -f /dom0-script ]; then echo "{script_start}"; cat /dom0-script.txt 2>/dev/null; echo "{script_end}"; fi
poweroff -f
"#,
        disks = match disks {
            0 => "dd if=/dev/zero of=/disk.img bs=1M count=8 2>/dev/null; losetup /dev/loop0 /disk.img".to_string(),
            n => format!(
                "i=0; while [ $i -lt {n} ]; do losetup /dev/loop$i /disks/$i.img || echo \"harness: losetup $i failed\"; i=$((i+1)); done"
            ),
        },
        modules = MODULES.iter().filter_map(|m| Path::new(m).file_name()?.to_str()).collect::<Vec<_>>().join(" "),
        start = GUEST_CONSOLE_START,
        end = GUEST_CONSOLE_END,
        script_start = DOM0_SCRIPT_START,
        script_end = DOM0_SCRIPT_END,
        guest_seconds = GUEST_SECONDS,
        script_runner = script_runner("/dom0-script", "/dom0-script.txt", DOM0_SCRIPT_SECONDS),
    )
}

/// The shell loop that runs the dom0 script `script` with its output in
/// `output`, then appends its exit status there. A run whose shell dies of
/// SIGILL, SIGABRT, SIGBUS, SIGFPE or SIGSEGV (a static busybox in the
/// harness's dom0 did now and then under TCG, as the script started) is
/// started again, at most three runs in all, so the scripts must be safe to
/// repeat. Free of single quotes: it goes inside `sh -c '...'`.
fn script_runner(script: &str, output: &str, seconds: u32) -> String {
    format!(
        "n=1; while :; do timeout {seconds} sh {script} >{output} 2>&1; status=$?; \
case $status in 132|134|135|136|139) if [ $n -lt 3 ]; then \
echo \"harness: the dom0 script died of signal $((status-128)), starting it again\"; n=$((n+1)); continue; fi ;; esac; \
echo \"dom0 script exit status $status\" >>{output}; break; done"
    )
}

/// Xen's command line for path A (the image is dom0).
const DOM0_XEN_ARGS: &str =
    "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0=pvh dom0-iommu=none dom0_mem=64M";
/// Xen's command line for path B (Linux is dom0).
const DOMU_XEN_ARGS: &str = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=512M,max:512M";

/// QEMU booting Xen with `modules` (multiboot: path and command line each,
/// comma-separated; the first is dom0).
fn qemu_command(xen: &Path, xen_args: &str, modules: &str) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-accel", "tcg", "-M", "q35", "-cpu", "EPYC,+svm,-monitor", "-m", "1024", "-smp", "2"])
        .args(["-nographic", "-no-reboot", "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel"])
        .arg(xen)
        .args(["-append", xen_args, "-initrd", modules])
        .stdin(Stdio::null());
    command
}

/// A multiboot module string: the image's path then its command line.
/// QEMU separates modules with commas, so neither may contain one.
fn module(image: &Path, args: &[String]) -> Result<String, TaskError> {
    let image = fs::canonicalize(image).map_err(|e| format!("no image {}: {e}", image.display()))?;
    let mut text = image.to_str().ok_or_else(|| format!("image path {} is not UTF-8", image.display()))?.to_string();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    if text.contains(',') {
        return Err(format!("{text:?}: QEMU cannot pass a module path or argument containing a comma"));
    }
    Ok(text)
}

/// How a QEMU run ended.
struct Outcome {
    /// QEMU's exit code, `None` if killed at the timeout.
    code: Option<i32>,
    /// The serial output.
    log: String,
}

/// Runs `command`, echoing its output and keeping it in `log_path`; kills
/// it after `timeout`. QEMU's warnings about CPU features TCG lacks are
/// left out.
fn run_logged(mut command: Command, timeout: Duration, log_path: &Path) -> Result<Outcome, TaskError> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let (lines, received) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let lines = lines.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                let _ = lines.send(String::from_utf8_lossy(&line).trim_end_matches('\r').to_string());
            }
        }));
    }
    drop(lines);
    let started = Instant::now();
    let mut log = String::new();
    // The file is written as lines come, so a run still going (or hung)
    // can be read.
    let mut file = fs::File::create(log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let mut take = |line: String, log: &mut String| {
        if !line.contains("TCG doesn't support requested feature") {
            println!("{line}");
            let _ = writeln!(file, "{line}");
            log.push_str(&line);
            log.push('\n');
        }
    };
    let code = loop {
        while let Ok(line) = received.recv_timeout(Duration::from_millis(50)) {
            take(line, &mut log);
        }
        if let Some(status) = child.try_wait().map_err(|e| format!("cannot wait for QEMU: {e}"))? {
            break status.code();
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    for line in received.try_iter() {
        take(line, &mut log);
    }
    let _ = std::io::stdout().flush();
    Ok(Outcome { code, log })
}

/// Runs a boot, once more if the first times out.
fn run_with_retry(make: impl Fn() -> Command, timeout: Duration, log_path: &Path) -> Result<Outcome, TaskError> {
    for attempt in 1..=2 {
        let outcome = run_logged(make(), timeout, log_path)?;
        if outcome.code.is_some() {
            return Ok(outcome);
        }
        eprintln!("cargo xtask xen: the run timed out after {timeout:?} (attempt {attempt} of 2)");
    }
    let log = fs::read_to_string(log_path).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
    Err(format!(
        "QEMU did not finish within {timeout:?}, twice; the log is {}; its end:\n{}",
        log_path.display(),
        tail.join("\n")
    ))
}

/// A directory of one run's files (`DIR/runs/PID-N`), which keeps its
/// serial log for reading after the run.
struct RunDir {
    path: PathBuf,
}

impl RunDir {
    fn new(dir: &Path) -> Result<RunDir, TaskError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join("runs").join(format!("{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir { path })
    }
}

impl Drop for RunDir {
    /// Leaves only the logs.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.path.join("overlay"));
        let _ = fs::remove_file(self.path.join("dom0-initrd.gz"));
    }
}

/// Prepares the harness if needed.
fn prepared(dir: &Path) -> Result<Files, TaskError> {
    let harness = Files::at(dir);
    if !harness.is_complete() {
        prepare(dir)?;
    }
    Ok(harness)
}

/// How a dom0 boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Run {
    /// The guest's exit status (through `isa-debug-exit`).
    pub status: u8,
    /// Everything on the serial line: Xen's output and the guest's.
    pub log: String,
}

/// [`Harness::dom0`] in `dir`.
fn dom0(dir: &Path, image: &Path, args: &[String]) -> Result<Dom0Run, TaskError> {
    let harness = prepared(dir)?;
    let module = module(image, args)?;
    let log = RunDir::new(dir)?.path.join("serial-dom0.log");
    let outcome = run_with_retry(|| qemu_command(&harness.xen, DOM0_XEN_ARGS, &module), DOM0_TIMEOUT, &log)?;
    match outcome.code.and_then(crate::qemu::guest_status) {
        Some(status) => Ok(Dom0Run { status, log: outcome.log }),
        None => Err(format!(
            "QEMU ended (exit code {:?}) without the guest's status through isa-debug-exit; the log is {}",
            outcome.code,
            log.display()
        )),
    }
}

/// The text between `start` and the next `end` marker from `from` on, and
/// where it ended.
fn between<'a>(log: &'a str, from: usize, start: &str, end: &str) -> Option<(&'a str, usize)> {
    let begin = from + log.get(from..)?.find(start)? + start.len();
    let stop = begin + log[begin..].find(end)?;
    Some((log[begin..stop].trim_matches('\n'), stop + end.len()))
}

/// Every run's guest console from a domU boot's serial log, in order.
pub fn guest_consoles(log: &str) -> Vec<&str> {
    let mut consoles = Vec::new();
    let mut at = 0;
    while let Some((text, next)) = between(log, at, GUEST_CONSOLE_START, GUEST_CONSOLE_END) {
        consoles.push(text);
        at = next;
    }
    consoles
}

/// The dom0 script's output from a domU boot's serial log.
pub fn dom0_script_output(log: &str) -> Option<&str> {
    between(log, 0, DOM0_SCRIPT_START, DOM0_SCRIPT_END).map(|(text, _)| text)
}

/// The first run's milestones from the `harness: at SECONDS WHAT` lines:
/// how long `xl create` took, and how long after the unpause the guest's
/// console first had output (the console is polled every 0.1 s).
fn first_run_timing(log: &str) -> Option<String> {
    let at = |what: &str| {
        log.lines()
            .filter_map(|line| line.trim().strip_prefix("harness: at "))
            .find(|rest| rest.split_once(' ').is_some_and(|(_, w)| w == what))
            .and_then(|rest| rest.split_once(' ')?.0.parse::<f64>().ok())
    };
    let create = at("xl create (run 1)")?;
    let created = at("created")?;
    let running = at("guest running (run 1)")?;
    let output = at("first console output")?;
    Some(format!(
        "xl create took {:.2} s; the guest's first console output came {:.2} s after the unpause",
        created - create,
        output - running
    ))
}

/// What the harness boots as its domU.
#[derive(Clone, Copy, Debug)]
pub struct Guest<'a> {
    /// The kernel image on the host.
    pub image: &'a Path,
    /// An initial RAM disk for it (Linux), if any.
    pub ramdisk: Option<&'a Path>,
    /// The guest's memory in MiB.
    pub memory_mib: u32,
    /// The guest's command line (after the disks' `--block` flags).
    pub args: &'a [String],
    /// PV instead of PVH.
    pub pv: bool,
}

impl<'a> Guest<'a> {
    /// A PVH guest of [`crate::xl::DEFAULT_MEMORY_MIB`] running `image`
    /// with `args`.
    pub fn pvh(image: &'a Path, args: &'a [String]) -> Guest<'a> {
        Guest { image, ramdisk: None, memory_mib: crate::xl::DEFAULT_MEMORY_MIB, args, pv: false }
    }
}

impl Default for DomuOptions {
    /// One run, no script, no RAM disk, 32 MiB, PVH, the blank 8 MiB disk.
    fn default() -> DomuOptions {
        DomuOptions {
            dom0_script: None,
            runs: 1,
            ramdisk: None,
            memory: crate::xl::DEFAULT_MEMORY_MIB,
            pv: false,
            disks: Vec::new(),
        }
    }
}

/// The most disks a domU of the harness gets (dom0's loop devices).
pub const MAX_DISKS: usize = 8;

/// The most bytes of disk images a domU gets in all: they are copied into
/// dom0's memory (512 MiB).
pub const MAX_DISK_BYTES: u64 = 128 << 20;

/// The xl configuration of the harness's domU: one vCPU, a vif whose dom0
/// end is 10.0.0.1/24, and `disks` vbds (`xvda`, ...) on dom0's
/// `/dev/loopN`; the kernel is `/guest.elf` and the RAM disk
/// `/guest.initrd` inside dom0. With no disks of the caller's
/// (`named` empty), one blank disk is `xvda`, unnamed on the command line.
fn xl_config(guest: &Guest, named: &[Disk]) -> Result<String, TaskError> {
    let disks = named.len().max(1);
    let disk_list: Vec<String> = (0..disks)
        .map(|i| {
            format!(
                "\"format=raw, vdev={}, access=rw, script=/etc/xen/scripts/block-attach, target=/dev/loop{i}\"",
                crate::xl::vdev(i)
            )
        })
        .collect();
    let mut config = format!(
        "name = \"guest\"\ntype = \"{}\"\nkernel = \"/guest.elf\"\nmemory = {}\nvcpus = 1\n\
         on_poweroff = \"destroy\"\non_reboot = \"destroy\"\non_crash = \"preserve\"\n\
         disk = [ {} ]\n\
         vif = [ \"mac=00:16:3e:00:00:01, script=/etc/xen/scripts/vif-attach\" ]\n",
        if guest.pv { "pv" } else { "pvh" },
        guest.memory_mib,
        disk_list.join(", ")
    );
    if guest.ramdisk.is_some() {
        config.push_str("ramdisk = \"/guest.initrd\"\n");
    }
    let mut words = crate::xl::disk_flags(named);
    words.extend(guest.args.iter().cloned());
    if !words.is_empty() {
        let line = words.join(" ");
        if line.contains('"') {
            return Err(format!("the guest's command line {line:?} may not contain a double quote"));
        }
        config.push_str(&format!("cmdline = \"{line}\"\n"));
    }
    Ok(config)
}

/// Checks the caller's disks: at most [`MAX_DISKS`], existing files, at
/// most [`MAX_DISK_BYTES`] in all.
fn check_disks(disks: &[Disk]) -> Result<(), TaskError> {
    if disks.len() > MAX_DISKS {
        return Err(format!("{} disks: the harness gives a guest at most {MAX_DISKS}", disks.len()));
    }
    let mut total = 0;
    for disk in disks {
        disk.check().map_err(|e| e.to_string())?;
        total += fs::metadata(&disk.path).map_err(|e| format!("cannot read {}: {e}", disk.path.display()))?.len();
    }
    if total > MAX_DISK_BYTES {
        return Err(format!(
            "the disks hold {total} bytes: the harness copies them into dom0's memory and takes at most {MAX_DISK_BYTES}"
        ));
    }
    Ok(())
}

/// [`Harness::domu`] in `dir`.
fn boot_domu(dir: &Path, guest: &Guest, options: &DomuOptions) -> Result<String, TaskError> {
    check_disks(&options.disks)?;
    let harness = prepared(dir)?;
    // Runs may go on side by side (several tests at once): each gets its
    // own directory with the files that differ per run, packed as a second
    // archive after the shared root file system's (the kernel unpacks both,
    // the second over the first).
    let run = RunDir::new(dir)?;
    let overlay = run.path.join("overlay");
    fs::create_dir_all(overlay.join("etc/xen")).map_err(|e| format!("cannot create {}: {e}", overlay.display()))?;
    copy(guest.image, &overlay.join("guest.elf"))?;
    if let Some(ramdisk) = guest.ramdisk {
        copy(ramdisk, &overlay.join("guest.initrd"))?;
    }
    if let Some(path) = &options.dom0_script {
        copy(path, &overlay.join("dom0-script"))?;
    }
    if !options.disks.is_empty() {
        fs::create_dir_all(overlay.join("disks")).map_err(|e| format!("cannot create the disks directory: {e}"))?;
    }
    for (i, disk) in options.disks.iter().enumerate() {
        copy(&disk.path, &overlay.join("disks").join(format!("{i}.img")))?;
    }
    write_executable(&overlay.join("init"), &init_script(options.runs, options.disks.len()))?;
    let config_path = overlay.join("etc/xen/guest.cfg");
    fs::write(&config_path, xl_config(guest, &options.disks)?)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let initrd = run.path.join("dom0-initrd.gz");
    let pack = |dir: &Path, append: bool| {
        let redirect = if append { ">>" } else { ">" };
        let command = format!("find . | cpio -o -H newc 2>/dev/null | gzip -1 {redirect} '{}'", initrd.display());
        checked("packing dom0's initramfs", Command::new("sh").args(["-c", &command]).current_dir(dir))
    };
    pack(&harness.rootfs, false)?;
    pack(&overlay, true)?;
    let modules = format!("{} console=hvc0 earlyprintk=xen,{}", harness.vmlinuz.display(), initrd.display());
    if modules.matches(',').count() != 1 {
        return Err(format!("the harness path {} contains a comma, which QEMU cannot pass", dir.display()));
    }
    let log = run.path.join("serial-domu.log");
    let timeout = DOMU_TIMEOUT + Duration::from_secs(u64::from(GUEST_SECONDS + 15) * u64::from(options.runs - 1));
    let mut outcome = run_with_retry(|| qemu_command(&harness.xen, DOMU_XEN_ARGS, &modules), timeout, &log)?;
    // The runner records the script's exit status unless its own shell
    // died (as a static busybox did now and then under TCG): then nothing
    // ran, and the whole boot is repeated once.
    let script_ended = |log: &str| dom0_script_output(log).is_some_and(|o| o.contains("dom0 script exit status"));
    if options.dom0_script.is_some() && !script_ended(&outcome.log) {
        eprintln!("xen harness: the dom0 script's runner died without a status; booting once more");
        outcome = run_with_retry(|| qemu_command(&harness.xen, DOMU_XEN_ARGS, &modules), timeout, &log)?;
    }
    if let Some(timing) = first_run_timing(&outcome.log) {
        println!("==> {timing}");
    }
    if options.dom0_script.is_some() && dom0_script_output(&outcome.log).is_none() {
        return Err(format!("dom0 did not print the script's output; the log is {}", log.display()));
    }
    let printed = guest_consoles(&outcome.log).len();
    if printed != options.runs as usize {
        return Err(format!(
            "dom0 printed the guest's console for {printed} of {} runs; the log is {}",
            options.runs,
            log.display()
        ));
    }
    Ok(outcome.log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions_parse() {
        assert_eq!(parse_qemu_major("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"), Some(7));
        assert_eq!(parse_qemu_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)"), Some(10));
        assert_eq!(parse_qemu_major("something else"), None);
    }

    #[test]
    fn the_guest_console_is_cut_from_the_log() {
        let log = format!("boot\n{GUEST_CONSOLE_START}\nline 1\nline 2\n{GUEST_CONSOLE_END}\nDOM0: done\n");
        assert_eq!(guest_consoles(&log), ["line 1\nline 2"]);
        assert!(guest_consoles("no markers").is_empty());
        assert!(guest_consoles(&format!("{GUEST_CONSOLE_START}\nunfinished")).is_empty());
    }

    #[test]
    fn module_strings_carry_the_arguments_and_refuse_commas() {
        let image = std::env::current_exe().unwrap();
        let text = module(&image, &["-l".into(), "debug".into()]).unwrap();
        assert!(text.ends_with(" -l debug") && text.starts_with('/'), "{text}");
        assert!(module(&image, &["a,b".into()]).unwrap_err().contains("comma"));
        assert!(module(Path::new("/nonexistent/image"), &[]).unwrap_err().contains("no image"));
    }

    #[test]
    fn the_init_script_loads_every_module_and_prints_the_markers() {
        let script = init_script(2, 0);
        for module in MODULES {
            let name = Path::new(module).file_name().unwrap().to_str().unwrap();
            assert!(script.contains(name), "{name}");
        }
        assert!(script.contains(GUEST_CONSOLE_START) && script.contains(GUEST_CONSOLE_END));
        assert!(script.contains("[ $run -le 2 ]") && script.contains(DOM0_SCRIPT_START));
    }

    #[test]
    fn the_init_script_is_valid_shell() {
        let path = std::env::temp_dir().join(format!("xtask-init-{}.sh", std::process::id()));
        fs::write(&path, init_script(2, 0)).unwrap();
        fs::write(path.with_extension("disks"), init_script(1, 3)).unwrap();
        let with_disks = Command::new("sh").arg("-n").arg(path.with_extension("disks")).status().expect("run sh -n");
        let _ = fs::remove_file(path.with_extension("disks"));
        assert!(with_disks.success(), "sh -n refused the init script with disks");
        let status = Command::new("sh").arg("-n").arg(&path).status().expect("run sh -n");
        let _ = fs::remove_file(&path);
        assert!(status.success(), "sh -n refused the init script");
    }

    #[test]
    fn a_dom0_script_that_dies_of_a_signal_runs_again() {
        let dir = std::env::temp_dir().join(format!("xtask-runner-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (script, output, marker) = (dir.join("script"), dir.join("output"), dir.join("marker"));
        // Dies of SIGSEGV on its first run only, as busybox did.
        fs::write(
            &script,
            format!("[ -f {m} ] || {{ touch {m}; kill -SEGV $$; }}\necho fetched\n", m = marker.display()),
        )
        .unwrap();
        let runner = script_runner(script.to_str().unwrap(), output.to_str().unwrap(), 10);
        let out = Command::new("sh").arg("-c").arg(&runner).output().expect("run the runner");
        let text = fs::read_to_string(&output).unwrap_or_default();
        let _ = fs::remove_dir_all(&dir);
        assert!(String::from_utf8_lossy(&out.stdout).contains("died of signal 11, starting it again"), "{out:?}");
        assert_eq!(text, "fetched\ndom0 script exit status 0\n");
    }

    #[test]
    fn a_dom0_script_that_keeps_dying_runs_three_times_and_reports_its_status() {
        let dir = std::env::temp_dir().join(format!("xtask-runner3-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (script, output, count) = (dir.join("script"), dir.join("output"), dir.join("count"));
        fs::write(&script, format!("echo run >>{}\nkill -SEGV $$\n", count.display())).unwrap();
        let runner = script_runner(script.to_str().unwrap(), output.to_str().unwrap(), 10);
        Command::new("sh").arg("-c").arg(&runner).output().expect("run the runner");
        let runs = fs::read_to_string(&count).unwrap_or_default().lines().count();
        let text = fs::read_to_string(&output).unwrap_or_default();
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(runs, 3);
        assert!(text.ends_with("dom0 script exit status 139\n"), "{text}");
    }

    #[test]
    fn every_run_console_and_the_script_output_are_cut_from_the_log() {
        let log = format!(
            "boot\n{GUEST_CONSOLE_START}\nrun 1\n{GUEST_CONSOLE_END}\n{GUEST_CONSOLE_START}\nrun 2\n{GUEST_CONSOLE_END}\n\
             {DOM0_SCRIPT_START}\nfetched\n{DOM0_SCRIPT_END}\n"
        );
        assert_eq!(guest_consoles(&log), ["run 1", "run 2"]);
        assert_eq!(dom0_script_output(&log), Some("fetched"));
        assert_eq!(dom0_script_output("none"), None);
    }

    #[test]
    fn the_first_run_milestones_are_read_from_the_log() {
        let log = "harness: at 10.00 xl create (run 1)\nharness: at 11.50 created\n\
                   harness: at 12.50 guest running (run 1)\nharness: at 12.80 first console output\n";
        let timing = first_run_timing(log).unwrap();
        assert!(timing.contains("took 1.50 s") && timing.contains("0.30 s after"), "{timing}");
        assert_eq!(first_run_timing("harness: at 1.0 created\n"), None);
    }

    #[test]
    fn the_xl_config_carries_the_command_line_and_refuses_quotes() {
        let args = ["--ipv4".to_string(), "10.0.0.2/24".to_string()];
        let guest = Guest { image: Path::new("x"), ramdisk: None, memory_mib: 32, args: &args, pv: false };
        let config = xl_config(&guest, &[]).unwrap();
        assert!(config.contains("cmdline = \"--ipv4 10.0.0.2/24\""), "{config}");
        assert!(config.contains("vdev=xvda") && config.contains("type = \"pvh\""), "{config}");
        assert!(!config.contains("ramdisk") && !config.contains("xvdb"), "{config}");
        let linux = Guest { ramdisk: Some(Path::new("r")), memory_mib: 128, pv: true, ..guest };
        let config = xl_config(&linux, &[]).unwrap();
        assert!(config.contains("ramdisk = \"/guest.initrd\"") && config.contains("memory = 128"), "{config}");
        assert!(config.contains("type = \"pv\""), "{config}");
        let quoted = ["a\"b".to_string()];
        assert!(xl_config(&Guest { args: &quoted, ..linux }, &[]).unwrap_err().contains("double quote"));
    }

    #[test]
    fn the_callers_disks_are_loop_devices_named_on_the_command_line() {
        let disks = [Disk::parse("data=/a.img").unwrap(), Disk::parse("logs=/b.img").unwrap()];
        let args = ["--".to_string(), "x".to_string()];
        let config = xl_config(&Guest::pvh(Path::new("x"), &args), &disks).unwrap();
        assert!(
            config.contains("vdev=xvdb, access=rw, script=/etc/xen/scripts/block-attach, target=/dev/loop1"),
            "{config}"
        );
        assert!(config.contains("cmdline = \"--block data=xen:51712 --block logs=xen:51728 -- x\""), "{config}");
        let script = init_script(1, 2);
        assert!(script.contains("/disks/$i.img") && !script.contains("/disk.img"), "{script}");
        let missing = [Disk::parse("d=/nonexistent.img").unwrap()];
        assert!(check_disks(&missing).unwrap_err().contains("no such file"));
    }

    #[test]
    fn the_default_directory_is_per_user() {
        let dir = default_dir();
        match std::env::var_os("MIRAGE_XEN_HARNESS_DIR").filter(|d| !d.is_empty()) {
            Some(chosen) => assert_eq!(dir, PathBuf::from(chosen)),
            None => assert!(dir.ends_with("mirage-rs/xen-harness"), "{}", dir.display()),
        }
    }
}
