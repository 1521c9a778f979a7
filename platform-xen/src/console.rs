//! [`XenConsole`]: the hypervisor's console through `console_io`, and
//! [`DomainConsole`], the choice between it and the PV ring.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicU8, Ordering};

use mirage_types::console::Console;
use mirage_types::flow::{ErrorKind, FlowError};

use crate::abi::{CONSOLEIO_WRITE, HYPERCALL_CONSOLE_IO};
use crate::hypercall::{call, XenError};
use crate::hypervisor::console_write;
use crate::ring_console::RingConsole;

/// Whether Xen lets this domain use `console_io`: 0 not asked yet, 1 yes,
/// 2 no.
static CONSOLE_IO: AtomicU8 = AtomicU8::new(0);

/// Whether this domain may write to Xen's console with `console_io`: true
/// for the hardware domain (dom0), false for an ordinary domU (Xen answers
/// `EPERM`) and before the hypercall page is set up. Asked once, with an
/// empty write.
pub fn console_io_allowed() -> bool {
    match CONSOLE_IO.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // SAFETY: a write of zero bytes passes no buffer Xen reads.
            let allowed = match unsafe { call(HYPERCALL_CONSOLE_IO, [CONSOLEIO_WRITE, 0, 0, 0, 0]) } {
                Ok(result) => result >= 0,
                Err(XenError::NotInitialised) => return false,
                Err(_) => false,
            };
            CONSOLE_IO.store(if allowed { 1 } else { 2 }, Ordering::Relaxed);
            allowed
        }
    }
}

/// The Xen console, written with the `console_io` hypercall: the output
/// appears on Xen's own console (its serial line). Works in the hardware
/// domain (dom0); a domU's writes fail (see [`Console::write`]).
/// Zero-sized, `Send + Sync`, so a logger can hold it.
#[derive(Clone, Copy, Debug, Default)]
pub struct XenConsole;

impl Console for XenConsole {
    type Error = FlowError;

    /// Console input is not implemented: always an `Other` error saying so.
    async fn read(&self, _buf: &mut [u8]) -> Result<usize, FlowError> {
        Err(FlowError::Other {
            kind: ErrorKind::Other,
            message: String::from("reading the Xen console is not implemented (console_io write only)"),
        })
    }

    /// Writes all of `buf` synchronously. An `Io` error if Xen refuses
    /// (a domU without a debug console: `EPERM`); nothing was written then.
    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        console_write(buf)
            .map(|()| buf.len())
            .map_err(|e| FlowError::Other { kind: ErrorKind::Io, message: format!("Xen console: {e}") })
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        let _ = console_write(bytes);
    }
}

/// The console this domain has: Xen's own through `console_io` for the
/// hardware domain (dom0), the PV console ring ([`RingConsole`]) for a
/// domU, which `console_io` refuses. `Copy`, `Send + Sync`.
#[derive(Clone, Copy, Debug)]
pub enum DomainConsole {
    /// Xen's console (`console_io`).
    Hypervisor(XenConsole),
    /// The PV console ring, read in dom0 with `xl console`.
    Ring(RingConsole),
}

impl DomainConsole {
    /// Picks the console: `console_io` if Xen allows it, else the ring the
    /// HVM parameters name, else `console_io` anyway (whose writes then
    /// fail with `EPERM`: the domain has nowhere to write). Needs the
    /// hypercall page; makes one or three hypercalls.
    pub fn detect() -> DomainConsole {
        if console_io_allowed() {
            return DomainConsole::Hypervisor(XenConsole);
        }
        match RingConsole::from_hvm_params() {
            Ok(ring) => DomainConsole::Ring(ring),
            Err(_) => DomainConsole::Hypervisor(XenConsole),
        }
    }
}

impl Console for DomainConsole {
    type Error = FlowError;

    async fn read(&self, buf: &mut [u8]) -> Result<usize, FlowError> {
        match self {
            DomainConsole::Hypervisor(c) => c.read(buf).await,
            DomainConsole::Ring(c) => c.read(buf).await,
        }
    }

    async fn write(&self, buf: &[u8]) -> Result<usize, FlowError> {
        match self {
            DomainConsole::Hypervisor(c) => c.write(buf).await,
            DomainConsole::Ring(c) => c.write(buf).await,
        }
    }

    fn write_diagnostic(&self, bytes: &[u8]) {
        match self {
            DomainConsole::Hypervisor(c) => c.write_diagnostic(bytes),
            DomainConsole::Ring(c) => c.write_diagnostic(bytes),
        }
    }
}
