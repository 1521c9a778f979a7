//! netfront: a Xen virtual network interface (`vif`) as a
//! [`NetworkDevice`], talking to the backend (Linux's netback in dom0)
//! over the two rings of `io/netif.h`.
//!
//! # Connecting
//!
//! [`NetFront::open`] follows the xenbus handshake Linux's and Mini-OS's
//! frontends use: it reads the MAC address from our `mac` key (the
//! backend's if ours is missing; malformed is an error), requires the
//! backend's `feature-rx-copy` (we post pages for netback to copy frames
//! into, never page flipping), waits for the backend to reach `InitWait`,
//! sets up both rings, the buffer pools and an event channel, then
//! publishes `tx-ring-ref`, `rx-ring-ref`, `event-channel`,
//! `request-rx-copy = 1`, `feature-rx-notify = 1` (netback requires it: we
//! notify when we post receive buffers), `feature-sg = 0`,
//! `feature-gso-tcpv4 = 0` and `feature-no-csum-offload = 1` (so dom0
//! computes checksums before frames reach us: our stack checks them) with
//! our state `Connected` in one transaction, and waits for the backend's
//! `Connected`. A backend that closes meanwhile is an error. The waits
//! have no time bound of their own: race [`NetFront::open`] against a
//! sleep to bound it.
//!
//! # Receive
//!
//! [`RX_BUFFERS`] pages are granted to the backend (writable) once, at
//! set-up, and stay posted: [`NetworkDevice::receive`] copies the next
//! frame out of its page into a [`Bytes`] of its own length (one
//! allocation and one copy per frame) and posts the same page with the same
//! grant again before it returns, so grants are reused and never churned.
//! The frame leaves the ring in the same poll that returns it: receive is
//! cancel-safe. Everything netback writes is checked first (see
//! [`queues`]): bad or multi-slot frames are dropped and counted in
//! `rx_dropped`, and a ring whose `rsp_prod` runs ahead of our requests
//! breaks the device for good (every call then fails with
//! [`ErrorKind::Io`]).
//!
//! # Transmit
//!
//! [`TX_BUFFERS`] half-page buffers on [`TX_PAGES`] pages, granted
//! read-only once. [`NetworkDevice::transmit`] lets the caller fill a
//! buffer of the device's (copied into the granted page: the page is
//! shared memory, reached only through volatile copies, so the caller's
//! bytes go through a scratch buffer; there is no zero-copy from the
//! caller), puts one request on the ring and notifies netback if it asked.
//! When every buffer is in flight it waits for netback to answer one.
//! Frames above [`MTU`] + 14 bytes are refused with
//! [`ErrorKind::FrameTooLarge`]. The link state is not looked at: netback
//! drops what it cannot deliver and says so in the response
//! (`tx_dropped`).
//!
//! # Bounds
//!
//! Fixed at set-up: 2 ring pages, [`RX_BUFFERS`] receive pages,
//! [`TX_PAGES`] transmit pages (2 + 64 + 16 = 82 pages, 328 KiB, with the
//! defaults) and as many grants. The backend can make us allocate
//! nothing else: received frames are the caller's [`Bytes`], and no
//! queue grows with what netback writes.
//!
//! # Closing
//!
//! [`NetFront::close`] goes through xenbus `Closing`/`Closed` (netback
//! unmaps the rings), then ends every grant and closes the event channel.
//! A device dropped without `close`, or whose close failed, ends its
//! grants but leaks its pages (82 pages): netback may still map them, and
//! a page still mapped must never return to our heap.
//!
//! # What it does not do
//!
//! No scatter-gather, GSO or checksum offload, one queue (no
//! `multi-queue-num-queues`), no split event channels, no link-state or
//! backend-disconnect watch while running, no suspend/resume.

pub mod queues;
pub mod rings;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::{poll_fn, Future};
use core::mem::ManuallyDrop;
use core::pin::pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};

use bytes::Bytes;
use mirage_types::net::{ErrorKind, MacAddress, NetError, NetStats, NetworkDevice};

pub use self::queues::{Counters, MAX_FRAME_LEN, MTU, RX_BUFFERS, TX_BUFFERS, TX_PAGES};
use self::queues::{RxQueue, TxQueue};
use self::rings::{RxRing, TxRing};
use crate::abi::netif::{SRING_REQ_EVENT, SRING_REQ_PROD, SRING_RSP_EVENT, SRING_RSP_PROD};
use crate::event::EventChannel;
use crate::grant::Grant;
use crate::hypercall::XenError;
use crate::page::SharedPage;
use crate::ring::RingOverrun;
use crate::xenbus::{Frontend, XenbusState};
use crate::xenstore::{Xenstore, XenstoreError};

/// Why a vif could not be connected.
#[derive(Debug)]
pub enum NetFrontError {
    /// The domain has no vif in xenstore (`device/vif` is empty).
    NoDevice,
    /// A xenstore request failed or a value was malformed.
    Xenstore(XenstoreError),
    /// A hypercall failed (grant, event channel) or memory ran out.
    Xen(XenError),
    /// The `mac` key does not hold a MAC address.
    BadMac {
        /// The node read.
        path: String,
        /// What it holds.
        value: String,
    },
    /// The backend does not offer `feature-rx-copy`, which we require.
    NoRxCopy {
        /// The backend's directory.
        backend: String,
    },
}

impl fmt::Display for NetFrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetFrontError::NoDevice => write!(f, "netfront: this domain has no vif (device/vif is empty)"),
            NetFrontError::Xenstore(e) => write!(f, "netfront: {e}"),
            NetFrontError::Xen(e) => write!(f, "netfront: {e}"),
            NetFrontError::BadMac { path, value } => {
                write!(f, "netfront: {path} holds {value:?}, not a MAC address like 00:16:3e:00:00:01")
            }
            NetFrontError::NoRxCopy { backend } => {
                write!(f, "netfront: backend {backend} does not offer feature-rx-copy, which netfront requires")
            }
        }
    }
}

impl core::error::Error for NetFrontError {}

impl From<XenstoreError> for NetFrontError {
    fn from(e: XenstoreError) -> NetFrontError {
        NetFrontError::Xenstore(e)
    }
}

impl From<XenError> for NetFrontError {
    fn from(e: XenError) -> NetFrontError {
        NetFrontError::Xen(e)
    }
}

/// The queues and what they counted, behind one `RefCell`.
struct Queues {
    tx: TxQueue,
    rx: RxQueue,
    counters: Counters,
    /// Set when netback broke the ring protocol; the rings are not touched
    /// again.
    broken: Option<String>,
}

/// A Xen vif as a [`NetworkDevice`]; see the [module documentation](self).
/// A handle: share it by reference or `Rc`.
pub struct NetFront {
    /// Declared before `queues`: dropped (grants ended) before any page is
    /// freed.
    grants: Vec<Grant>,
    queues: ManuallyDrop<RefCell<Queues>>,
    event: EventChannel,
    /// Tasks of this device waiting for the event channel; the one that
    /// takes a firing wakes the others, since a firing is seen once.
    waiters: RefCell<Vec<Waker>>,
    frontend: Frontend,
    mac: MacAddress,
    /// Whether netback is known to have let go of every page.
    released: Cell<bool>,
}

impl fmt::Debug for NetFront {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetFront").field("node", &self.frontend.node()).field("mac", &self.mac).finish()
    }
}

fn pages(n: usize) -> Result<Vec<SharedPage>, XenError> {
    (0..n).map(|_| SharedPage::alloc()).collect()
}

impl NetFront {
    /// Connects the first vif xenstore lists (`device/vif`, usually `0`).
    pub async fn open_first(store: Rc<Xenstore>) -> Result<NetFront, NetFrontError> {
        let ids = Frontend::list(&store, "vif").await?;
        let id = ids.into_iter().next().ok_or(NetFrontError::NoDevice)?;
        NetFront::open(store, &id).await
    }

    /// Connects vif `id` (`device/vif/<id>`); see the module documentation
    /// for the handshake. Errors: the device is missing, its `mac` is
    /// malformed, the backend lacks `feature-rx-copy` or closes, a grant or
    /// event channel cannot be had.
    pub async fn open(store: Rc<Xenstore>, id: &str) -> Result<NetFront, NetFrontError> {
        let frontend = Frontend::open(store, "vif", id).await?;
        let (path, value) = match frontend.read("mac").await {
            Ok(value) => (format!("{}/mac", frontend.node()), value),
            Err(e) if e.is_not_found() => (format!("{}/mac", frontend.backend()), frontend.read_backend("mac").await?),
            Err(e) => return Err(e.into()),
        };
        let mac = value.trim().parse::<MacAddress>().map_err(|_| NetFrontError::BadMac { path, value })?;
        let rx_copy = match frontend.read_backend_u64("feature-rx-copy").await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        if rx_copy != 1 {
            return Err(NetFrontError::NoRxCopy { backend: frontend.backend().to_string() });
        }
        frontend.wait_backend(|s| matches!(s, XenbusState::InitWait | XenbusState::Connected)).await?;

        let backend = frontend.backend_id();
        let tx_ring = TxRing::new(SharedPage::alloc()?);
        let rx_ring = RxRing::new(SharedPage::alloc()?);
        let (tx_pages, rx_pages) = (pages(TX_PAGES)?, pages(RX_BUFFERS)?);
        let mut grants = Vec::with_capacity(2 + TX_PAGES + RX_BUFFERS);
        let mut grant = |page: &SharedPage, readonly: bool| -> Result<u32, XenError> {
            let g = Grant::access(backend, page.frame(), readonly)?;
            let reference = g.reference();
            grants.push(g);
            Ok(reference)
        };
        // Until the queues own the pages, an error here drops the grants
        // (declared later, dropped first) before the pages.
        let tx_ref = grant(tx_ring.page(), false)?;
        let rx_ref = grant(rx_ring.page(), false)?;
        let tx_grefs = tx_pages.iter().map(|p| grant(p, true)).collect::<Result<Vec<_>, _>>()?;
        let rx_grefs = rx_pages.iter().map(|p| grant(p, false)).collect::<Result<Vec<_>, _>>()?;
        let event = EventChannel::alloc_unbound(backend)?;
        let mut rx = RxQueue::new(rx_ring, rx_pages, rx_grefs);
        let tx = TxQueue::new(tx_ring, tx_pages, tx_grefs);
        // Posted before netback looks: it finds buffers as soon as it maps
        // the ring.
        rx.refill();
        let device = NetFront {
            grants,
            queues: ManuallyDrop::new(RefCell::new(Queues { tx, rx, counters: Counters::default(), broken: None })),
            event,
            waiters: RefCell::new(Vec::new()),
            frontend,
            mac,
            released: Cell::new(false),
        };
        let entries = [
            ("tx-ring-ref", tx_ref.to_string()),
            ("rx-ring-ref", rx_ref.to_string()),
            ("event-channel", device.event.port().to_string()),
            ("request-rx-copy", "1".to_string()),
            ("feature-rx-notify", "1".to_string()),
            ("feature-sg", "0".to_string()),
            ("feature-gso-tcpv4", "0".to_string()),
            ("feature-no-csum-offload", "1".to_string()),
        ];
        device.frontend.publish(&entries, XenbusState::Connected).await?;
        device.frontend.wait_backend(|s| s == XenbusState::Connected).await?;
        // The receive buffers were posted before netback bound the port.
        device.event.notify()?;
        log::debug!(
            "netfront {}: MAC {mac}, backend {} (domain {backend}), port {}, {RX_BUFFERS} receive and {TX_BUFFERS} transmit buffers",
            device.frontend.node(),
            device.frontend.backend(),
            device.event.port()
        );
        Ok(device)
    }

    /// Our xenstore directory (`device/vif/0`).
    pub fn node(&self) -> &str {
        self.frontend.node()
    }

    /// What the queues counted, with netback's protocol errors.
    pub fn counters(&self) -> Counters {
        self.queues.borrow().counters
    }

    /// Closes the device: xenbus `Closing`, netback's `Closing`/`Closed`,
    /// our `Closed`; then the grants end, the pages are freed and the port
    /// is closed (when the handle drops, here). If the xenbus exchange
    /// fails, the error is returned and the pages are leaked (see the
    /// module documentation).
    pub async fn close(self) -> Result<(), NetFrontError> {
        self.frontend.close().await?;
        self.released.set(true);
        Ok(())
    }

    fn io_error(&self, message: &str) -> NetError {
        NetError::Other { kind: ErrorKind::Io, message: format!("netfront {}: {message}", self.frontend.node()) }
    }

    fn notify(&self) {
        if let Err(e) = self.event.notify() {
            log::warn!("netfront {}: notifying the backend: {e}", self.frontend.node());
        }
    }

    /// Registers the task and polls the event channel. `Ready` means the
    /// channel fired: the caller looks at the rings again, and the other
    /// waiting tasks are woken to do the same.
    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
        }
        let fired = pin!(self.event.wait()).poll(cx);
        if fired.is_ready() {
            let others: Vec<Waker> = self.waiters.borrow_mut().drain(..).collect();
            others.into_iter().filter(|w| !w.will_wake(cx.waker())).for_each(Waker::wake);
        }
        fired
    }

    /// Marks the device broken after a ring overrun.
    fn broken(&self, queues: &mut Queues, ring: &str, e: RingOverrun) -> NetError {
        let message = format!("netback broke the {ring} ring: {e}; the device is unusable");
        log::error!("netfront {}: {message}", self.frontend.node());
        queues.broken = Some(message.clone());
        self.io_error(&message)
    }

    /// Returns transmit buffers netback is done with; `Err` if the ring
    /// is (or just became) broken.
    fn reap(&self, queues: &mut Queues) -> Result<(), NetError> {
        if let Some(message) = &queues.broken {
            return Err(self.io_error(message));
        }
        let Queues { tx, counters, .. } = queues;
        tx.reap(counters).map(|_| ()).map_err(|e| self.broken(queues, "transmit", e))
    }

    /// Logs the rings' state at debug level, at most every 10 s of Xen
    /// time (called when a receive waits; with the idle loop's backstop
    /// that is at least once a second): tells a backend that stopped
    /// answering from a front-end that stopped looking.
    fn debug_state(&self, queues: &Queues) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let Some(now) = crate::shared_info::now() else { return };
        if now.saturating_sub(LAST.load(Ordering::Relaxed)) < 10_000_000_000 || !log::log_enabled!(log::Level::Debug) {
            return;
        }
        LAST.store(now, Ordering::Relaxed);
        let header = |page: &SharedPage| {
            [SRING_REQ_PROD, SRING_REQ_EVENT, SRING_RSP_PROD, SRING_RSP_EVENT].map(|offset| page.read::<u32>(offset))
        };
        log::debug!(
            "netfront {}: {:?}; rx posted {}, rx ring [req_prod, req_event, rsp_prod, rsp_event] {:?}; \
             tx in flight {}, tx ring {:?}",
            self.frontend.node(),
            queues.counters.stats,
            queues.rx.posted(),
            header(queues.rx.ring().page()),
            queues.tx.in_flight(),
            header(queues.tx.ring().page()),
        );
    }

    fn poll_receive(&self, cx: &mut Context<'_>) -> Poll<Result<Bytes, NetError>> {
        // Each pass consumes responses or a firing; past this many, yield
        // to other tasks rather than spin on a flooding backend.
        for _ in 0..16 {
            {
                let mut queues = self.queues.borrow_mut();
                let queues = &mut *queues;
                if let Err(e) = self.reap(queues) {
                    return Poll::Ready(Err(e));
                }
                let Queues { rx, counters, .. } = &mut *queues;
                let frame = rx.next_frame(counters);
                let notify = rx.refill();
                if notify {
                    self.notify();
                }
                match frame {
                    Ok(Some(frame)) => return Poll::Ready(Ok(frame)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(self.broken(queues, "receive", e))),
                }
                match queues.rx.final_check() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Poll::Ready(Err(self.broken(queues, "receive", e))),
                }
                self.debug_state(queues);
            }
            if self.poll_event(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// `Ready(Ok)` once a transmit buffer is free.
    fn poll_transmit_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        for _ in 0..16 {
            {
                let mut queues = self.queues.borrow_mut();
                let queues = &mut *queues;
                if let Err(e) = self.reap(queues) {
                    return Poll::Ready(Err(e));
                }
                if queues.tx.has_free_buffer() {
                    return Poll::Ready(Ok(()));
                }
                match queues.tx.final_check() {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Poll::Ready(Err(self.broken(queues, "transmit", e))),
                }
            }
            if self.poll_event(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl NetworkDevice for NetFront {
    type Error = NetError;

    /// From xenstore's `mac` key.
    fn mac(&self) -> MacAddress {
        self.mac
    }

    /// Always [`MTU`] (1500): no `feature-sg`, so no larger frames.
    fn mtu(&self) -> usize {
        MTU
    }

    /// `rx_dropped` counts frames netback delivered that we refused (bad
    /// or multi-slot); frames netback dropped for want of a posted buffer
    /// are not seen. `tx_frames` counts frames handed to netback,
    /// `tx_dropped` those it answered with an error.
    fn stats(&self) -> NetStats {
        self.queues.borrow().counters.stats
    }

    /// Waits for the next frame; cancel-safe (see the module
    /// documentation). `Err` ([`ErrorKind::Io`]) only once netback broke the
    /// ring protocol, and for good.
    async fn receive(&self) -> Result<Bytes, NetError> {
        poll_fn(|cx| self.poll_receive(cx)).await
    }

    /// Waits for a free transmit buffer, then fills, queues and (if netback
    /// asked) notifies without waiting again. `Ok` means netback has the
    /// frame; cancel-safe (only the wait for a buffer can be cancelled,
    /// before `fill` runs). Errors: [`ErrorKind::FrameTooLarge`] above
    /// [`MAX_FRAME_LEN`] bytes; [`ErrorKind::Io`] once the ring is broken.
    async fn transmit<R>(&self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        if len > MAX_FRAME_LEN {
            return Err(NetError::FrameTooLarge { len, max: MAX_FRAME_LEN });
        }
        poll_fn(|cx| self.poll_transmit_ready(cx)).await?;
        let mut queues = self.queues.borrow_mut();
        let Queues { tx, counters, .. } = &mut *queues;
        // No await since the buffer was seen free: it still is.
        let (result, notify) =
            tx.send(len, fill, counters).ok_or_else(|| self.io_error("no transmit buffer after waiting for one"))?;
        drop(queues);
        if notify {
            self.notify();
        }
        Ok(result)
    }
}

impl Drop for NetFront {
    fn drop(&mut self) {
        // Ends every grant (a grant still mapped is parked by the grant
        // table, never reused while mapped).
        self.grants.clear();
        if self.released.get() {
            // SAFETY: `queues` is dropped once, here, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.queues) };
        } else {
            log::warn!(
                "netfront {}: dropped without a clean close; its {} pages stay allocated",
                self.frontend.node(),
                2 + TX_PAGES + RX_BUFFERS
            );
        }
    }
}
