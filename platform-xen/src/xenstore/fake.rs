//! A simulated xenstored for the host tests: the other end of a ring page,
//! an in-memory tree, watches, transactions (applied at once, with
//! commits that can be made to fail with `EAGAIN`), and knobs to write
//! replies in small pieces, reorder them, or inject bytes.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{RefCell, RefMut};
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use super::wire::{Assembler, Header, Message, MessageType};
use super::{ring, Link, Xenstore};
use crate::page::SharedPage;

/// A client connected to a simulated xenstored for domain 7.
pub fn simulated() -> Rc<Xenstore> {
    Xenstore::over(SharedPage::alloc().unwrap(), Link::Fake(alloc::boxed::Box::new(RefCell::new(Xenstored::new(7)))))
}

/// The simulated xenstored behind `store`.
pub fn daemon(store: &Xenstore) -> RefMut<'_, Xenstored> {
    match &store.link {
        Link::Fake(d) => d.borrow_mut(),
        Link::Event(_) => unreachable!("the tests use the simulated xenstored"),
    }
}

/// Polls `future` to completion; the simulated daemon makes progress on
/// every wait, so a bounded number of polls suffices.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..100_000 {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
    }
    panic!("the future never completed");
}

/// The simulated daemon (see the module documentation).
pub struct Xenstored {
    /// The client's domain id (its home is `/local/domain/<domid>`).
    pub domid: u32,
    /// Absolute path → value; every parent of a node is a node.
    pub nodes: BTreeMap<String, String>,
    /// `(path as registered, token)`.
    pub watches: Vec<(String, String)>,
    /// The most reply bytes written per step.
    pub chunk: usize,
    /// Answer the requests read in one step in reverse order.
    pub reverse: bool,
    /// How many commits to fail with `EAGAIN`.
    pub fail_commits: u32,
    /// Commits that succeeded.
    pub commits: u32,
    /// Requests seen: type and transaction id.
    pub seen: Vec<(MessageType, u32)>,
    /// Writes by "another domain" (path, value): one is made on each
    /// step in which the client sent nothing (it waits on a watch).
    pub script: VecDeque<(String, String)>,
    assembler: Assembler,
    out: VecDeque<u8>,
    next_tx: u32,
    steps: u32,
}

fn encode(kind: MessageType, req_id: u32, tx_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Header { kind: kind as u32, req_id, tx_id, len: payload.len() as u32 }.emit().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

impl Xenstored {
    /// A daemon whose client is domain `domid`, named "guest", with
    /// `device/vbd/768` and `device/vif/0`.
    pub fn new(domid: u32) -> Xenstored {
        let mut d = Xenstored {
            domid,
            nodes: BTreeMap::new(),
            watches: Vec::new(),
            chunk: usize::MAX,
            reverse: false,
            fail_commits: 0,
            commits: 0,
            seen: Vec::new(),
            script: VecDeque::new(),
            assembler: Assembler::new(),
            out: VecDeque::new(),
            next_tx: 1,
            steps: 0,
        };
        let home = d.home();
        d.set(&format!("{home}/name"), "guest");
        d.set(&format!("{home}/domid"), &domid.to_string());
        d.set(&format!("{home}/device/vbd/768/backend-id"), "0");
        d.set(&format!("{home}/device/vif/0/backend-id"), "0");
        d
    }

    fn home(&self) -> String {
        format!("/local/domain/{}", self.domid)
    }

    /// `path` made absolute.
    pub fn abs(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", self.home())
        }
    }

    /// Sets a node (absolute path) and its parents, without firing watches.
    pub fn set(&mut self, path: &str, value: &str) {
        let mut at = 0;
        while let Some(i) = path[at + 1..].find('/') {
            at += 1 + i;
            self.nodes.entry(path[..at].to_string()).or_default();
        }
        self.nodes.insert(path.to_string(), value.to_string());
    }

    /// Queues raw bytes to the client, after what is queued.
    pub fn inject(&mut self, bytes: &[u8]) {
        self.out.extend(bytes);
    }

    /// Writes a node as another domain would: sets it and fires watches.
    pub fn write_from_outside(&mut self, path: &str, value: &str) {
        let abs = self.abs(path);
        self.set(&abs, value);
        let events = self.fire(&abs);
        events.into_iter().for_each(|e| self.out.extend(e));
    }

    /// Reads every request in the ring, answers it, and writes at most
    /// `chunk` queued reply bytes.
    pub fn step(&mut self, page: &SharedPage) {
        self.steps += 1;
        assert!(self.steps < 100_000, "the client kept waiting on the simulated xenstored");
        let mut replies = Vec::new();
        let mut buf = [0; ring::RING_SIZE];
        loop {
            let want = self.assembler.wanted().min(buf.len());
            let n = ring::read_requests(page, &mut buf[..want]).expect("the client's request ring indices");
            if n == 0 {
                break;
            }
            if let Some(m) = self.assembler.push(&buf[..n]).expect("a well-formed request") {
                replies.push(self.handle(m));
            }
        }
        if replies.is_empty() {
            if let Some((path, value)) = self.script.pop_front() {
                self.write_from_outside(&path, &value);
            }
        }
        if self.reverse {
            replies.reverse();
        }
        replies.into_iter().flatten().for_each(|r| self.out.extend(r));
        let n = self.chunk.min(self.out.len());
        let pending: Vec<u8> = self.out.iter().take(n).copied().collect();
        let written = ring::write_responses(page, &pending).expect("our response ring indices");
        self.out.drain(..written);
    }

    fn exists(&self, abs: &str) -> bool {
        self.nodes.contains_key(abs)
    }

    /// The watch events a change of `abs` fires.
    fn fire(&self, abs: &str) -> Vec<Vec<u8>> {
        let home = format!("{}/", self.home());
        self.watches
            .iter()
            .filter(|(path, _)| {
                let w = self.abs(path);
                abs == w || abs.starts_with(&format!("{w}/"))
            })
            .map(|(path, token)| {
                let shown = if path.starts_with('/') { abs } else { abs.strip_prefix(&home).unwrap_or(abs) };
                encode(MessageType::WatchEvent, 0, 0, format!("{shown}\0{token}\0").as_bytes())
            })
            .collect()
    }

    fn handle(&mut self, m: Message) -> Vec<Vec<u8>> {
        self.seen.push((m.kind, m.tx_id));
        let strings: Vec<String> =
            m.payload.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
        let path = self.abs(&strings[0]);
        let reply = |payload: &[u8]| encode(m.kind, m.req_id, m.tx_id, payload);
        let error = |name: &str| encode(MessageType::Error, m.req_id, m.tx_id, format!("{name}\0").as_bytes());
        let mut out = Vec::new();
        match m.kind {
            MessageType::Read => match self.nodes.get(&path) {
                Some(v) => out.push(reply(v.as_bytes())),
                None => out.push(error("ENOENT")),
            },
            MessageType::Write | MessageType::Mkdir => {
                if m.kind == MessageType::Write || !self.exists(&path) {
                    self.set(&path, strings.get(1).map_or("", String::as_str));
                }
                out.push(reply(b"OK\0"));
                out.extend(self.fire(&path));
            }
            MessageType::Directory if !self.exists(&path) => out.push(error("ENOENT")),
            MessageType::Directory => {
                let prefix = format!("{path}/");
                let mut names = Vec::new();
                for key in self.nodes.keys() {
                    if let Some(rest) = key.strip_prefix(&prefix).filter(|r| !r.contains('/')) {
                        names.extend_from_slice(rest.as_bytes());
                        names.push(0);
                    }
                }
                out.push(reply(&names));
            }
            MessageType::Rm if !self.exists(&path) => out.push(error("ENOENT")),
            MessageType::Rm => {
                let prefix = format!("{path}/");
                self.nodes.retain(|k, _| *k != path && !k.starts_with(&prefix));
                out.push(reply(b"OK\0"));
                out.extend(self.fire(&path));
            }
            MessageType::Watch => {
                self.watches.push((strings[0].clone(), strings[1].clone()));
                out.push(reply(b"OK\0"));
                out.push(encode(MessageType::WatchEvent, 0, 0, format!("{}\0{}\0", strings[0], strings[1]).as_bytes()));
            }
            MessageType::Unwatch => {
                let before = self.watches.len();
                self.watches.retain(|(p, t)| !(*p == strings[0] && *t == strings[1]));
                out.push(if self.watches.len() < before { reply(b"OK\0") } else { error("ENOENT") });
            }
            MessageType::TransactionStart => {
                let id = self.next_tx;
                self.next_tx += 1;
                out.push(reply(format!("{id}\0").as_bytes()));
            }
            MessageType::TransactionEnd => {
                if strings[0] == "T" && self.fail_commits > 0 {
                    self.fail_commits -= 1;
                    out.push(error("EAGAIN"));
                } else {
                    self.commits += u32::from(strings[0] == "T");
                    out.push(reply(b"OK\0"));
                }
            }
            MessageType::WatchEvent | MessageType::Error => out.push(error("EINVAL")),
        }
        out
    }
}
