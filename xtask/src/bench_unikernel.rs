//! `cargo xtask bench unikernel`: image sizes, boot times and the smallest
//! memory of the virtio unikernels, beside a Linux kernel measured in the
//! same run, written to the `## unikernel (virtio)` section of
//! `docs/benchmarks.md`.
//!
//! - **Sizes**: the images of hello, www, echo and ping as `cargo mirage
//!   build -t virtio` makes them (profile `mirage-virtio`, symbols
//!   stripped), beside Debian's
//!   `linux-image-amd64` vmlinuz (compressed bzImage, modules not counted).
//! - **Boot time**, every guest under the same QEMU flags (microvm, TCG,
//!   128 MiB, virtio-rng, virtio-net on user networking): from spawning
//!   QEMU to the first byte on the serial port, and to "ready": for www
//!   the first HTTP answer through a host port forward (static address
//!   10.0.2.15, so no DHCP wait), for the floor (hello-virtio told to
//!   panic at once, `-- panic`, which powers off right after its message)
//!   QEMU's exit, for Linux (Debian's
//!   kernel with a static busybox initramfs whose `/init` prints a marker
//!   and reboots) the marker. Median of [`RUNS`] runs each. The relative
//!   cost is (www − floor) / (Linux − floor); Linux's "ready" is earlier
//!   than a served page would be, so the ratio flatters Linux.
//! - **Smallest memory**: bisection over `-m` (whole MiB) for the
//!   smallest at which www still answers HTTP.
//!
//! Debian's kernel and busybox are fetched with `apt-get download` into
//! the target directory (packages `linux-image-amd64`'s dependency and
//! `busybox-static`), not installed. Under TCG the times measure QEMU's
//! emulation as much as the guests; the comparison is the point.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bench_report::{load_note, utc_now, write_section};
use cargo_mirage::build::Target;

use crate::{build_app, workspace_root, TaskError};

/// Boots per guest; the median is reported.
const RUNS: usize = 5;

/// How long one boot may take to get ready before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The same for the memory bisection, whose boots answer in well under a
/// second when they work at all (a guest short of memory fails at boot).
const MEMORY_TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// What Linux's `/init` prints once it runs.
const LINUX_MARKER: &str = "MIRAGE-LINUX-INIT-READY";

/// What one boot measured, from spawning QEMU.
#[derive(Clone, Copy, Debug)]
struct BootTimes {
    first_byte: Duration,
    ready: Duration,
}

/// How "ready" is recognised.
#[derive(Clone, Copy)]
enum Ready<'a> {
    /// QEMU exits.
    Exit,
    /// The serial output holds this text.
    Marker(&'a str),
    /// An HTTP answer through the forwarded host port.
    Http,
}

/// A QEMU process killed when dropped.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same flags for every guest; `extra` adds the kernel's own.
fn qemu(memory_mib: u32, host_port: u16, kernel: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-M", "microvm", "-accel", "tcg", "-m", &memory_mib.to_string()])
        .args(["-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-device", "virtio-rng-device"])
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{host_port}-:8080"))
        .args(["-device", "virtio-net-device,netdev=n0", "-kernel"])
        .arg(kernel)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// A free TCP port on the loopback (free when this returns; QEMU binds it
/// right after).
fn free_port() -> Result<u16, TaskError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot find a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("cannot find a free port: {e}"))
}

/// Whether an HTTP GET of `/` on the port gets a status line back.
fn http_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// Boots one guest and times it; `None` if it was not ready within
/// `timeout`.
fn boot_once(
    memory_mib: u32,
    kernel: &Path,
    extra: &[&str],
    ready: Ready,
    timeout: Duration,
) -> Result<Option<BootTimes>, TaskError> {
    let port = free_port()?;
    let started = Instant::now();
    let mut child =
        qemu(memory_mib, port, kernel, extra).spawn().map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("QEMU's output is not piped")?;
    let mut qemu = Qemu(child);
    let output = Arc::new(Mutex::new((None::<Duration>, Vec::new())));
    let sink = output.clone();
    // Ends when QEMU's output closes: when it exits or is killed.
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
            out.0.get_or_insert_with(|| started.elapsed());
            out.1.extend_from_slice(&chunk[..n]);
        }
    });
    let first_byte = || output.lock().unwrap_or_else(|e| e.into_inner()).0;
    let ready_at = loop {
        let now = started.elapsed();
        if now > timeout {
            return Ok(None);
        }
        let done = match ready {
            Ready::Exit => qemu.0.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))?.is_some(),
            Ready::Marker(marker) => {
                let out = output.lock().unwrap_or_else(|e| e.into_inner());
                String::from_utf8_lossy(&out.1).contains(marker)
            }
            Ready::Http => {
                if qemu.0.try_wait().map_err(|e| format!("waiting for QEMU: {e}"))?.is_some() {
                    return Ok(None);
                }
                first_byte().is_some() && http_answers(port)
            }
        };
        if done {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The reader may not have run yet after a fast exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_byte().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(first_byte().map(|first_byte| BootTimes { first_byte, ready: ready_at }))
}

/// The median of [`RUNS`] boots, each value on its own.
fn boot_median(kernel: &Path, extra: &[&str], ready: Ready, what: &str) -> Result<BootTimes, TaskError> {
    let mut first = Vec::new();
    let mut readies = Vec::new();
    for run in 1..=RUNS {
        let times = boot_once(128, kernel, extra, ready, READY_TIMEOUT)?
            .ok_or_else(|| format!("{what} was not ready within {READY_TIMEOUT:?} (run {run})"))?;
        println!("{what}: run {run}: first byte {:?}, ready {:?}", times.first_byte, times.ready);
        first.push(times.first_byte);
        readies.push(times.ready);
    }
    first.sort();
    readies.sort();
    Ok(BootTimes { first_byte: first[RUNS / 2], ready: readies[RUNS / 2] })
}

/// The smallest `-m` (MiB) at which www answers HTTP, by bisection
/// between 1 and 128.
fn smallest_memory(www: &Path, www_args: &[&str]) -> Result<u32, TaskError> {
    let (mut fails, mut works) = (1u32, 128u32);
    if boot_once(works, www, www_args, Ready::Http, MEMORY_TRIAL_TIMEOUT)?.is_none() {
        return Err("www does not serve even with -m 128".into());
    }
    // Bounded: the interval halves each round (at most 7 rounds).
    while works - fails > 1 {
        let middle = (fails + works) / 2;
        let ok = boot_once(middle, www, www_args, Ready::Http, MEMORY_TRIAL_TIMEOUT)?.is_some();
        println!("www with -m {middle}: {}", if ok { "serves" } else { "does not serve" });
        if ok {
            works = middle;
        } else {
            fails = middle;
        }
    }
    Ok(works)
}

/// Downloads (once) Debian's kernel and busybox into `dir`; returns the
/// vmlinuz and busybox paths and the kernel package's name.
fn linux_reference(dir: &Path) -> Result<(PathBuf, PathBuf, String), TaskError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let depends = Command::new("apt-cache")
        .args(["depends", "linux-image-amd64"])
        .output()
        .map_err(|e| format!("cannot run apt-cache: {e}"))?;
    let depends = String::from_utf8_lossy(&depends.stdout);
    let package = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .ok_or("apt-cache knows no kernel behind linux-image-amd64: run apt-get update")?
        .to_string();
    let version = package.trim_start_matches("linux-image-");
    let vmlinuz = dir.join(format!("boot/vmlinuz-{version}"));
    let busybox = dir.join("bin/busybox");
    let fetch = |package: &str, member: &str, path: &Path| -> Result<(), TaskError> {
        if path.is_file() {
            return Ok(());
        }
        let status = Command::new("apt-get")
            .args(["download", package])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("cannot run apt-get: {e}"))?;
        if !status.success() {
            return Err(format!("apt-get download {package} failed ({status})"));
        }
        let extract = format!(
            "dpkg-deb --fsys-tarfile \"$(ls -t {package}_*.deb | head -n1)\" | tar -xf - '{member}' && rm -f {package}_*.deb"
        );
        let status = Command::new("sh")
            .args(["-c", &extract])
            .current_dir(dir)
            .status()
            .map_err(|e| format!("cannot extract {package}: {e}"))?;
        if !status.success() || !path.is_file() {
            return Err(format!("extracting {member} from {package} failed ({status})"));
        }
        Ok(())
    };
    fetch(&package, &format!("./boot/vmlinuz-{version}"), &vmlinuz)?;
    fetch("busybox-static", "./bin/busybox", &busybox)?;
    Ok((vmlinuz, busybox, package))
}

/// One entry of a `newc` cpio archive (the initramfs format).
pub(crate) fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
    let fields = [ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// An initramfs with busybox and an `/init` that prints [`LINUX_MARKER`]
/// and reboots (QEMU's `-no-reboot` makes that an exit).
fn initramfs(busybox: &[u8]) -> Vec<u8> {
    let init = format!("#!/bin/busybox sh\n/bin/busybox echo {LINUX_MARKER}\n/bin/busybox reboot -f\n");
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, "bin", 0o040755, (0, 0), &[]);
    cpio_entry(&mut out, 2, "bin/busybox", 0o100755, (0, 0), busybox);
    cpio_entry(&mut out, 3, "dev", 0o040755, (0, 0), &[]);
    // The kernel opens /dev/console for init's output before any devtmpfs.
    cpio_entry(&mut out, 4, "dev/console", 0o020600, (5, 1), &[]);
    cpio_entry(&mut out, 5, "init", 0o100755, (0, 0), init.as_bytes());
    cpio_entry(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

fn size(path: &Path) -> Result<u64, TaskError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// `cargo xtask bench unikernel`.
pub(crate) fn unikernel() -> Result<ExitCode, TaskError> {
    crate::apt::ensure(&["qemu-system-x86"])?;
    let load = load_note();
    let images: Vec<(&str, PathBuf)> = ["hello", "www", "echo", "ping"]
        .into_iter()
        .map(|app| build_app(app, Target::Virtio, false).map(|image| (app, image.path)))
        .collect::<Result<_, _>>()?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let reference = target.join("bench-unikernel");
    let (vmlinuz, busybox, package) = linux_reference(&reference)?;
    let busybox = std::fs::read(&busybox).map_err(|e| format!("cannot read {}: {e}", busybox.display()))?;
    let initrd = reference.join("initramfs.cpio");
    std::fs::write(&initrd, initramfs(&busybox)).map_err(|e| format!("cannot write {}: {e}", initrd.display()))?;

    let mut sizes = String::from("| image | bytes | KiB |\n|---|---:|---:|\n");
    for (app, path) in &images {
        let bytes = size(path)?;
        sizes.push_str(&format!("| {app}-virtio | {bytes} | {} |\n", bytes.div_ceil(1024)));
    }
    let linux_bytes = size(&vmlinuz)?;
    sizes.push_str(&format!(
        "| Linux: {package} vmlinuz (bzImage, compressed; no modules, no initramfs) | {linux_bytes} | {} |\n",
        linux_bytes.div_ceil(1024)
    ));

    let hello = &images[0].1;
    let www = &images[1].1;
    let www_args = ["-append", "--net net0 --ipv4 10.0.2.15/24 --ipv4-gateway 10.0.2.2"];
    let initrd_arg = initrd.to_string_lossy().into_owned();
    // Under TCG on a loaded machine Linux's PIT calibration of the TSC
    // sometimes fails, and the kernel then hangs before init; QEMU's TCG
    // TSC runs at 2 GHz, which these flags tell it.
    let linux_args = ["-initrd", &initrd_arg, "-append", "console=ttyS0 panic=-1 tsc_early_khz=2000000 tsc=reliable"];
    let floor = boot_median(hello, &["-append", "-- panic"], Ready::Exit, "hello-virtio -- panic (floor)")?;
    let ours = boot_median(www, &www_args, Ready::Http, "www-virtio")?;
    let linux = boot_median(&vmlinuz, &linux_args, Ready::Marker(LINUX_MARKER), "Linux + busybox init")?;
    let ratio = |a: Duration, b: Duration| {
        let (a, b, f) = (a.as_secs_f64(), b.as_secs_f64(), floor.ready.as_secs_f64());
        if b > f {
            format!("{:.3}", (a - f) / (b - f))
        } else {
            "n/a".into()
        }
    };
    let first_ratio = {
        let (a, b, f) = (ours.first_byte.as_secs_f64(), linux.first_byte.as_secs_f64(), floor.first_byte.as_secs_f64());
        if b > f {
            format!("{:.3}", (a - f) / (b - f))
        } else {
            // Linux's real-mode setup code prints ("Probing EDD") before
            // the kernel is even decompressed.
            "n/a (Linux's first byte, from its real-mode setup code, comes before the floor's)".into()
        }
    };
    let mut boots = String::from(
        "| guest | QEMU start → first serial byte (ms) | QEMU start → ready (ms) | ready means |\n|---|---:|---:|---|\n",
    );
    boots.push_str(&format!(
        "| hello-virtio `-- panic` (floor) | {} | {} | QEMU exited (panics at once, powers off) |\n",
        ms(floor.first_byte),
        ms(floor.ready)
    ));
    boots.push_str(&format!(
        "| www-virtio | {} | {} | first HTTP answer on the forwarded port |\n",
        ms(ours.first_byte),
        ms(ours.ready)
    ));
    boots.push_str(&format!(
        "| Linux ({package}) + busybox initramfs | {} | {} | `/init` printed its marker |\n",
        ms(linux.first_byte),
        ms(linux.ready)
    ));
    let memory = smallest_memory(www, &www_args)?;

    let section = format!(
        "## unikernel (virtio)\n\n\
         Image sizes, boot times and the smallest memory of the virtio unikernels beside\n\
         a Linux kernel, in one run (xtask/src/bench_unikernel.rs explains each figure).\n\
         Command: `cargo xtask bench unikernel`. Every guest boots under the same flags:\n\
         `qemu-system-x86_64 -M microvm -accel tcg -m 128 -nodefaults -nographic -no-reboot\n\
         -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 -device virtio-rng-device\n\
         -netdev user,id=n0,hostfwd=tcp:127.0.0.1:PORT-:8080 -device virtio-net-device,netdev=n0\n\
         -kernel IMAGE` (Linux adds `-initrd` with a static busybox and\n\
         `-append \"console=ttyS0 panic=-1 tsc_early_khz=2000000 tsc=reliable\"`, since its PIT\n\
         calibration sometimes fails under a loaded TCG and the kernel hangs; www\n\
         `--ipv4 10.0.2.15/24`). Times are the median\n\
         of {RUNS} boots, under TCG: they measure QEMU's emulation as much as the guests.\n\n\
         ### {date}\n\n{load}\n\n\
         Image sizes (the `mirage-virtio` profile strips symbols; Linux is Debian's `linux-image-amd64`,\n\
         not a tinyconfig build, which was out of reach here):\n\n{sizes}\n\
         Boot times:\n\n{boots}\n\
         (www − floor) / (Linux − floor): first serial byte {first_ratio}, ready {ready_ratio}.\n\
         Linux's \"ready\" is its init running, before any network setup or server, so the\n\
         ratio flatters Linux.\n\n\
         Smallest `-m` at which www-virtio still answers HTTP (bisection over whole MiB): **{memory} MiB**.\n\n\
         Throughput under TCG measures QEMU, not us: the boot test\n\
         (`cargo test -p www --test virtio`) moves 10 MiB byte-exact as a functional check only.\n",
        date = utc_now(),
        ready_ratio = ratio(ours.ready, linux.ready),
    );
    print!("{section}");
    write_section(&workspace_root().join("docs/benchmarks.md"), "unikernel (virtio)", &section)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_follow_the_newc_layout() {
        let mut out = Vec::new();
        cpio_entry(&mut out, 7, "init", 0o100755, (0, 0), b"hi!");
        // 110-byte header, name and NUL padded to a multiple of 4, data padded.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000007");
        assert_eq!(&out[14..22], format!("{:08x}", 0o100755).as_bytes());
        assert_eq!(&out[54..62], b"00000003", "file size");
        assert_eq!(&out[94..102], b"00000005", "name size with its NUL");
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(out.len() % 4, 0);
        assert_eq!(&out[116..119], b"hi!");
        assert_eq!(out.len(), 120);
    }

    #[test]
    fn the_initramfs_ends_with_the_trailer_and_holds_a_console() {
        let archive = initramfs(b"\x7fELF");
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("dev/console") && text.contains(LINUX_MARKER));
        assert!(text.trim_end_matches('\0').ends_with("TRAILER!!!"), "{text:?}");
    }
}
