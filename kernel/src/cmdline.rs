//! The kernel command line: `[-l FILTER] [-- APP-ARGS...]`.
//!
//! The same shape as the unix platform's flags, so an application is
//! started the same way everywhere: `-l` sets the log filter (as
//! `mirage_console::LogFilter` parses it), and everything after `--` is the
//! application's (`Platform::args`). Words are separated by spaces; there
//! is no quoting.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// The log filter when the command line sets none.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// The most application arguments accepted; the command line is at most
/// 4096 bytes, so this only bounds a line of single-character words.
pub const MAX_APP_ARGS: usize = 1024;

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelArgs {
    /// The `-l` filter, or [`DEFAULT_LOG_FILTER`].
    pub log_filter: String,
    /// The words after `--`.
    pub app_args: Vec<String>,
}

/// A command line the kernel does not understand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLineError {
    /// A word before `--` that is not a kernel flag.
    UnknownFlag(String),
    /// `-l` at the end of the line.
    MissingValue(&'static str),
    /// More than [`MAX_APP_ARGS`] application arguments.
    TooManyArgs,
}

impl fmt::Display for CommandLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandLineError::UnknownFlag(flag) => write!(f, "unknown kernel flag {flag:?}"),
            CommandLineError::MissingValue(flag) => write!(f, "kernel flag {flag} needs a value"),
            CommandLineError::TooManyArgs => write!(f, "more than {MAX_APP_ARGS} application arguments"),
        }?;
        f.write_str(" (usage: [-l FILTER] [-- APP-ARGS...])")
    }
}

impl core::error::Error for CommandLineError {}

impl KernelArgs {
    /// Parses `line`.
    pub fn parse(line: &str) -> Result<KernelArgs, CommandLineError> {
        let mut words = line.split_ascii_whitespace();
        let mut args = KernelArgs { log_filter: DEFAULT_LOG_FILTER.to_string(), app_args: Vec::new() };
        while let Some(word) = words.next() {
            match word {
                "--" => {
                    for word in words.by_ref() {
                        if args.app_args.len() == MAX_APP_ARGS {
                            return Err(CommandLineError::TooManyArgs);
                        }
                        args.app_args.push(word.to_string());
                    }
                }
                "-l" => args.log_filter = words.next().ok_or(CommandLineError::MissingValue("-l"))?.to_string(),
                other => return Err(CommandLineError::UnknownFlag(other.to_string())),
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(KernelArgs::parse("  ").unwrap(), KernelArgs { log_filter: "info".into(), app_args: Vec::new() });
    }

    #[test]
    fn filter_and_app_args() {
        let args = KernelArgs::parse("-l debug,mirage_net_stack=trace -- panic -l x").unwrap();
        assert_eq!(args.log_filter, "debug,mirage_net_stack=trace");
        assert_eq!(args.app_args, ["panic", "-l", "x"]);
    }

    #[test]
    fn errors_name_the_word() {
        let err = KernelArgs::parse("-l info --frob").unwrap_err();
        assert_eq!(err, CommandLineError::UnknownFlag("--frob".into()));
        assert!(err.to_string().contains("\"--frob\"") && err.to_string().contains("usage"));
        assert_eq!(KernelArgs::parse("-l").unwrap_err(), CommandLineError::MissingValue("-l"));
        let many = alloc::format!("-- {}", "a ".repeat(MAX_APP_ARGS + 1));
        assert_eq!(KernelArgs::parse(&many).unwrap_err(), CommandLineError::TooManyArgs);
    }
}
