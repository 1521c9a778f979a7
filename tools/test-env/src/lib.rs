//! What a test of the workspace does when the machine lacks something it
//! needs: root, /dev/net/tun, QEMU, the prepared Xen harness, a program
//! of a Debian package, a kernel feature.
//!
//! - With the environment variable `CI` set to any non-empty value
//!   ([`under_ci`]), it **fails**: [`skip`] panics with the reason, which
//!   names what is missing and how to get it. A CI machine that cannot run
//!   a test is broken, and a skipped test must not turn it green.
//! - Elsewhere it **skips**: [`skip`] prints `SKIP: <reason>` and, when the
//!   environment variable [`SKIP_LOG`] names a file, appends one line to it
//!   (`cargo xtask test` sets it, then counts and lists the skipped tests).
//!   The test then returns without testing.
//!
//! ```
//! use mirage_test_env::{missing_program, require, skip};
//!
//! # fn attach_a_loop_device() -> Result<String, String> { Ok("/dev/loop0".into()) }
//! fn sgdisk_reads_what_we_write_to_a_loop_device() {
//!     require!(missing_program("sgdisk", "gdisk")); // returns here when sgdisk is not installed
//!     let device = match attach_a_loop_device() {
//!         Ok(device) => device,
//!         Err(e) => return skip(format!("cannot attach a loop device (run the tests as root): {e}")),
//!     };
//!     // ... the test
//! }
//! ```
//!
//! Std only and without dependencies, so that every test crate (including
//! those of the crates the test-support crates are built on) can take it
//! as a dev-dependency.

use std::fmt::Display;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

/// The environment variable naming the file [`skip`] appends one line to
/// per skip, `TEST: REASON`. `cargo xtask test` sets it; unset (or empty),
/// nothing is written.
pub const SKIP_LOG: &str = "MIRAGE_SKIP_LOG";

/// Whether the tests run under CI: the environment variable `CI` is set
/// and not empty. Then nothing may be skipped.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// The calling test cannot run here: `reason` says what is missing and
/// how to get it, e.g. "`sgdisk` is not installed (Debian package gdisk)".
///
/// Under CI ([`under_ci`]) this panics. Elsewhere it prints `SKIP:
/// <reason>`, appends a line naming the test (its thread's name, which is
/// libtest's name for it) and the reason to the file [`SKIP_LOG`] names,
/// if any, and returns; the caller then returns without testing
/// (`return skip(...)`, or [`require!`]).
///
/// # Panics
///
/// Under CI, with `reason` (at the caller's location); and when
/// [`SKIP_LOG`] names a file this cannot append to, since a skip must not
/// go uncounted.
#[track_caller]
pub fn skip(reason: impl Display) {
    let log = std::env::var_os(SKIP_LOG).filter(|log| !log.is_empty());
    skip_in(under_ci(), log.as_deref().map(Path::new), &test_name(), &reason.to_string());
}

/// Returns from the calling function (returning `()`) through [`skip`]
/// when `$missing`, an `Option` of a reason (`Option<impl Display>`), is
/// `Some`: under CI the test fails, elsewhere it skips.
///
/// ```
/// # use mirage_test_env::{missing_programs, require};
/// fn needs_socat_and_ip() {
///     require!(missing_programs(&[("socat", "socat"), ("ip", "iproute2")]));
///     // ... the test
/// }
/// ```
#[macro_export]
macro_rules! require {
    ($missing:expr) => {
        if let ::core::option::Option::Some(reason) = $missing {
            return $crate::skip(reason);
        }
    };
}

/// Why `program` cannot be run here, if it cannot: it is not an
/// executable file in a directory of `PATH`. `package` is the Debian
/// package that has it, for the reason.
pub fn missing_program(program: &str, package: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)));
    (!found).then(|| format!("`{program}` is not installed (Debian package {package})"))
}

/// The reason of the first of `programs` (program, Debian package) that
/// cannot be run here ([`missing_program`]), if one cannot.
pub fn missing_programs(programs: &[(&str, &str)]) -> Option<String> {
    programs.iter().find_map(|(program, package)| missing_program(program, package))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// [`skip`] with its environment given.
#[track_caller]
fn skip_in(ci: bool, log: Option<&Path>, test: &str, reason: &str) {
    if ci {
        panic!("{reason}\n(the environment variable CI is set, so this test fails where it would skip elsewhere)");
    }
    println!("SKIP: {reason}");
    if let Some(log) = log {
        if let Err(e) = append(log, &log_line(test, reason)) {
            panic!("cannot record the skip ({reason}) in {} ({SKIP_LOG}): {e}", log.display());
        }
    }
}

/// The test calling: `PACKAGE/TARGET::TEST` from cargo's `CARGO_PKG_NAME`
/// (set when cargo runs a test), the test binary's name without cargo's
/// hash, and the thread's name (libtest names each test's thread after it).
fn test_name() -> String {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(Path::file_stem).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let target = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    match (package.is_empty(), target.is_empty()) {
        (false, false) => format!("{package}/{target}::{test}"),
        (true, false) => format!("{target}::{test}"),
        _ => test.to_string(),
    }
}

/// One line of the skip log: `TEST: REASON`, the reason on one line.
fn log_line(test: &str, reason: &str) -> String {
    let reason: String = reason.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    format!("{test}: {reason}\n")
}

/// Appends `line` to `path` (created if absent) in one `write` on a file
/// opened with `O_APPEND`: the line lands whole at the end of the file,
/// whichever other threads and processes append to it meanwhile.
fn append(path: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).create(true).open(path)?;
    let written = file.write(line.as_bytes())?;
    if written != line.len() {
        return Err(io::Error::other(format!("wrote {written} of {} bytes", line.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_log(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("mirage-test-env-{name}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn under_ci_a_skip_fails_with_the_reason() {
        let log = temp_log("ci");
        let failed =
            std::panic::catch_unwind(|| skip_in(true, Some(&log), "t", "`x` is not installed (Debian package y)"));
        let message = *failed.expect_err("must panic").downcast::<String>().expect("a formatted message");
        assert!(message.starts_with("`x` is not installed (Debian package y)\n"), "{message}");
        assert!(message.contains("CI is set"), "{message}");
        assert!(!log.exists(), "a failure is not a skip");
    }

    #[test]
    fn skips_are_appended_one_line_each_from_many_threads() {
        let log = temp_log("threads");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for j in 0..50 {
                        skip_in(false, Some(&log), &format!("t{i}"), &format!("reason {j}\nsecond line"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        assert_eq!(text.lines().count(), 400);
        assert!(text.lines().all(|l| l.starts_with('t') && l.ends_with(" second line")), "{text}");
        assert!(text.contains("t7: reason 49 second line\n"));
    }

    #[test]
    fn without_a_log_a_skip_writes_nothing() {
        skip_in(false, None, "t", "nothing to record");
    }

    #[test]
    fn an_unwritable_log_fails_the_skip() {
        let failed = std::panic::catch_unwind(|| skip_in(false, Some(Path::new("/nonexistent/dir/log")), "t", "r"));
        assert!(failed.is_err());
    }

    #[test]
    fn the_test_is_named_by_its_thread() {
        assert!(test_name().ends_with("::tests::the_test_is_named_by_its_thread"), "{}", test_name());
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        assert_eq!(missing_program("sh", "dash"), None);
        let reason = missing_program("surely-not-a-program-here", "nothing").expect("missing");
        assert_eq!(reason, "`surely-not-a-program-here` is not installed (Debian package nothing)");
        assert_eq!(missing_programs(&[("sh", "dash"), ("nope-nope", "p"), ("nada", "q")]).unwrap(), {
            "`nope-nope` is not installed (Debian package p)"
        });
    }
}
