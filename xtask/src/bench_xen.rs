//! `cargo xtask bench xen`: image sizes of the Xen guests and their boot
//! times as domUs of the harness (Xen 4.17 under QEMU TCG, Linux dom0),
//! beside a Linux domU booted by the same harness in the same run, written
//! to the `## unikernel (xen)` section of `docs/benchmarks.md`.
//!
//! - **Sizes**: the images of every example as `cargo mirage build -t
//!   xen` makes them (profile `mirage-xen`), beside the harness's Linux vmlinuz and its domU initramfs.
//! - **Boot times**, read from the harness's `harness: at SECONDS ...`
//!   lines (dom0 uptime; the harness polls every 0.1 s): how long `xl
//!   create` took (building the domain, paused), then from the unpause to
//!   the guest's first console output and to the first HTTP answer that
//!   dom0 gets from it (`nc`, polled every 0.1 s by the dom0 script;
//!   busybox's `wget` crashes in the harness's dom0).
//!   Ours is `www-xen` (`--ipv4 10.0.0.2/24`, serving its compiled-in
//!   site); Linux is the harness's Debian kernel as a PV domU (Linux as
//!   a PVH domU vanished without a console line here) with a busybox
//!   initramfs that loads `xen-netfront`, sets 10.0.0.2/24 and starts
//!   busybox `httpd` on port 8080. One vCPU each, same disk and vif;
//!   Linux gets 128 MiB (ours 32). The median of [`RUNS`] boots each.
//!
//! Under TCG the times measure QEMU's emulation of Xen as much as the
//! guests; the ratio, measured in the same run, is the point.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bench_report::{load_note, utc_now, write_section};
use crate::bench_unikernel::cpio_entry;
use cargo_mirage::build::Target;
use cargo_mirage::xen::{DomuOptions, Guest, Harness};

use crate::{apps, build_app, workspace_root, xen_harness_dir, TaskError};

/// Boots per guest; the median is reported.
const RUNS: usize = 3;

/// dom0's script: polls the guest's HTTP server, notes the first answer,
/// and ends the guest.
const HTTP_PROBE: &str = r#"i=0
while [ $i -lt 600 ]; do
  if printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 2 10.0.0.2 8080 >/tmp/page 2>/dev/null && grep -q '^HTTP/1.. 200' /tmp/page; then
    echo "harness: at $(cut -d' ' -f1 /proc/uptime) first HTTP answer"; break
  fi
  sleep 0.1; i=$((i+1))
done
head -c 200 /tmp/page; echo
xl destroy guest
"#;

/// The Linux domU's `/init`.
const LINUX_INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox insmod /xen-netfront.ko
/bin/busybox ifconfig eth0 10.0.0.2 netmask 255.255.255.0 up
/bin/busybox echo '<html><body>hello from Linux</body></html>' > /www/index.html
/bin/busybox httpd -p 8080 -h /www
while true; do /bin/busybox sleep 60; done
";

/// The milestones of one boot, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Boot {
    create: f64,
    first_output: f64,
    http: Option<f64>,
}

/// The time of the first `harness: at SECONDS {what}` line.
fn milestone(log: &str, what: &str) -> Option<f64> {
    log.lines()
        .filter_map(|line| line.trim().strip_prefix("harness: at "))
        .find_map(|rest| rest.split_once(' ').filter(|(_, w)| *w == what).and_then(|(t, _)| t.parse().ok()))
}

/// A boot's figures from its serial log.
fn boot_figures(log: &str) -> Option<Boot> {
    let create = milestone(log, "xl create (run 1)")?;
    let created = milestone(log, "created")?;
    let running = milestone(log, "guest running (run 1)")?;
    let output = milestone(log, "first console output")?;
    Some(Boot {
        create: created - create,
        first_output: output - running,
        http: milestone(log, "first HTTP answer").map(|t| t - running),
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Boots `guest` [`RUNS`] times with the HTTP probe (if `http`).
fn measure(harness: &Harness, what: &str, guest: &Guest, http: bool, script: &Path) -> Result<Vec<Boot>, TaskError> {
    let options = DomuOptions {
        dom0_script: http.then(|| script.to_path_buf()),
        memory: guest.memory_mib,
        pv: guest.pv,
        ..DomuOptions::default()
    };
    (1..=RUNS)
        .map(|i| {
            println!("==> {what}: boot {i} of {RUNS}");
            let log = harness.domu(guest, &options).map_err(|e| e.to_string())?;
            let boot = boot_figures(&log).ok_or_else(|| format!("{what}: the log lacks the harness's milestones"))?;
            if http && boot.http.is_none() {
                return Err(format!("{what}: dom0 got no HTTP answer from the guest"));
            }
            Ok(boot)
        })
        .collect()
}

/// An initramfs for the Linux domU: busybox, `xen-netfront`, `/init`.
fn linux_initramfs(busybox: &[u8], netfront: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, "bin", 0o040755, (0, 0), &[]);
    cpio_entry(&mut out, 2, "bin/busybox", 0o100755, (0, 0), busybox);
    cpio_entry(&mut out, 3, "dev", 0o040755, (0, 0), &[]);
    cpio_entry(&mut out, 4, "dev/console", 0o020600, (5, 1), &[]);
    cpio_entry(&mut out, 5, "proc", 0o040755, (0, 0), &[]);
    cpio_entry(&mut out, 6, "www", 0o040755, (0, 0), &[]);
    cpio_entry(&mut out, 7, "xen-netfront.ko", 0o100644, (0, 0), netfront);
    cpio_entry(&mut out, 8, "init", 0o100755, (0, 0), LINUX_INIT.as_bytes());
    cpio_entry(&mut out, 0, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

fn read(path: &Path) -> Result<Vec<u8>, TaskError> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{v:.2}"))
}

/// `cargo xtask bench xen`.
pub(crate) fn xen() -> Result<ExitCode, TaskError> {
    let xen = Harness::at(&xen_harness_dir());
    xen.prepare().map_err(|e| e.to_string())?;
    let load = load_note();
    let root = workspace_root();
    let mut images: Vec<(String, PathBuf)> = Vec::new();
    for app in apps() {
        let image = build_app(&app, Target::Xen, false)?;
        images.push((app, image.path));
    }
    let www = images.iter().find(|(app, _)| app == "www").map(|(_, path)| path.clone());
    let www = www.ok_or("bench xen needs examples/www")?;

    let harness = xen.dir().to_path_buf();
    let modules = harness.join("unpacked/lib/modules");
    let version = std::fs::read_dir(&modules)
        .map_err(|e| format!("cannot list {}: {e}", modules.display()))?
        .flatten()
        .next()
        .ok_or_else(|| format!("no kernel modules in {}", modules.display()))?
        .path();
    let netfront = read(&version.join("kernel/drivers/net/xen-netfront.ko"))?;
    let busybox = read(&harness.join("rootfs/bin/busybox"))?;
    let bench_dir = harness.join("bench");
    std::fs::create_dir_all(&bench_dir).map_err(|e| format!("cannot create {}: {e}", bench_dir.display()))?;
    let initramfs = bench_dir.join("linux-domu-initramfs.cpio");
    std::fs::write(&initramfs, linux_initramfs(&busybox, &netfront))
        .map_err(|e| format!("cannot write {}: {e}", initramfs.display()))?;
    let script = bench_dir.join("http-probe.sh");
    std::fs::write(&script, HTTP_PROBE).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let vmlinuz = harness.join("vmlinuz");

    let mut sizes = String::from("| image | bytes | KiB |\n|---|---:|---:|\n");
    for (app, path) in &images {
        let bytes = read(path)?.len();
        sizes.push_str(&format!("| {app}-xen | {bytes} | {} |\n", bytes.div_ceil(1024)));
    }
    for (what, path) in [("Linux vmlinuz (the harness's dom0 kernel)", &vmlinuz), ("its domU initramfs", &initramfs)] {
        let bytes = read(path)?.len();
        sizes.push_str(&format!("| {what} | {bytes} | {} |\n", bytes.div_ceil(1024)));
    }

    // The kernel's flags, then `--` and the application's.
    let www_args = ["--".to_string(), "--ipv4".to_string(), "10.0.0.2/24".to_string()];
    let ours = measure(
        &xen,
        "www-xen",
        &Guest { image: &www, ramdisk: None, memory_mib: 32, args: &www_args, pv: false },
        true,
        &script,
    )?;
    let linux_args = ["console=hvc0".to_string()];
    let linux_guest =
        Guest { image: &vmlinuz, ramdisk: Some(&initramfs), memory_mib: 128, args: &linux_args, pv: true };
    let linux = measure(&xen, "Linux domU", &linux_guest, true, &script)?;

    let row = |name: &str, boots: &[Boot]| {
        let create = median(boots.iter().map(|b| b.create).collect());
        let first = median(boots.iter().map(|b| b.first_output).collect());
        let http = median(boots.iter().filter_map(|b| b.http).collect());
        (format!("| {name} | {} | {} | {} |\n", seconds(create), seconds(first), seconds(http)), (create, first, http))
    };
    let (ours_row, (_, ours_first, ours_http)) = row("www-xen (32 MiB)", &ours);
    let (linux_row, (_, linux_first, linux_http)) = row("Linux + busybox httpd (128 MiB)", &linux);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.1}×", b / a),
        _ => "n/a".to_string(),
    };
    let section = format!(
        "## unikernel (xen)\n\n\
         Image sizes of the Xen guests, and boot times of www-xen beside a Linux domU booted by\n\
         the same harness in the same run (xtask/src/bench_xen.rs explains each figure).\n\
         Command: `cargo xtask bench xen`. Xen 4.17 and a Debian Linux dom0 under\n\
         `qemu-system-x86_64 -accel tcg -M q35 -cpu EPYC,+svm,-monitor -m 1024 -smp 2`; each guest\n\
         a domU (ours PVH, Linux PV) with one vCPU, the 8 MiB `xvda` and a vif (dom0 10.0.0.1/24, guest\n\
         10.0.0.2/24). Times are dom0's uptime at each milestone (polled every 0.1 s), the\n\
         median of {RUNS} boots; under TCG they measure QEMU's emulation as much as the guests.\n\n\
         ### {date}\n\n{load}\n\n{sizes}\n\
         | guest | `xl create` (s) | unpause → first console output (s) | unpause → first HTTP answer (s) |\n\
         |---|---:|---:|---:|\n{ours_row}{linux_row}\n\
         Linux / www-xen: first console output {first_ratio}, first HTTP answer {http_ratio}.\n",
        date = utc_now(),
        first_ratio = ratio(ours_first, linux_first),
        http_ratio = ratio(ours_http, linux_http),
    );
    print!("{section}");
    write_section(&root.join("docs/benchmarks.md"), "unikernel (xen)", &section)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_is_read_from_the_harness_milestones() {
        let log = "harness: at 10.00 xl create (run 1)\nharness: at 12.00 created\n\
                   harness: at 13.00 guest running (run 1)\nharness: at 13.40 first console output\n\
                   harness: at 14.50 first HTTP answer\n";
        let boot = boot_figures(log).unwrap();
        assert_eq!(boot.create, 2.0);
        assert!((boot.first_output - 0.4).abs() < 1e-9 && (boot.http.unwrap() - 1.5).abs() < 1e-9, "{boot:?}");
        assert_eq!(boot_figures("harness: at 1.0 created\n"), None);
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(Vec::new()), None);
    }

    #[test]
    fn the_linux_initramfs_holds_init_and_the_netfront_module() {
        let archive = linux_initramfs(b"\x7fELF", b"module");
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("xen-netfront.ko") && text.contains("httpd -p 8080"), "{text:?}");
    }
}
