//! `core::fmt::Write` over a console's diagnostic path.

use core::fmt;

use mirage_types::console::Console;

/// Formats straight into [`Console::write_diagnostic`], for panic handlers
/// and `write!` where nothing may allocate or wait.
///
/// Nothing is buffered: each piece the formatter produces is written at
/// once, so a `write!` makes several writes and output gets out even if
/// formatting panics half-way. Writing never fails (the console ignores
/// diagnostic failures; there is nowhere to report them).
///
/// ```
/// use core::fmt::Write;
/// use mirage_console::{DiagnosticWriter, MemConsole};
///
/// let console = MemConsole::new();
/// write!(DiagnosticWriter::new(&console), "panicked at {}:{}", "main.rs", 7).unwrap();
/// assert_eq!(console.diagnostics_string(), "panicked at main.rs:7");
/// ```
pub struct DiagnosticWriter<'a, C: ?Sized> {
    console: &'a C,
}

impl<'a, C: Console + ?Sized> DiagnosticWriter<'a, C> {
    /// A writer to `console`'s diagnostic path.
    pub fn new(console: &'a C) -> DiagnosticWriter<'a, C> {
        DiagnosticWriter { console }
    }
}

impl<C: Console + ?Sized> fmt::Write for DiagnosticWriter<'_, C> {
    /// Writes `s` through [`Console::write_diagnostic`]; always `Ok`.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.console.write_diagnostic(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemConsole;
    use core::fmt::Write;
    use mirage_types::console::DynConsole;

    #[test]
    fn formats_into_the_diagnostic_path() {
        let console = MemConsole::new();
        let mut writer = DiagnosticWriter::new(&console);
        let name = "a";
        write!(writer, "{name}-{:03}", 7).unwrap();
        writer.write_char('é').unwrap();
        writeln!(writer).unwrap();
        assert_eq!(console.diagnostics_string(), "a-007é\n");
        assert!(console.output().is_empty());
    }

    #[test]
    fn works_over_a_console_chosen_at_run_time() {
        let mem = MemConsole::new();
        let console: &dyn DynConsole = &mem;
        write!(DiagnosticWriter::new(console), "dyn {}", 1).unwrap();
        assert_eq!(mem.diagnostics_string(), "dyn 1");
    }
}
