//! The console of a Linux process: standard input and standard output.

use std::io::Write;
use std::sync::Arc;

use mirage_types::console::Console;
use mirage_types::flow::{ErrorKind, FlowError};
use tokio::io::AsyncReadExt;

/// The process's stdin and stdout as a [`Console`].
///
/// `Send + Sync` and cheap to clone (clones share one stdin reader), so a
/// logger can own one while the application holds another.
///
/// Output goes through Rust's locked stdout, synchronously: [`Console::write`]
/// and [`Console::write_diagnostic`] therefore never interleave within a
/// line, and a write is complete when its future first returns. The cost is
/// that a write blocks the event loop while stdout is a full pipe; a console
/// is for humans and logs, not for bulk data.
///
/// Input is tokio's stdin, which reads on a blocking thread: a read that
/// was cancelled leaves the bytes it gathered inside the shared reader, and
/// the next read returns them, so no input is lost.
#[derive(Clone, Debug, Default)]
pub struct StdioConsole {
    stdin: Arc<tokio::sync::Mutex<Option<tokio::io::Stdin>>>,
}

impl StdioConsole {
    /// The console over this process's stdin and stdout.
    pub fn new() -> StdioConsole {
        StdioConsole::default()
    }
}

fn io_error(what: &str, e: &std::io::Error) -> FlowError {
    FlowError::Other { kind: ErrorKind::Io, message: format!("{what}: {e}") }
}

impl Console for StdioConsole {
    type Error = FlowError;

    /// Reads from stdin; `Ok(0)` once stdin is closed. Needs a tokio
    /// runtime. Cancel-safe (see the type's documentation).
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        let mut stdin = self.stdin.lock().await;
        // Created on first use: tokio's stdin needs a runtime, `new` does not.
        let stdin = stdin.get_or_insert_with(tokio::io::stdin);
        stdin.read(buf).await.map_err(|e| io_error("reading standard input", &e))
    }

    /// Writes to stdout and flushes. Completes without waiting on the event
    /// loop, so it is cancel-safe.
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        let mut out = std::io::stdout().lock();
        let n = out.write(buf).map_err(|e| io_error("writing standard output", &e))?;
        out.flush().map_err(|e| io_error("flushing standard output", &e))?;
        Ok(n)
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // There is nowhere left to report a failure to write a diagnostic.
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn console_is_send_sync_and_clone() {
        assert_send_sync::<StdioConsole>();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn write_reports_bytes_written() {
        let console = StdioConsole::new();
        // The test harness captures neither stdout path: this checks the
        // count, the text shows up in `cargo test -- --nocapture`.
        let n = Console::write(&console, b"console write test\n").await.expect("write to stdout");
        assert_eq!(n, b"console write test\n".len());
        assert_eq!(Console::write(&console, b"").await, Ok(0));
        console.write_diagnostic(b"console diagnostic test\n");
    }
}
