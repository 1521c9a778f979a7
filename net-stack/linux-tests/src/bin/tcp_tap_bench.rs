//! TCP against the Linux kernel over TAP: bulk throughput both ways and
//! 1-byte request/response transactions per second, for our stack, for
//! smoltcp on the same kind of TAP device, and for Linux to Linux over a
//! veth pair (the ceiling), all in the same run.
//!
//! ```text
//! cargo run --release -p mirage-net-stack-linux-tests --bin tcp_tap_bench -- \
//!     [--mib MIB] [--seconds S] [--rounds N]
//! ```
//!
//! Needs root, /dev/net/tun and `ip` (Debian package iproute2); `ethtool`
//! (package ethtool) to switch the offloads off, without which they are
//! left as they are and the output says so. The program creates the
//! namespaces `mirage-tbench-PID` and `mirage-tbench2-PID` and deletes them
//! when it ends, also on an error or a first Ctrl-C / SIGTERM (a second one
//! exits at once).
//!
//! # What is measured
//!
//! Three "stacks" are measured against the same Linux peer, a
//! `std::net::TcpStream` in a child process in namespace 1:
//!
//! - **ours**: `mirage-net-stack`'s `NetStack` on `mirage-platform-unix`'s
//!   `TapNetwork`, default configuration (256 KiB buffers, CUBIC, SACK,
//!   timestamps), on tokio's current-thread runtime in this process, as the
//!   TAP interoperation tests run it;
//! - **smoltcp** 0.12: an `Interface` with one TCP socket (256 KiB
//!   buffers, defaults otherwise) on smoltcp's own `TunTapInterface`, driven
//!   by the usual poll / `phy::wait` loop in this process;
//! - **Linux**: a second Linux socket in namespace 2, joined to namespace
//!   1 by a veth pair: the kernel's stack on both ends, the ceiling.
//!
//! The TAP interfaces' and the veth pair's kernel ends have TSO, GSO, GRO
//! and checksum offload switched off (`ethtool -K … tso off gso off gro off
//! tx off rx off`): Linux then builds, checksums and receives one
//! MTU-sized segment at a time, as our stack must. The MTU is 1500 on
//! every link; checksums are computed and verified by every stack.
//!
//! Per stack and round, on a fresh interface (10.83.N.0/24: Linux .1, the
//! stack under test .2), the stack under test opens the connection and:
//!
//! 1. **sends** `--mib` MiB (default 256) to Linux, which times its reading
//!    from `accept` to end of stream;
//! 2. **receives** as much from Linux, timing from the connection's
//!    establishment to the last byte;
//! 3. **request/response**: writes 1 byte, waits for Linux to echo it, and
//!    again, for `--seconds` (default 3) after 1 000 warm-up transactions,
//!    Nagle off on both ends.
//!
//! The stacks take turns, `--rounds` rounds (default 2), and the best round
//! of each figure is shown, since the machine is shared with other work.
//! Every transfer must finish within [`TRANSFER_LIMIT`].
//!
//! For ours and smoltcp the CPU time of the thread that runs the stack is
//! also shown per byte moved (per transaction for request/response), read
//! from the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`, user and system
//! time to the nanosecond; `/proc/thread-self/schedstat` moves in scheduler
//! ticks in this VM). `perf` cannot
//! count instructions in this VM, so this stands in for the instructions
//! per byte of the in-memory benchmark. It includes the system calls that
//! read and write the TAP device (the kernel's copies of each frame) and,
//! for Linux sending to us, the kernel's TCP work when it runs in our
//! thread's system calls: it is the cost of the stack as a process, not of
//! the TCP code alone.
//!
//! The peers are this program again (hidden `peer-…` arguments), started
//! with `ip netns exec`; each exits on its own after [`TRANSFER_LIMIT`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::process::{Child, Command, ExitCode, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack_linux_tests::{iface_name, missing, on_path, sh, KillOnDrop, Netns};
use mirage_platform_unix::tap::TapNetwork;
use mirage_platform_unix::UnixPlatform;
use mirage_types::flow::Flow;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::stack::Stack;
use mirage_types::tcp::{Tcp, TcpFlow};

/// The port the Linux peer listens on.
const PORT: u16 = 5001;
/// Bytes per write and per read buffer, in every stack.
const CHUNK: usize = 64 * 1024;
/// Buffers of the smoltcp socket: the same as our stack's defaults.
const SMOLTCP_BUFFER: usize = 256 * 1024;
/// Longest any one transfer (or request/response run) may take; the
/// peers exit after it too.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
/// Request/response transactions before the timed ones.
const RR_WARM_UP: u64 = 1000;
/// Request/response transactions per run at most, whatever `--seconds`.
const RR_MAX: u64 = 100_000_000;
/// Longest single wait of the smoltcp loop, so it sees the deadline and
/// an interruption in time.
const SMOLTCP_MAX_WAIT: Duration = Duration::from_millis(50);

/// Set by the first SIGINT or SIGTERM: every loop stops, the measurement
/// fails and the namespaces are deleted on the way out.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Turns SIGINT and SIGTERM into [`INTERRUPTED`] (a second one exits at
/// once), on a thread of its own so every loop, blocking or not, only has
/// to look at the flag.
fn watch_signals() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the signal watcher: {e}"))?;
    // Registered here, before the thread starts, so no signal slips
    // through with its default action while the thread sets up.
    let (mut int, mut term) = rt
        .block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            Ok::<_, std::io::Error>((signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?))
        })
        .map_err(|e| format!("watching SIGINT and SIGTERM: {e}"))?;
    std::thread::spawn(move || {
        rt.block_on(async {
            for first in [true, false] {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if first {
                    INTERRUPTED.store(true, Ordering::Relaxed);
                    eprintln!("tcp_tap_bench: interrupted, cleaning up (again to quit at once)");
                } else {
                    std::process::exit(130);
                }
            }
        })
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Figures

/// CPU time of the calling thread (user and system time together), in
/// nanoseconds.
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(u64::try_from(t.tv_sec).ok()? * 1_000_000_000 + u64::try_from(t.tv_nsec).ok()?)
}

/// What one run measured: `amount` bytes or transactions in `elapsed`,
/// and the CPU time of the stack's thread if it is in this process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Measured {
    amount: u64,
    elapsed: Duration,
    cpu: Option<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.amount as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU nanoseconds per byte or transaction.
    fn cpu_per_unit(&self) -> Option<f64> {
        self.cpu.map(|c| c.as_nanos() as f64 / self.amount.max(1) as f64)
    }

    /// The line a peer prints for the parent.
    fn to_line(self) -> String {
        format!("result {} {}", self.amount, self.elapsed.as_nanos())
    }

    /// Reads [`Measured::to_line`]'s line out of a peer's output.
    fn from_output(text: &str) -> Option<Measured> {
        let line = text.lines().find_map(|l| l.strip_prefix("result "))?;
        let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        let [amount, elapsed] = fields[..] else { return None };
        Some(Measured { amount, elapsed: Duration::from_nanos(elapsed), cpu: None })
            .filter(|m| m.amount > 0 && !m.elapsed.is_zero())
    }
}

/// Measures the CPU time of this thread around a run.
struct CpuClock(Option<u64>);

impl CpuClock {
    fn start() -> CpuClock {
        CpuClock(thread_cpu_ns())
    }

    fn stop(self) -> Option<Duration> {
        Some(Duration::from_nanos(thread_cpu_ns()?.checked_sub(self.0?)?))
    }
}

// ---------------------------------------------------------------------------
// Options

#[derive(Debug, Clone, Copy, PartialEq)]
struct Options {
    mib: u64,
    seconds: f64,
    rounds: usize,
    /// Only this subject, if given.
    only: Option<Subject>,
}

const USAGE: &str = "usage: tcp_tap_bench [--mib MIB] [--seconds S] [--rounds N] [--only ours|smoltcp|linux]";

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { mib: 256, seconds: 3.0, rounds: 2, only: None };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let v = args.next().ok_or(format!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--mib" => {
                options.mib = v
                    .parse()
                    .ok()
                    .filter(|m| (1..=16 * 1024).contains(m))
                    .ok_or(format!("--mib {v}: expected a size from 1 to 16384 MiB"))?;
            }
            "--seconds" => {
                options.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 60.0)
                    .ok_or(format!("--seconds {v}: expected a number of seconds in (0, 60]"))?;
            }
            "--rounds" => {
                options.rounds = v
                    .parse()
                    .ok()
                    .filter(|r| (1..=20).contains(r))
                    .ok_or(format!("--rounds {v}: expected a number from 1 to 20"))?;
            }
            "--only" => {
                options.only = Some(match v.as_str() {
                    "ours" => Subject::Ours,
                    "smoltcp" => Subject::Smoltcp,
                    "linux" => Subject::Linux,
                    _ => return Err(format!("--only {v}: expected ours, smoltcp or linux")),
                });
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some(peer) if peer.starts_with("peer-") => run_peer(peer, &args[1..]),
        _ => parse_options(&args).and_then(|options| bench(&options)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcp_tap_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The Linux peers, run inside a namespace with plain std sockets

/// `peer-KIND ARGS…`: one Linux endpoint; each bounded by [`TRANSFER_LIMIT`].
///
/// - `peer-sink`, `peer-source BYTES`, `peer-echo`: listen on [`PORT`],
///   print `listening`, accept one connection, then read to end of stream
///   (and print the `result`), send BYTES and close, or echo;
/// - `peer-connect-sink ADDR`, `peer-connect-source ADDR BYTES`,
///   `peer-connect-rr ADDR SECONDS`: the same from the connecting side,
///   for Linux as the stack under test (`rr` prints the `result`).
fn run_peer(kind: &str, args: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + TRANSFER_LIMIT;
    let number = |s: &String| s.parse::<u64>().map_err(|e| format!("{kind}: {s:?}: {e}"));
    let addr = |s: &String| s.parse::<SocketAddr>().map_err(|e| format!("{kind}: {s:?}: {e}"));
    let result = match (kind, args) {
        ("peer-sink", []) => Some(sink(accept_one(deadline)?, deadline)?),
        ("peer-source", [bytes]) => {
            source(accept_one(deadline)?, number(bytes)?, deadline)?;
            None
        }
        ("peer-echo", []) => {
            echo(accept_one(deadline)?, deadline)?;
            None
        }
        ("peer-connect-sink", [to]) => Some(sink(connect(addr(to)?)?, deadline)?),
        ("peer-connect-source", [to, bytes]) => {
            source(connect(addr(to)?)?, number(bytes)?, deadline)?;
            None
        }
        ("peer-connect-rr", [to, seconds]) => {
            let seconds: f64 = seconds.parse().map_err(|e| format!("{kind}: {seconds:?}: {e}"))?;
            Some(request_response(connect(addr(to)?)?, Duration::from_secs_f64(seconds), deadline)?)
        }
        _ => return Err(format!("unknown peer command {kind} {args:?}")),
    };
    if let Some(m) = result {
        println!("{}", m.to_line());
    }
    Ok(())
}

/// Listens on [`PORT`], says so on stdout, and accepts one connection
/// before `deadline`.
fn accept_one(deadline: Instant) -> Result<TcpStream, String> {
    let listener = StdTcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).map_err(|e| format!("bind {PORT}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    println!("listening");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // Each pass waits a millisecond for the connection, up to the deadline.
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => return prepare(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
    Err("no connection came".into())
}

fn connect(to: SocketAddr) -> Result<TcpStream, String> {
    prepare(TcpStream::connect_timeout(&to, Duration::from_secs(10)).map_err(|e| format!("connect to {to}: {e}"))?)
}

/// Blocking, Nagle off (it matters only for request/response), and no
/// single call blocks past the transfer limit.
fn prepare(stream: TcpStream) -> Result<TcpStream, String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(TRANSFER_LIMIT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TRANSFER_LIMIT)).map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads to end of stream; the time runs from now (just after the
/// connection is established) to the last byte.
fn sink(mut stream: TcpStream, deadline: Instant) -> Result<Measured, String> {
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    let mut total = 0u64;
    let mut end = start;
    // Each pass reads what has arrived; it ends at end of stream.
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(Measured { amount: total, elapsed: end - start, cpu: None }),
            Ok(n) => {
                total += n as u64;
                end = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {total} bytes: {e}")),
        }
    }
    Err(format!("the transfer did not end within {TRANSFER_LIMIT:?} ({total} bytes read)"))
}

/// Sends `bytes` of the pattern, closes its sending half and waits for
/// the other side's end of stream.
fn source(mut stream: TcpStream, bytes: u64, deadline: Instant) -> Result<(), String> {
    let data = mirage_testkit::pattern(1, CHUNK);
    let mut sent = 0u64;
    while sent < bytes && Instant::now() < deadline {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        stream.write_all(&data[..n]).map_err(|e| format!("write after {sent} bytes: {e}"))?;
        sent += n as u64;
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    // The other side sends nothing; this waits for its FIN.
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if sent < bytes {
        return Err(format!("sent only {sent} of {bytes} bytes within {TRANSFER_LIMIT:?}"));
    }
    Ok(())
}

/// Sends back whatever arrives, until end of stream.
fn echo(mut stream: TcpStream, deadline: Instant) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => stream.write_all(&buf[..n]).map_err(|e| format!("echo write: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo read: {e}")),
        }
    }
    Ok(())
}

/// 1-byte transactions against an echo: [`RR_WARM_UP`] untimed, then as
/// many as fit in `duration`.
fn request_response(mut stream: TcpStream, duration: Duration, deadline: Instant) -> Result<Measured, String> {
    let mut byte = [0u8; 1];
    let mut exchange = |n: u64| -> Result<(), String> {
        stream.write_all(&[n as u8]).map_err(|e| format!("request {n}: {e}"))?;
        stream.read_exact(&mut byte).map_err(|e| format!("response {n}: {e}"))?;
        if byte[0] != n as u8 {
            return Err(format!("response {n} carried {} instead", byte[0]));
        }
        Ok(())
    };
    for n in 0..RR_WARM_UP {
        exchange(n)?;
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < duration && n < RR_MAX && Instant::now() < deadline {
        exchange(n)?;
        n += 1;
    }
    Ok(Measured { amount: n, elapsed: start.elapsed(), cpu: None })
}

/// A Linux peer process in a namespace, killed if still running when
/// dropped.
struct Peer {
    child: KillOnDrop,
    what: String,
}

impl Peer {
    /// Starts `peer-…` `args` in `ns`; for a listening peer, waits for it
    /// to say it listens.
    fn start(ns: &str, args: &[&str], listens: bool) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this program to run its peer: {e}"))?;
        let what = format!("the Linux peer `{}` in {ns}", args.join(" "));
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {what}: {e}"))?;
        let mut peer = Peer { child: KillOnDrop(child), what };
        if listens {
            let mut line = String::new();
            if let Some(stdout) = peer.child.0.stdout.as_mut() {
                // One line, which the peer prints right after `bind` (it
                // prints nothing more before we connect, so the reader's
                // buffer takes nothing else).
                let _ = BufReader::new(stdout.by_ref().take(64)).read_line(&mut line);
            }
            if line.trim() != "listening" {
                let (_, stderr, status) = peer.finish_raw();
                return Err(format!("{} did not start listening ({status}): {}", peer.what, stderr.trim()));
            }
        }
        Ok(peer)
    }

    /// Waits for the peer to exit (it does within [`TRANSFER_LIMIT`]);
    /// returns its stdout, stderr and exit status.
    fn finish_raw(&mut self) -> (String, String, String) {
        let child: &mut Child = &mut self.child.0;
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        let status = match child.wait() {
            Ok(status) if status.success() => String::new(),
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        (out, err, status)
    }

    /// Waits for the peer to exit successfully; returns its `result`, if
    /// it printed one.
    fn finish(mut self) -> Result<Option<Measured>, String> {
        let (out, err, status) = self.finish_raw();
        if !status.is_empty() {
            return Err(format!("{} failed ({status}): {}", self.what, err.trim()));
        }
        Ok(Measured::from_output(&out))
    }

    /// [`Peer::finish`], expecting a `result`.
    fn result(self) -> Result<Measured, String> {
        let what = self.what.clone();
        self.finish()?.ok_or(format!("{what} printed no result"))
    }
}

// ---------------------------------------------------------------------------
// The benchmark, in the initial namespace

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Subject {
    Ours,
    Smoltcp,
    Linux,
}

impl Subject {
    const ALL: [Subject; 3] = [Subject::Ours, Subject::Smoltcp, Subject::Linux];
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Test {
    Send,
    Receive,
    RequestResponse,
}

impl Test {
    const ALL: [Test; 3] = [Test::Send, Test::Receive, Test::RequestResponse];

    /// The peer in namespace 1 that this test needs.
    fn peer_args(self, bytes: &str) -> Vec<&str> {
        match self {
            Test::Send => vec!["peer-sink"],
            Test::Receive => vec!["peer-source", bytes],
            Test::RequestResponse => vec!["peer-echo"],
        }
    }
}

/// The best figure of each (subject, test), or the last error.
type Table = [[Option<Result<Measured, String>>; 3]; 3];

fn bench(options: &Options) -> Result<(), String> {
    if let Some(reason) = missing(&[]) {
        return Err(format!("cannot run: {reason}"));
    }
    watch_signals()?;
    let ns = Netns::new("mirage-tbench").map_err(|e| format!("creating a network namespace (needs root): {e}"))?;
    let ns2 = Netns::new("mirage-tbench2").map_err(|e| format!("creating a network namespace: {e}"))?;
    let ethtool = on_path("ethtool");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let mut table: Table = Default::default();
    let mut net = 0u8;
    for _ in 0..options.rounds {
        for (s, subject) in Subject::ALL.into_iter().enumerate() {
            if options.only.is_some_and(|only| only != subject) {
                continue;
            }
            net += 1;
            let round = match subject {
                Subject::Ours => local.block_on(&rt, ours(&ns, net, ethtool, options)),
                Subject::Smoltcp => smoltcp(&ns, net, ethtool, options),
                Subject::Linux => linux(&ns, &ns2, net, ethtool, options),
            };
            if interrupted() {
                return Err("interrupted".into());
            }
            for (t, result) in round.into_iter().enumerate() {
                let best = &mut table[s][t];
                match (result, &best) {
                    (Ok(m), Some(Ok(b))) if m.rate() <= b.rate() => {}
                    (Err(_), Some(Ok(_))) => {}
                    (result, _) => *best = Some(result),
                }
            }
        }
    }
    print_table(&table, options, ethtool);
    Ok(())
}

/// Turns the offloads off on `iface` in `ns`, if ethtool is there.
fn offloads_off(ns: &Netns, iface: &str, ethtool: bool) -> Result<(), String> {
    if ethtool {
        ns.exec(&["ethtool", "-K", iface, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off"])?;
    }
    Ok(())
}

/// Addresses of round `net`: Linux's, and the stack under test's.
fn addresses(net: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(10, 83, net, 1), Ipv4Addr::new(10, 83, net, 2))
}

/// What a round yields for each test, in [`Test::ALL`]'s order.
type Round = [Result<Measured, String>; 3];

/// A set-up failure fails every test of the round.
fn failed(e: String) -> Round {
    [Err(e.clone()), Err(e.clone()), Err(e)]
}

// ---- Ours ----------------------------------------------------------------------

async fn ours(ns: &Netns, net: u8, ethtool: bool, options: &Options) -> Round {
    let (linux, us) = addresses(net);
    let iface = iface_name(&format!("t{net}"));
    let stack = async {
        let tap = ns.tap(&iface, &format!("{linux}/24"))?;
        offloads_off(ns, &iface, ethtool)?;
        let address = Ipv4Cidr::new(us, 24).ok_or(format!("{us}/24 is not a valid IPv4 network"))?;
        let stack = StackBuilder::new(tap, UnixPlatform::new(Vec::new()))
            .ipv4(Ipv4Config { address, gateway: None })
            .build()
            .await
            .map_err(|e| format!("building our stack at {us}: {e}"))?;
        Ok::<_, String>(Rc::new(stack))
    };
    let stack = match stack.await {
        Ok(stack) => stack,
        Err(e) => return failed(e),
    };
    let runner = stack.clone();
    let runner = tokio::task::spawn_local(async move { runner.run().await });
    let mut round = failed("not run".into());
    for (slot, test) in round.iter_mut().zip(Test::ALL) {
        let bytes = options.mib << 20;
        let work = ours_test(&stack, ns.name(), SocketAddr::from((linux, PORT)), test, bytes, options.seconds);
        *slot = tokio::select! {
            r = tokio::time::timeout(TRANSFER_LIMIT, work) => {
                r.unwrap_or_else(|_| Err(format!("did not finish within {TRANSFER_LIMIT:?}")))
            }
            () = wait_for_interrupt() => Err("interrupted".into()),
        };
        if interrupted() {
            break;
        }
    }
    runner.abort();
    round
}

async fn wait_for_interrupt() {
    while !interrupted() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ours_test(
    stack: &NetStack<TapNetwork, UnixPlatform>,
    ns: &str,
    to: SocketAddr,
    test: Test,
    bytes: u64,
    seconds: f64,
) -> Result<Measured, String> {
    let bytes_arg = bytes.to_string();
    let peer = Peer::start(ns, &test.peer_args(&bytes_arg), true)?;
    let mut flow = stack.tcp().connect(to).await.map_err(|e| format!("connecting to {to}: {e}"))?;
    // The peer is waited for on another thread, so our stack keeps running.
    let finish = |peer: Peer| async move {
        tokio::task::spawn_blocking(move || peer.finish()).await.map_err(|e| format!("joining the peer: {e}"))?
    };
    match test {
        Test::Send => {
            let data = mirage_testkit::pattern(1, CHUNK);
            let cpu = CpuClock::start();
            let mut sent = 0u64;
            while sent < bytes && !interrupted() {
                let n = (bytes - sent).min(CHUNK as u64) as usize;
                flow.write_all(&data[..n]).await.map_err(|e| format!("writing after {sent} bytes: {e}"))?;
                sent += n as u64;
            }
            let _ = flow.close().await;
            let peer_result = finish(peer).await?.ok_or("the Linux receiver printed no result")?;
            let cpu = cpu.stop();
            check_amount(peer_result.amount, bytes)?;
            Ok(Measured { cpu, ..peer_result })
        }
        Test::Receive => {
            let mut buf = vec![0u8; CHUNK];
            let cpu = CpuClock::start();
            let start = Instant::now();
            let mut total = 0u64;
            while !interrupted() {
                match flow.read(&mut buf).await.map_err(|e| format!("reading after {total} bytes: {e}"))? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            let elapsed = start.elapsed();
            let cpu = cpu.stop();
            let _ = flow.close().await;
            finish(peer).await?;
            check_amount(total, bytes)?;
            Ok(Measured { amount: total, elapsed, cpu })
        }
        Test::RequestResponse => {
            flow.set_nodelay(true).map_err(|e| format!("setting nodelay: {e}"))?;
            let mut byte = [0u8; 1];
            let mut n = 0u64;
            let mut exchange = async |n: u64| -> Result<(), String> {
                flow.write_all(&[n as u8]).await.map_err(|e| format!("request {n}: {e}"))?;
                if flow.read(&mut byte).await.map_err(|e| format!("response {n}: {e}"))? != 1 || byte[0] != n as u8 {
                    return Err(format!("response {n} is missing or wrong"));
                }
                Ok(())
            };
            for i in 0..RR_WARM_UP {
                exchange(i).await?;
            }
            let duration = Duration::from_secs_f64(seconds);
            let cpu = CpuClock::start();
            let start = Instant::now();
            while start.elapsed() < duration && n < RR_MAX && !interrupted() {
                exchange(n).await?;
                n += 1;
            }
            let elapsed = start.elapsed();
            let cpu = cpu.stop();
            let _ = flow.close().await;
            finish(peer).await?;
            Ok(Measured { amount: n, elapsed, cpu })
        }
    }
}

fn check_amount(got: u64, expected: u64) -> Result<(), String> {
    if got != expected {
        return Err(format!("{got} bytes arrived, {expected} were sent"));
    }
    Ok(())
}

// ---- smoltcp -------------------------------------------------------------------

mod smol {
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, Medium, TunTapInterface};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant as SmolInstant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

    /// smoltcp on its own TAP device, one TCP socket.
    pub(super) struct Host {
        iface: Interface,
        device: TunTapInterface,
        sockets: SocketSet<'static>,
        handle: SocketHandle,
        epoch: Instant,
        deadline: Instant,
    }

    impl Host {
        /// Opens TAP `name` (in this namespace; the caller moves it) with
        /// address `ip`/24.
        pub(super) fn open(name: &str, ip: Ipv4Addr, net: u8) -> Result<Host, String> {
            let buffer = || tcp::SocketBuffer::new(vec![0; SMOLTCP_BUFFER]);
            let mut device =
                TunTapInterface::new(name, Medium::Ethernet).map_err(|e| format!("opening TAP {name}: {e}"))?;
            let epoch = Instant::now();
            let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([0x02, 0, 0, 0x83, net, 2])));
            config.random_seed = u64::from(net) ^ u64::from(std::process::id()) << 8;
            let mut iface = Interface::new(config, &mut device, SmolInstant::from_micros(0));
            iface.update_ip_addrs(|addrs| {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip), 24));
            });
            let mut sockets = SocketSet::new(vec![]);
            let handle = sockets.add(tcp::Socket::new(buffer(), buffer()));
            Ok(Host { iface, device, sockets, handle, epoch, deadline: Instant::now() })
        }

        fn now(&self) -> SmolInstant {
            SmolInstant::from_micros(self.epoch.elapsed().as_micros() as i64)
        }

        fn socket(&mut self) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(self.handle)
        }

        /// Processes what arrived and sends what is due.
        fn poll(&mut self) {
            let now = self.now();
            self.iface.poll(now, &mut self.device, &mut self.sockets);
        }

        /// Waits for a frame or smoltcp's next deadline, then polls: the
        /// application looks at its socket after each turn (and polls after
        /// giving it data, so nothing waits behind a sleep).
        fn turn(&mut self) -> Result<(), String> {
            if interrupted() {
                return Err("interrupted".into());
            }
            if Instant::now() > self.deadline {
                return Err(format!("did not finish within {TRANSFER_LIMIT:?}"));
            }
            let now = self.now();
            let delay = self.iface.poll_delay(now, &self.sockets).map(Duration::from);
            let delay = delay.map_or(SMOLTCP_MAX_WAIT, |d| d.min(SMOLTCP_MAX_WAIT));
            phy::wait(self.device.as_raw_fd(), Some(delay.into())).map_err(|e| format!("waiting on the TAP: {e}"))?;
            self.poll();
            Ok(())
        }

        /// A fresh socket connected to `to` from `port`.
        pub(super) fn connect(&mut self, to: (Ipv4Addr, u16), port: u16) -> Result<(), String> {
            self.deadline = Instant::now() + TRANSFER_LIMIT;
            let buffer = || tcp::SocketBuffer::new(vec![0; SMOLTCP_BUFFER]);
            self.sockets.remove(self.handle);
            self.handle = self.sockets.add(tcp::Socket::new(buffer(), buffer()));
            let to = SocketAddr::from(to);
            let SocketAddr::V4(v4) = to else { return Err(format!("{to} is not IPv4")) };
            let cx = self.iface.context();
            self.sockets
                .get_mut::<tcp::Socket>(self.handle)
                .connect(cx, (IpAddress::Ipv4(*v4.ip()), to.port()), port)
                .map_err(|e| format!("smoltcp connect to {to}: {e}"))?;
            self.poll();
            // Each turn moves the handshake on.
            loop {
                match self.socket().state() {
                    tcp::State::Established => return Ok(()),
                    tcp::State::Closed => return Err(format!("smoltcp's connection to {to} was refused")),
                    _ => self.turn()?,
                }
            }
        }

        /// Closes and runs until the connection is gone (TIME-WAIT counts),
        /// so the peer sees our FIN.
        fn close(&mut self) -> Result<(), String> {
            self.socket().close();
            self.poll();
            loop {
                match self.socket().state() {
                    tcp::State::Closed | tcp::State::TimeWait => return Ok(()),
                    _ => self.turn()?,
                }
            }
        }

        pub(super) fn send(&mut self, bytes: u64) -> Result<(), String> {
            let data = mirage_testkit::pattern(1, CHUNK);
            let mut sent = 0u64;
            while sent < bytes {
                let n = (bytes - sent).min(CHUNK as u64) as usize;
                let offset = (sent % CHUNK as u64) as usize;
                let n = n.min(CHUNK - offset);
                if self.socket().can_send() {
                    sent += self.socket().send_slice(&data[offset..offset + n]).map_err(|e| e.to_string())? as u64;
                    self.poll();
                } else {
                    self.turn()?;
                }
            }
            self.close()
        }

        pub(super) fn receive(&mut self, bytes: u64) -> Result<Measured, String> {
            let mut buf = vec![0u8; CHUNK];
            let cpu = CpuClock::start();
            let start = Instant::now();
            let mut total = 0u64;
            while total < bytes && self.socket().may_recv() {
                match self.socket().recv_slice(&mut buf).map_err(|e| e.to_string())? {
                    0 => self.turn()?,
                    n => total += n as u64,
                }
            }
            let elapsed = start.elapsed();
            let cpu = cpu.stop();
            self.close()?;
            check_amount(total, bytes)?;
            Ok(Measured { amount: total, elapsed, cpu })
        }

        pub(super) fn request_response(&mut self, seconds: f64) -> Result<Measured, String> {
            self.socket().set_nagle_enabled(false);
            let mut byte = [0u8; 1];
            let mut exchange = |host: &mut Host, n: u64| -> Result<(), String> {
                host.socket().send_slice(&[n as u8]).map_err(|e| e.to_string())?;
                host.poll();
                // Each turn waits for the response.
                while host.socket().recv_slice(&mut byte).map_err(|e| e.to_string())? == 0 {
                    if !host.socket().may_recv() {
                        return Err(format!("the connection closed before response {n}"));
                    }
                    host.turn()?;
                }
                if byte[0] != n as u8 {
                    return Err(format!("response {n} carried {} instead", byte[0]));
                }
                Ok(())
            };
            for i in 0..RR_WARM_UP {
                exchange(self, i)?;
            }
            let duration = Duration::from_secs_f64(seconds);
            let cpu = CpuClock::start();
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < duration && n < RR_MAX {
                exchange(self, n)?;
                n += 1;
            }
            let elapsed = start.elapsed();
            let cpu = cpu.stop();
            self.close()?;
            Ok(Measured { amount: n, elapsed, cpu })
        }
    }
}

fn smoltcp(ns: &Netns, net: u8, ethtool: bool, options: &Options) -> Round {
    let (linux, us) = addresses(net);
    let iface = iface_name(&format!("s{net}"));
    let host = (|| {
        let host = smol::Host::open(&iface, us, net)?;
        sh(&["ip", "link", "set", &iface, "netns", ns.name()])?;
        ns.exec(&["ip", "addr", "add", &format!("{linux}/24"), "dev", &iface])?;
        ns.exec(&["ip", "link", "set", &iface, "up"])?;
        offloads_off(ns, &iface, ethtool)?;
        Ok::<_, String>(host)
    })();
    let mut host = match host {
        Ok(host) => host,
        Err(e) => return failed(e),
    };
    let bytes = options.mib << 20;
    let bytes_arg = bytes.to_string();
    let mut round = failed("not run".into());
    for ((slot, test), port) in round.iter_mut().zip(Test::ALL).zip(40_000..) {
        *slot = (|| {
            let peer = Peer::start(ns.name(), &test.peer_args(&bytes_arg), true)?;
            host.connect((linux, PORT), port)?;
            match test {
                Test::Send => {
                    let cpu = CpuClock::start();
                    host.send(bytes)?;
                    let peer_result = peer.result()?;
                    check_amount(peer_result.amount, bytes)?;
                    Ok(Measured { cpu: cpu.stop(), ..peer_result })
                }
                Test::Receive => {
                    let m = host.receive(bytes)?;
                    peer.finish()?;
                    Ok(m)
                }
                Test::RequestResponse => {
                    let m = host.request_response(options.seconds)?;
                    peer.finish()?;
                    Ok(m)
                }
            }
        })();
        if interrupted() {
            break;
        }
    }
    round
}

// ---- Linux to Linux ------------------------------------------------------------

fn linux(ns: &Netns, ns2: &Netns, net: u8, ethtool: bool, options: &Options) -> Round {
    let (linux, other) = addresses(net);
    let (a, b) = (iface_name(&format!("va{net}")), iface_name(&format!("vb{net}")));
    let setup = || {
        ns.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", ns2.name()])?;
        for (n, iface, ip) in [(ns, &a, linux), (ns2, &b, other)] {
            n.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", iface])?;
            n.exec(&["ip", "link", "set", iface, "mtu", "1500", "up"])?;
            offloads_off(n, iface, ethtool)?;
        }
        Ok::<_, String>(())
    };
    if let Err(e) = setup() {
        let _ = ns.exec(&["ip", "link", "del", &a]);
        return failed(e);
    }
    let bytes = (options.mib << 20).to_string();
    let to = SocketAddr::from((linux, PORT)).to_string();
    let seconds = options.seconds.to_string();
    let mut round = failed("not run".into());
    for (slot, test) in round.iter_mut().zip(Test::ALL) {
        *slot = (|| {
            let listener = Peer::start(ns.name(), &test.peer_args(&bytes), true)?;
            let args = match test {
                Test::Send => vec!["peer-connect-source", &to, &bytes],
                Test::Receive => vec!["peer-connect-sink", &to],
                Test::RequestResponse => vec!["peer-connect-rr", &to, &seconds],
            };
            let connector = Peer::start(ns2.name(), &args, false)?;
            let (a, b) = (listener.finish()?, connector.finish()?);
            let m = a.or(b).ok_or("neither Linux peer printed a result")?;
            if test != Test::RequestResponse {
                check_amount(m.amount, options.mib << 20)?;
            }
            Ok(m)
        })();
        if interrupted() {
            break;
        }
    }
    // Deleting one end deletes the pair.
    let _ = ns.exec(&["ip", "link", "del", &a]);
    round
}

// ---- Output --------------------------------------------------------------------

fn print_table(table: &Table, options: &Options, ethtool: bool) {
    let kernel = sh(&["uname", "-r"]).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into());
    let offloads = if ethtool {
        "TSO, GSO, GRO and checksum offload off on the kernel's ends"
    } else {
        "offloads left on (ethtool is not installed)"
    };
    println!(
        "TCP against Linux {kernel} in a network namespace, MTU 1500, checksums on, {offloads}; \
         {} MiB per transfer; request/response: 1-byte messages, one connection, {} s; \
         best of {} rounds, the stacks taking turns.\n",
        options.mib, options.seconds, options.rounds
    );
    println!(
        "| measured | ours (TAP) | smoltcp 0.12 (TAP) | Linux ⇄ Linux (veth, ceiling) | ours / smoltcp | ours / Linux |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let rows = [
        (Test::Send, "bulk, the stack sends to Linux (Gbit/s)"),
        (Test::Receive, "bulk, Linux sends to the stack (Gbit/s)"),
        (Test::RequestResponse, "request/response, 1 byte each way (transactions/s)"),
    ];
    let scale = |test: Test, m: &Measured| if test == Test::RequestResponse { m.rate() } else { m.rate() * 8.0 / 1e9 };
    let show = |test: Test, v: f64| if test == Test::RequestResponse { format!("{v:.0}") } else { format!("{v:.2}") };
    let mut errors = Vec::new();
    for (t, (test, name)) in rows.into_iter().enumerate() {
        let value = |s: usize| match &table[s][t] {
            Some(Ok(m)) => Some(scale(test, m)),
            _ => None,
        };
        let cells: Vec<String> = (0..3)
            .map(|s| match (&table[s][t], value(s)) {
                (None, _) => "not run".into(),
                (_, Some(v)) => show(test, v),
                (_, None) => "failed".into(),
            })
            .collect();
        let ratio = |other: usize| match (value(0), value(other)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "—".into(),
        };
        println!("| {name} | {} | {} | {} | {} | {} |", cells[0], cells[1], cells[2], ratio(1), ratio(2));
        for (s, subject) in Subject::ALL.iter().enumerate() {
            if let Some(Err(e)) = &table[s][t] {
                errors.push(format!("{subject:?}, {name}: {e}"));
            }
        }
    }
    let cpu_rows = [
        (Test::Send, "CPU time of the stack's thread per byte sent (ns)", 1.0),
        (Test::Receive, "CPU time of the stack's thread per byte received (ns)", 1.0),
        (Test::RequestResponse, "CPU time of the stack's thread per transaction (µs)", 1e-3),
    ];
    for (t, (_, name, unit)) in cpu_rows.into_iter().enumerate() {
        let cpu = |s: usize| match &table[s][t] {
            Some(Ok(m)) => m.cpu_per_unit().map(|c| c * unit),
            _ => None,
        };
        let cell = |s: usize| cpu(s).map_or("—".into(), |c| format!("{c:.2}"));
        let ratio = match (cpu(0), cpu(1)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "—".into(),
        };
        println!("| {name} | {} | {} | — | {ratio} | — |", cell(0), cell(1));
    }
    for e in errors {
        println!("\nfailed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_round_trips_and_garbage_is_refused() {
        let m = Measured { amount: 1 << 20, elapsed: Duration::from_millis(5), cpu: None };
        assert_eq!(Measured::from_output(&format!("listening\n{}\n", m.to_line())), Some(m));
        assert_eq!(Measured::from_output("result 1"), None);
        assert_eq!(Measured::from_output("result 0 5"), None, "nothing moved");
        assert_eq!(Measured::from_output("result 5 0"), None, "no time passed");
        assert_eq!(Measured::from_output("result a b"), None);
        assert_eq!(Measured::from_output("listening\n"), None);
    }

    #[test]
    fn rates_and_cpu_per_unit() {
        let m = Measured { amount: 1000, elapsed: Duration::from_millis(500), cpu: Some(Duration::from_micros(3)) };
        assert_eq!(m.rate(), 2000.0);
        assert_eq!(m.cpu_per_unit(), Some(3.0));
        assert_eq!(Measured { cpu: None, ..m }.cpu_per_unit(), None);
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            parse_options(&args("--mib 64 --seconds 1.5 --rounds 3")),
            Ok(Options { mib: 64, seconds: 1.5, rounds: 3, only: None })
        );
        assert_eq!(parse_options(&args("--only smoltcp")).map(|o| o.only), Ok(Some(Subject::Smoltcp)));
        assert!(parse_options(&args("--only bsd")).is_err());
        assert_eq!(parse_options(&[]), Ok(Options { mib: 256, seconds: 3.0, rounds: 2, only: None }));
        assert!(parse_options(&args("--mib 0")).is_err());
        assert!(parse_options(&args("--seconds inf")).is_err());
        assert!(parse_options(&args("--rounds")).unwrap_err().contains("needs a value"));
        assert!(parse_options(&args("--bogus 1")).unwrap_err().contains("unknown argument"));
    }

    #[test]
    fn the_thread_cpu_clock_advances_with_work() {
        let clock = CpuClock::start();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let spent = clock.stop().expect("/proc/thread-self/schedstat is readable on Linux");
        assert!(!spent.is_zero(), "{x}");
    }
}
