//! Which log records to keep: the `LEVEL[,MODULE=LEVEL...]` flag syntax.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use log::{Level, LevelFilter};

/// The most module directives one filter may hold.
///
/// A filter is matched against every log record, so its size is bounded to
/// keep logging cheap and the memory a command line can make us allocate
/// small. 64 is far more than anyone types by hand.
pub const MAX_MODULE_DIRECTIVES: usize = 64;

const LEVEL_NAMES: &str = "off, error, warn, info, debug or trace";

/// A log filter: a default level and per-module levels.
///
/// The text form, accepted by [`FromStr`] and produced by [`fmt::Display`],
/// is `LEVEL[,MODULE=LEVEL...]`:
///
/// - `LEVEL` is one of `off`, `error`, `warn`, `info`, `debug`, `trace`,
///   in any case.
/// - A bare `LEVEL` sets the default for records no module directive
///   matches. Without one the default is `off`, as with `env_logger`: write
///   `warn,mirage_net_stack=debug` to keep other modules' warnings.
/// - `MODULE=LEVEL` sets the level for a `log` target (by default the
///   module path of the logging code) and everything below it. `MODULE`
///   matches on `::` boundaries: `net` matches the targets `net` and
///   `net::arp`, not `network`. When several directives match, the longest
///   wins: with `net=warn,net::arp=trace`, `net::arp::cache` logs at trace.
/// - Spaces around parts are ignored, as are empty parts (`info,`). A later
///   directive for the same module, or a later bare level, replaces the
///   earlier one.
///
/// At most [`MAX_MODULE_DIRECTIVES`] distinct modules may be given.
///
/// ```
/// use log::Level;
/// use mirage_console::LogFilter;
///
/// let filter: LogFilter = "warn,mirage_net_stack=debug,mirage_net_stack::tcp=trace".parse()?;
/// assert!(filter.enabled("mirage_net_stack::arp", Level::Debug));
/// assert!(filter.enabled("mirage_net_stack::tcp::timer", Level::Trace));
/// assert!(!filter.enabled("mirage_block", Level::Info));
/// # Ok::<(), mirage_console::LogFilterError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter {
    default: LevelFilter,
    /// Distinct module prefixes, in the order first given.
    modules: Vec<(String, LevelFilter)>,
}

impl LogFilter {
    /// A filter that keeps records at `default` or more severe, from every module.
    pub const fn new(default: LevelFilter) -> LogFilter {
        LogFilter { default, modules: Vec::new() }
    }

    /// Whether a record from `target` at `level` passes the filter.
    pub fn enabled(&self, target: &str, level: Level) -> bool {
        level <= self.level_for(target)
    }

    /// The most verbose level any record can pass at: give it to
    /// [`log::set_max_level`] so the `log` macros skip the rest cheaply.
    pub fn max_level(&self) -> LevelFilter {
        self.modules.iter().map(|(_, level)| *level).fold(self.default, Ord::max)
    }

    /// The level that applies to `target`: that of the longest matching
    /// module directive, else the default.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.modules
            .iter()
            .filter(|(module, _)| module_matches(module, target))
            .max_by_key(|(module, _)| module.len())
            .map_or(self.default, |(_, level)| *level)
    }

    /// The level for records no module directive matches.
    pub fn default_level(&self) -> LevelFilter {
        self.default
    }
}

/// Whether `module` is `target` or one of its `::`-separated ancestors.
fn module_matches(module: &str, target: &str) -> bool {
    match target.strip_prefix(module) {
        Some(rest) => rest.is_empty() || rest.starts_with("::"),
        None => false,
    }
}

/// The lowercase name of a level, as the text form uses.
fn level_name(level: LevelFilter) -> &'static str {
    match level {
        LevelFilter::Off => "off",
        LevelFilter::Error => "error",
        LevelFilter::Warn => "warn",
        LevelFilter::Info => "info",
        LevelFilter::Debug => "debug",
        LevelFilter::Trace => "trace",
    }
}

fn parse_level(level: &str, spec: &str) -> Result<LevelFilter, LogFilterError> {
    // `LevelFilter::from_str` accepts exactly the six names, in any case.
    level
        .parse::<LevelFilter>()
        .map_err(|_| LogFilterError::UnknownLevel { level: level.to_string(), spec: spec.to_string() })
}

/// Whether `module` can ever match a target: `::`-separated non-empty
/// segments without spaces, `,`, `=` or stray colons.
fn is_valid_module(module: &str) -> bool {
    module.split("::").all(|segment| {
        !segment.is_empty() && !segment.chars().any(|c| c.is_whitespace() || matches!(c, ':' | ',' | '='))
    })
}

impl FromStr for LogFilter {
    type Err = LogFilterError;

    /// Parses `LEVEL[,MODULE=LEVEL...]` (see [`LogFilter`]).
    ///
    /// Errors name the part that is wrong: an unknown level, a module that
    /// could never match, more than [`MAX_MODULE_DIRECTIVES`] modules, or no
    /// directive at all.
    fn from_str(spec: &str) -> Result<LogFilter, LogFilterError> {
        let mut filter = LogFilter::new(LevelFilter::Off);
        let mut any_directive = false;
        for part in spec.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            any_directive = true;
            let Some((module, level)) = part.split_once('=') else {
                filter.default = parse_level(part, spec)?;
                continue;
            };
            let (module, level) = (module.trim(), parse_level(level.trim(), spec)?);
            if !is_valid_module(module) {
                return Err(LogFilterError::InvalidModule { module: module.to_string(), spec: spec.to_string() });
            }
            if let Some(existing) = filter.modules.iter_mut().find(|(m, _)| m == module) {
                existing.1 = level;
            } else if filter.modules.len() == MAX_MODULE_DIRECTIVES {
                return Err(LogFilterError::TooManyModules { limit: MAX_MODULE_DIRECTIVES });
            } else {
                filter.modules.push((module.to_string(), level));
            }
        }
        if !any_directive {
            return Err(LogFilterError::Empty);
        }
        Ok(filter)
    }
}

impl fmt::Display for LogFilter {
    /// The text form, which parses back to an equal filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(level_name(self.default))?;
        for (module, level) in &self.modules {
            write!(f, ",{module}={}", level_name(*level))?;
        }
        Ok(())
    }
}

/// Why a log filter flag did not parse. The message names the bad part and
/// what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFilterError {
    /// The flag held no directive at all.
    Empty,
    /// A level name is not one of the six known ones.
    UnknownLevel {
        /// The unknown name, as written.
        level: String,
        /// The whole flag.
        spec: String,
    },
    /// A module name could never match a log target (an empty `::`
    /// segment, a space, a stray `:`).
    InvalidModule {
        /// The module, as written.
        module: String,
        /// The whole flag.
        spec: String,
    },
    /// More distinct modules than [`MAX_MODULE_DIRECTIVES`].
    TooManyModules {
        /// The limit that was exceeded.
        limit: usize,
    },
}

impl fmt::Display for LogFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogFilterError::Empty => {
                write!(f, "empty log filter; expected LEVEL[,MODULE=LEVEL...] with LEVEL one of {LEVEL_NAMES}")
            }
            LogFilterError::UnknownLevel { level, spec } => {
                write!(f, "unknown level '{level}' in '{spec}'; expected {LEVEL_NAMES}")
            }
            LogFilterError::InvalidModule { module, spec } => write!(
                f,
                "invalid module '{module}' in '{spec}'; expected a log target such as 'mirage_net_stack::arp' \
                 (non-empty '::'-separated names without spaces)"
            ),
            LogFilterError::TooManyModules { limit } => {
                write!(f, "log filter names more than {limit} modules; at most {limit} are allowed")
            }
        }
    }
}

impl core::error::Error for LogFilterError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn parse(spec: &str) -> LogFilter {
        spec.parse().unwrap_or_else(|e| panic!("'{spec}' should parse: {e}"))
    }

    #[test]
    fn bare_level_sets_the_default_in_any_case() {
        for (spec, level) in [
            ("off", LevelFilter::Off),
            ("ERROR", LevelFilter::Error),
            ("Warn", LevelFilter::Warn),
            ("info", LevelFilter::Info),
            ("dEbUg", LevelFilter::Debug),
            ("trace", LevelFilter::Trace),
        ] {
            let filter = parse(spec);
            assert_eq!(filter.default_level(), level, "{spec}");
            assert_eq!(filter.level_for("anything::at::all"), level, "{spec}");
            assert_eq!(filter.max_level(), level, "{spec}");
        }
    }

    #[test]
    fn levels_compare_by_severity() {
        let filter = parse("warn");
        assert!(filter.enabled("x", Level::Error));
        assert!(filter.enabled("x", Level::Warn));
        assert!(!filter.enabled("x", Level::Info));
        assert!(!parse("off").enabled("x", Level::Error));
    }

    #[test]
    fn without_a_bare_level_other_modules_are_off() {
        let filter = parse("net=debug");
        assert_eq!(filter.default_level(), LevelFilter::Off);
        assert!(filter.enabled("net", Level::Debug));
        assert!(!filter.enabled("block", Level::Error));
        assert_eq!(filter.max_level(), LevelFilter::Debug);
    }

    #[test]
    fn modules_match_on_path_boundaries_only() {
        let filter = parse("off,net=trace");
        assert!(filter.enabled("net", Level::Trace));
        assert!(filter.enabled("net::arp", Level::Trace));
        assert!(filter.enabled("net::arp::cache", Level::Trace));
        assert!(!filter.enabled("network", Level::Error));
        assert!(!filter.enabled("ne", Level::Error));
        assert!(!filter.enabled("net:", Level::Error));
        assert!(!filter.enabled("other::net", Level::Error));
    }

    #[test]
    fn longest_matching_prefix_wins_whatever_the_order() {
        for spec in ["info,a=warn,a::b=trace,a::b::c=off", "a::b::c=off,a::b=trace,info,a=warn"] {
            let filter = parse(spec);
            assert_eq!(filter.level_for("a"), LevelFilter::Warn, "{spec}");
            assert_eq!(filter.level_for("a::x"), LevelFilter::Warn, "{spec}");
            assert_eq!(filter.level_for("a::b"), LevelFilter::Trace, "{spec}");
            assert_eq!(filter.level_for("a::b::d"), LevelFilter::Trace, "{spec}");
            assert_eq!(filter.level_for("a::b::c"), LevelFilter::Off, "{spec}");
            assert_eq!(filter.level_for("a::b::c::d"), LevelFilter::Off, "{spec}");
            assert_eq!(filter.level_for("a::bc"), LevelFilter::Warn, "{spec}");
            assert_eq!(filter.level_for("ab"), LevelFilter::Info, "{spec}");
            assert_eq!(filter.max_level(), LevelFilter::Trace, "{spec}");
        }
    }

    #[test]
    fn later_directives_replace_earlier_ones() {
        let filter = parse("info,net=debug,trace,net=error");
        assert_eq!(filter.default_level(), LevelFilter::Trace);
        assert_eq!(filter.level_for("net"), LevelFilter::Error);
        assert_eq!(filter.to_string(), "trace,net=error");
    }

    #[test]
    fn spaces_and_empty_parts_are_ignored() {
        let filter = parse(" info , net = debug ,");
        assert_eq!(filter, parse("info,net=debug"));
    }

    #[test]
    fn display_parses_back_to_the_same_filter() {
        for spec in ["info", "OFF,a=Trace", "warn,mirage_net_stack::arp=debug,b=off", "x=error"] {
            let filter = parse(spec);
            let text = filter.to_string();
            assert_eq!(parse(&text), filter, "{spec} printed as {text}");
        }
        assert_eq!(parse("WARN,a::b=Trace").to_string(), "warn,a::b=trace");
    }

    #[test]
    fn unknown_level_names_the_level_and_the_flag() {
        let err = "info,net=loud".parse::<LogFilter>().unwrap_err();
        assert_eq!(err, LogFilterError::UnknownLevel { level: "loud".into(), spec: "info,net=loud".into() });
        assert_eq!(
            err.to_string(),
            "unknown level 'loud' in 'info,net=loud'; expected off, error, warn, info, debug or trace"
        );
        // A bare module name is not a level.
        let err = "net".parse::<LogFilter>().unwrap_err();
        assert!(matches!(err, LogFilterError::UnknownLevel { ref level, .. } if level == "net"), "{err:?}");
        // Nor is a level with an extra `=`.
        assert!(matches!("a=info=b".parse::<LogFilter>(), Err(LogFilterError::UnknownLevel { .. })));
        assert!(matches!("a=".parse::<LogFilter>(), Err(LogFilterError::UnknownLevel { .. })));
    }

    #[test]
    fn modules_that_can_never_match_are_rejected() {
        for (spec, module) in [
            ("=info", ""),
            ("net::=info", "net::"),
            ("::net=info", "::net"),
            ("a:b=info", "a:b"),
            ("my net=info", "my net"),
        ] {
            let err = spec.parse::<LogFilter>().unwrap_err();
            assert_eq!(err, LogFilterError::InvalidModule { module: module.into(), spec: spec.into() }, "{spec}");
            assert!(err.to_string().contains(&format!("'{module}'")), "{err}");
        }
    }

    #[test]
    fn empty_flag_is_an_error() {
        for spec in ["", "  ", ",", " , ,"] {
            let err = spec.parse::<LogFilter>().unwrap_err();
            assert_eq!(err, LogFilterError::Empty, "{spec:?}");
            assert!(err.to_string().contains("LEVEL[,MODULE=LEVEL...]"));
        }
    }

    #[test]
    fn module_count_is_bounded() {
        let within: Vec<String> = (0..MAX_MODULE_DIRECTIVES).map(|i| format!("m{i}=debug")).collect();
        let filter = parse(&within.join(","));
        assert_eq!(filter.level_for("m63::x"), LevelFilter::Debug);
        // Repeating a module does not count twice.
        parse(&format!("{},m0=trace", within.join(",")));

        let over = format!("{},extra=info", within.join(","));
        let err = over.parse::<LogFilter>().unwrap_err();
        assert_eq!(err, LogFilterError::TooManyModules { limit: MAX_MODULE_DIRECTIVES });
        assert!(err.to_string().contains("64"));
    }

    proptest::proptest! {
        /// Any text either parses or gives an error; it never panics, and
        /// what parses prints back to an equal filter.
        #[test]
        fn any_text_parses_or_fails_cleanly(spec in "[a-zA-Z_:=, ]{0,40}|\\PC{0,40}") {
            if let Ok(filter) = spec.parse::<LogFilter>() {
                proptest::prop_assert_eq!(filter.to_string().parse::<LogFilter>(), Ok(filter));
            }
        }

        /// Generated filters survive printing and parsing.
        #[test]
        fn generated_filters_round_trip(
            default in 0usize..6,
            modules in proptest::collection::vec(("[a-z_][a-z0-9_]{0,6}(::[a-z_][a-z0-9_]{0,6}){0,2}", 0usize..6), 0..10),
        ) {
            let levels = LevelFilter::iter().collect::<Vec<_>>();
            let mut spec = level_name(levels[default]).to_string();
            for (module, level) in &modules {
                spec.push_str(&format!(",{module}={}", level_name(levels[*level])));
            }
            let filter = parse(&spec);
            proptest::prop_assert_eq!(parse(&filter.to_string()), filter.clone());
            for (module, _) in &modules {
                // The last directive for a module is the one in force.
                let (_, level) = modules.iter().rev().find(|(m, _)| m == module).unwrap();
                proptest::prop_assert_eq!(filter.level_for(module), levels[*level]);
            }
        }
    }

    #[test]
    fn new_keeps_everything_at_or_above_its_level() {
        let filter = LogFilter::new(LevelFilter::Info);
        assert!(filter.enabled("any", Level::Info));
        assert!(!filter.enabled("any", Level::Debug));
        assert_eq!(filter.to_string(), "info");
    }
}
