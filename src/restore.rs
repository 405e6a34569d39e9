//! Restoring the cache from PostgreSQL at start.

use std::time::Instant;

use tracing::info;

use crate::cache::{Cache, Snapshot, RECENT};
use crate::model::Order;
use crate::store::{Scanned, Store, StoreError};

/// Fills `cache` with every stored order and the recent list. An order whose
/// rows do not add up is logged and counted in [`Scanned::inconsistent`],
/// and left to be answered from PostgreSQL with a clear error; the others
/// restore exactly.
///
/// Decoding rows (on this task) and serialising and indexing the orders (on
/// a blocking thread) overlap; each is seconds of CPU for a million orders.
/// The orders are published in one swap: built on a map nobody else shares,
/// each insert is in place, where publishing in chunks would make every
/// chunk copy the nodes the previous snapshot still shares. Nothing is
/// published when the scan fails.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{restore, Cache, Store, StoreConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))?;
/// let cache = Cache::new();
/// let restored = restore(&store, &cache).await?;
/// assert_eq!(cache.len(), restored.orders);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// When PostgreSQL fails during the scan.
pub async fn restore(store: &Store, cache: &Cache) -> Result<Scanned, StoreError> {
    /// Orders handed over at a time, and chunks queued at most.
    const CHUNK: usize = 1024;
    const QUEUED: usize = 4;
    let started = Instant::now();
    let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<Order>>(QUEUED);
    let builder = tokio::task::spawn_blocking(move || {
        Snapshot::build(
            queue
                .into_iter()
                .flatten()
                .map(|order| (order.order_uid.clone(), order.to_json())),
        )
    });
    let mut chunk = Vec::with_capacity(CHUNK);
    let scanned = store
        .scan(|order| {
            chunk.push(order);
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                hand_over(&chunks, full);
            }
        })
        .await;
    hand_over(&chunks, chunk);
    drop(chunks);
    let built = builder.await;
    let scanned = scanned?;
    // A panic there is a bug here: surface it as if it had happened inline.
    let built = match built {
        Ok(built) => built,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => return Err(StoreError::Stopped),
        },
    };
    cache.merge(built);
    cache.set_recent(store.recent(RECENT as i64).await?);
    info!(
        orders = scanned.orders,
        inconsistent = scanned.inconsistent,
        took = ?started.elapsed(),
        "restored cache from PostgreSQL"
    );
    Ok(scanned)
}

/// Sends a chunk to the restore thread, waiting while its queue is full:
/// the thread does not depend on the runtime, so waiting cannot deadlock,
/// and on a multi-threaded runtime the wait lets this worker's other tasks
/// move to another worker. A thread that died is reported when joined.
fn hand_over(chunks: &std::sync::mpsc::SyncSender<Vec<Order>>, chunk: Vec<Order>) {
    if chunk.is_empty() {
        return;
    }
    let send = || {
        let _ = chunks.send(chunk);
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(send),
        _ => send(),
    }
}
