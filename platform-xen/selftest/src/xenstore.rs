//! The xenstore step: each operation of the client used once.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use mirage_platform_xen::xenbus::Frontend;
use mirage_platform_xen::xenstore::{Xenstore, XenstoreError};
use mirage_types::platform::AppError;

/// How long the whole step may take: a dozen round trips to xenstored,
/// each well under a second even under TCG.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// Reads the domain's `name` and `domid`, lists `device` and each kind's
/// ids, writes and reads back `data/mirage-test`, increments
/// `data/mirage-count` in a transaction, watches `data/mirage-watch` (it
/// fires once at once, then on the write under it), and describes what it
/// saw.
pub(crate) async fn check(store: &Xenstore) -> Result<String, AppError> {
    let name = store.read("name").await?;
    let domid = store.read("domid").await?;
    let devices = store.directory("device").await?;
    let mut kinds = Vec::new();
    for kind in &devices {
        let ids = Frontend::list(store, kind).await?;
        kinds.push(format!("{kind}={ids:?}"));
    }
    let value = format!("hello from domain {domid}");
    store.write("data/mirage-test", &value).await?;
    let back = store.read("data/mirage-test").await?;
    if back != value {
        return Err(format!("wrote {value:?} to data/mirage-test, read back {back:?}").into());
    }
    let mut runs = 0;
    let counted = store
        .transaction(|tx| {
            runs += 1;
            async move {
                let old = match tx.read("data/mirage-count").await {
                    Ok(v) => v.parse::<u64>().unwrap_or(0),
                    Err(e) if e.is_not_found() => 0,
                    Err(e) => return Err::<u64, XenstoreError>(e),
                };
                tx.write("data/mirage-count", &format!("{}", old + 1)).await?;
                Ok(old + 1)
            }
        })
        .await?;
    let mut watch = store.watch("data/mirage-watch").await?;
    let first = watch.changed().await?;
    store.write("data/mirage-watch/fired", "1").await?;
    let second = watch.changed().await?;
    drop(watch);
    store.remove("data/mirage-watch").await?;
    Ok(format!(
        "name={name} domid={domid} devices=[{}] ({}) data/mirage-test read back; transaction committed \
         (count {counted}, {runs} run(s)); watch fired on {first} then {second}",
        devices.join(", "),
        kinds.join(", ")
    ))
}
