//! UDP echo between our stack on a TAP device and the Linux kernel in a
//! network namespace: round trips per second and p50/p99 round-trip time,
//! beside a raw TAP reflector measured in the same run.
//!
//! ```text
//! cargo run --release -p mirage-net-stack-linux-tests --bin udp_tap_bench -- [--seconds S] [--size BYTES]
//! ```
//!
//! Needs root, /dev/net/tun and `ip` (Debian package iproute2). The program
//! creates a namespace `mirage-ubench-PID` and deletes it when it ends.
//!
//! # What is measured
//!
//! One datagram of `--size` payload bytes (default 64) in flight at a time,
//! for `--seconds` (default 2) per round; the three paths below alternate,
//! two rounds each, and each one's best round is shown. Each round uses a
//! fresh TAP interface whose kernel end is in the namespace.
//!
//! - **raw**: a Linux client (a `std::net::UdpSocket` in a child process
//!   running in the namespace) sends to an address whose frames come out
//!   of the TAP device; a minimal loop on the TAP device sends each frame
//!   back with the MAC addresses, IPv4 addresses and UDP ports swapped (no
//!   stack, no checksum work: the swap keeps the checksums valid). The
//!   address is given a permanent neighbour entry, as nothing answers ARP.
//! - **stack echo**: the same Linux client against a UDP echo service on
//!   our `NetStack` on the TAP device.
//! - **stack client**: our stack sends and times the datagrams; the echo
//!   is a `std::net::UdpSocket` loop in a child process in the namespace.
//!
//! Every path crosses the TAP device twice and a Linux socket twice (a
//! send and a receive); they differ in what our process does with each
//! frame. The ratio to raw therefore shows what our stack costs against
//! doing nothing: for "stack echo", its receive and send paths; for "stack
//! client", the same plus timer-driven waits on the tokio runtime.
//!
//! The child process is this program again (`peer-client` and
//! `peer-echo`, hidden arguments), started with `ip netns exec`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::reflector::{reflect_udp, udp_datagram_to};
use mirage_net_stack::stack::{NetStack, StackBuilder};
use mirage_net_stack_linux_tests::{iface_name, missing, sh, KillOnDrop, Netns};
use mirage_platform_unix::tap::TapNetwork;
use mirage_platform_unix::UnixPlatform;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::NetworkDevice;
use mirage_types::stack::Stack;
use mirage_types::udp::{Udp, UdpSocket};

const ECHO_PORT: u16 = 7;
/// Rounds per path, alternating between the paths.
const ROUNDS: usize = 2;
/// Largest payload that fits an Ethernet frame unfragmented.
const MAX_PAYLOAD: usize = 1472;
/// Round-trip times kept per round at most (16 bytes each), whatever
/// `--seconds` says.
const MAX_SAMPLES: usize = 20_000_000;
/// How long one datagram may take before it counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Lost datagrams after which a round is abandoned: the path is broken,
/// and its figures would mean nothing.
const MAX_LOST: usize = 100;
/// Attempts to get a first echo (ARP resolution, the peer starting up),
/// each waiting [`WARM_UP_WAIT`].
const WARM_UP_ATTEMPTS: usize = 100;
const WARM_UP_WAIT: Duration = Duration::from_millis(100);
/// Round trips after the first echo and before measuring.
const WARM_UP: usize = 1000;
/// A `peer-echo` that has received nothing for this long exits, so a peer
/// whose parent was killed does not live on.
const ECHO_IDLE_EXIT: Duration = Duration::from_secs(30);

/// The figures of one round.
#[derive(Debug, Clone, PartialEq)]
struct Measured {
    round_trips: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    lost: usize,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64()
    }

    /// Percentiles by nearest rank of `samples` (sorted here).
    fn from_samples(mut samples: Vec<Duration>, elapsed: Duration, lost: usize) -> Option<Measured> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: usize| samples[(samples.len() * p).div_ceil(100).clamp(1, samples.len()) - 1];
        Some(Measured { round_trips: samples.len(), elapsed, p50: rank(50), p99: rank(99), lost })
    }

    /// The line a `peer-client` prints for the parent.
    fn to_line(&self) -> String {
        format!(
            "result {} {} {} {} {}",
            self.round_trips,
            self.elapsed.as_nanos(),
            self.p50.as_nanos(),
            self.p99.as_nanos(),
            self.lost
        )
    }

    /// Reads [`Measured::to_line`]'s line out of a peer's output.
    fn from_output(text: &str) -> Option<Measured> {
        let line = text.lines().find_map(|l| l.strip_prefix("result "))?;
        let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
        let [round_trips, elapsed, p50, p99, lost] = fields[..] else { return None };
        Some(Measured {
            round_trips: usize::try_from(round_trips).ok()?,
            elapsed: Duration::from_nanos(elapsed),
            p50: Duration::from_nanos(p50),
            p99: Duration::from_nanos(p99),
            lost: usize::try_from(lost).ok()?,
        })
        .filter(|m| m.round_trips > 0 && !m.elapsed.is_zero())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Options {
    seconds: f64,
    size: usize,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { seconds: 2.0, size: 64 };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                let v = value()?;
                options.seconds = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or(format!("--seconds {v}: expected a number of seconds in (0, 3600]"))?;
            }
            "--size" => {
                let v = value()?;
                options.size = v
                    .parse::<usize>()
                    .ok()
                    .filter(|s| (8..=MAX_PAYLOAD).contains(s))
                    .ok_or(format!("--size {v}: expected a payload size from 8 to {MAX_PAYLOAD} bytes"))?;
            }
            other => {
                return Err(format!("unknown argument {other:?}; usage: udp_tap_bench [--seconds S] [--size BYTES]"))
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("peer-client") => peer_client(&args[1..]),
        Some("peer-echo") => peer_echo(&args[1..]),
        _ => parse_options(&args).and_then(|options| bench(&options)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_tap_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The peers, run inside the namespace

/// `peer-client ADDR:PORT SECONDS SIZE`: times round trips to an echo at
/// ADDR:PORT and prints one `result` line.
fn peer_client(args: &[String]) -> Result<(), String> {
    let [target, seconds, size] = args else {
        return Err("usage: udp_tap_bench peer-client ADDR:PORT SECONDS SIZE".into());
    };
    let target: SocketAddr = target.parse().map_err(|e| format!("peer-client target {target:?}: {e}"))?;
    let options =
        parse_options(&["--seconds".into(), seconds.clone(), "--size".into(), size.clone()]).map_err(|e| e.clone())?;
    let socket = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| format!("peer-client bind: {e}"))?;
    socket.connect(target).map_err(|e| format!("peer-client connect to {target}: {e}"))?;
    let mut payload = vec![0u8; options.size];
    let mut reply = vec![0u8; MAX_PAYLOAD + 1];
    let mut sequence = 0u64;
    let mut exchange = |timeout: Duration| -> Result<Option<Duration>, String> {
        sequence += 1;
        payload[..8].copy_from_slice(&sequence.to_be_bytes());
        let start = Instant::now();
        socket.send(&payload).map_err(|e| format!("peer-client send to {target}: {e}"))?;
        // Replies to earlier, timed-out datagrams may still arrive: skip
        // them until ours comes or the time is up.
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(None);
            }
            socket.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
            match socket.recv(&mut reply) {
                Ok(n) if reply[..n] == payload[..] => return Ok(Some(start.elapsed())),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Ok(None)
                }
                // An ICMP port unreachable from a peer not yet listening.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    std::thread::sleep(left.min(WARM_UP_WAIT));
                    return Ok(None);
                }
                Err(e) => return Err(format!("peer-client receive from {target}: {e}")),
            }
        }
    };
    warm_up_blocking(&mut exchange, target)?;
    let duration = Duration::from_secs_f64(options.seconds);
    let (mut samples, mut lost) = (Vec::new(), 0);
    let start = Instant::now();
    while start.elapsed() < duration && samples.len() < MAX_SAMPLES {
        match exchange(REPLY_TIMEOUT)? {
            Some(rtt) => samples.push(rtt),
            None => lost += 1,
        }
        if lost > MAX_LOST {
            return Err(format!("peer-client: more than {MAX_LOST} datagrams to {target} were lost"));
        }
    }
    let measured = Measured::from_samples(samples, start.elapsed(), lost)
        .ok_or(format!("peer-client: no round trip to {target} completed"))?;
    println!("{}", measured.to_line());
    Ok(())
}

fn warm_up_blocking(
    exchange: &mut impl FnMut(Duration) -> Result<Option<Duration>, String>,
    target: SocketAddr,
) -> Result<(), String> {
    let mut answered = false;
    for _ in 0..WARM_UP_ATTEMPTS {
        if exchange(WARM_UP_WAIT)?.is_some() {
            answered = true;
            break;
        }
    }
    if !answered {
        return Err(format!("peer-client: no echo from {target} in {WARM_UP_ATTEMPTS} attempts"));
    }
    for _ in 0..WARM_UP {
        exchange(REPLY_TIMEOUT)?;
    }
    Ok(())
}

/// `peer-echo PORT`: sends every datagram back until idle for
/// [`ECHO_IDLE_EXIT`].
fn peer_echo(args: &[String]) -> Result<(), String> {
    let [port] = args else { return Err("usage: udp_tap_bench peer-echo PORT".into()) };
    let port: u16 = port.parse().map_err(|e| format!("peer-echo port {port:?}: {e}"))?;
    let socket =
        StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(|e| format!("peer-echo bind {port}: {e}"))?;
    socket.set_read_timeout(Some(ECHO_IDLE_EXIT)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(())
            }
            Err(e) => return Err(format!("peer-echo receive: {e}")),
        }
    }
}

// ---------------------------------------------------------------------------
// The benchmark, in the initial namespace

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Raw,
    StackEcho,
    StackClient,
}

impl Path {
    const ALL: [Path; 3] = [Path::Raw, Path::StackEcho, Path::StackClient];

    fn describe(self) -> &'static str {
        match self {
            Path::Raw => "Linux client → raw TAP reflector (no stack)",
            Path::StackEcho => "Linux client → our stack's UDP echo",
            Path::StackClient => "our stack's client → Linux UDP echo",
        }
    }
}

fn bench(options: &Options) -> Result<(), String> {
    if let Some(reason) = missing(&[]) {
        return Err(format!("cannot run: {reason}"));
    }
    let ns = Netns::new("mirage-ubench").map_err(|e| format!("creating a network namespace (needs root): {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let mut best: Vec<Option<Measured>> = vec![None; Path::ALL.len()];
    let mut interface = 0u8;
    for _ in 0..ROUNDS {
        for (i, path) in Path::ALL.into_iter().enumerate() {
            interface += 1;
            let round = local
                .block_on(&rt, measure(&ns, path, interface, options))
                .map_err(|e| format!("{}: {e}", path.describe()))?;
            if best[i].as_ref().is_none_or(|b| round.per_second() > b.per_second()) {
                best[i] = Some(round);
            }
        }
    }
    let best: Vec<Measured> = best.into_iter().flatten().collect();
    let [raw, ..] = &best[..] else { return Err("no round was measured".into()) };
    let kernel = sh(&["uname", "-r"]).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into());
    println!(
        "TAP device to Linux {kernel} in a network namespace, {} payload bytes, one datagram in flight, \
         best of {ROUNDS} rounds of {} s:\n",
        options.size, options.seconds
    );
    println!("| path | round trips/s | p50 RTT | p99 RTT | lost | ratio to raw |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (path, m) in Path::ALL.iter().zip(&best) {
        println!(
            "| {} | {:.0} | {:.1} µs | {:.1} µs | {} | {:.2} |",
            path.describe(),
            m.per_second(),
            m.p50.as_secs_f64() * 1e6,
            m.p99.as_secs_f64() * 1e6,
            m.lost,
            m.per_second() / raw.per_second()
        );
    }
    Ok(())
}

/// One round of `path` on a fresh TAP interface (number `interface`, with
/// subnet 10.81.`interface`.0/24: Linux is .1, our side .2).
async fn measure(ns: &Netns, path: Path, interface: u8, options: &Options) -> Result<Measured, String> {
    let iface = iface_name(&format!("b{interface}"));
    let linux_ip = Ipv4Addr::new(10, 81, interface, 1);
    let our_ip = Ipv4Addr::new(10, 81, interface, 2);
    let tap = ns.tap(&iface, &format!("{linux_ip}/24"))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program to run its peer: {e}"))?;
    let exe = exe.to_str().ok_or("this program's path is not UTF-8")?.to_string();
    let client_args = |target: Ipv4Addr| {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", ns.name(), &exe, "peer-client"])
            .arg(SocketAddr::from((target, ECHO_PORT)).to_string())
            .arg(options.seconds.to_string())
            .arg(options.size.to_string())
            .kill_on_drop(true);
        command
    };
    match path {
        Path::Raw => {
            let mac = tap.mac().to_string();
            ns.exec(&[
                "ip",
                "neigh",
                "replace",
                &our_ip.to_string(),
                "lladdr",
                &mac,
                "dev",
                &iface,
                "nud",
                "permanent",
            ])?;
            let reflector = tokio::task::spawn_local(reflect(tap, our_ip));
            let result = run_peer_client(client_args(our_ip)).await;
            reflector.abort();
            result
        }
        Path::StackEcho => {
            let stack = stack_on(tap, our_ip).await?;
            let socket = stack
                .udp()
                .bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT)))
                .await
                .map_err(|e| format!("binding our echo socket: {e}"))?;
            let echo = tokio::task::spawn_local(async move {
                while let Ok(datagram) = socket.recv_from().await {
                    let _ = socket.send_to(&datagram.payload, datagram.src).await;
                }
            });
            let runner = tokio::task::spawn_local(async move { stack.run().await });
            let result = run_peer_client(client_args(our_ip)).await;
            echo.abort();
            runner.abort();
            result
        }
        Path::StackClient => {
            let peer = std::process::Command::new("ip")
                .args(["netns", "exec", ns.name(), &exe, "peer-echo", &ECHO_PORT.to_string()])
                .spawn()
                .map_err(|e| format!("starting the Linux echo in the namespace: {e}"))?;
            let _peer = KillOnDrop(peer);
            let stack = stack_on(tap, our_ip).await?;
            let runner_stack = stack.clone();
            let runner = tokio::task::spawn_local(async move { runner_stack.run().await });
            let result = stack_client(&*stack, SocketAddr::from((linux_ip, ECHO_PORT)), options).await;
            runner.abort();
            result
        }
    }
}

async fn stack_on(tap: TapNetwork, ip: Ipv4Addr) -> Result<Rc<NetStack<TapNetwork, UnixPlatform>>, String> {
    let address = Ipv4Cidr::new(ip, 24).ok_or(format!("{ip}/24 is not a valid IPv4 network"))?;
    let stack = StackBuilder::new(tap, UnixPlatform::new(Vec::new()))
        .ipv4(Ipv4Config { address, gateway: None })
        .build()
        .await
        .map_err(|e| format!("building our stack at {ip}: {e}"))?;
    Ok(Rc::new(stack))
}

async fn run_peer_client(mut command: tokio::process::Command) -> Result<Measured, String> {
    let out = command.output().await.map_err(|e| format!("starting the Linux client in the namespace: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("the Linux client failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Measured::from_output(&stdout).ok_or(format!("the Linux client printed no result line: {stdout:?}"))
}

/// Our stack as the client: the same protocol as `peer-client`, on our
/// UDP socket and the tokio clock.
async fn stack_client(stack: &impl Stack, target: SocketAddr, options: &Options) -> Result<Measured, String> {
    let socket = stack
        .udp()
        .bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .await
        .map_err(|e| format!("binding our client socket: {e}"))?;
    let mut payload = vec![0u8; options.size];
    let mut sequence = 0u64;
    let mut answered = false;
    for _ in 0..WARM_UP_ATTEMPTS {
        sequence += 1;
        if exchange(&socket, target, &mut payload, sequence, WARM_UP_WAIT).await?.is_some() {
            answered = true;
            break;
        }
    }
    if !answered {
        return Err(format!("no echo from {target} in {WARM_UP_ATTEMPTS} attempts"));
    }
    for _ in 0..WARM_UP {
        sequence += 1;
        exchange(&socket, target, &mut payload, sequence, REPLY_TIMEOUT).await?;
    }
    let duration = Duration::from_secs_f64(options.seconds);
    let (mut samples, mut lost) = (Vec::new(), 0);
    let start = Instant::now();
    while start.elapsed() < duration && samples.len() < MAX_SAMPLES {
        sequence += 1;
        match exchange(&socket, target, &mut payload, sequence, REPLY_TIMEOUT).await? {
            Some(rtt) => samples.push(rtt),
            None => lost += 1,
        }
        if lost > MAX_LOST {
            return Err(format!("more than {MAX_LOST} datagrams to {target} were lost"));
        }
    }
    Measured::from_samples(samples, start.elapsed(), lost).ok_or(format!("no round trip to {target} completed"))
}

/// Sends `payload` stamped with `sequence` and waits up to `timeout` for
/// it to come back: `Some(rtt)`, or `None` if it did not.
async fn exchange(
    socket: &impl UdpSocket,
    target: SocketAddr,
    payload: &mut [u8],
    sequence: u64,
    timeout: Duration,
) -> Result<Option<Duration>, String> {
    payload[..8].copy_from_slice(&sequence.to_be_bytes());
    let start = Instant::now();
    socket.send_to(payload, target).await.map_err(|e| format!("sending to {target}: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    // Replies to earlier, timed-out datagrams may still arrive: skip them
    // until ours comes or the time is up.
    loop {
        match tokio::time::timeout_at(deadline, socket.recv_from()).await {
            Err(_elapsed) => return Ok(None),
            Ok(Err(e)) => return Err(format!("receiving from {target}: {e}")),
            Ok(Ok(reply)) if reply.src == target && reply.payload[..] == payload[..] => {
                return Ok(Some(start.elapsed()))
            }
            Ok(Ok(_)) => continue,
        }
    }
}

/// The raw echo: sends every IPv4 UDP datagram addressed to `ip` back with
/// addresses and ports swapped. Swapping keeps both checksums valid (the
/// one's-complement sum does not depend on the order of the words), so
/// nothing is recomputed.
async fn reflect(tap: TapNetwork, ip: Ipv4Addr) {
    while let Ok(frame) = tap.receive().await {
        if let Some(udp) = udp_datagram_to(&frame, ip) {
            let _ = tap.transmit(frame.len(), |out| reflect_udp(&frame, out, udp)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_round_trips_and_garbage_is_refused() {
        let m = Measured::from_samples((1..=100).map(Duration::from_micros).collect(), Duration::from_millis(5), 3)
            .unwrap();
        assert_eq!((m.p50, m.p99, m.round_trips), (Duration::from_micros(50), Duration::from_micros(99), 100));
        assert_eq!(Measured::from_output(&format!("noise\n{}\n", m.to_line())), Some(m));
        assert_eq!(Measured::from_output("result 1 2 3"), None);
        assert_eq!(Measured::from_output("result 0 5 1 1 0"), None);
        assert_eq!(Measured::from_output("result a b c d e"), None);
        assert!(Measured::from_samples(Vec::new(), Duration::from_secs(1), 0).is_none());
    }

    #[test]
    fn options_are_checked() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(parse_options(&args("--seconds 3 --size 100")), Ok(Options { seconds: 3.0, size: 100 }));
        assert!(parse_options(&args("--size 4")).unwrap_err().contains("from 8 to 1472"));
        assert!(parse_options(&args("--seconds nan")).is_err());
        assert!(parse_options(&args("--seconds")).unwrap_err().contains("needs a value"));
        assert!(parse_options(&args("--bogus")).unwrap_err().contains("unknown argument"));
    }
}
