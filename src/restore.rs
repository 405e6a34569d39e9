//! Restoring the cache from PostgreSQL at start.

use std::ops::ControlFlow;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::time::Instant;

use tokio::task::JoinHandle;
use tracing::info;

use crate::cache::{Cache, Snapshot, RECENT};
use crate::model::Order;
use crate::store::{Scanned, Store, StoreError};

/// Fills `cache` with the stored orders and the recent list. An order whose
/// rows do not add up is logged and counted in [`Scanned::inconsistent`],
/// and left to be answered from PostgreSQL with a clear error; the others
/// restore exactly.
///
/// A cache without a budget gets every order. A cache with a byte budget
/// ([`Cache::with_max_bytes`]) gets the most recently stored orders first,
/// until the next one would not fit: the scan stops there, so the restore
/// reads (and holds) no more than the budget, whatever the number of
/// stored orders. The older ones are served by a miss, from PostgreSQL.
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
    let started = Instant::now();
    let scanned = match cache.max_bytes() {
        None => restore_all(store, cache).await?,
        Some(max_bytes) => restore_newest(store, cache, max_bytes).await?,
    };
    cache.set_recent(store.recent(RECENT as i64).await?);
    info!(
        orders = scanned.orders,
        inconsistent = scanned.inconsistent,
        cached = cache.len(),
        took = ?started.elapsed(),
        "restored cache from PostgreSQL"
    );
    Ok(scanned)
}

/// Orders handed to the building thread at a time, and chunks queued at
/// most.
const CHUNK: usize = 1024;
const QUEUED: usize = 4;
/// Orders read per page, newest first, into a cache with a budget.
const PAGE: usize = 4096;

/// Every stored order, in one scan.
async fn restore_all(store: &Store, cache: &Cache) -> Result<Scanned, StoreError> {
    let mut handover = Handover::start(cache, None);
    let scanned = store
        .scan(|order| {
            handover.push(order);
        })
        .await;
    let built = handover.finish().await?;
    let scanned = scanned?;
    cache.merge(built);
    Ok(scanned)
}

/// The most recently stored orders, until the budget is full. The thread
/// building the snapshot stops taking orders at the first that does not
/// fit; the scan sees that and stops too, so what is read and held stays
/// within the budget and a few chunks.
async fn restore_newest(
    store: &Store,
    cache: &Cache,
    max_bytes: u64,
) -> Result<Scanned, StoreError> {
    // Misses answered meanwhile are not admitted (see `Cache::fill`), and
    // what the cache already holds keeps its room: together, within the
    // budget.
    let _restoring = cache.restoring();
    let room = max_bytes.saturating_sub(cache.stats().bytes);
    let mut handover = Handover::start(cache, Some((max_bytes, room)));
    let scanned = store
        .scan_newest(PAGE, |order| {
            if handover.push(order) {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .await;
    let built = handover.finish().await?;
    let scanned = scanned?;
    cache.merge(built);
    Ok(scanned)
}

/// Orders on their way, a chunk at a time, to a blocking thread that
/// serialises and indexes them into a snapshot (within `max_bytes`, if
/// given). Nothing is published when the scan fails: the caller merges the
/// snapshot only then.
struct Handover {
    chunks: SyncSender<Vec<Order>>,
    chunk: Vec<Order>,
    thread: JoinHandle<Snapshot>,
}

impl Handover {
    /// `budget`: the cache's budget and the room it leaves for the restore.
    /// With compression, the thread also trains the cache's dictionary on
    /// the first orders, if it has none yet.
    fn start(cache: &Cache, budget: Option<(u64, u64)>) -> Handover {
        let (chunks, queue) = sync_channel::<Vec<Order>>(QUEUED);
        let cache = cache.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let entries = queue
                .into_iter()
                .flatten()
                .map(|order| (order.order_uid.clone(), order.to_json()));
            let (codec, entries) = cache.restore_codec(entries);
            match budget {
                None => Snapshot::build(codec, entries),
                Some((max_bytes, room)) => {
                    Snapshot::build_within(max_bytes, room, codec, entries).0
                }
            }
        });
        Handover {
            chunks,
            chunk: Vec::with_capacity(CHUNK),
            thread,
        }
    }

    /// Adds an order; `false` once the thread takes no more (its budget is
    /// full).
    fn push(&mut self, order: Order) -> bool {
        self.chunk.push(order);
        if self.chunk.len() < CHUNK {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        hand_over(&self.chunks, full)
    }

    /// The snapshot, once the thread has taken the last chunk. A panic
    /// there is a bug here: surfaced as if it had happened inline.
    async fn finish(self) -> Result<Snapshot, StoreError> {
        hand_over(&self.chunks, self.chunk);
        drop(self.chunks);
        match self.thread.await {
            Ok(built) => Ok(built),
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(StoreError::Stopped),
            },
        }
    }
}

/// Sends a chunk to the restore thread, waiting while its queue is full:
/// the thread does not depend on the runtime, so waiting cannot deadlock,
/// and on a multi-threaded runtime the wait lets this worker's other tasks
/// move to another worker. A thread that died is reported when joined.
/// Returns whether the thread still takes orders: one building within a
/// budget stops when the budget is full.
fn hand_over(chunks: &SyncSender<Vec<Order>>, chunk: Vec<Order>) -> bool {
    if chunk.is_empty() {
        return true;
    }
    let send = || chunks.send(chunk).is_ok();
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(send),
        _ => send(),
    }
}
