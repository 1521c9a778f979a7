//! An in-memory console for tests: scripted input, captured output.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use mirage_types::console::Console;
use mirage_types::flow::FlowError;
use spin::Mutex;

/// An in-memory [`Console`] for tests (feature `test-utils`).
///
/// **Input** is a script: pieces of bytes and errors pushed with
/// [`push_input`](MemConsole::push_input) and
/// [`push_read_error`](MemConsole::push_read_error), delivered in order. A
/// read returns at most [`read_chunk`](MemConsole::with_read_chunk) bytes
/// and never crosses from one pushed piece into the next, so a test decides
/// exactly where reads split its input (in the middle of a `\r\n` or of a
/// UTF-8 sequence, say). A scripted error is returned by one read. Once the
/// script is used up, reads return `Ok(0)`: end of input.
///
/// **Output** from [`Console::write`] and from
/// [`Console::write_diagnostic`] is captured separately
/// ([`output`](MemConsole::output), [`diagnostics`](MemConsole::diagnostics))
/// and together in order ([`transcript`](MemConsole::transcript)). Captured
/// output is not bounded: this is a test fake, and tests write little.
///
/// It is `Send + Sync`, as [`crate::Logger`] needs: its state sits behind a
/// `spin` mutex, the lock that works without `std`, so the fake links into
/// unikernel tests too. No method holds the lock across an `await` or while
/// calling out, so it cannot deadlock on the single thread of this OS.
///
/// ```
/// use mirage_console::MemConsole;
/// use mirage_types::console::Console;
///
/// let console = MemConsole::new().with_read_chunk(2);
/// console.push_input(b"hello");
/// futures::executor::block_on(async {
///     let mut buf = [0; 16];
///     assert_eq!(console.read(&mut buf).await, Ok(2));
///     assert_eq!(&buf[..2], b"he");
///     console.write_all(b"out").await.unwrap();
/// });
/// console.write_diagnostic(b"diag");
/// assert_eq!(console.output(), b"out");
/// assert_eq!(console.transcript(), b"outdiag");
/// ```
#[derive(Default)]
pub struct MemConsole {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    input: VecDeque<Scripted>,
    /// Largest read; 0 stands for unlimited.
    read_chunk: usize,
    /// Largest write accepted at once; 0 stands for unlimited.
    write_chunk: usize,
    write_error: Option<FlowError>,
    output: Vec<u8>,
    diagnostics: Vec<u8>,
    transcript: Vec<u8>,
    diagnostic_writes: usize,
}

enum Scripted {
    /// Bytes not yet read, from `.1` on.
    Bytes(Vec<u8>, usize),
    Error(FlowError),
}

/// `n` bytes at most, where 0 means no limit.
fn limit(n: usize, chunk: usize) -> usize {
    if chunk == 0 {
        n
    } else {
        n.min(chunk)
    }
}

impl MemConsole {
    /// A console with no input (reads return end of input) and no output
    /// yet; reads and writes move as many bytes as they can.
    pub fn new() -> MemConsole {
        MemConsole::default()
    }

    /// Limits each read to `chunk` bytes. `0` is taken as `1`: a read of
    /// zero bytes would mean end of input.
    pub fn with_read_chunk(self, chunk: usize) -> MemConsole {
        self.state.lock().read_chunk = chunk.max(1);
        self
    }

    /// Limits each [`Console::write`] to accepting `chunk` bytes, so
    /// `write_all` has to loop. `0` is taken as `1`.
    pub fn with_write_chunk(self, chunk: usize) -> MemConsole {
        self.state.lock().write_chunk = chunk.max(1);
        self
    }

    /// Appends `bytes` to the input script, as one piece no read crosses
    /// the end of. Empty pieces are ignored.
    pub fn push_input(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.state.lock().input.push_back(Scripted::Bytes(bytes.to_vec(), 0));
        }
    }

    /// Appends an error to the input script: the read that reaches it
    /// returns it, and reads after it go on with the rest of the script.
    pub fn push_read_error(&self, error: FlowError) {
        self.state.lock().input.push_back(Scripted::Error(error));
    }

    /// Makes every later [`Console::write`] fail with `error` (until
    /// called again with `None`). Diagnostic writes still succeed.
    pub fn set_write_error(&self, error: Option<FlowError>) {
        self.state.lock().write_error = error;
    }

    /// Whether every scripted input has been read.
    pub fn input_consumed(&self) -> bool {
        self.state.lock().input.is_empty()
    }

    /// What [`Console::write`] has accepted so far.
    pub fn output(&self) -> Vec<u8> {
        self.state.lock().output.clone()
    }

    /// What [`Console::write_diagnostic`] has been given so far.
    pub fn diagnostics(&self) -> Vec<u8> {
        self.state.lock().diagnostics.clone()
    }

    /// [`output`](MemConsole::output) as text; invalid UTF-8 shows as U+FFFD.
    pub fn output_string(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().output).into_owned()
    }

    /// [`diagnostics`](MemConsole::diagnostics) as text; invalid UTF-8
    /// shows as U+FFFD.
    pub fn diagnostics_string(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().diagnostics).into_owned()
    }

    /// Everything written through either path, in the order written.
    pub fn transcript(&self) -> Vec<u8> {
        self.state.lock().transcript.clone()
    }

    /// How many calls of [`Console::write_diagnostic`] there were, to check
    /// that something is written whole by one call.
    pub fn diagnostic_writes(&self) -> usize {
        self.state.lock().diagnostic_writes
    }
}

impl Console for MemConsole {
    type Error = FlowError;

    /// Reads the next scripted piece (see [`MemConsole`]). Never waits.
    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut state = self.state.lock();
        let chunk = state.read_chunk;
        match state.input.pop_front() {
            None => Ok(0),
            Some(Scripted::Error(e)) => Err(e),
            Some(Scripted::Bytes(bytes, at)) => {
                let n = limit(buf.len().min(bytes.len() - at), chunk);
                buf[..n].copy_from_slice(&bytes[at..at + n]);
                if at + n < bytes.len() {
                    state.input.push_front(Scripted::Bytes(bytes, at + n));
                }
                Ok(n)
            }
        }
    }

    /// Captures up to the write chunk of `buf`, or fails with the error set
    /// by [`MemConsole::set_write_error`]. Never waits.
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        let mut state = self.state.lock();
        if let Some(e) = &state.write_error {
            return Err(e.clone());
        }
        let n = limit(buf.len(), state.write_chunk);
        state.output.extend_from_slice(&buf[..n]);
        state.transcript.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        state.diagnostics.extend_from_slice(bytes);
        state.transcript.extend_from_slice(bytes);
        state.diagnostic_writes += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use mirage_types::flow::ErrorKind;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn is_send_and_sync() {
        assert_send_sync::<MemConsole>();
    }

    #[test]
    fn reads_follow_the_script_in_chunks_without_crossing_pieces() {
        let console = MemConsole::new().with_read_chunk(3);
        console.push_input(b"abcdefg");
        console.push_input(b"");
        console.push_input(b"hi");
        console.push_read_error(FlowError::ConnectionReset);
        console.push_input(b"j");
        let mut reads = Vec::new();
        let mut buf = [0u8; 8];
        block_on(async {
            for _ in 0..8 {
                match console.read(&mut buf).await {
                    Ok(n) => reads.push(Ok(buf[..n].to_vec())),
                    Err(e) => reads.push(Err(e)),
                }
            }
        });
        let expected: Vec<Result<Vec<u8>, FlowError>> = [
            Ok(&b"abc"[..]),
            Ok(b"def"),
            Ok(b"g"),
            Ok(b"hi"),
            Err(FlowError::ConnectionReset),
            Ok(b"j"),
            Ok(b""),
            Ok(b""),
        ]
        .into_iter()
        .map(|r| r.map(<[u8]>::to_vec))
        .collect();
        assert_eq!(reads, expected);
        assert!(console.input_consumed());
    }

    #[test]
    fn reads_are_limited_by_the_callers_buffer() {
        let console = MemConsole::new();
        console.push_input(b"abcdef");
        let mut buf = [0u8; 4];
        assert_eq!(block_on(console.read(&mut buf)), Ok(4));
        assert_eq!(block_on(console.read(&mut buf)), Ok(2));
        assert_eq!(&buf[..2], b"ef");
        assert_eq!(block_on(console.read(&mut [])), Ok(0));
    }

    #[test]
    fn writes_are_captured_in_chunks_and_can_fail() {
        let console = MemConsole::new().with_write_chunk(2);
        assert_eq!(block_on(console.write(b"abc")), Ok(2));
        block_on(console.write_all(b"defgh")).unwrap();
        console.write_diagnostic(b"[d]");
        assert_eq!(console.output(), b"abdefgh");
        assert_eq!(console.output_string(), "abdefgh");
        assert_eq!(console.diagnostics(), b"[d]");
        assert_eq!(console.transcript(), b"abdefgh[d]");

        let error = FlowError::Other { kind: ErrorKind::Io, message: "disk on fire".into() };
        console.set_write_error(Some(error.clone()));
        assert_eq!(block_on(console.write(b"x")), Err(error));
        console.write_diagnostic(b"!");
        console.set_write_error(None);
        assert_eq!(block_on(console.write(b"y")), Ok(1));
        assert_eq!(console.transcript(), b"abdefgh[d]!y");
        assert_eq!(console.diagnostic_writes(), 2);
    }
}
