//! Building an application for a target.
//!
//! - [`Target::Unix`]: `cargo build --bin BIN [--release]`, a Linux
//!   program in `<target-dir>/{debug,release}/BIN`.
//! - [`Target::Virtio`] and [`Target::Xen`]: a static, freestanding PVH
//!   kernel image in `<target-dir>/x86_64-unknown-linux-gnu/mirage-T/BIN`,
//!   built with
//!
//!   ```text
//!   cargo rustc --manifest-path M --bin BIN --target x86_64-unknown-linux-gnu
//!       --features mirage-rs/T --profile mirage-T
//!       --config 'profile.mirage-T.inherits="release"' --config 'profile.mirage-T.panic="abort"'
//!       --config 'profile.mirage-T.opt-level="s"' --config 'profile.mirage-T.debug=0'
//!       --config 'profile.mirage-T.lto=true' --config 'profile.mirage-T.codegen-units=1'
//!       --config 'profile.mirage-T.strip="symbols"'
//!       --config 'target.x86_64-unknown-linux-gnu.rustflags=["-Cpanic=abort"]'
//!       -- -C link-arg=-nostdlib -C link-arg=-static -C link-arg=-no-pie
//!          -C link-arg=-Wl,--gc-sections -C link-arg=-Wl,--build-id=none -C link-arg=-T<mirage-kernel>/kernel.ld
//!   ```
//!
//!   The profile is defined on the command line, so the application's
//!   manifest needs none. `-Cpanic=abort` in the target's rustflags (with
//!   an explicit `--target`, they do not reach build scripts and proc
//!   macros) is what `mirage-rs` sees through `cfg(panic = "abort")`: it
//!   keeps the std-using unix platform out of the kernel's dependencies.
//!   When `RUSTFLAGS` or `CARGO_ENCODED_RUSTFLAGS` is set, which would
//!   override that configuration, the flag is appended to it instead. The
//!   linker script is `kernel.ld` beside the manifest of the
//!   `mirage-kernel` package that `cargo metadata` resolves, so a path, git
//!   or crates.io dependency on `mirage-rs` all work. `--release` changes
//!   nothing for an image: its profile always builds on `release`.
//!
//! Cargo's progress and errors go to stderr as usual; the artifact's path
//! is read from its JSON messages.

use std::ffi::OsString;
use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use cargo_metadata::{CargoOpt, DependencyKind, Message, Metadata, MetadataCommand, TargetKind};

use crate::{Error, ErrorKind};

/// The target triple kernel images are built for.
pub const KERNEL_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The package every application depends on.
pub const FACADE: &str = "mirage-rs";

/// The package whose `kernel.ld` links the images.
pub const KERNEL_PACKAGE: &str = "mirage-kernel";

/// The linker arguments of a kernel image, besides the linker script.
pub const KERNEL_LINK_ARGS: [&str; 5] = ["-nostdlib", "-static", "-no-pie", "-Wl,--gc-sections", "-Wl,--build-id=none"];

/// What an application is built as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// A Linux process (the unix platform).
    Unix,
    /// A unikernel on virtio devices (QEMU microvm or q35, libvirt).
    Virtio,
    /// A Xen PVH guest.
    Xen,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [Target::Unix, Target::Virtio, Target::Xen];

    /// `unix`, `virtio` or `xen`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Unix => "unix",
            Target::Virtio => "virtio",
            Target::Xen => "xen",
        }
    }

    /// Whether the artifact is a kernel image.
    pub fn is_kernel(self) -> bool {
        self != Target::Unix
    }

    /// The cargo profile of a kernel image (`mirage-virtio`, `mirage-xen`),
    /// defined on the command line.
    pub fn profile(self) -> Option<String> {
        self.is_kernel().then(|| format!("mirage-{}", self.name()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(text: &str) -> Result<Target, Error> {
        Target::ALL.into_iter().find(|t| t.name() == text).ok_or_else(|| {
            Error::new(ErrorKind::BadArgument, format!("unknown target {text:?}: expected unix, virtio or xen"))
        })
    }
}

/// A built artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// What it was built for.
    pub target: Target,
    /// The package's name.
    pub package: String,
    /// The binary's name.
    pub bin: String,
}

/// An application crate, as `cargo metadata` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Its `Cargo.toml`.
    pub manifest_path: PathBuf,
    /// The package's name.
    pub package: String,
    /// The binary to build.
    pub bin: String,
    /// The name under which it depends on `mirage-rs` (a rename, or
    /// `mirage-rs`), which its feature flags go through.
    pub facade: String,
    /// Its target directory (`CARGO_TARGET_DIR`, the workspace's `target`).
    pub target_directory: PathBuf,
}

/// The cargo to run: the one that runs us (`CARGO`, set for cargo's
/// subcommands, build scripts and tests), else `cargo` from `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn cargo_path() -> PathBuf {
    std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into())
}

/// The `Cargo.toml` of the package `dir` is in: `dir`'s or its nearest
/// ancestor's.
pub fn find_manifest(dir: &Path) -> Result<PathBuf, Error> {
    dir.ancestors().map(|d| d.join("Cargo.toml")).find(|m| m.is_file()).ok_or_else(|| {
        Error::new(
            ErrorKind::NotACrate,
            format!(
                "no Cargo.toml in {} or any directory above it: run this inside an application's crate, \
                 pass --manifest-path PATH/Cargo.toml, or create an application with `cargo mirage new NAME`",
                dir.display()
            ),
        )
    })
}

fn metadata_error(manifest: &Path, e: cargo_metadata::Error) -> Error {
    Error::new(ErrorKind::Cargo, format!("cargo metadata --manifest-path {} failed: {e}", manifest.display()))
}

/// The example entry file, for messages.
fn main_rs(crate_name: &str) -> String {
    format!("    #![cfg_attr(panic = \"abort\", no_std, no_main)]\n    mirage::main!({crate_name}::start);")
}

/// Reads the application in `manifest_path` (`cargo metadata --no-deps`)
/// and checks it can be built: a package (not a virtual workspace), with a
/// normal dependency on `mirage-rs` and a binary (`bin`, or its only one,
/// or the one named like the package).
pub fn inspect(manifest_path: &Path, bin: Option<&str>) -> Result<App, Error> {
    if !manifest_path.is_file() {
        return Err(Error::new(
            ErrorKind::NotACrate,
            format!(
                "{}: no such file; pass the Cargo.toml of an application, or create one with `cargo mirage new NAME`",
                manifest_path.display()
            ),
        ));
    }
    let metadata = MetadataCommand::new()
        .cargo_path(cargo_path())
        .manifest_path(manifest_path)
        .no_deps()
        .exec()
        .map_err(|e| metadata_error(manifest_path, e))?;
    let wanted = std::fs::canonicalize(manifest_path).map_err(|e| Error::io(manifest_path.display(), e))?;
    let package = metadata
        .packages
        .iter()
        .find(|p| std::fs::canonicalize(&p.manifest_path).is_ok_and(|m| m == wanted))
        .ok_or_else(|| {
            let apps: Vec<String> = metadata
                .packages
                .iter()
                .filter(|p| p.dependencies.iter().any(|d| d.name == FACADE && d.kind == DependencyKind::Normal))
                .map(|p| shown(p.manifest_path.as_std_path()))
                .collect();
            Error::new(
                ErrorKind::NotACrate,
                format!(
                    "{} is a workspace, not a package: pass an application's own Cargo.toml with --manifest-path, \
                     or run in its directory (the applications here: {})",
                    manifest_path.display(),
                    if apps.is_empty() { "none".to_string() } else { apps.join(", ") }
                ),
            )
        })?;
    let crate_name = package.name.replace('-', "_");
    let facade = package
        .dependencies
        .iter()
        .find(|d| d.name == FACADE && d.kind == DependencyKind::Normal)
        .map(|d| d.rename.clone().unwrap_or_else(|| d.name.clone()))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NoMirageDependency,
                format!(
                    "{} ({}) does not depend on {FACADE}: add to its [dependencies]\n    {FACADE} = \"0.1\"\n\
                     and make src/main.rs\n{}",
                    package.name,
                    manifest_path.display(),
                    main_rs(&crate_name)
                ),
            )
        })?;
    let bins: Vec<&str> =
        package.targets.iter().filter(|t| t.kind.contains(&TargetKind::Bin)).map(|t| t.name.as_str()).collect();
    let add_main = || {
        format!(
            "{} has no binary: add src/main.rs with\n{}\n(or a [[bin]] section naming such a file)",
            package.name,
            main_rs(&crate_name)
        )
    };
    let bin = match bin {
        Some(bin) if bins.contains(&bin) => bin.to_string(),
        Some(bin) if bins.is_empty() => {
            return Err(Error::new(ErrorKind::NoBinary, format!("no binary {bin:?}: {}", add_main())))
        }
        Some(bin) => {
            return Err(Error::new(
                ErrorKind::NoBinary,
                format!("{} has no binary {bin:?}; its binaries: {}", package.name, bins.join(", ")),
            ))
        }
        None => match bins.as_slice() {
            [] => return Err(Error::new(ErrorKind::NoBinary, add_main())),
            [only] => only.to_string(),
            several => match several.iter().find(|b| **b == package.name.as_str()) {
                Some(named) => named.to_string(),
                None => {
                    return Err(Error::new(
                        ErrorKind::NoBinary,
                        format!("{} has several binaries; choose one with --bin: {}", package.name, bins.join(", ")),
                    ))
                }
            },
        },
    };
    Ok(App {
        manifest_path: manifest_path.to_path_buf(),
        package: package.name.to_string(),
        bin,
        facade,
        target_directory: metadata.target_directory.into_std_path_buf(),
    })
}

/// The linker script of the `mirage-kernel` that `app` gets with
/// `mirage-rs`'s feature for `target` (`kernel.ld` beside its manifest).
pub fn linker_script(app: &App, target: Target) -> Result<PathBuf, Error> {
    let feature = format!("{}/{}", app.facade, target.name());
    let metadata = MetadataCommand::new()
        .cargo_path(cargo_path())
        .manifest_path(&app.manifest_path)
        .features(CargoOpt::SomeFeatures(vec![feature.clone()]))
        .other_options(vec!["--filter-platform".to_string(), KERNEL_TRIPLE.to_string()])
        .exec()
        .map_err(|e| metadata_error(&app.manifest_path, e))?;
    kernel_package_dir(&metadata, &feature).map(|dir| dir.join("kernel.ld")).and_then(|script| {
        if script.is_file() {
            Ok(script)
        } else {
            Err(Error::new(
                ErrorKind::Cargo,
                format!("{KERNEL_PACKAGE}'s linker script {} is missing: is the package complete?", script.display()),
            ))
        }
    })
}

/// The directory of the `mirage-kernel` package that `mirage-rs` depends
/// on in the resolved graph of `metadata`.
fn kernel_package_dir(metadata: &Metadata, feature: &str) -> Result<PathBuf, Error> {
    let resolve = metadata
        .resolve
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::Cargo, "cargo metadata gave no dependency graph"))?;
    let name_of = |id: &cargo_metadata::PackageId| metadata.packages.iter().find(|p| &p.id == id).map(|p| &p.name);
    let kernel = resolve
        .nodes
        .iter()
        .filter(|node| name_of(&node.id).is_some_and(|n| n.as_str() == FACADE))
        .flat_map(|node| node.deps.iter())
        .find(|dep| name_of(&dep.pkg).is_some_and(|n| n.as_str() == KERNEL_PACKAGE))
        .and_then(|dep| metadata.packages.iter().find(|p| p.id == dep.pkg))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Cargo,
                format!("with --features {feature}, {FACADE} does not depend on {KERNEL_PACKAGE}: is {FACADE} 0.1 or later?"),
            )
        })?;
    kernel.manifest_path.parent().map(|dir| dir.as_std_path().to_path_buf()).ok_or_else(|| {
        Error::new(ErrorKind::Cargo, format!("{KERNEL_PACKAGE}'s manifest {} has no directory", kernel.manifest_path))
    })
}

/// A build of an application for a target; [`build`] with the common
/// options.
#[derive(Clone, Debug)]
pub struct Build {
    manifest_path: PathBuf,
    bin: Option<String>,
    target: Target,
    release: bool,
    target_dir: Option<PathBuf>,
    quiet: bool,
}

impl Build {
    /// Builds the package of `manifest_path` for `target` (dev profile for
    /// unix).
    pub fn new(manifest_path: &Path, target: Target) -> Build {
        Build {
            manifest_path: manifest_path.to_path_buf(),
            bin: None,
            target,
            release: false,
            target_dir: None,
            quiet: false,
        }
    }

    /// The binary to build (default: the only one, or the package's name).
    pub fn bin(mut self, bin: Option<&str>) -> Build {
        self.bin = bin.map(str::to_string);
        self
    }

    /// With unix, the release profile; no effect on images.
    pub fn release(mut self, release: bool) -> Build {
        self.release = release;
        self
    }

    /// Builds in `dir` instead of the package's target directory.
    pub fn target_dir(mut self, dir: &Path) -> Build {
        self.target_dir = Some(dir.to_path_buf());
        self
    }

    /// Passes `--quiet` to cargo (errors are still printed).
    pub fn quiet(mut self, quiet: bool) -> Build {
        self.quiet = quiet;
        self
    }

    /// The cargo command for `app`; `linker_script` for an image.
    pub fn command(&self, app: &App, linker_script: Option<&Path>) -> Command {
        let mut command = cargo();
        let profile = self.target.profile();
        command.arg(if profile.is_some() { "rustc" } else { "build" });
        command.arg("--manifest-path").arg(&app.manifest_path).args(["--bin", &app.bin]);
        command.args(["--message-format", "json-render-diagnostics"]);
        if let Some(dir) = &self.target_dir {
            command.arg("--target-dir").arg(dir);
        }
        if self.quiet {
            command.arg("--quiet");
        }
        let Some(profile) = profile else {
            if self.release {
                command.arg("--release");
            }
            return command;
        };
        command.args(["--target", KERNEL_TRIPLE, "--features", &format!("{}/{}", app.facade, self.target.name())]);
        for setting in [
            "inherits=\"release\"",
            "panic=\"abort\"",
            "opt-level=\"s\"",
            "debug=0",
            "lto=true",
            "codegen-units=1",
            "strip=\"symbols\"",
        ] {
            command.args(["--config", &format!("profile.{profile}.{setting}")]);
        }
        match inherited_rustflags() {
            Some(mut flags) => {
                flags.push("-Cpanic=abort".into());
                command.env_remove("RUSTFLAGS").env("CARGO_ENCODED_RUSTFLAGS", flags.join(&OsString::from("\x1f")));
            }
            None => {
                command.args(["--config", &format!("target.{KERNEL_TRIPLE}.rustflags=[\"-Cpanic=abort\"]")]);
            }
        }
        command.args(["--profile", &profile, "--"]);
        for arg in KERNEL_LINK_ARGS {
            command.args(["-C", &format!("link-arg={arg}")]);
        }
        if let Some(script) = linker_script {
            let mut arg = OsString::from("link-arg=-T");
            arg.push(script);
            command.arg("-C").arg(arg);
        }
        command
    }

    /// Builds, with cargo's progress on stderr, and returns the artifact.
    pub fn run(&self) -> Result<Image, Error> {
        let app = inspect(&self.manifest_path, self.bin.as_deref())?;
        let script = match self.target.is_kernel() {
            true => Some(linker_script(&app, self.target)?),
            false => None,
        };
        let mut command = self.command(&app, script.as_deref());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| Error::io(format!("cannot start cargo ({:?})", command.get_program()), e))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::new(ErrorKind::Cargo, "cargo's output is not piped"))?;
        let mut executable = None;
        for message in Message::parse_stream(BufReader::new(stdout)) {
            let message = message.map_err(|e| Error::io("reading cargo's messages", e))?;
            if let Message::CompilerArtifact(artifact) = message {
                if artifact.target.name == app.bin && artifact.target.kind.contains(&TargetKind::Bin) {
                    executable = artifact.executable.map(|p| p.into_std_path_buf());
                }
            }
        }
        let status = child.wait().map_err(|e| Error::io("waiting for cargo", e))?;
        if !status.success() {
            return Err(Error::new(
                ErrorKind::Cargo,
                format!("building {} for {} failed ({status}); cargo's errors are above", app.bin, self.target),
            ));
        }
        let path = executable.ok_or_else(|| {
            Error::new(
                ErrorKind::Cargo,
                format!("cargo built no executable named {} (its messages named none)", app.bin),
            )
        })?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(path.display(), e))?.len();
        Ok(Image { path, size, target: self.target, package: app.package, bin: app.bin })
    }
}

/// The flags of `CARGO_ENCODED_RUSTFLAGS` or `RUSTFLAGS`, if either is set
/// (they override the configuration's target rustflags).
fn inherited_rustflags() -> Option<Vec<OsString>> {
    if let Some(encoded) = std::env::var_os("CARGO_ENCODED_RUSTFLAGS") {
        let text = encoded.to_string_lossy().into_owned();
        return Some(text.split('\x1f').filter(|f| !f.is_empty()).map(OsString::from).collect());
    }
    let flags = std::env::var_os("RUSTFLAGS")?;
    Some(flags.to_string_lossy().split_whitespace().map(OsString::from).collect())
}

/// Builds the binary `bin` (default: the package's only one, or the one
/// named like it) of the package in `manifest_path` for `target` and
/// returns the artifact. `release` picks cargo's release profile for a
/// unix build; images always use their own profile. See the [module
/// documentation](self).
pub fn build(manifest_path: &Path, bin: Option<&str>, target: Target, release: bool) -> Result<Image, Error> {
    Build::new(manifest_path, target).bin(bin).release(release).run()
}

/// What a kernel image runs with where it is deployed: the libvirt domain
/// (virtio) or xl configuration (xen) [`write_guest_config`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestConfig {
    /// virtio: a virtio-net device on this host TAP interface; xen: the
    /// name of the vif's dom0 end.
    pub tap: Option<String>,
    /// Raw disk images, in order (they must exist).
    pub disks: Vec<crate::Disk>,
    /// The guest's memory in MiB (default: 256 for virtio, 32 for xen).
    pub memory_mib: Option<u32>,
    /// The application's command line, after the disks' `--block` flags.
    pub args: Vec<String>,
}

/// Writes the libvirt domain (virtio: `IMAGE.xml`, console in
/// `IMAGE.console.log`) or the xl configuration (xen: `IMAGE.cfg`) of
/// `image` beside it and returns its path and how to use it; `None` for
/// unix, for which a non-empty `config` is refused (a program takes its
/// devices when it runs).
pub fn write_guest_config(image: &Image, config: &GuestConfig) -> Result<Option<(PathBuf, String)>, Error> {
    let mut disks = Vec::new();
    for disk in &config.disks {
        disk.check()?;
        let path = std::fs::canonicalize(&disk.path).map_err(|e| Error::io(disk.path.display(), e))?;
        disks.push(crate::Disk { name: disk.name.clone(), path });
    }
    let tap = config.tap.as_deref();
    let (path, text, how) = match image.target {
        Target::Unix => {
            if *config != GuestConfig::default() {
                return Err(Error::new(
                    ErrorKind::BadArgument,
                    "--tap, --disk, --memory and arguments describe a guest: they apply to -t virtio and -t xen \
                     builds (a unix program takes its devices when it runs: cargo mirage run -t unix)",
                ));
            }
            return Ok(None);
        }
        Target::Virtio => {
            let path = image.path.with_extension("xml");
            let console_log = image.path.with_extension("console.log");
            let text = crate::libvirt::domain_xml(&crate::libvirt::Domain {
                name: &image.bin,
                image: &image.path,
                memory_mib: config.memory_mib.unwrap_or(crate::qemu::DEFAULT_MEMORY_MIB),
                disks: &disks,
                tap,
                console_log: &console_log,
                args: &config.args,
            })?;
            let how = format!(
                "libvirt: virsh -c qemu:///system define {} && virsh -c qemu:///system start {}; console in {}",
                shown(&path),
                image.bin,
                shown(&console_log)
            );
            (path, text, how)
        }
        Target::Xen => {
            let path = image.path.with_extension("cfg");
            let text = crate::xl::config(&crate::xl::Config {
                name: &image.bin,
                kernel: &image.path,
                memory_mib: config.memory_mib.unwrap_or(crate::xl::DEFAULT_MEMORY_MIB),
                disks: &disks,
                vif: tap,
                args: &config.args,
            })?;
            let how = format!("on a Xen host: xl create {} -c", shown(&path));
            (path, text, how)
        }
    };
    std::fs::write(&path, text).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(Some((path, how)))
}

/// `path` for a message: relative to the current directory when under it.
pub fn shown(path: &Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    relative.unwrap_or_else(|| path.to_path_buf()).display().to_string()
}

/// The words of `command` (its arguments), for tests.
#[cfg(test)]
pub(crate) fn words(command: &Command) -> Vec<String> {
    command.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// Whether `words` holds `first` immediately followed by `second`.
#[cfg(test)]
pub(crate) fn has_pair(words: &[String], first: &str, second: impl AsRef<std::ffi::OsStr>) -> bool {
    let second = second.as_ref().to_string_lossy();
    words.windows(2).any(|w| w[0] == first && w[1] == second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App {
            manifest_path: "/a/Cargo.toml".into(),
            package: "greeter".into(),
            bin: "greeter".into(),
            facade: "mirage-rs".into(),
            target_directory: "/a/target".into(),
        }
    }

    #[test]
    fn targets_name_their_profiles() {
        assert_eq!(Target::Unix.profile(), None);
        assert_eq!(Target::Virtio.profile().as_deref(), Some("mirage-virtio"));
        assert_eq!(Target::Xen.profile().as_deref(), Some("mirage-xen"));
        assert_eq!("xen".parse::<Target>(), Ok(Target::Xen));
        assert_eq!("bsd".parse::<Target>().unwrap_err().kind(), ErrorKind::BadArgument);
    }

    #[test]
    fn a_unix_build_is_cargo_build() {
        let build = Build::new(Path::new("/a/Cargo.toml"), Target::Unix).release(true);
        let words = words(&build.command(&app(), None));
        assert_eq!(words[0], "build");
        assert!(has_pair(&words, "--bin", "greeter") && words.contains(&"--release".to_string()), "{words:?}");
        assert!(!words.iter().any(|w| w.contains("panic") || w == "--target"), "{words:?}");
    }

    #[test]
    fn an_image_build_is_cargo_rustc_with_the_profile_and_the_link_arguments() {
        let build = Build::new(Path::new("/a/Cargo.toml"), Target::Xen).target_dir(Path::new("/t")).quiet(true);
        let command = build.command(&app(), Some(Path::new("/k/kernel.ld")));
        let words = words(&command);
        assert_eq!(words[0], "rustc");
        for (first, second) in [
            ("--target", KERNEL_TRIPLE),
            ("--features", "mirage-rs/xen"),
            ("--profile", "mirage-xen"),
            ("--target-dir", "/t"),
            ("--config", "profile.mirage-xen.panic=\"abort\""),
            ("--config", "profile.mirage-xen.inherits=\"release\""),
            ("--config", "profile.mirage-xen.lto=true"),
            ("-C", "link-arg=-T/k/kernel.ld"),
            ("-C", "link-arg=-nostdlib"),
        ] {
            assert!(has_pair(&words, first, second), "{first} {second} missing: {words:?}");
        }
        assert!(words.contains(&"--quiet".to_string()));
        // The link arguments go to rustc for the binary only: after `--`.
        let separator = words.iter().position(|w| w == "--").unwrap();
        assert!(words.iter().position(|w| w == "link-arg=-static").unwrap() > separator);
        let rustflags = words.iter().any(|w| w == "target.x86_64-unknown-linux-gnu.rustflags=[\"-Cpanic=abort\"]");
        let encoded = command.get_envs().any(|(k, v)| {
            k == "CARGO_ENCODED_RUSTFLAGS" && v.is_some_and(|v| v.to_string_lossy().ends_with("-Cpanic=abort"))
        });
        assert!(rustflags || encoded, "{words:?}");
    }

    #[test]
    fn a_renamed_facade_carries_the_feature() {
        let app = App { facade: "mirage".into(), ..app() };
        let words = words(&Build::new(Path::new("/a/Cargo.toml"), Target::Virtio).command(&app, None));
        assert!(has_pair(&words, "--features", "mirage/virtio"), "{words:?}");
    }

    #[test]
    fn no_manifest_says_what_to_do() {
        let e = find_manifest(Path::new("/")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotACrate);
        assert!(e.message().contains("cargo mirage new"), "{e}");
        let e = inspect(Path::new("/nonexistent/Cargo.toml"), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotACrate);
    }

    #[test]
    fn this_workspace_resolves_the_kernel_linker_script() {
        // The hello example depends on mirage-rs by path.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/Cargo.toml");
        let app = inspect(&manifest, None).unwrap();
        assert_eq!((app.package.as_str(), app.bin.as_str(), app.facade.as_str()), ("hello", "hello", "mirage-rs"));
        let script = linker_script(&app, Target::Virtio).unwrap();
        assert!(script.ends_with("kernel/kernel.ld"), "{}", script.display());
        let e = inspect(&manifest, Some("nope")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoBinary);
    }

    #[test]
    fn a_package_without_mirage_rs_or_a_binary_is_told_what_to_add() {
        // This very package: no mirage-rs dependency.
        let e = inspect(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NoMirageDependency);
        assert!(e.message().contains("mirage-rs = \"0.1\"") && e.message().contains("mirage::main!"), "{e}");
    }
}
