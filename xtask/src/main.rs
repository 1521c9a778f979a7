//! `cargo xtask`: build, run, test and benchmark mirage-rs.
//!
//! ```text
//! cargo xtask run APP [--platform unix|virtio|xen] [--machine microvm|q35] [--disk NAME=FILE]...
//!     [--tap IFACE | --forward HOSTPORT:GUESTPORT...] [-- ARGS...]
//! cargo xtask build APP --platform virtio|xen
//! cargo xtask xen prepare|dom0 IMAGE|domu IMAGE [-- KERNEL-ARGS...]
//! cargo xtask test
//! cargo xtask bench www-unix|udp|checksum|tcp|block|unikernel|xen
//! ```
//!
//! - `run` builds an example (`examples/APP`, any directory of
//!   `examples/` with a `Cargo.toml`; every example builds for every
//!   target) for a platform and runs it, through the library of `cargo
//!   mirage` (`tools/cargo-mirage`): a Linux process (unix), QEMU (virtio),
//!   a domU of Xen under QEMU (xen). Its flags go to the program or kernel:
//!   platform flags first, then the application's after a second `--`
//!   (`cargo xtask run www -- -l debug -- --port 9000`); `--disk` and
//!   `--tap` add the matching `--block`/`--net` flags.
//! - `build` builds an example's kernel image and prints its path and
//!   size, with a libvirt domain (virtio) or an xl configuration (xen)
//!   beside it.
//! - `xen` drives the Xen harness (`cargo_mirage::xen`) in
//!   `target/xen-harness`.
//! - `test` is the project's whole test command (the README's and CI's):
//!   it installs the Debian packages the suite needs and prepares the Xen
//!   harness (the tests themselves reach no network), then checks
//!   formatting, lints, runs every test and builds the documentation,
//!   stopping at the first failure; at the end it lists the tests that
//!   skipped because the machine lacks something (with the environment
//!   variable `CI` set, those fail instead: `mirage-test-env`).
//! - `bench www-unix` measures the www example against nginx serving the
//!   same files, in the same run, and appends the figures to
//!   `docs/benchmarks.md`.
//! - `bench udp|checksum|tcp|block` run the workspace's benchmark programs
//!   (UDP echo in memory and over TAP, the Internet checksum beside memcpy,
//!   TCP, block devices and KV stores), print the exact command, and
//!   replace their own section of `docs/benchmarks.md`.
//! - `bench unikernel|xen` measure the images (`bench_unikernel.rs`,
//!   `bench_xen.rs`).

mod apt;
mod bench;
mod bench_programs;
mod bench_report;
mod bench_unikernel;
mod bench_xen;
mod steps;
mod xen;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use cargo_mirage::build::{write_guest_config, Build, GuestConfig, Target};
use cargo_mirage::cli::{parse_disk, NetworkArgs};
use cargo_mirage::qemu::Machine;
use cargo_mirage::{run as runner, Disk, Image};
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
        /// The example: a directory of examples/.
        app: String,
        /// Where it runs.
        #[arg(long, value_enum, default_value_t = Platform::Unix)]
        platform: Platform,
        /// With `--platform virtio`: the machine QEMU emulates.
        #[arg(long, value_enum, default_value_t = Machine::Microvm)]
        machine: Machine,
        /// A raw disk image the application opens as NAME; the `--block`
        /// flag naming it is added (unix: the file, virtio: the next
        /// virtio-blk device, xen: a copy as the next vbd). Repeatable.
        #[arg(long = "disk", value_name = "NAME=FILE", value_parser = parse_disk)]
        disks: Vec<Disk>,
        #[command(flatten)]
        net: NetworkArgs,
        /// The program's flags, after `--`: the platform's (`-l debug`,
        /// `--ipv4 A/P`), then the application's own after a second `--`
        /// (`cargo xtask run www -- -l debug -- --port 9000`). For the
        /// unikernels they are the kernel command line.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build an example's image for a unikernel platform and print its
    /// path and size (with a libvirt domain or an xl configuration beside
    /// it).
    Build {
        /// The example: a directory of examples/.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Platform {
    /// A Linux process (platform-unix).
    Unix,
    /// A unikernel on virtio devices (platform-virtio).
    Virtio,
    /// A Xen PVH guest (platform-xen).
    Xen,
}

impl Platform {
    fn target(self) -> Target {
        match self {
            Platform::Unix => Target::Unix,
            Platform::Virtio => Target::Virtio,
            Platform::Xen => Target::Xen,
        }
    }
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
        Task::Run { app, platform, machine, disks, net, args } => run(&app, platform, machine, disks, &net, &args),
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

/// The examples: the directories of `examples/` with a `Cargo.toml`,
/// sorted.
fn apps() -> Vec<String> {
    let mut apps: Vec<String> = std::fs::read_dir(workspace_root().join("examples"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    apps.sort();
    apps
}

/// The manifest of the example `app`, refusing an unknown one with the
/// choices.
fn app_manifest(app: &str) -> Result<PathBuf, TaskError> {
    let known = apps();
    if !known.iter().any(|a| a == app) {
        return Err(format!("unknown app {app:?}; the apps are: {}", known.join(", ")));
    }
    Ok(workspace_root().join("examples").join(app).join("Cargo.toml"))
}

/// Builds the example `app` for `target` (unix: `release` or dev) in the
/// usual target directory and prints the artifact's path and size.
fn build_app(app: &str, target: Target, release: bool) -> Result<Image, TaskError> {
    let manifest = app_manifest(app)?;
    let image = Build::new(&manifest, target).release(release).run().map_err(|e| e.to_string())?;
    println!("{} ({} bytes, {} KiB)", image.path.display(), image.size, image.size.div_ceil(1024));
    Ok(image)
}

/// Where the Xen harness of this repository lives.
fn xen_harness_dir() -> PathBuf {
    workspace_root().join("target/xen-harness")
}

/// `cargo xtask run APP`: builds and runs it; exits with its status.
fn run(
    app: &str,
    platform: Platform,
    machine: Machine,
    disks: Vec<Disk>,
    net: &NetworkArgs,
    args: &[String],
) -> Result<ExitCode, TaskError> {
    app_manifest(app)?;
    for disk in &disks {
        disk.check().map_err(|e| e.to_string())?;
    }
    if platform == Platform::Virtio {
        apt::ensure(&["qemu-system-x86"])?;
    }
    let image = build_app(app, platform.target(), false)?;
    let options = runner::Options {
        disks,
        network: net.network(),
        machine,
        memory_mib: None,
        xen_harness: Some(xen_harness_dir()),
    };
    let status = runner::run(image.target, &image.path, &options, args).map_err(|e| e.to_string())?;
    Ok(ExitCode::from(status))
}

/// `cargo xtask build APP --platform virtio|xen`.
fn build(app: &str, platform: Platform) -> Result<ExitCode, TaskError> {
    if platform == Platform::Unix {
        return Err("only --platform virtio and xen build images; unix apps run with `cargo xtask run`".into());
    }
    let image = build_app(app, platform.target(), false)?;
    if let Some((path, how)) = write_guest_config(&image, &GuestConfig::default()).map_err(|e| e.to_string())? {
        println!("{} ({how})", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cargo_mirage::qemu::{Forward, Network};

    #[test]
    fn the_examples_are_found() {
        let apps = apps();
        for app in ["hello", "www"] {
            assert!(apps.iter().any(|a| a == app), "{apps:?}");
        }
        assert!(apps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_apps_and_platforms_are_refused_with_the_choices() {
        let none = NetworkArgs::default();
        for platform in [Platform::Unix, Platform::Virtio, Platform::Xen] {
            let e = run("nope", platform, Machine::Microvm, Vec::new(), &none, &[]).unwrap_err();
            assert!(e.contains("unknown app \"nope\"") && e.contains("hello"), "{e}");
        }
        let e = build("hello", Platform::Unix).unwrap_err();
        assert!(e.contains("only --platform virtio and xen"), "{e}");
        let cli = Cli::try_parse_from(["xtask", "run", "block", "--platform", "virtio", "--machine", "q35"]).unwrap();
        assert!(matches!(cli.command, Task::Run { machine: Machine::Q35, .. }));
        let cli =
            Cli::try_parse_from(["xtask", "run", "www", "--platform", "virtio", "--forward", "8080:8080"]).unwrap();
        let Task::Run { net, .. } = cli.command else { panic!("not run") };
        assert_eq!(net.network(), Network::User(vec![Forward { host: 8080, guest: 8080 }]));
        assert!(Cli::try_parse_from(["xtask", "run", "www", "--tap", "t0", "--forward", "1:1"]).is_err());
        let e = Cli::try_parse_from(["xtask", "run", "www", "--forward", "8080"]).err().unwrap().to_string();
        assert!(e.contains("HOSTPORT:GUESTPORT"), "{e}");
    }

    #[test]
    fn the_command_line_parses() {
        let cli = Cli::try_parse_from(["xtask", "run", "www", "--", "--port", "9000"]).unwrap();
        let Task::Run { app, args, .. } = cli.command else { panic!("not run") };
        assert_eq!((app.as_str(), args), ("www", vec!["--port".to_string(), "9000".to_string()]));
        let cli = Cli::try_parse_from(["xtask", "run", "www", "--", "-l", "debug", "--", "--port", "1"]).unwrap();
        let Task::Run { args, .. } = cli.command else { panic!("not run") };
        assert_eq!(args, ["-l", "debug", "--", "--port", "1"]);
        let cli = Cli::try_parse_from(["xtask", "run", "kv", "--platform", "xen", "--disk", "data=kv.img"]).unwrap();
        let Task::Run { disks, platform, .. } = cli.command else { panic!("not run") };
        assert_eq!((disks, platform), (vec![Disk::parse("data=kv.img").unwrap()], Platform::Xen));
        let e = Cli::try_parse_from(["xtask", "run", "www", "--platform", "bsd"]).err().unwrap().to_string();
        assert!(e.contains("unix") && e.contains("virtio") && e.contains("xen"), "{e}");
        assert!(Cli::try_parse_from(["xtask", "bench", "nothing"]).is_err());
        for name in ["www-unix", "udp", "checksum", "tcp", "block", "unikernel", "xen"] {
            assert!(Cli::try_parse_from(["xtask", "bench", name]).is_ok(), "bench {name}");
        }
    }
}
