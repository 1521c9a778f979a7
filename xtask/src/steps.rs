//! `cargo xtask test`: the project's whole test command.

use std::process::{Command, ExitCode};
use std::time::Instant;

use crate::{apt, cargo, TaskError};

/// Debian packages the test suite runs: curl and iproute2 (`ip netns`,
/// veth and TAP set-up) for the network tests against the host's stack.
/// A test that needs another program adds its package here.
const SUITE_PACKAGES: &[&str] = &["curl", "iproute2"];

/// Installs what the suite needs, then runs each step in order, printing
/// its name and duration; stops at the first failure.
pub(crate) fn test() -> Result<ExitCode, TaskError> {
    apt::ensure(SUITE_PACKAGES)?;
    let steps: [(&str, &[&str]); 4] = [
        ("format", &["fmt", "--all", "--", "--check"]),
        ("lints", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        ("tests", &["test", "--workspace"]),
        ("documentation", &["doc", "--workspace", "--no-deps"]),
    ];
    let started = Instant::now();
    for (name, args) in steps {
        let mut command = cargo();
        command.args(args);
        let mut shown = format!("cargo {}", args.join(" "));
        if name == "documentation" {
            command.env("RUSTDOCFLAGS", "-Dwarnings");
            shown.insert_str(0, "RUSTDOCFLAGS=-Dwarnings ");
        }
        run_step(name, &shown, command)?;
    }
    println!("==> all steps passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn run_step(name: &str, shown: &str, mut command: Command) -> Result<(), TaskError> {
    println!("==> {name}: {shown}");
    let started = Instant::now();
    let status = command.status().map_err(|e| format!("step {name}: cannot start {shown}: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("step {name} failed after {seconds:.1} s ({status}): {shown}"));
    }
    println!("==> {name}: ok in {seconds:.1} s");
    Ok(())
}
