//! `cargo xtask test`: the project's whole test command.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use cargo_mirage::xen::Harness;

use crate::{apt, cargo, TaskError};

/// Debian packages whose programs the test suite runs as real peers; a
/// test that needs another program adds its package here.
const SUITE_PACKAGES: &[&str] = &[
    // HTTP client against www; `ip netns`, veth and TAP set-up for every network test.
    "curl",
    "iproute2",
    // Linux peers of our own stack: ping, DHCP server, UDP and TCP clients.
    "iputils-ping",
    "dnsmasq-base",
    "socat",
    "netcat-openbsd",
    // Partition tables made and verified by the Linux tools (sgdisk, sfdisk),
    // archives by GNU tar, a loop device for FileBlock on a block device.
    "gdisk",
    "fdisk",
    "tar",
    "mount",
    // Boot tests of the unikernel images.
    "qemu-system-x86",
    // cargo mirage's libvirt test: the daemon (libvirtd, virtlogd) with its
    // QEMU driver, and virsh; the test starts the daemons.
    "libvirt-daemon-system",
    "libvirt-clients",
    // libFuzzer, which cargo-fuzz builds for the fuzz step, is C++.
    "g++",
];

/// Seconds each fuzz target runs in the suite: a smoke test that every
/// parser survives a few hundred thousand generated inputs. Longer runs
/// are described in each crate's README.
const FUZZ_SECONDS_PER_TARGET: u32 = 5;

/// Installs what the suite needs (the Debian packages, the Xen harness),
/// then runs each step in order, printing its name and duration; stops at
/// the first failure. Ends with the tests that skipped, which passed
/// without testing (`mirage_test_env`; under CI they fail instead).
pub(crate) fn test() -> Result<ExitCode, TaskError> {
    apt::ensure(SUITE_PACKAGES)?;
    // The Xen boot tests need the harness, which the tests never prepare
    // themselves (it downloads packages; `cargo test` reaches no network).
    println!("==> the Xen harness of the Xen boot tests (cargo xtask xen prepare)");
    Harness::at(&crate::xen_harness_dir()).prepare().map_err(|e| format!("preparing the Xen harness: {e}"))?;
    let skips = SkipLog::create()?;
    let outcome = run_steps(&skips);
    skips.report();
    outcome
}

/// The steps of [`test()`] after the installs.
fn run_steps(skips: &SkipLog) -> Result<ExitCode, TaskError> {
    let steps: [(&str, &[&str]); 4] = [
        ("format", &["fmt", "--all", "--", "--check"]),
        ("lints", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
        ("tests", &["test", "--workspace"]),
        ("documentation", &["doc", "--workspace", "--no-deps"]),
    ];
    let started = Instant::now();
    println!("==> no_std libraries: no dependency of a unikernel library enables a `std` feature");
    check_no_std()?;
    for (name, args) in steps {
        let mut command = cargo();
        command.args(args);
        let mut shown = format!("cargo {}", args.join(" "));
        if name == "documentation" {
            command.env("RUSTDOCFLAGS", "-Dwarnings");
            shown.insert_str(0, "RUSTDOCFLAGS=-Dwarnings ");
        }
        if name == "tests" {
            command.env(mirage_test_env::SKIP_LOG, &skips.path);
        }
        run_step(name, &shown, command)?;
    }
    fuzz_smoke()?;
    println!("==> all steps passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The file the tests append one line to per skip (`TEST: REASON`), named
/// to them by the environment variable [`mirage_test_env::SKIP_LOG`]; one
/// per run of [`test()`], removed when dropped.
struct SkipLog {
    path: PathBuf,
}

impl SkipLog {
    /// An empty log in the temporary directory.
    fn create() -> Result<SkipLog, TaskError> {
        let path = std::env::temp_dir().join(format!("mirage-test-skips-{}.log", std::process::id()));
        std::fs::write(&path, "").map_err(|e| format!("cannot create the skip log {}: {e}", path.display()))?;
        Ok(SkipLog { path })
    }

    /// Prints how many tests skipped, and which and why.
    fn report(&self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                println!("==> skipped tests: unknown, the skip log {} cannot be read: {e}", self.path.display());
                return;
            }
        };
        let skipped: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
        if skipped.is_empty() {
            println!("==> skipped tests: none");
            return;
        }
        println!(
            "==> skipped tests: {} (they passed without testing; with the environment variable CI set they fail):",
            skipped.len()
        );
        for line in skipped {
            println!("    {line}");
        }
    }
}

impl Drop for SkipLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

/// The workspace's libraries that link into unikernels: every library
/// target whose crate root declares `no_std` (also as `cfg_attr(..., no_std)`).
fn no_std_libraries() -> Result<Vec<String>, TaskError> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata printed invalid JSON: {e}"))?;
    let mut names = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let lib_roots = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|target| target["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|kind| kind == "lib")));
        for target in lib_roots {
            let root = target["src_path"].as_str().unwrap_or_default();
            let source = std::fs::read_to_string(root).map_err(|e| format!("cannot read {root}: {e}"))?;
            if source.lines().any(|line| line.starts_with("#![") && line.contains("no_std")) {
                names.push(package["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    Ok(names)
}

/// The target kernel images are built for: the host's (docs/architecture.md, "Unikernel images").
const IMAGE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Fails if resolving the `no_std` libraries on their own (as a unikernel
/// build does) turns on any dependency's `std` feature. Host crates such as
/// the unix platform may enable `std` on shared dependencies; feature
/// unification hides that from a whole-workspace build, so this resolves
/// the libraries alone. It cannot see a dependency that needs std without
/// having a `std` feature: the kernel image build, which links without
/// libc, catches those.
fn check_no_std() -> Result<(), TaskError> {
    let libraries = no_std_libraries()?;
    let mut command = cargo();
    command.args(["tree", "--edges", "features,normal", "--prefix", "none", "--format", "{p}"]);
    // Resolved as an image build resolves them (decision 0008): `panic =
    // "abort"` in the target's rustflags drops the unix platform from
    // mirage-rs's dependencies, and both kernel targets are turned on.
    command.args([
        "--target",
        IMAGE_TARGET,
        "--config",
        &format!("target.{IMAGE_TARGET}.rustflags=[\"-Cpanic=abort\"]"),
    ]);
    command.args(["--features", "mirage-rs/virtio,mirage-rs/xen"]);
    for library in &libraries {
        command.args(["--package", library]);
    }
    let output = command.output().map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo tree failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let mut offenders: Vec<&str> = tree
        .lines()
        .filter(|line| line.contains("feature \"std\""))
        .map(|line| line.trim_end_matches(" (*)"))
        .collect();
    offenders.sort_unstable();
    offenders.dedup();
    if offenders.is_empty() {
        println!("==> no_std libraries: ok ({})", libraries.join(", "));
        Ok(())
    } else {
        Err(format!(
            "these no_std libraries pull in std through their dependencies: {}\n{}",
            libraries.join(", "),
            offenders.join("\n")
        ))
    }
}

/// Runs every cargo-fuzz target of the workspace (each `*/fuzz` directory
/// is a cargo-fuzz project) for [`FUZZ_SECONDS_PER_TARGET`]. cargo-fuzz
/// needs nightly flags; `RUSTC_BOOTSTRAP=1` lets the stable toolchain take
/// them, as no other toolchain can be installed here.
fn fuzz_smoke() -> Result<(), TaskError> {
    let has_cargo_fuzz = cargo().args(["fuzz", "--version"]).output().is_ok_and(|out| out.status.success());
    if !has_cargo_fuzz {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run_step("fuzz", "cargo install cargo-fuzz --locked (once per machine)", install)?;
    }
    let root = crate::workspace_root();
    let mut projects: Vec<_> = std::fs::read_dir(&root)
        .map_err(|e| format!("cannot list {}: {e}", root.display()))?
        .filter_map(|entry| Some(entry.ok()?.path().join("fuzz")))
        .filter(|fuzz| fuzz.join("Cargo.toml").is_file())
        .collect();
    projects.sort();
    for project in projects {
        let list = cargo()
            .current_dir(&project)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "list"])
            .output()
            .map_err(|e| format!("cannot list the fuzz targets of {}: {e}", project.display()))?;
        if !list.status.success() {
            return Err(format!("cargo fuzz list failed in {}", project.display()));
        }
        for target in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            let max_time = format!("-max_total_time={FUZZ_SECONDS_PER_TARGET}");
            let mut run = cargo();
            run.current_dir(&project).env("RUSTC_BOOTSTRAP", "1").args(["fuzz", "run", "-O", target, "--", &max_time]);
            let shown =
                format!("(in {}) RUSTC_BOOTSTRAP=1 cargo fuzz run -O {target} -- {max_time}", project.display());
            run_step("fuzz", &shown, run)?;
        }
    }
    Ok(())
}
