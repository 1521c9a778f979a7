//! UDP echo between two of our stacks on the in-memory virtual switch:
//! round trips per second and p50/p99 round-trip time, beside a raw
//! reflector measured in the same run.
//!
//! ```text
//! cargo run --release -p mirage-net-stack --features test-utils --example udp_bench -- [--seconds S] [--size BYTES]
//! ```
//!
//! # What is measured
//!
//! Stack A sends one datagram of `--size` payload bytes (default 64) to an
//! echo service and waits for it to come back before sending the next (one
//! datagram in flight: the figure is the cost of a round trip, not of a
//! pipeline). Two echo services are measured, alternating, for `--seconds`
//! (default 2) per round, three rounds each; each one's best round is
//! shown:
//!
//! - **stack**: stack B, a second `NetStack`, with a UDP socket that
//!   sends back what it receives (its input loop, IPv4, UDP demultiplexing,
//!   the socket queue, and the whole send path with ARP lookup and
//!   checksums);
//! - **raw**: a loop on a bare switch port that swaps the MAC addresses,
//!   IPv4 addresses and UDP ports of each frame and sends it back (the
//!   checksums stay valid under the swap), answering ARP for its address.
//!
//! The ratio stack/raw therefore isolates the cost of one stack's echo
//! path: both rows pay for stack A's send and receive, the switch and the
//! executor.
//!
//! # Why virtual time and wall-clock figures
//!
//! The switch runs on a [`VirtualClock`], driven by the [`Simulation`]
//! executor. The links have no faults and no delay, so a frame is due the
//! instant it is sent and the executor never finds every task idle:
//! virtual time does not move during a measurement, no timer fires, and
//! nothing sleeps. The wall time measured around each round trip
//! (`std::time::Instant`) is therefore the CPU time of the stacks, the
//! switch (one copy of each frame into a new buffer and a queue insertion)
//! and the executor's polling, with no I/O and no waiting in it: the
//! stack's own cost, which a real executor on a real clock would blur with
//! its timer and wake-up machinery.
//!
//! The TAP half of the UDP benchmark (our stack against Linux) is the
//! `udp_tap_bench` program of `mirage-net-stack-linux-tests`; `cargo xtask
//! bench udp` runs both.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mirage_net_stack::ipv4::Ipv4Config;
use mirage_net_stack::reflector::{reflect_udp, udp_datagram_to};
use mirage_net_stack::stack::StackBuilder;
use mirage_net_stack::switch::{Simulation, SwitchPort, VirtualClock, VirtualPlatform, VirtualSwitch};
use mirage_net_stack::wire::ArpPacket;
use mirage_types::ip::Ipv4Cidr;
use mirage_types::net::{MacAddress, NetworkDevice};
use mirage_types::stack::Stack;
use mirage_types::udp::{Udp, UdpSocket};

const MAC_CLIENT: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
const MAC_ECHO: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
const MAC_RAW: MacAddress = MacAddress([2, 0, 0, 0, 0, 3]);
const IP_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_ECHO: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP_RAW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const ECHO_PORT: u16 = 7;

/// Round trips per call of [`Simulation::run_until`], far below its poll
/// limit (a round trip takes a few tens of polls).
const BATCH: usize = 10_000;
/// Round-trip times kept per round at most, so a very fast machine or a
/// long `--seconds` cannot exhaust memory (16 bytes each).
const MAX_SAMPLES: usize = 50_000_000;
/// Rounds per echo service, alternating between them.
const ROUNDS: usize = 3;
/// Largest payload that fits an Ethernet frame unfragmented.
const MAX_PAYLOAD: usize = 1472;
/// Round trips before measuring, so ARP is resolved and caches are warm.
const WARM_UP: usize = 1000;

/// The figures of one round.
struct Measured {
    round_trips: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.round_trips as f64 / self.elapsed.as_secs_f64()
    }

    /// Percentiles by nearest rank of `samples` (sorted here).
    fn from_samples(mut samples: Vec<Duration>, elapsed: Duration) -> Option<Measured> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: usize| samples[(samples.len() * p).div_ceil(100).clamp(1, samples.len()) - 1];
        Some(Measured { round_trips: samples.len(), elapsed, p50: rank(50), p99: rank(99) })
    }
}

struct Options {
    seconds: f64,
    size: usize,
}

fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options { seconds: 2.0, size: 64 };
    let mut args = args;
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
            other => return Err(format!("unknown argument {other:?}; usage: udp_bench [--seconds S] [--size BYTES]")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("udp_bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config(ip: Ipv4Addr) -> Result<Ipv4Config, String> {
    let address = Ipv4Cidr::new(ip, 24).ok_or(format!("{ip}/24 is not a valid IPv4 network"))?;
    Ok(Ipv4Config { address, gateway: None })
}

fn run(options: &Options) -> Result<(), String> {
    let clock = VirtualClock::new();
    let sim = Simulation::new(&clock);
    let switch = VirtualSwitch::new(&clock, 1);
    let (client_port, echo_port, raw_port) =
        (switch.add_port(MAC_CLIENT), switch.add_port(MAC_ECHO), switch.add_port(MAC_RAW));
    // Virtual time never moves during a round (see the module doc); this
    // limit only ends a run whose echo stopped answering.
    let limit = Duration::from_secs(60);
    let (client, echo) = sim
        .run_until(
            async {
                let client = StackBuilder::new(client_port, VirtualPlatform::new(&sim, 2))
                    .ipv4(config(IP_CLIENT)?)
                    .build()
                    .await
                    .map_err(|e| format!("building the client stack: {e}"))?;
                let echo = StackBuilder::new(echo_port, VirtualPlatform::new(&sim, 3))
                    .ipv4(config(IP_ECHO)?)
                    .build()
                    .await
                    .map_err(|e| format!("building the echo stack: {e}"))?;
                Ok::<_, String>((Rc::new(client), Rc::new(echo)))
            },
            limit,
        )
        .map_err(|e| format!("building the stacks: {e}"))??;
    for stack in [&client, &echo] {
        let stack = stack.clone();
        sim.spawn(async move {
            // The virtual switch never fails a port, so the loop ends only
            // with the program.
            let _ = stack.run().await;
        });
    }
    let echo_socket = sim
        .run_until(echo.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, ECHO_PORT))), limit)
        .map_err(|e| format!("binding the echo socket: {e}"))?
        .map_err(|e| format!("binding the echo socket: {e}"))?;
    sim.spawn(async move {
        while let Ok(datagram) = echo_socket.recv_from().await {
            let _ = echo_socket.send_to(&datagram.payload, datagram.src).await;
        }
    });
    sim.spawn(reflect(raw_port));
    let socket = sim
        .run_until(client.udp().bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))), limit)
        .map_err(|e| format!("binding the client socket: {e}"))?
        .map_err(|e| format!("binding the client socket: {e}"))?;

    let targets = [("stack", SocketAddr::from((IP_ECHO, ECHO_PORT))), ("raw", SocketAddr::from((IP_RAW, ECHO_PORT)))];
    let mut best: [Option<Measured>; 2] = [None, None];
    for _ in 0..ROUNDS {
        for (i, (name, target)) in targets.iter().enumerate() {
            let round = measure(&sim, &socket, *target, options)
                .map_err(|e| format!("echo by the {name} service at {target}: {e}"))?;
            if best[i].as_ref().is_none_or(|b| round.per_second() > b.per_second()) {
                best[i] = Some(round);
            }
        }
    }
    let [Some(stack), Some(raw)] = best else { return Err("no round was measured".into()) };
    println!(
        "In-memory virtual switch, {} payload bytes, one datagram in flight, best of {ROUNDS} rounds of {} s:\n",
        options.size, options.seconds
    );
    println!("| echo service | round trips/s | p50 RTT | p99 RTT | ratio to raw |");
    println!("|---|---:|---:|---:|---:|");
    for (name, m) in [("our stack (NetStack B)", &stack), ("raw reflector (no stack)", &raw)] {
        println!(
            "| {name} | {:.0} | {:.2} µs | {:.2} µs | {:.2} |",
            m.per_second(),
            m.p50.as_secs_f64() * 1e6,
            m.p99.as_secs_f64() * 1e6,
            m.per_second() / raw.per_second()
        );
    }
    Ok(())
}

/// One round: warm up, then round trips to `target` for `options.seconds`
/// of wall time.
fn measure(
    sim: &Simulation,
    socket: &impl UdpSocket,
    target: SocketAddr,
    options: &Options,
) -> Result<Measured, String> {
    let mut payload = vec![0u8; options.size];
    let mut sequence = 0u64;
    let limit = Duration::from_secs(60);
    sim.run_until(
        async {
            for _ in 0..WARM_UP {
                sequence += 1;
                payload[..8].copy_from_slice(&sequence.to_be_bytes());
                round_trip(socket, target, &payload).await?;
            }
            Ok::<(), String>(())
        },
        limit,
    )
    .map_err(|e| format!("warming up: {e}"))??;
    let duration = Duration::from_secs_f64(options.seconds);
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration && samples.len() < MAX_SAMPLES {
        sim.run_until(
            async {
                for _ in 0..BATCH {
                    sequence += 1;
                    payload[..8].copy_from_slice(&sequence.to_be_bytes());
                    samples.push(round_trip(socket, target, &payload).await?);
                }
                Ok::<(), String>(())
            },
            limit,
        )
        .map_err(|e| e.to_string())??;
    }
    Measured::from_samples(samples, start.elapsed()).ok_or_else(|| "no round trip completed".to_string())
}

/// Sends `payload` to `target` and waits for it to come back; returns the
/// wall time that took. Errors if the reply is not the same datagram from
/// `target` (the sequence number in its first bytes tells an old reply).
async fn round_trip(socket: &impl UdpSocket, target: SocketAddr, payload: &[u8]) -> Result<Duration, String> {
    let start = Instant::now();
    socket.send_to(payload, target).await.map_err(|e| format!("send: {e}"))?;
    let reply = socket.recv_from().await.map_err(|e| format!("receive: {e}"))?;
    let rtt = start.elapsed();
    if reply.src != target || reply.payload[..] != payload[..] {
        return Err(format!(
            "the reply from {} ({} bytes) is not the datagram sent to {target} ({} bytes)",
            reply.src,
            reply.payload.len(),
            payload.len()
        ));
    }
    Ok(rtt)
}

/// The raw echo: answers ARP requests for [`IP_RAW`] and sends every IPv4
/// UDP datagram addressed to it back with addresses and ports swapped.
/// Swapping keeps both checksums valid (the one's-complement sum does not
/// depend on the order of the words), so nothing is recomputed.
async fn reflect(port: SwitchPort) {
    const ETHERTYPE: std::ops::Range<usize> = 12..14;
    while let Ok(frame) = port.receive().await {
        let Some(ethertype) = frame.get(ETHERTYPE) else { continue };
        match ethertype {
            [0x08, 0x06] => {
                let Ok(request) = ArpPacket::new_checked(&frame[14..]) else { continue };
                if request.operation() != 1 || request.target_protocol_addr() != IP_RAW {
                    continue;
                }
                let (asker_mac, asker_ip) = (request.source_hardware_addr(), request.source_protocol_addr());
                let _ = port
                    .transmit(frame.len(), |out| {
                        out.copy_from_slice(&frame);
                        out[0..6].copy_from_slice(&asker_mac.0);
                        out[6..12].copy_from_slice(&MAC_RAW.0);
                        let Ok(mut reply) = ArpPacket::new_checked(&mut out[14..]) else { return };
                        reply.set_operation(2);
                        reply.set_source_hardware_addr(MAC_RAW);
                        reply.set_source_protocol_addr(IP_RAW);
                        reply.set_target_hardware_addr(asker_mac);
                        reply.set_target_protocol_addr(asker_ip);
                    })
                    .await;
            }
            [0x08, 0x00] => {
                if let Some(layout) = udp_datagram_to(&frame, IP_RAW) {
                    let _ = port.transmit(frame.len(), |out| reflect_udp(&frame, out, layout)).await;
                }
            }
            _ => {}
        }
    }
}
