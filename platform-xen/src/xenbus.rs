//! The xenbus front-end side of a PV device: the state machine that a
//! front-end (blkfront, netfront) and its backend in another domain run
//! through xenstore.
//!
//! Reading list: Xen's `xen/include/public/io/xenbus.h` (the states) and
//! the device protocols' headers (`io/blkif.h`, `io/netif.h`: which keys
//! each side writes).
//!
//! A front-end's directory is `device/<kind>/<id>` in the domain's home;
//! the toolstack writes there the backend's directory (`backend`) and
//! domain (`backend-id`). The front-end writes its ring references and
//! event channel with its state (one transaction: [`Frontend::publish`]),
//! then waits for the backend's `state` to reach `Connected`
//! ([`Frontend::wait_backend`]). Closing is the reverse walk
//! ([`Frontend::close`]).

use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::xenstore::{Xenstore, XenstoreError};

/// `enum xenbus_state` (`io/xenbus.h`), stored in xenstore as a decimal
/// number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    /// Not set up (or the node is missing).
    Unknown = 0,
    /// Setting up.
    Initialising = 1,
    /// Waiting for the other end's details (backends: for the front-end's).
    InitWait = 2,
    /// Details published; waiting for the other end to connect.
    Initialised = 3,
    /// Connected: the device is usable.
    Connected = 4,
    /// Shutting down.
    Closing = 5,
    /// Shut down.
    Closed = 6,
    /// Reconfiguring (network backends).
    Reconfiguring = 7,
    /// Reconfigured.
    Reconfigured = 8,
}

impl XenbusState {
    /// The state a number names, if any.
    pub fn from_u8(value: u8) -> Option<XenbusState> {
        use XenbusState::*;
        [Unknown, Initialising, InitWait, Initialised, Connected, Closing, Closed, Reconfiguring, Reconfigured]
            .get(usize::from(value))
            .copied()
    }

    /// Parses a `state` node's value: a decimal number 0-8, nothing else
    /// (no sign, no spaces).
    pub fn parse(value: &str) -> Option<XenbusState> {
        if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value.parse::<u8>().ok().and_then(XenbusState::from_u8)
    }

    /// The value written to a `state` node.
    pub fn as_value(self) -> String {
        (self as u8).to_string()
    }

    /// Whether the other end is going away (`Closing` or `Closed`).
    pub fn is_closing(self) -> bool {
        matches!(self, XenbusState::Closing | XenbusState::Closed)
    }
}

/// Checks that a device kind or id is one path component.
fn component<'a>(what: &str, value: &'a str) -> Result<&'a str, XenstoreError> {
    if value.is_empty() || value.contains('/') || value.contains('\0') {
        return Err(XenstoreError::InvalidArgument(format!(
            "a xenbus device {what} {value:?} is not one path component"
        )));
    }
    Ok(value)
}

/// Reads `path` and parses it as a decimal `u64`.
async fn read_u64(store: &Xenstore, path: &str) -> Result<u64, XenstoreError> {
    let value = store.read(path).await?;
    parse_u64(path, value)
}

fn parse_u64(path: &str, value: String) -> Result<u64, XenstoreError> {
    let valid = !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(number) if valid => Ok(number),
        _ => Err(XenstoreError::BadValue { path: path.to_string(), value, expected: "a decimal number" }),
    }
}

/// A front-end's view of one PV device: its directory and its backend's.
#[derive(Debug)]
pub struct Frontend {
    store: Rc<Xenstore>,
    node: String,
    backend: String,
    backend_id: u16,
}

impl Frontend {
    /// The ids of the devices of `kind` (`"vbd"`, `"vif"`, `"console"`)
    /// under `device/<kind>`, as xenstored lists them; empty if there are
    /// none (no such directory).
    pub async fn list(store: &Xenstore, kind: &str) -> Result<Vec<String>, XenstoreError> {
        let kind = component("kind", kind)?;
        match store.directory(&format!("device/{kind}")).await {
            Ok(ids) => Ok(ids),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Opens device `kind`/`id`: reads `device/<kind>/<id>/backend` and
    /// `backend-id`. Errors: the device does not exist (`ENOENT`), or
    /// `backend-id` is not a domain id ([`XenstoreError::BadValue`]).
    pub async fn open(store: Rc<Xenstore>, kind: &str, id: &str) -> Result<Frontend, XenstoreError> {
        let node = format!("device/{}/{}", component("kind", kind)?, component("id", id)?);
        let backend = store.read(&format!("{node}/backend")).await?;
        if backend.is_empty() {
            let path = format!("{node}/backend");
            return Err(XenstoreError::BadValue { path, value: backend, expected: "a backend directory" });
        }
        let id_path = format!("{node}/backend-id");
        let number = read_u64(&store, &id_path).await?;
        let backend_id = u16::try_from(number).map_err(|_| XenstoreError::BadValue {
            path: id_path,
            value: number.to_string(),
            expected: "a domain id (0-65535)",
        })?;
        Ok(Frontend { store, node, backend, backend_id })
    }

    /// Our directory, relative to the domain's home (`device/vbd/768`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The backend's directory (absolute, e.g.
    /// `/local/domain/0/backend/vbd/5/768`).
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// The xenstore connection.
    pub fn store(&self) -> &Rc<Xenstore> {
        &self.store
    }

    /// Reads `key` of our own directory.
    pub async fn read(&self, key: &str) -> Result<String, XenstoreError> {
        self.store.read(&format!("{}/{key}", self.node)).await
    }

    /// Reads `key` of the backend's directory.
    pub async fn read_backend(&self, key: &str) -> Result<String, XenstoreError> {
        self.store.read(&format!("{}/{key}", self.backend)).await
    }

    /// Reads `key` of the backend's directory as a decimal `u64`; any
    /// other value is a [`XenstoreError::BadValue`] naming the key and the
    /// value.
    pub async fn read_backend_u64(&self, key: &str) -> Result<u64, XenstoreError> {
        read_u64(&self.store, &format!("{}/{key}", self.backend)).await
    }

    /// The backend's state; a missing node is `Unknown`, an unparseable one
    /// a [`XenstoreError::BadValue`].
    pub async fn backend_state(&self) -> Result<XenbusState, XenstoreError> {
        let path = format!("{}/state", self.backend);
        match self.store.read(&path).await {
            Ok(value) => XenbusState::parse(&value).ok_or(XenstoreError::BadValue {
                path,
                value,
                expected: "a xenbus state (0-8)",
            }),
            Err(e) if e.is_not_found() => Ok(XenbusState::Unknown),
            Err(e) => Err(e),
        }
    }

    /// Writes `entries` (keys of our directory) and our `state` in one
    /// transaction (retried on `EAGAIN`, see [`Xenstore::transaction`]).
    /// `Ok` means all of them were committed together.
    pub async fn publish(&self, entries: &[(&str, String)], state: XenbusState) -> Result<(), XenstoreError> {
        let node = self.node.as_str();
        self.store
            .transaction(|tx| async move {
                for (key, value) in entries {
                    tx.write(&format!("{node}/{key}"), value).await?;
                }
                tx.write(&format!("{node}/state"), &state.as_value()).await
            })
            .await
    }

    /// Writes our `state`.
    pub async fn set_state(&self, state: XenbusState) -> Result<(), XenstoreError> {
        self.store.write(&format!("{}/state", self.node), &state.as_value()).await
    }

    /// Watches the backend's `state` and returns the first state `accept`
    /// takes (checked at once, then at every change). A backend that is
    /// `Closing` or `Closed` (or whose node vanished... it then reads as
    /// `Unknown`, which `accept` decides on) while `accept` refuses that
    /// state is [`XenstoreError::BackendClosed`].
    pub async fn wait_backend(&self, accept: impl Fn(XenbusState) -> bool) -> Result<XenbusState, XenstoreError> {
        let mut watch = self.store.watch(&format!("{}/state", self.backend)).await?;
        loop {
            // The first event comes at once, so the state is read before
            // any change too.
            watch.changed().await?;
            let state = self.backend_state().await?;
            if accept(state) {
                return Ok(state);
            }
            if state.is_closing() {
                return Err(XenstoreError::BackendClosed { backend: self.backend.clone(), state });
            }
        }
    }

    /// Closes the device: our state `Closing`, wait for the backend to be
    /// `Closing` or `Closed` (or gone), our state `Closed`, then wait for
    /// the backend to be `Closed` (or gone). Linux's back-ends disconnect,
    /// unmapping the pages we granted, when they see us `Closed`, and only
    /// then switch to `Closed` themselves: after this returns the caller
    /// can end its grants. Waits as long as the backend takes.
    pub async fn close(&self) -> Result<(), XenstoreError> {
        self.set_state(XenbusState::Closing).await?;
        self.wait_backend(|s| s.is_closing() || s == XenbusState::Unknown).await?;
        self.set_state(XenbusState::Closed).await?;
        let mut watch = self.store.watch(&format!("{}/state", self.backend)).await?;
        loop {
            watch.changed().await?;
            let state = self.backend_state().await?;
            if state == XenbusState::Closed || state == XenbusState::Unknown {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenstore::fake::{block_on, daemon, simulated};
    use crate::xenstore::wire::MessageType;

    const BACKEND: &str = "/local/domain/0/backend/vbd/7/768";

    /// A client whose `device/vbd/768` has a backend in state `state`.
    fn with_backend(state: &str) -> Rc<Xenstore> {
        let store = simulated();
        {
            let mut d = daemon(&store);
            d.set("/local/domain/7/device/vbd/768/backend", BACKEND);
            d.set(&format!("{BACKEND}/state"), state);
            d.set(&format!("{BACKEND}/sectors"), "16384");
            d.set(&format!("{BACKEND}/sector-size"), "512x");
        }
        store
    }

    #[test]
    fn list_and_open_read_the_toolstack_nodes() {
        let store = with_backend("2");
        block_on(async {
            assert_eq!(Frontend::list(&store, "vbd").await.unwrap(), ["768"]);
            assert!(Frontend::list(&store, "console").await.unwrap().is_empty());
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            assert_eq!((front.node(), front.backend(), front.backend_id()), ("device/vbd/768", BACKEND, 0));
            assert_eq!(front.read_backend_u64("sectors").await.unwrap(), 16384);
            let err = front.read_backend_u64("sector-size").await.unwrap_err();
            assert!(matches!(err, XenstoreError::BadValue { ref value, .. } if value == "512x"), "{err}");
            assert_eq!(front.backend_state().await.unwrap(), XenbusState::InitWait);
            assert!(Frontend::open(store.clone(), "vbd", "9").await.unwrap_err().is_not_found());
            assert!(Frontend::open(store.clone(), "vbd/768", "x").await.is_err());
        });
        daemon(&store).set("/local/domain/7/device/vbd/768/backend-id", "70000");
        let err = block_on(Frontend::open(store.clone(), "vbd", "768")).unwrap_err();
        assert!(err.to_string().contains("70000"), "{err}");
    }

    #[test]
    fn publish_writes_keys_and_state_in_one_transaction() {
        let store = with_backend("2");
        daemon(&store).fail_commits = 1;
        block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            let entries = [("ring-ref", "8".to_string()), ("event-channel", "5".to_string())];
            front.publish(&entries, XenbusState::Initialised).await.unwrap();
        });
        let d = daemon(&store);
        let node = |k: &str| d.nodes.get(&format!("/local/domain/7/device/vbd/768/{k}")).cloned();
        assert_eq!(
            (node("ring-ref"), node("event-channel"), node("state")),
            (Some("8".into()), Some("5".into()), Some("3".into()))
        );
        assert_eq!(d.commits, 1);
        // Every write went through a transaction.
        assert!(d.seen.iter().filter(|(k, _)| *k == MessageType::Write).all(|&(_, tx)| tx != 0));
    }

    #[test]
    fn wait_backend_returns_the_first_accepted_state() {
        let store = with_backend("2");
        let path = format!("{BACKEND}/state");
        daemon(&store).script.extend([(path.clone(), "3".to_string()), (path, "4".to_string())]);
        let state = block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            front.wait_backend(|s| s == XenbusState::Connected).await
        });
        assert_eq!(state.unwrap(), XenbusState::Connected);
        assert!(daemon(&store).script.is_empty());
    }

    #[test]
    fn a_backend_closing_while_we_wait_is_an_error() {
        let store = with_backend("2");
        daemon(&store).script.push_back((format!("{BACKEND}/state"), "5".to_string()));
        let err = block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            front.wait_backend(|s| s == XenbusState::Connected).await
        })
        .unwrap_err();
        assert!(matches!(err, XenstoreError::BackendClosed { state: XenbusState::Closing, .. }), "{err}");
        // A state that is not a number is an error too.
        daemon(&store).set(&format!("{BACKEND}/state"), "connected");
        let err = block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            front.wait_backend(|s| s == XenbusState::Connected).await
        })
        .unwrap_err();
        assert!(matches!(err, XenstoreError::BadValue { .. }), "{err}");
    }

    #[test]
    fn close_walks_closing_then_closed_after_the_backend() {
        let store = with_backend("4");
        daemon(&store).script.push_back((format!("{BACKEND}/state"), "6".to_string()));
        block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            front.close().await.unwrap();
        });
        let d = daemon(&store);
        assert_eq!(d.nodes.get("/local/domain/7/device/vbd/768/state").map(String::as_str), Some("6"));
        assert!(d.script.is_empty(), "close returned before the backend closed");
    }

    #[test]
    fn close_waits_for_the_backend_to_be_closed_not_just_closing() {
        let store = with_backend("4");
        {
            let mut d = daemon(&store);
            d.script.push_back((format!("{BACKEND}/state"), "5".to_string()));
            d.script.push_back((format!("{BACKEND}/state"), "6".to_string()));
        }
        block_on(async {
            let front = Frontend::open(store.clone(), "vbd", "768").await.unwrap();
            front.close().await.unwrap();
        });
        let d = daemon(&store);
        assert_eq!(d.nodes.get(&format!("{BACKEND}/state")).map(String::as_str), Some("6"));
        assert!(d.script.is_empty(), "close returned while the backend was still Closing");
    }

    #[test]
    fn states_parse_from_their_numbers_only() {
        for n in 0..=8u8 {
            let state = XenbusState::from_u8(n).unwrap();
            assert_eq!(state as u8, n);
            assert_eq!(XenbusState::parse(&state.as_value()), Some(state));
        }
        assert_eq!(XenbusState::parse("4"), Some(XenbusState::Connected));
        for bad in ["", "9", "-1", " 4", "4\n", "04x", "256", "0004"] {
            assert_eq!(XenbusState::parse(bad), None, "{bad:?}");
        }
        assert!(XenbusState::Closed.is_closing() && !XenbusState::Connected.is_closing());
    }

    #[test]
    fn numbers_are_decimal_and_errors_name_key_and_value() {
        assert_eq!(parse_u64("b/sectors", "16384".into()).unwrap(), 16384);
        for bad in ["", "-1", "0x10", "1 ", "18446744073709551616"] {
            let err = parse_u64("b/sectors", bad.into()).unwrap_err();
            assert!(err.to_string().contains("b/sectors") && err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
