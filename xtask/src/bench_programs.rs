//! `cargo xtask bench udp|checksum|tcp|block`: the benchmark programs of
//! the workspace, built in release and run through cargo, each writing its
//! own section of `docs/benchmarks.md` (replacing the previous run's).
//!
//! The programs measure and print; this module installs what they need,
//! prints the exact command it runs, and records the output with the
//! command, the date and the load on the machine.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::bench_report::{as_markdown, columns_to_markdown, load_note, utc_now, write_section};
use crate::{apt, cargo, workspace_root, TaskError};

/// Seconds each UDP round runs (the programs' `--seconds`).
const UDP_SECONDS: &str = "2";

/// A benchmark program, run as `cargo ARGS` from the workspace root.
struct Program {
    args: &'static [&'static str],
}

impl Program {
    fn command_line(&self) -> String {
        format!("cargo {}", self.args.join(" "))
    }

    /// Runs it, showing its output as it comes; returns the standard
    /// output. Cargo's progress (standard error) goes to the terminal.
    fn run(&self) -> Result<String, TaskError> {
        let line = self.command_line();
        println!("==> {line}");
        let out = cargo()
            .args(self.args)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {line}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        if !out.status.success() {
            return Err(format!("{line} failed ({}); its error is above", out.status));
        }
        Ok(stdout)
    }
}

const UDP_IN_MEMORY: Program = Program {
    args: &[
        "run",
        "--release",
        "-p",
        "mirage-net-stack",
        "--features",
        "test-utils",
        "--example",
        "udp_bench",
        "--",
        "--seconds",
        UDP_SECONDS,
    ],
};

const UDP_TAP: Program = Program {
    args: &[
        "run",
        "--release",
        "-p",
        "mirage-net-stack-linux-tests",
        "--bin",
        "udp_tap_bench",
        "--",
        "--seconds",
        UDP_SECONDS,
    ],
};

const CHECKSUM: Program =
    Program { args: &["run", "--release", "-p", "mirage-net-stack", "--example", "checksum_bench"] };

const TCP: Program = Program {
    args: &["run", "--release", "-p", "mirage-net-stack", "--features", "test-utils", "--example", "tcp_bench"],
};

/// Part 3 of the TCP benchmark in memory: request/response between two
/// of our cores beside two smoltcp interfaces.
const TCP_RR: Program = Program { args: &["run", "--release", "-p", "mirage-net-stack", "--example", "tcp_rr_bench"] };

/// Parts 2 and 3 of the TCP benchmark: over TAP against Linux, beside
/// smoltcp on TAP and Linux over veth, and request/response.
const TCP_TAP: Program =
    Program { args: &["run", "--release", "-p", "mirage-net-stack-linux-tests", "--bin", "tcp_tap_bench"] };

const BLOCK: Program = Program { args: &["run", "--release", "-p", "mirage-kv", "--bin", "block-bench"] };

/// The columns checksum_bench prints (their names hold spaces, so they
/// cannot be split out of its header line).
const CHECKSUM_COLUMNS: [&str; 4] = ["bytes", "checksum GB/s", "16-bit GB/s (RFC 1071 loop)", "memcpy GB/s"];

/// Why the TAP halves of the UDP and TCP benchmarks cannot run here, if
/// they cannot.
fn tap_unavailable() -> Option<String> {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Some("it needs root (to create a network namespace and a TAP device); run as root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is absent (no TUN/TAP driver)".into());
    }
    None
}

/// Fails with a message naming the missing program, if `path` (relative
/// to the workspace) does not exist.
fn require(path: &str, what: &str) -> Result<(), TaskError> {
    if workspace_root().join(path).is_file() {
        Ok(())
    } else {
        Err(format!("{what} does not exist yet: {path} is missing, so there is nothing to run"))
    }
}

/// The section of `heading`: the description, then the run's date, the
/// load note and each command with its output.
fn section(heading: &str, description: &str, load: &str, runs: &[(String, String)], notes: &[String]) -> String {
    let mut text = format!("## {heading}\n\n{}\n\n### {}\n\n{load}\n", description.trim(), utc_now());
    for (command, output) in runs {
        text.push_str(&format!("\n`{command}`:\n\n{}", as_markdown(output)));
    }
    for note in notes {
        text.push_str(&format!("\n{note}\n"));
    }
    text
}

fn record(heading: &str, section: &str) -> Result<ExitCode, TaskError> {
    write_section(&workspace_root().join("docs/benchmarks.md"), heading, section)?;
    println!("\nwrote the `## {heading}` section of docs/benchmarks.md");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn udp() -> Result<ExitCode, TaskError> {
    let load = load_note();
    let mut runs = vec![(UDP_IN_MEMORY.command_line(), UDP_IN_MEMORY.run()?)];
    let mut notes = Vec::new();
    match tap_unavailable() {
        Some(reason) => {
            let note = format!("The TAP half (`{}`) was skipped: {reason}.", UDP_TAP.command_line());
            println!("\n{note}");
            notes.push(note);
        }
        None => {
            apt::ensure(&["iproute2"])?;
            runs.push((UDP_TAP.command_line(), UDP_TAP.run()?));
        }
    }
    let description = "\
UDP echo, one datagram in flight, 64-byte payloads: round trips per second and
the median and 99th-percentile round-trip time, each path beside a raw
reflector (a loop that swaps addresses and ports and sends the frame back, with
no stack) measured in the same run; \"ratio to raw\" is round trips/s over the
raw reflector's. In memory, two of our stacks on the virtual switch, timed by
the wall clock while virtual time stands still, so the figures are the CPU cost
of the stacks, the switch and the executor (net-stack/examples/udp_bench.rs).
Over TAP, our stack against the Linux kernel in a network namespace
(net-stack/linux-tests/src/bin/udp_tap_bench.rs). Command: `cargo xtask bench udp`.";
    record("udp", &section("udp", description, &load, &runs, &notes))
}

pub(crate) fn checksum() -> Result<ExitCode, TaskError> {
    let load = load_note();
    let output = CHECKSUM.run()?;
    let table = columns_to_markdown(&output, &CHECKSUM_COLUMNS).ok_or_else(|| {
        format!("cannot read checksum_bench's table (expected {} columns per row)", CHECKSUM_COLUMNS.len())
    })?;
    let description = "\
Throughput of the Internet checksum (`wire::checksum::data`) beside a plain
RFC 1071 loop over 16-bit words and beside `copy_from_slice` (memcpy) of the
same buffer, at an odd offset, best of three runs of 1 GiB each
(net-stack/examples/checksum_bench.rs). Command: `cargo xtask bench checksum`.";
    record("checksum", &section("checksum", description, &load, &[(CHECKSUM.command_line(), table)], &[]))
}

pub(crate) fn tcp() -> Result<ExitCode, TaskError> {
    require("net-stack/examples/tcp_bench.rs", "the TCP benchmark (net-stack example tcp_bench)")?;
    let load = load_note();
    let mut runs = vec![(TCP.command_line(), TCP.run()?)];
    require("net-stack/examples/tcp_rr_bench.rs", "the request/response benchmark (net-stack example tcp_rr_bench)")?;
    runs.push((TCP_RR.command_line(), TCP_RR.run()?));
    let mut notes = Vec::new();
    match tap_unavailable() {
        Some(reason) => {
            let note = format!("Parts 2 and 3 (`{}`) were skipped: {reason}.", TCP_TAP.command_line());
            println!("\n{note}");
            notes.push(note);
        }
        None => {
            // ethtool switches the offloads off on the kernel's ends.
            apt::ensure(&["iproute2", "ethtool"])?;
            runs.push((TCP_TAP.command_line(), TCP_TAP.run()?));
        }
    }
    let description = "\
1. Bulk TCP throughput of our sans-IO TCP core in both directions beside
smoltcp, in one process over an in-memory, lossless IPv4 link with MTU 1500
(checksums emitted and verified), with CPU time and heap allocations per
segment (net-stack/examples/tcp_bench.rs, whose documentation gives the
details).
3. in memory: request/response transactions per second with 1-byte messages
between the same two cores beside two smoltcp interfaces, over the same kind of
link (net-stack/examples/tcp_rr_bench.rs).
2. and 3. against the Linux kernel in a network namespace, MTU 1500, checksums
on, TSO/GSO/GRO and checksum offload off on the kernel's ends: our `NetStack`
on a TAP device beside smoltcp on its own TAP device and beside Linux to Linux
over a veth pair (the ceiling), bulk throughput both ways and request/response
transactions per second with 1-byte messages, with the CPU time of the stack's
thread per byte or transaction (from its CPU clock, CLOCK_THREAD_CPUTIME_ID, standing in
for instructions per byte, which perf cannot count in this VM; it includes the
TAP system calls) (net-stack/linux-tests/src/bin/tcp_tap_bench.rs).
Command: `cargo xtask bench tcp`.";
    record("tcp", &section("tcp", description, &load, &runs, &notes))
}

pub(crate) fn block() -> Result<ExitCode, TaskError> {
    require("tools/mirage-kv/src/bin/block-bench.rs", "the block benchmark (mirage-kv's block-bench binary)")?;
    apt::ensure(&["fio"])?;
    let load = load_note();
    let output = BLOCK.run()?;
    let description = "\
Block device and key-value store throughput on the host
(tools/mirage-kv/src/bin/block-bench.rs): `FileBlock` and `Cache` at queue
depths 1 and 16 beside fio on the same file, and LogKv beside a durable
file-per-key store. Command: `cargo xtask bench block`.";
    record("block", &section("block", description, &load, &[(BLOCK.command_line(), output)], &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_typed() {
        assert_eq!(
            UDP_IN_MEMORY.command_line(),
            "cargo run --release -p mirage-net-stack --features test-utils --example udp_bench -- --seconds 2"
        );
        assert_eq!(CHECKSUM.command_line(), "cargo run --release -p mirage-net-stack --example checksum_bench");
        assert_eq!(TCP_TAP.command_line(), "cargo run --release -p mirage-net-stack-linux-tests --bin tcp_tap_bench");
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = require("net-stack/examples/no_such_bench.rs", "the thing").unwrap_err();
        assert!(e.contains("the thing") && e.contains("net-stack/examples/no_such_bench.rs"), "{e}");
        assert!(require("net-stack/examples/checksum_bench.rs", "checksum").is_ok());
    }

    #[test]
    fn a_section_holds_heading_commands_outputs_and_notes() {
        let runs = vec![("cargo run x".to_string(), "| a |\n|---|\n| 1 |\n".to_string())];
        let text = section("udp", "About.\n", "Load 0.1.", &runs, &["Skipped: why.".into()]);
        assert!(text.starts_with("## udp\n\nAbout.\n\n### "), "{text}");
        let order = ["Load 0.1.", "`cargo run x`:", "| 1 |", "Skipped: why."].map(|s| text.find(s).unwrap());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn the_checksum_columns_match_the_program() {
        let source = std::fs::read_to_string(workspace_root().join("net-stack/examples/checksum_bench.rs")).unwrap();
        // Its header has one format field per column.
        let header = source.lines().find(|l| l.contains("\"bytes\"")).unwrap();
        assert_eq!(header.matches("{:>").count(), CHECKSUM_COLUMNS.len(), "{header}");
    }
}
