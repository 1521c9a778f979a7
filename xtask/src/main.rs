//! `cargo xtask`: build, run, test and benchmark mirage-rs.
//!
//! ```text
//! cargo xtask run APP [--platform unix] [-- APP-FLAGS...]
//! cargo xtask run APP --platform virtio [--machine microvm|q35] [--disk IMAGE]
//!     [--tap IFACE | --forward HOSTPORT:GUESTPORT...] [-- KERNEL-ARGS...]
//! cargo xtask build APP --platform virtio|xen
//! cargo xtask run APP --platform xen [-- KERNEL-ARGS...]
//! cargo xtask xen prepare|dom0 IMAGE|domu IMAGE [-- KERNEL-ARGS...]
//! cargo xtask test
//! cargo xtask bench www-unix|udp|checksum|tcp|block|unikernel
//! ```
//!
//! - `run` builds and runs an example (`examples/APP`) on a platform; only
//!   `unix` exists so far. Its flags go to the program unchanged: platform
//!   flags first, then the application's after a second `--`
//!   (`cargo xtask run www -- -l debug -- --port 9000`).
//! - `test` is the project's whole test command (the README's and CI's):
//!   it installs the Debian packages the suite needs, then checks
//!   formatting, lints, runs every test and builds the documentation,
//!   stopping at the first failure.
//! - `bench www-unix` measures the www example against nginx serving the
//!   same files, in the same run, and appends the figures to
//!   `docs/benchmarks.md`.
//! - `bench udp|checksum|tcp|block` run the workspace's benchmark programs
//!   (UDP echo in memory and over TAP, the Internet checksum beside memcpy,
//!   TCP, block devices and KV stores), print the exact command, and
//!   replace their own section of `docs/benchmarks.md`.

mod apt;
mod bench;
mod bench_programs;
mod bench_report;
mod bench_unikernel;
mod bench_xen;
mod steps;
mod virtio;
mod xen;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark mirage-rs")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build and run an example application.
    Run {
        /// The example: a directory of examples/ with a platform entry.
        app: String,
        /// Where it runs.
        #[arg(long, value_enum, default_value_t = Platform::Unix)]
        platform: Platform,
        /// With `--platform virtio`: the machine QEMU emulates.
        #[arg(long, value_enum, default_value_t = virtio::Machine::Microvm)]
        machine: virtio::Machine,
        /// With `--platform virtio`: a raw disk image to attach as the
        /// first virtio-blk device (name it with `-- --block NAME`).
        #[arg(long)]
        disk: Option<PathBuf>,
        #[command(flatten)]
        net: virtio::NetOptions,
        /// The program's flags, after `--`: the platform's (`-l debug`,
        /// `--block NAME=PATH`), then the application's own after a second
        /// `--` (`cargo xtask run www -- -l debug -- --port 9000`). For
        /// `--platform virtio` they are the kernel command line.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build an example's image for a unikernel platform and print its
    /// path and size.
    Build {
        /// The example: a directory of examples/ with a platform entry.
        app: String,
        /// Which platform (`virtio` or `xen`: the unikernel platforms).
        #[arg(long, value_enum, default_value_t = Platform::Virtio)]
        platform: Platform,
    },
    /// Run the whole test suite: formatting, lints, tests, documentation.
    Test,
    /// Xen under QEMU: prepare the harness, boot an image as dom0 or domU.
    #[command(subcommand)]
    Xen(xen::XenTask),
    /// Run a benchmark and append its figures to docs/benchmarks.md.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        which: Benchmark,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Platform {
    /// A Linux process (platform-unix).
    Unix,
    /// A unikernel on virtio devices (platform-virtio).
    Virtio,
    /// A Xen PVH guest (platform-xen).
    Xen,
}

#[derive(Clone, Copy, ValueEnum)]
enum Benchmark {
    /// The www example as a Linux process against nginx.
    WwwUnix,
    /// UDP echo round trips: two stacks in memory, and our stack on TAP
    /// against Linux (needs root; skipped otherwise), each beside a raw
    /// reflector.
    Udp,
    /// The Internet checksum beside memcpy.
    Checksum,
    /// net-stack's TCP benchmark (net-stack/examples/tcp_bench.rs).
    Tcp,
    /// Block devices and KV stores beside fio (mirage-kv's block-bench).
    Block,
    /// Virtio unikernel image sizes, boot times and smallest memory beside Linux.
    Unikernel,
    /// Xen guest image sizes and boot times as domUs beside a Linux domU.
    Xen,
}

/// A failure of a task, with what to do about it.
type TaskError = String;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Task::Run { app, platform: Platform::Virtio, machine, disk, net, args } => {
            run_virtio(&app, machine, disk.as_deref(), &net, &args)
        }
        Task::Run { app, platform, args, .. } => run(&app, platform, &args),
        Task::Build { app, platform } => build(&app, platform),
        Task::Test => steps::test(),
        Task::Xen(task) => xen::task(&task),
        Task::Bench { which } => match which {
            Benchmark::WwwUnix => bench::www_unix(),
            Benchmark::Udp => bench_programs::udp(),
            Benchmark::Checksum => bench_programs::checksum(),
            Benchmark::Tcp => bench_programs::tcp(),
            Benchmark::Block => bench_programs::block(),
            Benchmark::Unikernel => bench_unikernel::unikernel(),
            Benchmark::Xen => bench_xen::xen(),
        },
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cargo xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The cargo that runs us (cargo sets `CARGO` for `cargo run`), so nested
/// builds use the same toolchain.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// The examples that have an entry for `platform`, sorted.
fn apps(platform: &str) -> Vec<String> {
    let mut apps: Vec<String> = std::fs::read_dir(workspace_root().join("examples"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().join(platform).join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    apps.sort();
    apps
}

fn run(app: &str, platform: Platform, args: &[String]) -> Result<ExitCode, TaskError> {
    let platform = match platform {
        Platform::Unix => "unix",
        Platform::Virtio => {
            return run_virtio(app, virtio::Machine::Microvm, None, &virtio::NetOptions::default(), args)
        }
        Platform::Xen => {
            check_app(app, "xen")?;
            return xen::run(app, args);
        }
    };
    let known = apps(platform);
    if !known.iter().any(|a| a == app) {
        return Err(format!("unknown app {app:?}; the apps for --platform {platform} are: {}", known.join(", ")));
    }
    let package = format!("{app}-{platform}");
    let status = cargo()
        .args(["run", "--package", &package, "--"])
        .args(args)
        .status()
        .map_err(|e| format!("cannot start cargo to run {package}: {e}"))?;
    Ok(exit_code(status))
}

/// Refuses an app without an entry for `platform`, naming those with one.
fn check_app(app: &str, platform: &str) -> Result<(), TaskError> {
    let known = apps(platform);
    if known.iter().any(|a| a == app) {
        return Ok(());
    }
    Err(format!("unknown app {app:?}; the apps for --platform {platform} are: {}", known.join(", ")))
}

/// Refuses an app without a `virtio` entry, naming those with one.
fn check_virtio_app(app: &str) -> Result<(), TaskError> {
    let known = apps("virtio");
    if known.iter().any(|a| a == app) {
        return Ok(());
    }
    Err(format!("unknown app {app:?}; the apps for --platform virtio are: {}", known.join(", ")))
}

/// `cargo xtask run APP --platform virtio`: builds the image and boots it
/// in QEMU (see `virtio.rs`).
fn run_virtio(
    app: &str,
    machine: virtio::Machine,
    disk: Option<&Path>,
    net: &virtio::NetOptions,
    args: &[String],
) -> Result<ExitCode, TaskError> {
    check_virtio_app(app)?;
    virtio::run(app, machine, disk, net, args)
}

/// `cargo xtask build APP --platform virtio`.
fn build(app: &str, platform: Platform) -> Result<ExitCode, TaskError> {
    match platform {
        Platform::Virtio => {
            check_virtio_app(app)?;
            virtio::build(app).map(|_| ExitCode::SUCCESS)
        }
        Platform::Xen => {
            check_app(app, "xen")?;
            xen::build(app).map(|_| ExitCode::SUCCESS)
        }
        Platform::Unix => {
            Err("only --platform virtio and xen build images; unix apps run with `cargo xtask run`".into())
        }
    }
}

/// The exit status of a child as ours (a child killed by a signal is a
/// failure).
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_are_found() {
        let apps = apps("unix");
        for app in ["echo", "www"] {
            assert!(apps.iter().any(|a| a == app), "{apps:?}");
        }
        assert!(apps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_apps_and_platforms_are_refused_with_the_choices() {
        let e = run("nope", Platform::Unix, &[]).unwrap_err();
        assert!(e.contains("unknown app \"nope\"") && e.contains("www"), "{e}");
        let e = run("nope", Platform::Xen, &[]).unwrap_err();
        assert!(e.contains("unknown app \"nope\"") && e.contains("hello"), "{e}");
        let e = run_virtio("nope", virtio::Machine::Microvm, None, &virtio::NetOptions::default(), &[]).unwrap_err();
        assert!(e.contains("unknown app \"nope\"") && e.contains("block") && e.contains("kv"), "{e}");
        let e = build("hello", Platform::Unix).unwrap_err();
        assert!(e.contains("only --platform virtio and xen"), "{e}");
        let cli = Cli::try_parse_from(["xtask", "run", "block", "--platform", "virtio", "--machine", "q35"]).unwrap();
        assert!(matches!(cli.command, Task::Run { machine: virtio::Machine::Q35, .. }));
        let cli =
            Cli::try_parse_from(["xtask", "run", "www", "--platform", "virtio", "--forward", "8080:8080"]).unwrap();
        assert!(
            matches!(cli.command, Task::Run { net: virtio::NetOptions { ref forward, .. }, .. } if forward.len() == 1)
        );
        assert!(Cli::try_parse_from(["xtask", "run", "www", "--tap", "t0", "--forward", "1:1"]).is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["xtask", "run", "www", "--", "--port", "9000"]).unwrap();
        let Task::Run { app, args, .. } = cli.command else { panic!("not run") };
        assert_eq!((app.as_str(), args), ("www", vec!["--port".to_string(), "9000".to_string()]));
        let cli = Cli::try_parse_from(["xtask", "run", "www", "--", "-l", "debug", "--", "--port", "1"]).unwrap();
        let Task::Run { args, .. } = cli.command else { panic!("not run") };
        assert_eq!(args, ["-l", "debug", "--", "--port", "1"]);
        let e = Cli::try_parse_from(["xtask", "run", "www", "--platform", "bsd"]).err().unwrap().to_string();
        assert!(e.contains("unix") && e.contains("virtio") && e.contains("xen"), "{e}");
        assert!(Cli::try_parse_from(["xtask", "bench", "nothing"]).is_err());
        for name in ["www-unix", "udp", "checksum", "tcp", "block", "unikernel"] {
            assert!(Cli::try_parse_from(["xtask", "bench", name]).is_ok(), "bench {name}");
        }
    }
}
