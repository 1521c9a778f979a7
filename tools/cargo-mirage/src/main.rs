//! `cargo mirage`: create, build and run mirage-rs applications.
//!
//! ```text
//! cargo mirage new NAME [--path DIR]
//! cargo mirage build -t unix|virtio|xen [--release] [--manifest-path P] [--bin B]
//!     [--tap IFACE] [--disk NAME=FILE]... [--memory MIB] [-- ARGS...]
//! cargo mirage run -t unix|virtio|xen [--release] [--manifest-path P] [--bin B]
//!     [--tap IFACE | --forward HOST:GUEST...] [--disk NAME=FILE]... [--machine microvm|q35]
//!     [--memory MIB] [-- ARGS...]
//! ```
//!
//! See the crate's README and the library's documentation
//! (`cargo_mirage`) for what each command does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cargo_mirage::build::{find_manifest, shown, write_guest_config, Build, GuestConfig, Target};
use cargo_mirage::cli::{parse_disk, NetworkArgs};
use cargo_mirage::qemu::Machine;
use cargo_mirage::{run, template, Disk, Error, Image};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo mirage",
    bin_name = "cargo mirage",
    version,
    about = "Create, build and run mirage-rs applications: Linux processes, virtio unikernels, Xen guests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new application (a small web server) in NAME (or --path DIR).
    New {
        /// The package's name.
        name: String,
        /// The directory to create (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
    },
    /// Build the application for a target; print the artifact's path and
    /// size (for virtio also a libvirt domain, for xen an xl configuration,
    /// written beside it).
    Build {
        #[command(flatten)]
        package: Package,
        /// For virtio: a virtio-net device on this host TAP interface in the
        /// libvirt domain; for xen: the name of the vif's dom0 end.
        #[arg(long, value_name = "IFACE")]
        tap: Option<String>,
        #[command(flatten)]
        guest: Guest,
        /// The application's command line in the libvirt domain or xl
        /// configuration: the platform's flags, then after `--` the
        /// application's own (`-- --ipv4 10.0.0.2/24 -- --port 80`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the application and run it: a Linux process (unix), QEMU
    /// microvm (virtio), a domU of Xen under QEMU (xen). Exits with the
    /// application's status.
    Run {
        #[command(flatten)]
        package: Package,
        #[command(flatten)]
        net: NetworkArgs,
        #[command(flatten)]
        guest: Guest,
        /// With virtio: the machine QEMU emulates.
        #[arg(long, value_enum, default_value_t = Machine::Microvm)]
        machine: Machine,
        /// The command line: the platform's flags (`-l debug`, `--ipv4
        /// A/P`), then after `--` the application's own (`-- -- --port 9000`
        /// from the shell).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Which package, binary, target and profile.
#[derive(Debug, Args)]
struct Package {
    /// What to build for.
    #[arg(short, long, value_enum)]
    target: Target,
    /// With unix: the release profile (images always use their own,
    /// optimised one).
    #[arg(long)]
    release: bool,
    /// The application's Cargo.toml (default: the one of the current
    /// directory or the nearest above it).
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// The binary to build (default: the package's only one, or the one
    /// named like it).
    #[arg(long, value_name = "NAME")]
    bin: Option<String>,
}

/// The guest's disks and memory.
#[derive(Debug, Args)]
struct Guest {
    /// A raw disk image the application opens as NAME (`devices.block`);
    /// the `--block` flag naming it is added for the target. Repeatable.
    #[arg(long = "disk", value_name = "NAME=FILE", value_parser = parse_disk)]
    disks: Vec<Disk>,
    /// The guest's memory in MiB (virtio: 256, xen: 32 by default).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(8..=65536))]
    memory: Option<u32>,
}

/// The arguments as cargo passes them (`cargo-mirage mirage ARGS`) or as
/// given when the program is run directly (`cargo-mirage ARGS`).
fn arguments() -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "mirage") {
        args.remove(1);
    }
    args
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments());
    match execute(cli.command) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("cargo mirage: {e}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<u8, Error> {
    match command {
        Command::New { name, path } => new(&name, path.as_deref()),
        Command::Build { package, tap, guest, args } => {
            let image = build(&package)?;
            println!("{} ({} bytes, {} KiB)", shown(&image.path), image.size, image.size.div_ceil(1024));
            let config = GuestConfig { tap, disks: guest.disks, memory_mib: guest.memory, args };
            if let Some((path, how)) = write_guest_config(&image, &config)? {
                println!("{} ({how})", shown(&path));
            }
            Ok(0)
        }
        Command::Run { package, net, guest, machine, args } => {
            let options = run::Options {
                disks: guest.disks,
                network: net.network(),
                machine,
                memory_mib: guest.memory,
                xen_harness: None,
            };
            for disk in &options.disks {
                disk.check()?;
            }
            if package.target == Target::Virtio {
                cargo_mirage::qemu::check_installed()?;
            }
            let image = build(&package)?;
            run::run(image.target, &image.path, &options, &args)
        }
    }
}

/// `cargo mirage new`.
fn new(name: &str, path: Option<&Path>) -> Result<u8, Error> {
    let dir = path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(name));
    let files = template::create(&dir, name)?;
    for file in &files {
        println!("created {}", file.display());
    }
    let dir = shown(&dir);
    println!(
        "\nThe application {name} is in {dir}:\n  cd {dir}\n  cargo run -- -- --port 8080            # a Linux process; curl http://127.0.0.1:8080/\n\
         \x20 cargo mirage run -t virtio --forward 8080:8080     # a unikernel under QEMU\n\
         \x20 cargo mirage build -t xen                          # a Xen guest and its xl configuration"
    );
    Ok(0)
}

fn build(package: &Package) -> Result<Image, Error> {
    let manifest = match &package.manifest_path {
        Some(path) => path.clone(),
        None => {
            let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read the current directory", e))?;
            find_manifest(&cwd)?
        }
    };
    Build::new(&manifest, package.target).bin(package.bin.as_deref()).release(package.release).run()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cargo_mirage::qemu::{Forward, Network};

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo-mirage").chain(words.iter().copied()))
    }

    #[test]
    fn run_takes_devices_and_passes_everything_after_the_separator() {
        let cli = parse(&[
            "run",
            "-t",
            "virtio",
            "--forward",
            "8080:80",
            "--disk",
            "d=x.img",
            "--",
            "-l",
            "debug",
            "--",
            "--port",
            "1",
        ])
        .unwrap();
        let Command::Run { package, net, guest, args, machine } = cli.command else { panic!("not run") };
        assert_eq!((package.target, machine), (Target::Virtio, Machine::Microvm));
        assert_eq!(net.network(), Network::User(vec![Forward { host: 8080, guest: 80 }]));
        assert_eq!(guest.disks, [Disk::parse("d=x.img").unwrap()]);
        assert_eq!(args, ["-l", "debug", "--", "--port", "1"]);
    }

    #[test]
    fn bad_flags_are_refused_with_the_expected_form() {
        let e = parse(&["run", "-t", "virtio", "--forward", "8080"]).unwrap_err().to_string();
        assert!(e.contains("HOSTPORT:GUESTPORT"), "{e}");
        let e = parse(&["build", "-t", "virtio", "--disk", "nofile"]).unwrap_err().to_string();
        assert!(e.contains("NAME=FILE"), "{e}");
        assert!(parse(&["run", "-t", "virtio", "--tap", "t0", "--forward", "1:1"]).is_err());
        let e = parse(&["build", "-t", "bsd"]).unwrap_err().to_string();
        assert!(e.contains("unix") && e.contains("virtio") && e.contains("xen"), "{e}");
        assert!(parse(&["build"]).is_err(), "-t is required");
    }

    #[test]
    fn new_and_build_parse() {
        let cli = parse(&["new", "greeter", "--path", "/tmp/g"]).unwrap();
        assert!(matches!(cli.command, Command::New { ref name, path: Some(_) } if name == "greeter"));
        let cli = parse(&["build", "-t", "xen", "--manifest-path", "a/Cargo.toml", "--bin", "b", "--release"]).unwrap();
        let Command::Build { package, .. } = cli.command else { panic!("not build") };
        assert_eq!((package.target, package.bin.as_deref(), package.release), (Target::Xen, Some("b"), true));
    }
}
