//! Finding an order for a request: the cache first, then PostgreSQL, with a
//! short memory of the ids PostgreSQL did not have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use warp::http::HeaderValue;

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::model::OrderUid;
use crate::store::{Store, StoreError};

/// How long an id that PostgreSQL did not have is answered 404 from memory,
/// so a flood of unknown ids does not become a flood of queries.
const MISS_TTL: Duration = Duration::from_secs(1);
/// Most remembered misses; the memory is cleared when full.
const MISS_CAP: usize = 100_000;
/// Most ids asked for in one query.
const BATCH: usize = 512;

/// What a lookup in PostgreSQL found for one id: the order's response
/// bytes, nothing, or why it could not say.
pub(super) type Found = Result<Option<Bytes>, Arc<StoreError>>;
type Answer = oneshot::Sender<Found>;

/// Where an answered order came from, said in the `X-Order-Cache` header
/// (`hit` or `store`), so operators and tests can tell a cache that lost
/// orders from one that serves them.
#[derive(Debug, Clone, Copy)]
pub(super) enum Source {
    Cache,
    Store,
}

impl Source {
    pub(super) fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Source::Cache => "hit",
            Source::Store => "store",
        })
    }
}

/// The cache, and behind it PostgreSQL when there is a store.
#[derive(Clone)]
pub(super) struct Lookup {
    cache: Cache,
    metrics: Metrics,
    store: Option<Misses>,
    deadline: Duration,
}

impl Lookup {
    pub(super) fn new(cache: Cache, metrics: Metrics, deadline: Duration) -> Lookup {
        Lookup {
            cache,
            metrics,
            store: None,
            deadline,
        }
    }

    pub(super) fn with_store(mut self, store: Store) -> Lookup {
        self.store = Some(Misses::new(store, self.cache.clone()));
        self
    }

    pub(super) fn with_deadline(mut self, deadline: Duration) -> Lookup {
        self.deadline = deadline;
        self
    }

    pub(super) fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The order's response bytes, and whether they came from the cache.
    pub(super) async fn get(
        &self,
        uid: &OrderUid,
    ) -> Result<Option<(Bytes, Source)>, Arc<StoreError>> {
        if let Some(bytes) = self.cache.get(uid.as_str()) {
            self.metrics.cache_hit();
            return Ok(Some((bytes, Source::Cache)));
        }
        self.metrics.cache_miss();
        let Some(store) = &self.store else {
            return Ok(None);
        };
        if store.missed_recently(uid) {
            return Ok(None);
        }
        let deadline = self.deadline;
        let found = tokio::time::timeout(deadline, store.get(uid))
            .await
            .unwrap_or_else(|_| Err(Arc::new(StoreError::Timeout(deadline))))?;
        match found {
            Some(bytes) => Ok(Some((bytes, Source::Store))),
            None => {
                store.remember_miss(uid);
                Ok(None)
            }
        }
    }
}

/// Cache misses, looked up in PostgreSQL together: one task takes every miss
/// queued while its previous query ran and asks for all of them in one
/// query, so a flood of unknown ids costs a query per batch, not per request.
/// Every waiter for an id gets the same answer, however many there are.
///
/// The task starts with the first miss, on the runtime serving it, and ends
/// when every clone is gone; a task that ended with its runtime (a host
/// running the routes on more than one) is started again by the next miss.
#[derive(Clone)]
struct Misses(Arc<MissesInner>);

struct MissesInner {
    store: Store,
    cache: Cache,
    queue: Mutex<Option<mpsc::Sender<(OrderUid, Answer)>>>,
    recent: Mutex<HashMap<String, Instant>>,
}

impl Misses {
    fn new(store: Store, cache: Cache) -> Misses {
        Misses(Arc::new(MissesInner {
            store,
            cache,
            queue: Mutex::default(),
            recent: Mutex::default(),
        }))
    }

    async fn get(&self, uid: &OrderUid) -> Found {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError(miss)) =
            self.queue(false).send((uid.clone(), reply)).await
        {
            // The task ended between the check and the send: once more, on
            // a task of its own.
            self.queue(true)
                .send(miss)
                .await
                .map_err(|_| Arc::new(StoreError::Stopped))?;
        }
        answer.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }

    /// The running task's queue, starting the task if none runs (or,
    /// with `restart`, in any case).
    fn queue(&self, restart: bool) -> mpsc::Sender<(OrderUid, Answer)> {
        let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        match &*queue {
            Some(running) if !restart && !running.is_closed() => running.clone(),
            _ => queue.insert(self.start()).clone(),
        }
    }

    fn start(&self) -> mpsc::Sender<(OrderUid, Answer)> {
        let (queue, mut requests) = mpsc::channel::<(OrderUid, Answer)>(4 * BATCH);
        // The task holds the store and cache, not `self`: it ends when the
        // last sender, owned by the last clone, is dropped.
        let (store, cache) = (self.0.store.clone(), self.0.cache.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while requests.recv_many(&mut batch, BATCH).await > 0 {
                // Waiters that gave up (their deadline passed) need no query.
                batch.retain(|(_, reply): &(OrderUid, Answer)| !reply.is_closed());
                if batch.is_empty() {
                    continue;
                }
                let ids: Vec<OrderUid> = batch.iter().map(|(id, _)| id.clone()).collect();
                let answers = find(&store, &cache, &ids).await;
                for (id, reply) in batch.drain(..) {
                    let answer = match &answers {
                        Ok(found) => found.get(&id).cloned().unwrap_or(Ok(None)),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        queue
    }

    fn missed_recently(&self, uid: &OrderUid) -> bool {
        let recent = self.0.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent
            .get(uid.as_str())
            .is_some_and(|at| at.elapsed() < MISS_TTL)
    }

    fn remember_miss(&self, uid: &OrderUid) {
        let mut recent = self.0.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= MISS_CAP {
            recent.clear();
        }
        recent.insert(uid.as_str().to_owned(), Instant::now());
    }
}

/// Looks the ids up, caches what it found, and returns each found id's
/// answer (an id given twice is looked up and answered once).
async fn find(
    store: &Store,
    cache: &Cache,
    ids: &[OrderUid],
) -> Result<HashMap<OrderUid, Found>, Arc<StoreError>> {
    let found = store.get_many(ids).await.map_err(Arc::new)?;
    let mut answers = HashMap::with_capacity(found.len());
    let mut fresh = Vec::with_capacity(found.len());
    for (uid, order) in found {
        let answer = match order {
            Ok(order) => {
                let bytes = order.to_json();
                fresh.push((uid.clone(), bytes.clone()));
                Ok(Some(bytes))
            }
            Err(e) => Err(Arc::new(e)),
        };
        answers.insert(uid, answer);
    }
    cache.fill(fresh);
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The first miss spawns the lookup task on the runtime serving it; once
    /// that runtime is gone, every later miss, on any runtime, is answered
    /// `Stopped` (503) for ever, although PostgreSQL was never asked.
    #[test]
    fn a_miss_after_the_first_misss_runtime_ended_still_asks_postgresql() {
        let mut config = StoreConfig::new("postgres://postgres@127.0.0.1:1/none");
        config.connect_timeout = Duration::from_millis(200);
        let store = Store::new(config).unwrap();
        let lookup =
            Lookup::new(Cache::new(), Metrics::new(), Duration::from_secs(2)).with_store(store);
        let uid = OrderUid::parse("abc").unwrap();

        let first = runtime();
        let e = first.block_on(lookup.get(&uid)).unwrap_err();
        assert!(matches!(*e, StoreError::Unavailable(_)), "{e}");
        drop(first);

        let second = runtime();
        let e = second.block_on(lookup.get(&uid)).unwrap_err();
        assert!(
            matches!(*e, StoreError::Unavailable(_)),
            "second runtime: {e}"
        );
    }
}
