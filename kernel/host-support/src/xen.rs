//! Boot tests of the Xen guests: the Xen harness of
//! [`cargo_mirage::xen`] (Xen 4.17 and a Linux dom0 under QEMU) driven
//! from an integration test, in the workspace's `target/xen-harness`
//! (shared with `cargo xtask xen`).
//!
//! ```ignore
//! #[test]
//! fn boots() {
//!     // None: not prepared; skipped (see mirage_test_env), or failed under CI.
//!     let Some(xen) = mirage_kernel_host::xen_harness!() else { return };
//!     let run = xen.domu(&mirage_kernel_host::kernel_image!(xen), &["--runs", "2", "--", "/boot/count"]);
//!     assert_eq!(run.status, Some(0), "{}", run.output);
//!     assert_eq!(run.consoles().len(), 2);
//! }
//! ```
//!
//! The words given to [`XenHarness::dom0`] and [`XenHarness::domu`] are
//! those of `cargo xtask xen dom0|domu IMAGE`: the harness's options
//! (`--runs N`, `--dom0-script FILE`, `--disk NAME=FILE`, `--memory MIB`),
//! then `--` and the guest's command line.
//!
//! The tests never prepare the harness (which installs QEMU >= 10 and
//! downloads Debian packages): `cargo xtask test` does before it runs
//! them, and so does `cargo xtask xen prepare`. In a test, an unprepared
//! harness is missing from the machine like a tool: the test skips, or
//! fails under CI ([`mirage_test_env::skip`]), saying which command
//! prepares it.

use std::path::{Path, PathBuf};

use cargo_mirage::xen::{
    DomuOptions, Guest, Harness, DOM0_SCRIPT_END, DOM0_SCRIPT_START, GUEST_CONSOLE_END, GUEST_CONSOLE_START,
};
use clap::Parser;

/// The prepared harness.
#[derive(Debug)]
pub struct XenHarness {
    harness: Harness,
}

/// How one boot ended.
#[derive(Debug)]
pub struct XenRun {
    /// With `dom0`, the guest's own exit status; with `domu`, 0 when dom0
    /// printed every run's console. 1 when the harness failed (the
    /// reason ends `output`).
    pub status: Option<i32>,
    /// The serial output (Xen's and dom0's), and the harness's error if
    /// it failed.
    pub output: String,
}

impl XenRun {
    /// Every domU run's console, in order (one per `--runs`).
    pub fn consoles(&self) -> Vec<&str> {
        sections(&self.output, GUEST_CONSOLE_START, GUEST_CONSOLE_END)
    }

    /// The output of `--dom0-script`, if dom0 printed it.
    pub fn dom0_script(&self) -> Option<&str> {
        sections(&self.output, DOM0_SCRIPT_START, DOM0_SCRIPT_END).into_iter().next()
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

/// The harness's directory: the workspace's `target/xen-harness`.
pub fn harness_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).join("target/xen-harness")
}

/// The harness, if it is prepared ([`Harness::missing`]); `None` after
/// [`mirage_test_env::skip`] (the test skips) when it is not. Never
/// prepares it, so a test reaches no network. Use
/// [`xen_harness!`](crate::xen_harness).
///
/// # Panics
///
/// When the harness is not prepared and the environment variable `CI` is
/// set: a CI machine must run the Xen tests.
#[track_caller]
pub fn harness() -> Option<XenHarness> {
    let harness = Harness::at(&harness_dir());
    match harness.missing() {
        None => Some(XenHarness { harness }),
        Some(reason) => {
            mirage_test_env::skip(format!(
                "{reason}; prepare it with `cargo xtask xen prepare` (as root: it installs QEMU >= 10, cpio and \
                 gzip and downloads Xen's Debian packages), which `cargo xtask test` runs before the tests"
            ));
            None
        }
    }
}

/// [`harness`] for the calling test.
#[macro_export]
macro_rules! xen_harness {
    () => {
        $crate::xen::harness()
    };
}

/// The words of a dom0 boot: the guest's command line after `--`.
#[derive(Debug, Parser)]
#[command(name = "dom0", no_binary_name = true)]
struct Dom0Words {
    #[arg(last = true)]
    args: Vec<String>,
}

/// The words of a domU boot: the harness's options, then `--` and the
/// guest's command line.
#[derive(Debug, Parser)]
#[command(name = "domu", no_binary_name = true)]
struct DomuWords {
    #[command(flatten)]
    options: DomuOptions,
    #[arg(last = true)]
    args: Vec<String>,
}

fn parse<T: Parser>(words: &[&str]) -> T {
    T::try_parse_from(words).unwrap_or_else(|e| panic!("the harness's words {words:?}: {e}"))
}

impl XenHarness {
    /// Boots `image` as Xen's PVH dom0 (`words`: `--` and the guest's
    /// command line).
    ///
    /// # Panics
    ///
    /// When `words` do not parse.
    pub fn dom0(&self, image: &Path, words: &[&str]) -> XenRun {
        let Dom0Words { args } = parse(words);
        match self.harness.dom0(image, &args) {
            Ok(run) => XenRun { status: Some(i32::from(run.status)), output: run.log },
            Err(e) => XenRun { status: Some(1), output: format!("xen harness: {e}") },
        }
    }

    /// Boots `image` as a PVH domU of the harness's Linux dom0 (`words`:
    /// `--runs N`, `--dom0-script FILE`, `--disk NAME=FILE`, ..., then
    /// `--` and the guest's command line).
    ///
    /// # Panics
    ///
    /// When `words` do not parse.
    pub fn domu(&self, image: &Path, words: &[&str]) -> XenRun {
        let DomuWords { options, args } = parse(words);
        let guest = Guest {
            image,
            ramdisk: options.ramdisk.as_deref(),
            memory_mib: options.memory,
            args: &args,
            pv: options.pv,
        };
        match self.harness.domu(&guest, &options) {
            Ok(log) => XenRun { status: Some(0), output: log },
            Err(e) => XenRun { status: Some(1), output: format!("xen harness: {e}") },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles_and_the_script_output_are_cut_from_the_output() {
        let (start, end) = (GUEST_CONSOLE_START, GUEST_CONSOLE_END);
        let output = format!(
            "boot\n{start}\nrun 1\n{end}\nx\n{start}\nrun 2\n{end}\n\
             {DOM0_SCRIPT_START}\nfetched\n{DOM0_SCRIPT_END}\n{start}\nunfinished"
        );
        let run = XenRun { status: Some(0), output };
        assert_eq!(run.consoles(), ["run 1", "run 2"]);
        assert_eq!(run.dom0_script(), Some("fetched"));
        assert_eq!(XenRun { status: None, output: String::new() }.dom0_script(), None);
        assert!(run.every_run_powered_off());
        let crashed = XenRun { status: Some(0), output: "harness: at 9.5 guest crashed (run 2)\n".into() };
        assert!(!crashed.every_run_powered_off());
    }

    #[test]
    fn the_words_parse_as_the_harness_options() {
        let DomuWords { options, args } =
            parse(&["--runs", "2", "--dom0-script", "s", "--disk", "d=f", "--", "--ipv4", "10.0.0.2/24"]);
        assert_eq!((options.runs, options.disks.len(), options.memory), (2, 1, 32));
        assert_eq!(args, ["--ipv4", "10.0.0.2/24"]);
        let DomuWords { options, args } = parse(&[]);
        assert_eq!((options, args), (DomuOptions::default(), Vec::<String>::new()));
        let Dom0Words { args } = parse(&["--", "--", "--frobnicate"]);
        assert_eq!(args, ["--", "--frobnicate"]);
    }
}
