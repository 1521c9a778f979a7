//! The ping example: ICMP echo requests to one address, reported as
//! ping(8) reports them, written once against the traits of
//! `mirage-types`.
//!
//! [`start`] takes the stack named `net0` and the console from the
//! platform's devices; [`ping`] sends [`Config::count`] echo requests through
//! [`Stack::icmp`], one every [`Config::interval`], writes a line per reply
//! (`64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.42 ms`) and per
//! failure to a [`Console`], then the summary:
//!
//! ```text
//! --- 10.0.0.1 ping statistics ---
//! 3 packets transmitted, 3 received, 0% packet loss
//! rtt min/avg/max = 0.310/0.402/0.530 ms
//! ```
//!
//! Arguments (what [`Config::from_args`] reads): `ADDRESS [-c COUNT]
//! [-i SECONDS] [-s SIZE] [-W SECONDS]`.
//!
//! # Cargo features
//!
//! None. The crate is `#![no_std]` and needs only `alloc`.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::IpAddr;
use core::time::Duration;

use mirage::console::Console;
use mirage::devices::Devices;
use mirage::icmp::Icmp;
use mirage::platform::{AppError, Platform};
use mirage::stack::Stack;
use mirage::time::Instant;

/// The network device the pings go out on.
pub const NET_DEVICE: &str = "net0";

/// Runs the example: the configuration from the application's arguments,
/// the stack [`NET_DEVICE`] and the console, then [`ping`].
///
/// # Errors
///
/// A bad argument, no stack, or no reply at all (ping(8)'s status 1).
pub async fn start<P: Platform, D: Devices>(platform: P, devices: D) -> Result<(), AppError> {
    let config = Config::from_args(platform.args())?;
    let stack = devices.stack(NET_DEVICE).await?;
    let summary = ping(platform, &stack, &devices.console(), &config).await;
    if summary.exit_status() != 0 {
        return Err(alloc::format!("no reply from {}", config.target).into());
    }
    Ok(())
}

/// The largest payload asked for with `-s`: what fits in one IPv4 datagram
/// with the 8-byte ICMP header (65 535 − 20 − 8).
pub const MAX_PAYLOAD: usize = 65_507;

/// The most requests asked for with `-c`.
pub const MAX_COUNT: u32 = 1_000_000;

/// What to ping and how. Defaults as ping(8): 56 bytes of payload, one
/// request a second, 4 requests; a reply awaited up to 2 s, long enough
/// for the first request's ARP resolution to be retried once (ARP asks at
/// most once a second, RFC 1122 §2.3.2.1, and a peer's first answer can be
/// lost: Linux drops what it sends on a TAP link for up to a second after
/// the link comes up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The address pinged.
    pub target: IpAddr,
    /// Requests sent (`-c`, default 4, at most [`MAX_COUNT`]).
    pub count: u32,
    /// Time from one request to the next (`-i SECONDS`, default 1; at
    /// least 0.01).
    pub interval: Duration,
    /// Payload bytes of each request (`-s`, default 56, at most
    /// [`MAX_PAYLOAD`]).
    pub size: usize,
    /// How long to wait for each reply (`-W SECONDS`, default 2).
    pub timeout: Duration,
}

/// A command line ping cannot run with; the message says which argument
/// and why, followed by the usage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n{usage}", usage = Config::USAGE)]
pub struct ConfigError {
    problem: String,
}

impl ConfigError {
    /// What is wrong, without the usage.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

fn problem(text: String) -> ConfigError {
    ConfigError { problem: text }
}

/// Parses seconds with an optional fraction ("1", "0.2") into a duration
/// of at least `min`.
fn seconds(flag: &str, value: &str, min: Duration) -> Result<Duration, ConfigError> {
    let bad = || problem(alloc::format!("{flag} {value}: expected a number of seconds of at least {min:?}"));
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return Err(bad());
    }
    let secs: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let mut nanos = 0u32;
    for (i, b) in fraction.bytes().enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    let d = Duration::new(secs, nanos);
    if d < min || secs > 3600 {
        return Err(bad());
    }
    Ok(d)
}

impl Config {
    /// The arguments [`Config::from_args`] accepts.
    pub const USAGE: &'static str = "usage: ping ADDRESS [-c COUNT] [-i SECONDS] [-s SIZE] [-W SECONDS]";

    /// Reads the configuration from the application's arguments (what
    /// `Platform::args` returns).
    ///
    /// Errors name the argument that is wrong: no address or two, an
    /// address that is not IPv4 or IPv6, an unknown flag, a missing value,
    /// or a value out of range.
    pub fn from_args(args: &[String]) -> Result<Config, ConfigError> {
        let mut target = None;
        let mut config = Config {
            target: IpAddr::from([0u8, 0, 0, 0]),
            count: 4,
            interval: Duration::from_secs(1),
            size: 56,
            timeout: Duration::from_secs(2),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let flag = arg.as_str();
            if !flag.starts_with('-') {
                if target.is_some() {
                    return Err(problem(alloc::format!("{flag}: only one address can be pinged")));
                }
                target = Some(
                    flag.parse::<IpAddr>()
                        .map_err(|_| problem(alloc::format!("{flag:?} is not an IPv4 or IPv6 address")))?,
                );
                continue;
            }
            let value = args.next().ok_or_else(|| problem(alloc::format!("{flag} needs a value")))?;
            let number =
                |max: u64| {
                    value.parse::<u64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                        problem(alloc::format!("{flag} {value}: expected a whole number from 1 to {max}"))
                    })
                };
            match flag {
                "-c" => config.count = number(MAX_COUNT.into())? as u32,
                "-s" => config.size = number(MAX_PAYLOAD as u64)? as usize,
                "-i" => config.interval = seconds(flag, value, Duration::from_millis(10))?,
                "-W" => config.timeout = seconds(flag, value, Duration::from_millis(1))?,
                other => return Err(problem(alloc::format!("unknown argument {other:?}"))),
            }
        }
        config.target = target.ok_or_else(|| problem(String::from("no address to ping")))?;
        Ok(config)
    }
}

/// What a run of [`start`] measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Requests sent.
    pub transmitted: u32,
    /// Replies received in time.
    pub received: u32,
    /// Shortest round trip, if any reply came.
    pub min: Option<Duration>,
    /// Mean round trip, if any reply came.
    pub avg: Option<Duration>,
    /// Longest round trip, if any reply came.
    pub max: Option<Duration>,
}

impl Summary {
    /// Lost requests in percent, rounded down as ping(8) prints it.
    pub fn loss_percent(&self) -> u32 {
        if self.transmitted == 0 {
            return 0;
        }
        ((u64::from(self.transmitted - self.received) * 100) / u64::from(self.transmitted)) as u32
    }

    /// The process exit status ping(8) uses: 0 if any reply came, 1 if
    /// none did.
    pub fn exit_status(&self) -> u8 {
        if self.received > 0 {
            0
        } else {
            1
        }
    }
}

fn millis(d: Duration) -> MillisText {
    MillisText(d)
}

/// A duration shown in milliseconds with three decimals, as ping(8) does.
struct MillisText(Duration);

impl core::fmt::Display for MillisText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// Pings `config.target` through `stack`, writing ping(8)'s lines to
/// `console`, and returns what it measured.
///
/// Each request waits up to [`Config::timeout`] for its reply; requests
/// start [`Config::interval`] apart (later, if a reply takes longer). A
/// failure of one request (timeout, unreachable) is reported on its line
/// and counted as lost; a console that fails to write does not stop the
/// pings. The one payload buffer is allocated once.
pub async fn ping<P: Platform, S: Stack, C: Console>(platform: P, stack: &S, console: &C, config: &Config) -> Summary {
    let payload: Vec<u8> = (0..config.size).map(|i| i as u8).collect();
    let mut line = String::with_capacity(128);
    let _ = writeln!(line, "PING {} {} data bytes", config.target, config.size);
    let _ = console.write_all(line.as_bytes()).await;
    let mut summary = Summary::default();
    let mut total = Duration::ZERO;
    let started = platform.now();
    for i in 0..config.count {
        let seq = (i + 1) as u16;
        let sent = platform.now();
        let result = stack.icmp().ping(config.target, seq, &payload, config.timeout).await;
        let rtt = platform.now() - sent;
        summary.transmitted += 1;
        line.clear();
        match result {
            Ok(reply) => {
                summary.received += 1;
                total += rtt;
                summary.min = Some(summary.min.map_or(rtt, |m| m.min(rtt)));
                summary.max = Some(summary.max.map_or(rtt, |m| m.max(rtt)));
                let _ = write!(line, "{} bytes from {}: icmp_seq={}", reply.payload.len() + 8, reply.from, reply.seq);
                if let Some(ttl) = reply.ttl {
                    let _ = write!(line, " ttl={ttl}");
                }
                let _ = writeln!(line, " time={} ms", millis(rtt));
            }
            Err(e) => {
                let _ = writeln!(line, "icmp_seq={seq}: {e}");
            }
        }
        let _ = console.write_all(line.as_bytes()).await;
        if i + 1 < config.count {
            platform.sleep_until(next_start(started, config.interval, i + 1)).await;
        }
    }
    if summary.received > 0 {
        summary.avg = Some(total / summary.received);
    }
    line.clear();
    let _ = writeln!(line, "\n--- {} ping statistics ---", config.target);
    let _ = writeln!(
        line,
        "{} packets transmitted, {} received, {}% packet loss",
        summary.transmitted,
        summary.received,
        summary.loss_percent()
    );
    if let (Some(min), Some(avg), Some(max)) = (summary.min, summary.avg, summary.max) {
        let _ = writeln!(line, "rtt min/avg/max = {}/{}/{} ms", millis(min), millis(avg), millis(max));
    }
    let _ = console.write_all(line.as_bytes()).await;
    summary
}

/// When request `n` (counting from 0) is due: `n` intervals after the
/// start, so delays do not accumulate.
fn next_start(started: Instant, interval: Duration, n: u32) -> Instant {
    started + interval.saturating_mul(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| String::from(*s)).collect()
    }

    #[test]
    fn arguments_parse_with_ping_defaults() {
        let c = Config::from_args(&args(&["10.0.0.1"])).unwrap();
        assert_eq!(c.target, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((c.count, c.size, c.interval, c.timeout), (4, 56, Duration::from_secs(1), Duration::from_secs(2)));
        let c = Config::from_args(&args(&["-c", "3", "10.0.0.1", "-i", "0.2", "-s", "1400", "-W", "2.5"])).unwrap();
        assert_eq!(c.count, 3);
        assert_eq!(c.interval, Duration::from_millis(200));
        assert_eq!(c.size, 1400);
        assert_eq!(c.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn bad_arguments_say_which_and_why() {
        for (bad, what) in [
            (vec![], "no address"),
            (vec!["10.0.0.1", "10.0.0.2"], "only one address"),
            (vec!["example.org"], "not an IPv4 or IPv6 address"),
            (vec!["10.0.0.1", "-c"], "-c needs a value"),
            (vec!["10.0.0.1", "-c", "0"], "-c 0"),
            (vec!["10.0.0.1", "-s", "65508"], "-s 65508"),
            (vec!["10.0.0.1", "-i", "0.001"], "-i 0.001"),
            (vec!["10.0.0.1", "-i", "1.2.3"], "-i 1.2.3"),
            (vec!["10.0.0.1", "-W", "."], "-W ."),
            (vec!["10.0.0.1", "-x", "1"], "unknown argument \"-x\""),
        ] {
            let e = Config::from_args(&args(&bad)).unwrap_err();
            assert!(e.problem().contains(what), "{bad:?}: {e}");
            assert!(e.to_string().ends_with(Config::USAGE));
        }
    }

    #[test]
    fn summary_counts_loss_and_exit_status() {
        let s = Summary { transmitted: 3, received: 2, ..Summary::default() };
        assert_eq!((s.loss_percent(), s.exit_status()), (33, 0));
        let s = Summary { transmitted: 4, received: 0, ..Summary::default() };
        assert_eq!((s.loss_percent(), s.exit_status()), (100, 1));
        assert_eq!(Summary::default().loss_percent(), 0);
    }

    #[test]
    fn times_print_in_milliseconds_with_three_decimals() {
        assert_eq!(alloc::format!("{}", millis(Duration::from_micros(420))), "0.420");
        assert_eq!(alloc::format!("{}", millis(Duration::from_micros(12_345_678))), "12345.678");
    }
}
