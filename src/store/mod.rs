//! PostgreSQL persistence: the pool and the queries the service makes.
//!
//! - `config`: how to reach PostgreSQL;
//! - `connect`: opening a connection, with the whole cause of a failure;
//! - `error`: what can go wrong, sorted by what to do about it;
//! - `migrate`: the embedded schema migrations;
//! - `insert`: the batched insert, driven by one table of columns;
//! - `rows`: the tables' rows and how they become orders again;
//! - `scan`: the restore's streamed read of every order.

mod config;
mod connect;
mod error;
mod insert;
mod migrate;
mod rows;
mod scan;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures::FutureExt;

pub use config::StoreConfig;
pub use error::{Corruption, DatabaseError, StoreError};
pub use scan::Scanned;

use crate::metrics::{Metrics, Query};
use crate::model::{Order, OrderUid};
use crate::schema::{items, orders};
use rows::ItemRow;
use scan::{heads_query, items_query, order_uid_of, Assembler, Head};

/// Order storage in PostgreSQL, behind a connection pool. Cheap to clone.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{Order, Store, StoreConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))?;
/// store.migrate().await?;
/// let order = Order::decode(include_bytes!("../../examples/example.json"))?;
/// let inserted = store.insert(std::slice::from_ref(&order)).await?;
/// assert!(inserted.len() <= 1);
/// assert!(store.get(&order.order_uid).await?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Store {
    pool: Pool<AsyncPgConnection>,
    query_timeout: Duration,
    /// Whether the last insert failed for the database's sake: PostgreSQL
    /// may answer `SELECT 1` while refusing every write (a read-only
    /// standby, a full disk), and readiness must see that.
    writes_failing: Arc<AtomicBool>,
    /// Kept to migrate from a runtime of its own (see [`Store::migrate`]).
    config: Arc<StoreConfig>,
    /// Where query latencies go, if anywhere ([`Store::with_metrics`]).
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Builds the pool. No connection is opened until one is needed.
    ///
    /// ```
    /// use order_cache::{Store, StoreConfig};
    ///
    /// // Nothing listens on port 1, and nothing is tried yet.
    /// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1:1/orders"));
    /// assert!(store.is_ok());
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the pool cannot be built.
    pub fn new(config: StoreConfig) -> Result<Store, StoreError> {
        let mut setup = ManagerConfig::default();
        setup.custom_setup = Box::new(|url| connect::establish(url).boxed());
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            config.database_url.clone(),
            setup,
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(StoreError::unavailable)?;
        Ok(Store {
            pool,
            query_timeout: config.query_timeout,
            writes_failing: Arc::default(),
            config: Arc::new(config),
            metrics: None,
        })
    }

    /// Times every query into `metrics` (`order_cache_store_query_seconds`,
    /// by kind). Clones made afterwards share it.
    ///
    /// ```
    /// use order_cache::{Metrics, Store, StoreConfig};
    ///
    /// let metrics = Metrics::new();
    /// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))
    ///     .unwrap()
    ///     .with_metrics(metrics.clone());
    /// # let _ = store;
    /// assert!(metrics.render().contains(r#"order_cache_store_query_seconds_count{query="insert"} 0"#));
    /// ```
    pub fn with_metrics(mut self, metrics: Metrics) -> Store {
        self.metrics = Some(metrics);
        self
    }

    /// Records how long a query of this kind took, failed ones included.
    fn observe(&self, kind: Query, started: Instant) {
        if let Some(metrics) = &self.metrics {
            metrics.query(kind, started.elapsed());
        }
    }

    async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        self.pool.get().await.map_err(StoreError::unavailable)
    }

    async fn timed<T>(
        &self,
        kind: Query,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.query_timeout, f)
            .await
            .unwrap_or_else(|_| Err(StoreError::Timeout(self.query_timeout)));
        self.observe(kind, started);
        result
    }

    /// Checks that PostgreSQL answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.timed(Query::Ping, async {
            let mut conn = self.conn().await?;
            diesel::sql_query("SELECT 1")
                .execute(&mut conn)
                .await
                .map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }

    /// Stores orders that are not stored yet, in one statement (so one
    /// transaction), and returns the ids it inserted. Orders whose id is
    /// already stored are left as they are; an id given twice is stored once,
    /// from its first occurrence.
    ///
    /// # Errors
    ///
    /// [`StoreError::Refused`] when PostgreSQL refuses a row: nothing of the
    /// batch is stored then. [`StoreError::Unavailable`] when PostgreSQL
    /// cannot be reached.
    pub async fn insert(&self, batch: &[Order]) -> Result<Vec<OrderUid>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let result = self.insert_batch(batch).await;
        let failing = matches!(&result, Err(e) if e.is_transient());
        AtomicBool::store(&self.writes_failing, failing, Ordering::Relaxed);
        result
    }

    /// Whether the last [`Store::insert`] failed for the database's sake
    /// (anything but a refusal of the rows); cleared by the next one that
    /// succeeds.
    pub fn writes_failing(&self) -> bool {
        AtomicBool::load(&self.writes_failing, Ordering::Relaxed)
    }

    async fn insert_batch(&self, batch: &[Order]) -> Result<Vec<OrderUid>, StoreError> {
        let query = insert::query(batch);
        self.timed(Query::Insert, async {
            let mut conn = self.conn().await?;
            let rows: Vec<insert::Inserted> = query.load(&mut conn).await?;
            rows.into_iter()
                .map(|r| {
                    OrderUid::parse(&r.order_uid).map_err(|p| StoreError::Corrupt {
                        uid: r.order_uid,
                        problem: Corruption::Id(p),
                    })
                })
                .collect()
        })
        .await
    }

    /// The stored order with this id, if any.
    ///
    /// # Errors
    ///
    /// When the query fails, or [`StoreError::Corrupt`] when the order's rows
    /// do not add up (a delivery, payment or item row missing).
    pub async fn get(&self, uid: &OrderUid) -> Result<Option<Order>, StoreError> {
        let mut found = self.get_many(std::slice::from_ref(uid)).await?;
        found.remove(uid).transpose()
    }

    /// The stored orders among these ids, in two queries whatever their
    /// number. Unknown ids are left out; an order whose rows do not add up
    /// is there as [`StoreError::Corrupt`], without failing the others.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn get_many(
        &self,
        uids: &[OrderUid],
    ) -> Result<HashMap<OrderUid, Result<Order, StoreError>>, StoreError> {
        let ids: Vec<&str> = uids.iter().map(OrderUid::as_str).collect();
        self.timed(Query::Get, async {
            let mut conn = self.conn().await?;
            // Rows are only ever inserted, each order in one statement: once
            // the order row is seen, its items are committed too, so reading
            // them afterwards is consistent without a snapshot.
            let heads: Vec<Head> = heads_query()
                .filter(orders::order_uid.eq_any(&ids))
                .load(&mut conn)
                .await?;
            if heads.is_empty() {
                return Ok(HashMap::new());
            }
            let found: Vec<&str> = heads.iter().map(|h| h.0.order_uid.as_str()).collect();
            let lines: Vec<ItemRow> = items_query()
                .filter(items::order_uid.eq_any(&found))
                .load(&mut conn)
                .await?;
            let mut assembler = Assembler::default();
            let mut lines = futures::stream::iter(lines.into_iter().map(Ok::<_, StoreError>));
            let mut orders = HashMap::with_capacity(heads.len());
            for head in heads {
                let order = assembler.assemble_with(head, &mut lines).await?;
                if let Ok(uid) = OrderUid::parse(order_uid_of(&order)) {
                    orders.insert(uid, order);
                }
            }
            Ok(orders)
        })
        .await
    }

    /// Ids of the `n` orders stored most recently, newest first.
    ///
    /// # Errors
    ///
    /// When the query fails.
    pub async fn recent(&self, n: i64) -> Result<Vec<OrderUid>, StoreError> {
        self.timed(Query::Recent, async {
            let mut conn = self.conn().await?;
            let ids: Vec<String> = orders::table
                .select(orders::order_uid)
                .order(orders::seq.desc())
                .limit(n)
                .load(&mut conn)
                .await?;
            Ok(ids
                .iter()
                .filter_map(|id| OrderUid::parse(id).ok())
                .collect())
        })
        .await
    }
}
