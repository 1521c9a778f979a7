//! A [`Flow`] that plays a script: fixed input, recorded output.

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use mirage_types::flow::{Flow, FlowError, Shutdown};

/// A [`Flow`] whose reads return `input` and then end of stream, and whose
/// writes are recorded; every read and write completes at once unless the
/// script says to wait.
///
/// The script can read at most so many bytes per call, accept at most so
/// many bytes per write (short reads and writes exercise the caller's
/// loops), or wait for ever once the input is used up instead of ending
/// the stream (a silent peer). Clones of the handles from
/// [`ScriptedFlow::written`] and [`ScriptedFlow::closed`] outlive the flow,
/// for code that takes the flow by value.
///
/// ```
/// use mirage_testkit::ScriptedFlow;
/// use mirage_types::flow::Flow;
///
/// let mut flow = ScriptedFlow::new(b"ping".to_vec()).reading_at_most(3);
/// futures::executor::block_on(async {
///     let mut buf = [0u8; 16];
///     assert_eq!(flow.read(&mut buf).await.unwrap(), 3);
///     assert_eq!(flow.read(&mut buf).await.unwrap(), 1);
///     assert_eq!(flow.read(&mut buf).await.unwrap(), 0);
///     flow.write_all(b"pong").await.unwrap();
///     flow.close().await.unwrap();
/// });
/// assert_eq!(*flow.written().borrow(), b"pong");
/// assert!(flow.closed().get());
/// ```
#[derive(Debug)]
pub struct ScriptedFlow {
    input: Vec<u8>,
    at: usize,
    max_read: usize,
    max_write: usize,
    hang_at_end: bool,
    largest_read: usize,
    written: Rc<RefCell<Vec<u8>>>,
    closed: Rc<Cell<bool>>,
}

impl ScriptedFlow {
    /// A flow that reads `input`, then end of stream.
    pub fn new(input: impl Into<Vec<u8>>) -> ScriptedFlow {
        ScriptedFlow {
            input: input.into(),
            at: 0,
            max_read: usize::MAX,
            max_write: usize::MAX,
            hang_at_end: false,
            largest_read: 0,
            written: Rc::default(),
            closed: Rc::default(),
        }
    }

    /// Each read returns at most `max` bytes.
    pub fn reading_at_most(mut self, max: usize) -> ScriptedFlow {
        self.max_read = max;
        self
    }

    /// Each write accepts at most `max` bytes.
    pub fn writing_at_most(mut self, max: usize) -> ScriptedFlow {
        self.max_write = max;
        self
    }

    /// Once the input is read, reads wait for ever instead of returning end
    /// of stream.
    pub fn hanging_at_end(mut self) -> ScriptedFlow {
        self.hang_at_end = true;
        self
    }

    /// Everything written so far; the handle outlives the flow.
    pub fn written(&self) -> Rc<RefCell<Vec<u8>>> {
        self.written.clone()
    }

    /// Whether [`Flow::close`] was called; the handle outlives the flow.
    pub fn closed(&self) -> Rc<Cell<bool>> {
        self.closed.clone()
    }

    /// The largest buffer a read was given, to check how much the code
    /// under test asks for at once.
    pub fn largest_read(&self) -> usize {
        self.largest_read
    }
}

impl Flow for ScriptedFlow {
    type Error = FlowError;

    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FlowError> {
        if self.at == self.input.len() && self.hang_at_end {
            futures::future::pending::<()>().await;
        }
        self.largest_read = self.largest_read.max(buf.len());
        let n = buf.len().min(self.max_read).min(self.input.len() - self.at);
        buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }

    async fn write(&mut self, buf: &[u8]) -> Result<usize, FlowError> {
        let n = buf.len().min(self.max_write);
        self.written.borrow_mut().extend_from_slice(&buf[..n]);
        Ok(n)
    }

    async fn shutdown(&mut self, _how: Shutdown) -> Result<(), FlowError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), FlowError> {
        self.closed.set(true);
        Ok(())
    }
}
