//! Boot tests of the Xen guests (`examples/APP/xen`): the project's Xen
//! harness (`cargo xtask xen`, in xtask/src/xen.rs) driven from an
//! integration test.
//!
//! ```ignore
//! #[test]
//! fn boots() {
//!     let xen = mirage_kernel_host::xen_harness!();   // None: SKIP printed (no Debian mirror)
//!     let Some(xen) = xen else { return };
//!     let run = xen.domu(&mirage_kernel_host::kernel_image!(), &["--runs", "2", "--", "/boot/count"]);
//!     assert_eq!(run.status, Some(0), "{}", run.output);
//!     assert_eq!(run.consoles().len(), 2);
//! }
//! ```
//!
//! The harness downloads its Debian packages once (`xen prepare`); when the
//! mirror cannot be reached the tests print `SKIP:` and pass, since the
//! machine, not the code, is what is missing. Any other failure to prepare
//! panics with the harness's output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The markers the harness prints around a domU's console (see
/// xtask/src/xen.rs).
const CONSOLE_START: &str = "===== guest console =====";
const CONSOLE_END: &str = "===== end guest console =====";
const SCRIPT_START: &str = "===== dom0 script =====";
const SCRIPT_END: &str = "===== end dom0 script =====";

/// The prepared harness, reached through `cargo xtask` built in a target
/// directory of the calling test's own.
#[derive(Debug)]
pub struct XenHarness {
    xtask_target: PathBuf,
}

/// How one boot ended.
#[derive(Debug)]
pub struct XenRun {
    /// The harness's exit status: with `dom0`, the guest's own.
    pub status: Option<i32>,
    /// Everything the harness printed (Xen's and dom0's serial output).
    pub output: String,
}

impl XenRun {
    /// Every domU run's console, in order (one per `--runs`).
    pub fn consoles(&self) -> Vec<&str> {
        sections(&self.output, CONSOLE_START, CONSOLE_END)
    }

    /// The output of `--dom0-script`, if dom0 printed it.
    pub fn dom0_script(&self) -> Option<&str> {
        sections(&self.output, SCRIPT_START, SCRIPT_END).into_iter().next()
    }

    /// Whether every domU run ended by itself without crashing (the
    /// harness reports a crashed guest, kept by `on_crash = "preserve"`,
    /// and one it had to destroy at its time limit).
    pub fn every_run_powered_off(&self) -> bool {
        !self
            .output
            .lines()
            .any(|l| l.starts_with("harness: ") && (l.contains(" guest crashed") || l.contains("guest still running")))
    }
}

/// The texts between each `start` and the following `end`.
fn sections<'a>(text: &'a str, start: &str, end: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(start) {
        let body = &rest[at + start.len()..];
        let Some(len) = body.find(end) else { break };
        found.push(body[..len].trim_matches('\n'));
        rest = &body[len + end.len()..];
    }
    found
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The harness for a test whose `CARGO_TARGET_TMPDIR` is `target_tmpdir`,
/// prepared once per process; `None` (after printing `SKIP:` and why) when
/// the Debian mirror cannot be reached. Use [`xen_harness!`](crate::xen_harness).
///
/// # Panics
///
/// When preparing fails for any other reason (its output is the message).
pub fn harness(target_tmpdir: &str) -> Option<XenHarness> {
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    let harness = XenHarness { xtask_target: Path::new(target_tmpdir).join("xtask") };
    let prepared = PREPARED.get_or_init(|| {
        let out = harness.xtask(&["xen", "prepare"]);
        let text = text(&out);
        if out.status.success() {
            Ok(())
        } else if text.contains("apt-get download")
            || text.contains("apt-get update")
            || text.contains("Temporary failure")
        {
            Err(format!("the Xen harness cannot download its Debian packages: {}", text.trim_end()))
        } else {
            panic!("cargo xtask xen prepare failed ({}):\n{text}", out.status)
        }
    });
    match prepared {
        Ok(()) => Some(harness),
        Err(reason) => {
            println!("SKIP: {reason}");
            None
        }
    }
}

/// [`harness`] for the calling test.
#[macro_export]
macro_rules! xen_harness {
    () => {
        $crate::xen::harness(env!("CARGO_TARGET_TMPDIR"))
    };
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl XenHarness {
    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO"))
            .args(["run", "--quiet", "--package", "xtask", "--target-dir"])
            .arg(&self.xtask_target)
            .arg("--")
            .args(args)
            .current_dir(workspace())
            .output()
            .expect("run cargo xtask")
    }

    fn boot(&self, mode: &str, image: &Path, args: &[&str]) -> XenRun {
        let image = image.to_str().expect("the image path is UTF-8");
        let mut words = vec!["xen", mode, image];
        words.extend_from_slice(args);
        let out = self.xtask(&words);
        XenRun { status: out.status.code(), output: text(&out) }
    }

    /// Path A: boots `image` as Xen's PVH dom0 (`cargo xtask xen dom0
    /// IMAGE ARGS`; guest arguments after `--`).
    pub fn dom0(&self, image: &Path, args: &[&str]) -> XenRun {
        self.boot("dom0", image, args)
    }

    /// Path B: boots `image` as a domU of the harness's Linux dom0 (`cargo
    /// xtask xen domu IMAGE ARGS`: `--runs N`, `--dom0-script FILE`, guest
    /// arguments after `--`).
    pub fn domu(&self, image: &Path, args: &[&str]) -> XenRun {
        self.boot("domu", image, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles_and_the_script_output_are_cut_from_the_output() {
        let output = format!(
            "boot\n{CONSOLE_START}\nrun 1\n{CONSOLE_END}\nx\n{CONSOLE_START}\nrun 2\n{CONSOLE_END}\n\
             {SCRIPT_START}\nfetched\n{SCRIPT_END}\n{CONSOLE_START}\nunfinished"
        );
        let run = XenRun { status: Some(0), output };
        assert_eq!(run.consoles(), ["run 1", "run 2"]);
        assert_eq!(run.dom0_script(), Some("fetched"));
        assert_eq!(XenRun { status: None, output: String::new() }.dom0_script(), None);
        assert!(run.every_run_powered_off());
        let crashed = XenRun { status: Some(0), output: "harness: at 9.5 guest crashed (run 2)\n".into() };
        assert!(!crashed.every_run_powered_off());
    }
}
