//! Readiness: whether this instance should receive traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// What `/readyz` checks: the cache has been restored, and PostgreSQL and
/// NATS (each where one is given) answer. Cheap to clone: clones share state.
///
/// # Examples
///
/// ```
/// use order_cache::Readiness;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let readiness = Readiness::new();
/// assert_eq!(readiness.failing().await, ["cache"]);
///
/// readiness.clone().mark_restored();
/// assert!(readiness.is_restored());
/// assert!(readiness.failing().await.is_empty());
/// # }
/// ```
///
/// With `.with_store(store).with_nats(client)`, `failing` also names
/// `postgres` when a ping does not answer within a second or the last write
/// failed for the database's sake, and `nats` while the client is
/// disconnected.
#[derive(Clone, Default)]
pub struct Readiness {
    restored: Arc<AtomicBool>,
    store: Option<Store>,
    nats: Option<async_nats::Client>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("restored", &self.is_restored())
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Not restored, checking nothing else.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Also require PostgreSQL to answer.
    pub fn with_store(mut self, store: Store) -> Readiness {
        self.store = Some(store);
        self
    }

    /// Also require the NATS connection to be up.
    pub fn with_nats(mut self, client: async_nats::Client) -> Readiness {
        self.nats = Some(client);
        self
    }

    /// Records that the cache holds every stored order.
    pub fn mark_restored(&self) {
        self.restored.store(true, Ordering::Release);
    }

    /// Whether [`Readiness::mark_restored`] was called.
    pub fn is_restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// The names of the checks that fail: `cache`, `postgres`, `nats`.
    /// Empty means ready.
    pub async fn failing(&self) -> Vec<&'static str> {
        let mut failing = Vec::new();
        if !self.is_restored() {
            failing.push("cache");
        }
        if let Some(store) = &self.store {
            // PostgreSQL may answer while refusing every write (a read-only
            // standby, a full disk): the last write counts too.
            let ping = tokio::time::timeout(Duration::from_secs(1), store.ping()).await;
            if !matches!(ping, Ok(Ok(()))) || store.writes_failing() {
                failing.push("postgres");
            }
        }
        if let Some(nats) = &self.nats {
            if nats.connection_state() != async_nats::connection::State::Connected {
                failing.push("nats");
            }
        }
        failing
    }
}
