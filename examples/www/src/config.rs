//! The server's settings and their command-line flags.

use alloc::string::String;
use core::time::Duration;

/// The server's settings. [`Config::default`] is what runs without flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The TCP port to listen on (`--port`, default 8080 so that it runs
    /// without privileges).
    pub port: u16,
    /// The most connections served at once (`--max-connections`, default
    /// 960). From three quarters of this on, a new connection makes room
    /// by resetting the connection that has waited longest for a request
    /// (idle, trickling a head, or lingering after its last answer); a
    /// connection accepted while this many are open and none can be
    /// evicted gets a 503 with `Retry-After`.
    ///
    /// The default leaves room below the 1024 connections of our own
    /// TCP/IP stack's table (and of a Linux process's usual limit on open
    /// files) for handshakes, connections closing and those 503 answers:
    /// at the table's limit the stack drops a SYN without an answer.
    pub max_connections: usize,
    /// The most connections one peer address may have open at once
    /// (`--max-connections-per-address`, default 64); more get a 503.
    /// Loopback peers are exempt: behind a reverse proxy on the same host,
    /// every client comes from 127.0.0.1 (raise the limit for a proxy on
    /// another host).
    pub max_connections_per_address: usize,
    /// How long a connection may wait for the first byte of its next
    /// request (after a response), or for the peer to accept response
    /// bytes, before it is ended (`--idle-timeout SECONDS`, default 30 s).
    pub idle_timeout: Duration,
    /// The time a whole request head may take (`--head-timeout SECONDS`,
    /// default 10 s): from the connection's start for its first request,
    /// from the first byte of the head for later ones, however slowly its
    /// bytes trickle in. A connection whose head is late is ended.
    pub head_timeout: Duration,
    /// The largest request head (request line and header fields) in bytes
    /// (default 8 KiB). The server reads no more than this before the head
    /// is complete, and answers a longer one with 431.
    pub head_limit: usize,
    /// The largest piece of a value read from the store and sent at once
    /// (default 64 KiB), so that large values do not need memory of their
    /// own size.
    pub chunk_size: usize,
    /// Established connections the stack may hold before the server
    /// accepts them (default 128).
    pub backlog: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            port: 8080,
            max_connections: 960,
            max_connections_per_address: 64,
            idle_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            head_limit: 8 * 1024,
            chunk_size: 64 * 1024,
            backlog: 128,
        }
    }
}

/// A command line the server cannot run with; the message says which flag
/// and why, followed by the usage.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n{usage}", usage = Config::USAGE)]
pub struct ConfigError {
    problem: String,
}

impl Config {
    /// The flags [`Config::from_args`] accepts.
    pub const USAGE: &'static str = "usage: www [--port N] [--max-connections N] [--max-connections-per-address N] \
                                     [--idle-timeout SECONDS] [--head-timeout SECONDS]";

    /// Reads the settings from the application's arguments (what
    /// `Platform::args` returns), starting from the defaults.
    ///
    /// Errors name the flag and the value that is wrong: an unknown flag, a
    /// missing value, a value that is not a number or is out of range (a
    /// port of 0, no connections, a zero timeout).
    pub fn from_args(args: &[String]) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value =
                || args.next().ok_or_else(|| ConfigError { problem: alloc::format!("{flag} needs a value") });
            let number = |value: &String| {
                value.parse::<u64>().ok().filter(|&n| n > 0).ok_or_else(|| ConfigError {
                    problem: alloc::format!("{flag} {value}: expected a positive whole number"),
                })
            };
            match flag.as_str() {
                "--port" => {
                    let v = value()?;
                    config.port = number(v)?
                        .try_into()
                        .map_err(|_| ConfigError { problem: alloc::format!("--port {v}: a port is at most 65535") })?;
                }
                "--max-connections" => {
                    config.max_connections = number(value()?)?.try_into().unwrap_or(usize::MAX);
                }
                "--max-connections-per-address" => {
                    config.max_connections_per_address = number(value()?)?.try_into().unwrap_or(usize::MAX);
                }
                "--idle-timeout" => config.idle_timeout = Duration::from_secs(number(value()?)?),
                "--head-timeout" => config.head_timeout = Duration::from_secs(number(value()?)?),
                other => return Err(ConfigError { problem: alloc::format!("unknown argument {other:?}") }),
            }
        }
        Ok(config)
    }
}

impl ConfigError {
    /// What is wrong, without the usage.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_without_flags() {
        assert_eq!(Config::from_args(&[]), Ok(Config::default()));
        assert_eq!(Config::default().port, 8080);
    }

    #[test]
    fn flags_set_fields() {
        let c = Config::from_args(&args("--port 9000 --max-connections 3 --idle-timeout 5")).unwrap();
        assert_eq!((c.port, c.max_connections, c.idle_timeout), (9000, 3, Duration::from_secs(5)));
        let c = Config::from_args(&args("--max-connections-per-address 4 --head-timeout 2")).unwrap();
        assert_eq!((c.max_connections_per_address, c.head_timeout), (4, Duration::from_secs(2)));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let problem = |s: &str| Config::from_args(&args(s)).unwrap_err().problem().to_string();
        assert_eq!(problem("--port"), "--port needs a value");
        assert_eq!(problem("--port 0"), "--port 0: expected a positive whole number");
        assert_eq!(problem("--port 65536"), "--port 65536: a port is at most 65535");
        assert_eq!(problem("--port x"), "--port x: expected a positive whole number");
        assert_eq!(problem("--idle-timeout -1"), "--idle-timeout -1: expected a positive whole number");
        assert_eq!(problem("--head-timeout 0"), "--head-timeout 0: expected a positive whole number");
        assert_eq!(
            problem("--max-connections-per-address 0"),
            "--max-connections-per-address 0: expected a positive whole number"
        );
        assert_eq!(problem("--verbose"), "unknown argument \"--verbose\"");
        let full = Config::from_args(&args("--verbose")).unwrap_err().to_string();
        assert!(full.ends_with(Config::USAGE), "{full}");
    }
}
