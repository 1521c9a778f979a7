//! `cargo xtask xen prepare|dom0 IMAGE|domu IMAGE`: the Xen harness of
//! `cargo_mirage::xen` (Xen 4.17 with Debian's packages under QEMU TCG),
//! kept in the workspace's `target/xen-harness`.
//!
//! - `prepare` installs QEMU >= 10 if needed and downloads and unpacks Xen,
//!   Linux and the toolstack (once; delete the directory to redo it).
//! - `dom0 IMAGE [-- ARGS]` boots the image as Xen's PVH dom0 and exits
//!   with the guest's status.
//! - `domu IMAGE [--runs N] [--dom0-script FILE] [--disk NAME=FILE]...
//!   [-- ARGS]` boots Xen with a Linux dom0 that runs the image as a PVH
//!   domU (an 8 MiB blank `xvda` unless disks are given, a vif with dom0 at
//!   10.0.0.1/24) and prints its console between `===== guest console =====`
//!   and `===== end guest console =====`.
//!
//! `cargo xtask run APP --platform xen` builds an example and runs it as
//! such a domU; `cargo xtask build APP --platform xen` writes an xl
//! configuration beside the image for a Xen host of your own.

use std::path::PathBuf;
use std::process::ExitCode;

use cargo_mirage::xen::{DomuOptions, Guest, Harness};

use crate::TaskError;

/// `cargo xtask xen ...`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum XenTask {
    /// Download and unpack Xen, Linux and the toolstack; install QEMU >= 10.
    Prepare,
    /// Boot IMAGE as Xen's PVH dom0; exit with the guest's status.
    Dom0 {
        /// The PVH kernel image (ELF).
        image: PathBuf,
        /// The guest's command line.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot Xen with a Linux dom0 and run IMAGE as a PVH domU; print its console.
    Domu {
        /// The PVH kernel image (ELF).
        image: PathBuf,
        #[command(flatten)]
        options: DomuOptions,
        /// The guest's command line.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

/// Runs a `cargo xtask xen` task.
pub fn task(task: &XenTask) -> Result<ExitCode, TaskError> {
    let harness = Harness::at(&crate::xen_harness_dir());
    let outcome = match task {
        XenTask::Prepare => harness.prepare().map(|()| ExitCode::SUCCESS),
        XenTask::Dom0 { image, args } => harness.dom0(image, args).map(|run| ExitCode::from(run.status)),
        XenTask::Domu { image, options, args } => {
            let guest =
                Guest { image, ramdisk: options.ramdisk.as_deref(), memory_mib: options.memory, args, pv: options.pv };
            harness.domu(&guest, options).map(|_| ExitCode::SUCCESS)
        }
    };
    outcome.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        task: XenTask,
    }

    #[test]
    fn the_tasks_parse() {
        let cli =
            Cli::try_parse_from(["x", "domu", "img", "--runs", "2", "--disk", "d=f", "--", "--ipv4", "a"]).unwrap();
        let XenTask::Domu { options, args, .. } = cli.task else { panic!("not domu") };
        assert_eq!((options.runs, options.disks.len()), (2, 1));
        assert_eq!(args, ["--ipv4", "a"]);
        assert!(Cli::try_parse_from(["x", "domu", "img", "--runs", "9"]).is_err());
        assert!(matches!(Cli::try_parse_from(["x", "prepare"]).unwrap().task, XenTask::Prepare));
    }
}
