//! Line input over a console, with a bound on line length.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use mirage_types::console::Console;
use mirage_types::flow::{self, ErrorKind};

/// How many bytes [`LineReader`] asks the console for at a time.
///
/// It is the "one read chunk" of the memory bound (see [`LineReader`]), and
/// it sits in the `read_line` future, which is why it is small.
pub const READ_CHUNK: usize = 256;

/// Reads lines of text from a console, each at most a given length.
///
/// Lines end in `\n` or `\r\n`; the terminator is not part of the line. A
/// last line without a terminator is returned before end of input (a lone
/// `\r` just before end of input counts as its terminator).
///
/// # Bounds
///
/// A line may hold at most `max_len` bytes (terminator excluded). A longer
/// line is reported as [`LineError::TooLong`] as soon as it is known to be
/// too long, and the rest of it is discarded as it arrives, so the reader
/// never holds more than `max_len + 1 + READ_CHUNK` bytes of input (the
/// `+ 1` is a `\r` that may start a terminator), whatever the input.
///
/// # Errors do not end the input
///
/// After [`LineError::TooLong`] or [`LineError::InvalidUtf8`] the next call
/// returns the next line. After [`LineError::Console`] the next call reads
/// from the console again, keeping the part of the line read before the
/// error.
///
/// ```
/// use mirage_console::{LineError, LineReader, MemConsole};
///
/// let console = MemConsole::new().with_read_chunk(3);
/// console.push_input(b"help\r\nthis line is too long\nquit");
/// let mut reader = LineReader::new(&console, 10);
/// futures::executor::block_on(async {
///     assert_eq!(reader.read_line().await, Ok(Some("help".to_string())));
///     assert_eq!(reader.read_line().await, Err(LineError::TooLong { line: 2, limit: 10 }));
///     assert_eq!(reader.read_line().await, Ok(Some("quit".to_string())));
///     assert_eq!(reader.read_line().await, Ok(None));
/// });
/// ```
pub struct LineReader<C> {
    console: C,
    max_len: usize,
    /// Input read but not yet returned is `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// `buf[start..scanned]` holds no `\n`, so searches resume at `scanned`.
    scanned: usize,
    /// Input up to the next `\n` belongs to a line already reported too long.
    discarding: bool,
    /// Lines seen so far, including those reported as errors.
    lines: u64,
    /// The console reported end of input.
    at_end: bool,
}

impl<C: Console> LineReader<C> {
    /// A reader of lines of at most `max_len` bytes from `console`.
    ///
    /// Memory use follows from `max_len` (see [Bounds](LineReader#bounds)),
    /// so choose it for what a line can sensibly hold, not "large enough".
    pub fn new(console: C, max_len: usize) -> LineReader<C> {
        LineReader {
            console,
            max_len,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            discarding: false,
            lines: 0,
            at_end: false,
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// How many lines have been read so far, counting those returned as
    /// [`LineError::TooLong`] or [`LineError::InvalidUtf8`]; it is the
    /// number of the last line returned.
    pub fn lines_read(&self) -> u64 {
        self.lines
    }

    /// The console lines are read from.
    pub fn console(&self) -> &C {
        &self.console
    }

    /// The console, giving up input read but not yet returned as a line.
    pub fn into_inner(self) -> C {
        self.console
    }

    /// Reads the next line, without its terminator.
    ///
    /// `Ok(Some(line))` is the next line of input; `Ok(None)` means the
    /// console reported end of input and every line has been returned
    /// (later calls return `Ok(None)` again without reading). Errors:
    ///
    /// - [`LineError::TooLong`]: the next line has more than
    ///   [`max_len`](LineReader::max_len) bytes. It is skipped; the next
    ///   call returns the line after it.
    /// - [`LineError::InvalidUtf8`]: the next line is not UTF-8. It is
    ///   skipped; the next call returns the line after it.
    /// - [`LineError::Console`]: reading failed. Nothing is lost: the next
    ///   call reads again and continues the same line.
    ///
    /// Cancel-safe, provided the console's `read` is (as [`Console::read`]
    /// requires): input is moved into the reader only after a read
    /// completes, and the reader's state is updated before the next await,
    /// so dropping the future loses no input and the next call continues
    /// where this one stopped.
    pub async fn read_line(&mut self) -> Result<Option<String>, LineError<C::Error>> {
        loop {
            if let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let (line_start, newline) = (self.start, self.scanned + offset);
                self.start = newline + 1;
                self.scanned = self.start;
                if core::mem::take(&mut self.discarding) {
                    continue;
                }
                return self.finish_line(line_start, newline).map(Some);
            }
            self.scanned = self.buf.len();

            if self.discarding {
                self.clear();
            } else if self.pending_len() > self.max_len {
                self.lines += 1;
                self.clear();
                self.discarding = !self.at_end;
                return Err(LineError::TooLong { line: self.lines, limit: self.max_len });
            }

            if self.at_end {
                self.discarding = false;
                if self.start == self.buf.len() {
                    return Ok(None);
                }
                let (line_start, end) = (self.start, self.buf.len());
                self.start = end;
                return self.finish_line(line_start, end).map(Some);
            }

            // Drop returned lines before reading, which is what keeps the
            // buffer within `max_len + 1 + READ_CHUNK`.
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;

            let mut chunk = [0u8; READ_CHUNK];
            let n = self.console.read(&mut chunk).await.map_err(LineError::Console)?;
            match chunk.get(..n) {
                Some([]) => self.at_end = true,
                Some(input) => self.buf.extend_from_slice(input),
                // A console claiming more than the buffer it was given breaks
                // its contract; taking it as end of input bounds the damage.
                None => self.at_end = true,
            }
        }
    }

    /// The length of the partial line held, not counting a final `\r` that
    /// may turn out to start its terminator.
    fn pending_len(&self) -> usize {
        let pending = &self.buf[self.start..];
        pending.len() - usize::from(pending.last() == Some(&b'\r'))
    }

    /// Forgets all input held.
    fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
    }

    /// Turns `buf[start..end]`, a whole line whose terminator (if any)
    /// begins at `end`, into the result for it.
    fn finish_line(&mut self, start: usize, end: usize) -> Result<String, LineError<C::Error>> {
        self.lines += 1;
        let mut line = &self.buf[start..end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.len() > self.max_len {
            return Err(LineError::TooLong { line: self.lines, limit: self.max_len });
        }
        String::from_utf8(line.to_vec()).map_err(|_| LineError::InvalidUtf8 { line: self.lines })
    }
}

/// Why [`LineReader::read_line`] returned no line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError<E> {
    /// The console's read failed; the reader can be used again.
    Console(E),
    /// A line was longer than the reader's limit and was discarded.
    TooLong {
        /// Its number, counting from 1.
        line: u64,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A line was not valid UTF-8 and was discarded.
    InvalidUtf8 {
        /// Its number, counting from 1.
        line: u64,
    },
}

impl<E: fmt::Display> fmt::Display for LineError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Console(e) => write!(f, "reading a line from the console failed: {e}"),
            LineError::TooLong { line, limit } => {
                write!(f, "input line {line} is longer than the limit of {limit} bytes; it was skipped")
            }
            LineError::InvalidUtf8 { line } => write!(f, "input line {line} is not valid UTF-8; it was skipped"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for LineError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LineError::Console(e) => Some(e),
            _ => None,
        }
    }
}

/// Line errors are flow errors, so generic code can convert them (for
/// example with [`flow::FlowError::from_error`]): a console error keeps its
/// kind, a bad line is [`ErrorKind::Other`].
impl<E: flow::Error + 'static> flow::Error for LineError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            LineError::Console(e) => e.kind(),
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemConsole;
    use alloc::string::ToString;
    use alloc::vec;
    use futures::executor::block_on;
    use mirage_types::flow::FlowError;

    type Outcome = Result<Option<String>, LineError<FlowError>>;

    /// Reads until end of input (or 100 results, to bound a broken reader).
    fn read_all<C: Console<Error = FlowError>>(reader: &mut LineReader<C>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        block_on(async {
            for _ in 0..100 {
                let outcome = reader.read_line().await;
                let done = outcome == Ok(None);
                outcomes.push(outcome);
                if done {
                    break;
                }
            }
        });
        outcomes
    }

    fn line(s: &str) -> Outcome {
        Ok(Some(s.to_string()))
    }

    /// The outcomes of reading `pieces` in reads of at most `chunk` bytes.
    fn read_pieces(pieces: &[&[u8]], chunk: usize, max_len: usize) -> Vec<Outcome> {
        let console = MemConsole::new().with_read_chunk(chunk);
        for piece in pieces {
            console.push_input(piece);
        }
        read_all(&mut LineReader::new(&console, max_len))
    }

    /// Every chunk size from one byte to the whole input gives the same lines.
    fn assert_lines_for_every_chunk(input: &[u8], max_len: usize, expected: &[Outcome]) {
        for chunk in 1..=input.len().max(1) {
            assert_eq!(read_pieces(&[input], chunk, max_len), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn empty_input_is_end_of_input_at_once_and_after() {
        let console = MemConsole::new();
        let mut reader = LineReader::new(&console, 10);
        assert_eq!(read_all(&mut reader), vec![Ok(None)]);
        assert_eq!(block_on(reader.read_line()), Ok(None));
        assert_eq!(reader.lines_read(), 0);
    }

    #[test]
    fn lf_and_crlf_both_end_lines() {
        assert_lines_for_every_chunk(
            b"one\ntwo\r\n\r\n\nthree\r\n",
            10,
            &[line("one"), line("two"), line(""), line(""), line("three"), Ok(None)],
        );
    }

    #[test]
    fn carriage_returns_inside_a_line_are_kept() {
        assert_lines_for_every_chunk(b"a\rb\r\r\n\rc\n", 10, &[line("a\rb\r"), line("\rc"), Ok(None)]);
    }

    #[test]
    fn final_line_without_terminator_comes_before_end() {
        assert_lines_for_every_chunk(b"first\nlast", 10, &[line("first"), line("last"), Ok(None)]);
        assert_lines_for_every_chunk(b"cr at end\r", 10, &[line("cr at end"), Ok(None)]);
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let outcomes = read_pieces(&[b"he", b"llo wo", b"rld\r", b"\nbye\n"], 100, 20);
        assert_eq!(outcomes, vec![line("hello world"), line("bye"), Ok(None)]);
    }

    #[test]
    fn limit_counts_bytes_without_the_terminator() {
        // Exactly at the limit is fine, with either terminator; one more is not.
        assert_lines_for_every_chunk(
            b"abcd\nabcd\r\nabcde\nab\n",
            4,
            &[line("abcd"), line("abcd"), Err(LineError::TooLong { line: 3, limit: 4 }), line("ab"), Ok(None)],
        );
        assert_lines_for_every_chunk(b"abcd\r", 4, &[line("abcd"), Ok(None)]);
        assert_lines_for_every_chunk(b"abcde", 4, &[Err(LineError::TooLong { line: 1, limit: 4 }), Ok(None)]);
        assert_lines_for_every_chunk(b"\n", 0, &[line(""), Ok(None)]);
    }

    #[test]
    fn too_long_line_is_skipped_and_the_next_line_returned() {
        let mut input = vec![b'x'; 5 * READ_CHUNK];
        input.extend_from_slice(b"\r\nok\n");
        for chunk in [1, 7, READ_CHUNK, input.len()] {
            assert_eq!(
                read_pieces(&[&input], chunk, 16),
                vec![Err(LineError::TooLong { line: 1, limit: 16 }), line("ok"), Ok(None)],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn memory_stays_within_the_limit_plus_one_chunk() {
        let max_len = 100;
        let console = MemConsole::new();
        // A megabyte without a newline, then a good line.
        for _ in 0..1024 {
            console.push_input(&[b'y'; 1024]);
        }
        console.push_input(b"\ngood\n");
        let mut reader = LineReader::new(&console, max_len);
        let bound = max_len + 1 + READ_CHUNK;
        block_on(async {
            assert_eq!(reader.read_line().await, Err(LineError::TooLong { line: 1, limit: max_len }));
            assert!(reader.buf.capacity() <= 2 * bound, "capacity {}", reader.buf.capacity());
            assert_eq!(reader.read_line().await, line("good"));
            assert!(reader.buf.len() <= bound);
            assert_eq!(reader.read_line().await, Ok(None));
        });
        assert!(reader.buf.capacity() <= 2 * bound, "capacity {}", reader.buf.capacity());
    }

    #[test]
    fn invalid_utf8_line_is_skipped_with_its_number() {
        assert_lines_for_every_chunk(
            b"good\nbad \xff here\n\xc3\nstill good\n",
            20,
            &[
                line("good"),
                Err(LineError::InvalidUtf8 { line: 2 }),
                Err(LineError::InvalidUtf8 { line: 3 }),
                line("still good"),
                Ok(None),
            ],
        );
        // A truncated sequence at the very end.
        assert_lines_for_every_chunk(
            b"ok\n\xe2\x82",
            20,
            &[line("ok"), Err(LineError::InvalidUtf8 { line: 2 }), Ok(None)],
        );
    }

    #[test]
    fn multibyte_character_split_across_reads_is_valid() {
        // "€" is E2 82 AC; "é" is C3 A9. Split inside both.
        let outcomes = read_pieces(&[b"price: \xe2", b"\x82", b"\xac caf\xc3", b"\xa9\n"], 100, 20);
        assert_eq!(outcomes, vec![line("price: € café"), Ok(None)]);
    }

    #[test]
    fn console_errors_pass_through_and_lose_nothing() {
        let console = MemConsole::new();
        console.push_input(b"par");
        console.push_read_error(FlowError::ConnectionReset);
        console.push_input(b"tial\nnext\n");
        let mut reader = LineReader::new(&console, 20);
        assert_eq!(
            read_all(&mut reader),
            vec![Err(LineError::Console(FlowError::ConnectionReset)), line("partial"), line("next"), Ok(None)]
        );
    }

    #[test]
    fn line_numbers_count_every_line() {
        let console = MemConsole::new();
        console.push_input(b"a\ntoo long\nb\n\xff\nc");
        let mut reader = LineReader::new(&console, 3);
        let outcomes = read_all(&mut reader);
        assert_eq!(
            outcomes,
            vec![
                line("a"),
                Err(LineError::TooLong { line: 2, limit: 3 }),
                line("b"),
                Err(LineError::InvalidUtf8 { line: 4 }),
                line("c"),
                Ok(None),
            ]
        );
        assert_eq!(reader.lines_read(), 5);
    }

    #[test]
    fn dropping_a_pending_read_line_loses_no_input() {
        use core::future::Future;
        use core::pin::pin;
        use core::task::{Context, Poll};
        use futures::task::noop_waker;

        /// Reads from the inner console, but only every second poll, so
        /// `read_line` can be dropped while a read is pending.
        struct SlowConsole {
            inner: MemConsole,
        }

        impl Console for SlowConsole {
            type Error = FlowError;
            async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
                let mut yielded = false;
                core::future::poll_fn(|cx| {
                    if yielded {
                        Poll::Ready(())
                    } else {
                        yielded = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                })
                .await;
                self.inner.read(buf).await
            }
            async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
                self.inner.write(buf).await
            }
            fn write_diagnostic(&self, bytes: &[u8]) {
                self.inner.write_diagnostic(bytes)
            }
        }

        let inner = MemConsole::new().with_read_chunk(2);
        inner.push_input(b"first line\nsecond\n");
        let mut reader = LineReader::new(SlowConsole { inner }, 20);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        // Poll each call a few times then drop it, until everything is read.
        let mut lines = Vec::new();
        for polls in (1..=3).cycle().take(200) {
            let mut future = pin!(reader.read_line());
            for _ in 0..polls {
                if let Poll::Ready(outcome) = future.as_mut().poll(&mut cx) {
                    lines.push(outcome);
                    break;
                }
            }
            if lines.last() == Some(&Ok(None)) {
                break;
            }
        }
        assert_eq!(lines, vec![line("first line"), line("second"), Ok(None)]);
    }

    /// What the reader must return for `input`, worked out on the whole
    /// input at once: split at `\n`, drop one `\r` before each split and at
    /// the very end, then judge each line on its own.
    fn expected_lines(input: &[u8], max_len: usize) -> Vec<Outcome> {
        let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        // The piece after the last `\n` is a line only if it is not empty.
        if lines.last().is_some_and(|last| last.is_empty()) {
            lines.pop();
        }
        let mut outcomes: Vec<Outcome> = lines
            .into_iter()
            .zip(1..)
            .map(|(mut text, number)| {
                if let [rest @ .., b'\r'] = text {
                    text = rest;
                }
                if text.len() > max_len {
                    Err(LineError::TooLong { line: number, limit: max_len })
                } else {
                    String::from_utf8(text.to_vec()).map(Some).map_err(|_| LineError::InvalidUtf8 { line: number })
                }
            })
            .collect();
        outcomes.push(Ok(None));
        outcomes
    }

    proptest::proptest! {
        /// However the input is cut into reads, the reader returns what the
        /// whole-input model says, and never holds more than its bound.
        #[test]
        fn reads_match_the_whole_input_model(
            input in proptest::collection::vec(
                proptest::sample::select(&b"ab\n\n\r\xc3\xa9\xe2\x82\xac\xff"[..]), 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            chunk in 1usize..20,
            max_len in 0usize..12,
        ) {
            let console = MemConsole::new().with_read_chunk(chunk);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            for piece in cuts.windows(2) {
                console.push_input(&input[piece[0]..piece[1]]);
            }
            let mut reader = LineReader::new(&console, max_len);
            let mut outcomes = Vec::new();
            block_on(async {
                // Each call consumes at least one line, so input.len() + 2 calls suffice.
                for _ in 0..input.len() + 2 {
                    let outcome = reader.read_line().await;
                    proptest::prop_assert!(reader.buf.len() <= max_len + 1 + READ_CHUNK);
                    let done = outcome == Ok(None);
                    outcomes.push(outcome);
                    if done {
                        break;
                    }
                }
                Ok(())
            })?;
            proptest::prop_assert_eq!(outcomes, expected_lines(&input, max_len));
        }
    }

    #[test]
    fn errors_explain_themselves_and_report_kinds() {
        use flow::Error as _;
        let too_long: LineError<FlowError> = LineError::TooLong { line: 3, limit: 80 };
        assert_eq!(too_long.to_string(), "input line 3 is longer than the limit of 80 bytes; it was skipped");
        assert_eq!(too_long.kind(), ErrorKind::Other);
        let utf8: LineError<FlowError> = LineError::InvalidUtf8 { line: 9 };
        assert_eq!(utf8.to_string(), "input line 9 is not valid UTF-8; it was skipped");
        let console = LineError::Console(FlowError::ConnectionReset);
        assert_eq!(console.to_string(), "reading a line from the console failed: connection reset by peer");
        assert_eq!(console.kind(), ErrorKind::ConnectionReset);
        assert!(core::error::Error::source(&console).is_some());
    }
}
