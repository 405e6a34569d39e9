//! PostgreSQL persistence: migrations, batched idempotent inserts, and the
//! set-based reads that restore the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::{Array, Int4, Int8, Text, Timestamptz};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures::TryStreamExt;

use crate::metrics::{Metrics, Query};
use crate::model::{Delivery, Item, Order, OrderUid, Payment, Timestamp};
use crate::schema::{deliveries, items, orders, payments};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Settings of a [`Store`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::StoreConfig;
///
/// let mut config = StoreConfig::new("postgres://app:s3cret@db.internal:5432/orders");
/// config.max_connections = 16;
/// config.query_timeout = Duration::from_secs(5);
/// // Debug output (and so any log line) never shows the password.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`.
    pub database_url: String,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long to wait for a connection, new or pooled.
    pub connect_timeout: Duration,
    /// How long one statement may run before it counts as failed.
    pub query_timeout: Duration,
}

impl StoreConfig {
    /// Settings with the defaults below for everything but the URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreConfig {
            database_url: database_url.into(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}

/// The URL with its password replaced by `***`, for logs and errors.
pub use crate::redact::redact_database_url as redact_url;

/// What went wrong talking to PostgreSQL.
///
/// # Examples
///
/// ```
/// use order_cache::StoreError;
///
/// let err = StoreError::Unavailable("connection refused".into());
/// assert!(err.is_transient(), "worth retrying later");
/// assert!(!err.is_refusal(), "not the rows' fault");
/// assert_eq!(err.to_string(), "PostgreSQL is unavailable: connection refused");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL could not be reached, or did not answer in time. Retrying
    /// later may succeed.
    #[error("PostgreSQL is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused the rows themselves: it said so about their data
    /// (SQLSTATE class 22, data exception, or class 23, integrity constraint
    /// violation). Retrying the same rows will fail again.
    #[error("PostgreSQL refused the rows: {0}")]
    Refused(#[source] diesel::result::Error),
    /// Any other query failure: the database's fault (read-only, disk full,
    /// a timeout, a deadlock, a permission, a missing table, a shutdown...),
    /// not the rows'. Retrying later may succeed.
    #[error("query failed: {0}")]
    Query(#[source] diesel::result::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored row could not be turned back into an order.
    #[error("stored order {uid:?} is corrupt: {problem}")]
    Corrupt {
        /// Id of the row.
        uid: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl StoreError {
    /// Whether the same request may succeed later: every failure but a
    /// refusal of the rows and a corrupt stored row.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StoreError::Refused(_) | StoreError::Corrupt { .. })
    }

    /// Whether PostgreSQL refused the rows for their data ([`StoreError::Refused`]):
    /// the one failure that is the rows' fault rather than the database's.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StoreError::Refused(_))
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error as E;
        match e {
            E::DatabaseError(
                DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::CheckViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::RestrictViolation
                | DatabaseErrorKind::ExclusionViolation,
                _,
            ) => StoreError::Refused(e),
            E::DatabaseError(
                DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
                _,
            )
            | E::BrokenTransactionManager => StoreError::Unavailable(e.to_string()),
            e => StoreError::Query(e),
        }
    }
}

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
/// let order = Order::decode(include_bytes!("../examples/example.json"))?;
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
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new(config.database_url.clone());
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
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
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn timed<T>(
        &self,
        kind: Query,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.query_timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer within {:?}",
                    self.query_timeout
                )))
            });
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
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Ok(())
        })
        .await
    }

    /// Applies pending migrations. Safe to call from several processes at
    /// once: an advisory lock lets one at a time through.
    ///
    /// The migration harness blocks its thread, which only a multi-threaded
    /// tokio runtime allows; on any other runtime the migrations run on a
    /// thread and runtime of their own, with a connection of their own.
    ///
    /// # Errors
    ///
    /// [`StoreError::Migration`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
        if matches!(flavor, Ok(tokio::runtime::RuntimeFlavor::MultiThread)) {
            return self.migrate_here().await;
        }
        let config = StoreConfig::clone(&self.config);
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let migrated = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .map_err(|e| StoreError::Migration(format!("cannot start a runtime: {e}")))
                .and_then(|rt| rt.block_on(async { Store::new(config)?.migrate_here().await }));
            let _ = done.send(migrated);
        });
        result
            .await
            .unwrap_or_else(|_| Err(StoreError::Migration("the migration thread died".into())))
    }

    async fn migrate_here(&self) -> Result<(), StoreError> {
        const LOCK: i64 = 0x6f72_6465_725f_6361; // "order_ca"
        let mut conn = self.conn().await?;
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<Int8, _>(LOCK)
            .execute(&mut conn)
            .await?;
        let mut harness = AsyncMigrationHarness::new(conn);
        let result = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()));
        let mut conn = harness.into_inner();
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<Int8, _>(LOCK)
            .execute(&mut conn)
            .await?;
        result
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
        let result = self.insert_columns(Columns::from_orders(batch)).await;
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

    async fn insert_columns(&self, columns: Columns) -> Result<Vec<OrderUid>, StoreError> {
        self.timed(Query::Insert, async {
            let mut conn = self.conn().await?;
            let rows: Vec<Inserted> = columns.query().load(&mut conn).await?;
            rows.into_iter()
                .map(|r| {
                    OrderUid::parse(&r.order_uid).map_err(|p| StoreError::Corrupt {
                        uid: r.order_uid,
                        problem: p.to_string(),
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

    /// Calls `f` with every stored order, reading them in two streamed,
    /// set-based queries (orders joined with delivery and payment; items)
    /// merged by id. An order whose rows do not add up is logged, counted
    /// and skipped: the others are restored exactly.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn scan(&self, f: impl FnMut(Order) + Send) -> Result<Scanned, StoreError> {
        let started = Instant::now();
        let result = self.scan_all(f).await;
        self.observe(Query::Scan, started);
        result
    }

    async fn scan_all(&self, mut f: impl FnMut(Order) + Send) -> Result<Scanned, StoreError> {
        let mut head_conn = self.conn().await?;
        let mut item_conn = self.conn().await?;
        // The two queries run on two connections at once, so they must read
        // one snapshot: otherwise an order committed between their starts
        // could be read without its items. The first connection exports its
        // snapshot; the second adopts it.
        let result = async {
            head_conn
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            let snapshot: SnapshotId = diesel::sql_query("SELECT pg_export_snapshot() AS id")
                .get_result(&mut *head_conn)
                .await?;
            item_conn
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                    snapshot.id
                ))
                .await?;
            let scanned =
                merge(&mut head_conn, &mut item_conn, &mut f, self.query_timeout).await?;
            head_conn.batch_execute("COMMIT").await?;
            item_conn.batch_execute("COMMIT").await?;
            Ok(scanned)
        }
        .await;
        if result.is_err() {
            // A connection may still be inside the transaction: never hand
            // it back to the pool.
            let _ = Object::take(head_conn);
            let _ = Object::take(item_conn);
        }
        result
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

#[derive(QueryableByName)]
struct SnapshotId {
    #[diesel(sql_type = Text)]
    id: String,
}

/// What [`Store::scan`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Orders handed over, whole.
    pub orders: usize,
    /// Orders left out because their rows do not add up (logged each).
    pub inconsistent: usize,
}

/// An order row with its delivery and payment rows, where they exist.
type Head = (OrderRow, Option<DeliveryRow>, Option<PaymentRow>);

#[diesel::dsl::auto_type(no_type_alias)]
fn heads_query() -> _ {
    let order: diesel::dsl::AsSelect<OrderRow, diesel::pg::Pg> = OrderRow::as_select();
    let delivery: diesel::dsl::AsSelect<Option<DeliveryRow>, diesel::pg::Pg> =
        Option::<DeliveryRow>::as_select();
    let payment: diesel::dsl::AsSelect<Option<PaymentRow>, diesel::pg::Pg> =
        Option::<PaymentRow>::as_select();
    // Left joins: an order missing its delivery or payment row must be
    // seen (and reported), not silently dropped while its items stay in
    // the item stream.
    orders::table
        .left_join(deliveries::table)
        .left_join(payments::table)
        .select((order, delivery, payment))
        .order(orders::order_uid)
}

#[diesel::dsl::auto_type(no_type_alias)]
fn items_query() -> _ {
    let item: diesel::dsl::AsSelect<ItemRow, diesel::pg::Pg> = ItemRow::as_select();
    items::table
        .select(item)
        .order((items::order_uid, items::position))
}

/// Puts orders together from heads and item rows, both sorted by id.
#[derive(Default)]
struct Assembler {
    /// The first item row not yet handed to an order.
    next: Option<ItemRow>,
    started: bool,
    /// Item rows whose order row was not there.
    orphans: usize,
}

impl Assembler {
    /// The order of `head` with its items, taken from `lines` (sorted by
    /// id, then position): item rows of ids before it are orphans, skipped.
    /// The outer error is the query's; the inner one says the order's rows
    /// do not add up.
    async fn assemble_with<S>(
        &mut self,
        head: Head,
        lines: &mut S,
    ) -> Result<Result<Order, StoreError>, StoreError>
    where
        S: futures::Stream<Item = Result<ItemRow, StoreError>> + Unpin,
    {
        if !self.started {
            self.started = true;
            self.next = lines.try_next().await?;
        }
        let mut list = Vec::new();
        while let Some(line) = self.next.take() {
            match line.order_uid.as_str().cmp(head.0.order_uid.as_str()) {
                std::cmp::Ordering::Less => self.orphans += 1,
                std::cmp::Ordering::Equal => list.push(line),
                std::cmp::Ordering::Greater => {
                    self.next = Some(line);
                    break;
                }
            }
            self.next = lines.try_next().await?;
        }
        let (order, delivery, payment) = head;
        Ok(order.into_order(delivery, payment, list))
    }
}

fn order_uid_of(order: &Result<Order, StoreError>) -> &str {
    match order {
        Ok(o) => o.order_uid.as_str(),
        Err(StoreError::Corrupt { uid, .. }) => uid,
        Err(_) => "",
    }
}

/// `rows`, failing when none arrives for `quiet`: a restore of many orders
/// may take long, but a scan that stops answering (a lock, a silent
/// connection) must end the start rather than hang it.
fn deadline<T, S>(rows: S, quiet: Duration) -> impl futures::Stream<Item = Result<T, StoreError>>
where
    S: futures::Stream<Item = Result<T, diesel::result::Error>>,
{
    futures::stream::unfold(Box::pin(rows), move |mut rows| async move {
        use futures::StreamExt;
        match tokio::time::timeout(quiet, rows.next()).await {
            Ok(Some(row)) => Some((row.map_err(StoreError::from), rows)),
            Ok(None) => None,
            Err(_) => Some((Err(silent(quiet)), rows)),
        }
    })
}

fn silent(quiet: Duration) -> StoreError {
    StoreError::Unavailable(format!("no row within {quiet:?}"))
}

/// Streams orders (joined with delivery and payment) and items, both sorted
/// by id, and hands `f` each whole order.
async fn merge(
    head_conn: &mut AsyncPgConnection,
    item_conn: &mut AsyncPgConnection,
    f: &mut (impl FnMut(Order) + Send),
    quiet: Duration,
) -> Result<Scanned, StoreError> {
    let starts = async {
        futures::try_join!(
            heads_query().load_stream::<Head>(head_conn),
            items_query().load_stream::<ItemRow>(item_conn),
        )
        .map_err(StoreError::from)
    };
    let (heads, lines) = tokio::time::timeout(quiet, starts)
        .await
        .map_err(|_| silent(quiet))??;
    let mut heads = std::pin::pin!(deadline(heads, quiet));
    let mut lines = std::pin::pin!(deadline(lines, quiet));
    let mut assembler = Assembler::default();
    let mut scanned = Scanned::default();
    while let Some(head) = heads.try_next().await? {
        match assembler.assemble_with(head, &mut lines).await? {
            Ok(order) => {
                f(order);
                scanned.orders += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored order left out of the cache");
                scanned.inconsistent += 1;
            }
        }
    }
    if assembler.orphans > 0 {
        tracing::warn!(
            rows = assembler.orphans,
            "item rows without their order row were skipped"
        );
    }
    Ok(scanned)
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = Text)]
    order_uid: String,
}

/// A batch of orders laid out column by column, ready for `unnest`: one bind
/// per column whatever the batch size, so the 65,535-bind limit never applies.
#[derive(Default)]
struct Columns {
    uid: Vec<String>,
    track_number: Vec<String>,
    entry: Vec<String>,
    locale: Vec<String>,
    internal_signature: Vec<String>,
    customer_id: Vec<String>,
    delivery_service: Vec<String>,
    shardkey: Vec<String>,
    sm_id: Vec<i32>,
    date_created: Vec<DateTime<Utc>>,
    oof_shard: Vec<String>,
    d: [Vec<String>; 7],
    p_text: [Vec<String>; 5],
    p_num: [Vec<i64>; 5],
    i_uid: Vec<String>,
    i_pos: Vec<i32>,
    i_text: [Vec<String>; 5],
    i_long: [Vec<i64>; 4],
    i_int: [Vec<i32>; 2],
}

const INSERT_SQL: &str = r#"
SELECT uid AS order_uid FROM order_cache_insert(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int4[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], $24::int8[], $25::int8[], $26::int8[], $27::int8[], $28::int8[], $29::text[], $30::int4[], $31::text[], $32::text[], $33::text[], $34::text[], $35::text[], $36::int8[], $37::int8[], $38::int8[], $39::int8[], $40::int4[], $41::int4[]
) AS uid
"#;

impl Columns {
    fn from_orders(batch: &[Order]) -> Columns {
        let mut c = Columns::default();
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        for o in batch {
            // One statement cannot insert the same child rows twice; the first
            // occurrence of an id wins, as ON CONFLICT would make it.
            if !seen.insert(o.order_uid.as_str()) {
                continue;
            }
            let uid = o.order_uid.as_str().to_owned();
            c.track_number.push(o.track_number.clone());
            c.entry.push(o.entry.clone());
            c.locale.push(o.locale.clone());
            c.internal_signature.push(o.internal_signature.clone());
            c.customer_id.push(o.customer_id.clone());
            c.delivery_service.push(o.delivery_service.clone());
            c.shardkey.push(o.shardkey.clone());
            // Validation keeps sm_id within i32; saturate rather than wrap
            // so the CHECK constraint catches anything that bypassed it.
            c.sm_id.push(i32::try_from(o.sm_id).unwrap_or(-1));
            c.date_created.push(o.date_created.as_datetime());
            c.oof_shard.push(o.oof_shard.clone());
            let d = &o.delivery;
            for (col, v) in c.d.iter_mut().zip([
                &d.name, &d.phone, &d.zip, &d.city, &d.address, &d.region, &d.email,
            ]) {
                col.push(v.clone());
            }
            let p = &o.payment;
            for (col, v) in c.p_text.iter_mut().zip([
                &p.transaction,
                &p.request_id,
                &p.currency,
                &p.provider,
                &p.bank,
            ]) {
                col.push(v.clone());
            }
            for (col, v) in c.p_num.iter_mut().zip([
                p.amount,
                p.payment_dt,
                p.delivery_cost,
                p.goods_total,
                p.custom_fee,
            ]) {
                col.push(v);
            }
            for (pos, it) in o.items.iter().enumerate() {
                c.i_uid.push(uid.clone());
                c.i_pos.push(i32::try_from(pos).unwrap_or(-1));
                for (col, v) in c.i_text.iter_mut().zip([
                    &it.track_number,
                    &it.rid,
                    &it.name,
                    &it.size,
                    &it.brand,
                ]) {
                    col.push(v.clone());
                }
                for (col, v) in
                    c.i_long
                        .iter_mut()
                        .zip([it.chrt_id, it.price, it.total_price, it.nm_id])
                {
                    col.push(v);
                }
                for (col, v) in c.i_int.iter_mut().zip([it.sale, it.status]) {
                    col.push(i32::try_from(v).unwrap_or(-1));
                }
            }
            c.uid.push(uid);
        }
        c
    }

    fn query(self) -> impl diesel_async::methods::LoadQuery<'static, AsyncPgConnection, Inserted> {
        let [d0, d1, d2, d3, d4, d5, d6] = self.d;
        let [pt0, pt1, pt2, pt3, pt4] = self.p_text;
        let [pn0, pn1, pn2, pn3, pn4] = self.p_num;
        let [it0, it1, it2, it3, it4] = self.i_text;
        let [il0, il1, il2, il3] = self.i_long;
        let [ii0, ii1] = self.i_int;
        diesel::sql_query(INSERT_SQL)
            .bind::<Array<Text>, _>(self.uid)
            .bind::<Array<Text>, _>(self.track_number)
            .bind::<Array<Text>, _>(self.entry)
            .bind::<Array<Text>, _>(self.locale)
            .bind::<Array<Text>, _>(self.internal_signature)
            .bind::<Array<Text>, _>(self.customer_id)
            .bind::<Array<Text>, _>(self.delivery_service)
            .bind::<Array<Text>, _>(self.shardkey)
            .bind::<Array<Int4>, _>(self.sm_id)
            .bind::<Array<Timestamptz>, _>(self.date_created)
            .bind::<Array<Text>, _>(self.oof_shard)
            .bind::<Array<Text>, _>(d0)
            .bind::<Array<Text>, _>(d1)
            .bind::<Array<Text>, _>(d2)
            .bind::<Array<Text>, _>(d3)
            .bind::<Array<Text>, _>(d4)
            .bind::<Array<Text>, _>(d5)
            .bind::<Array<Text>, _>(d6)
            .bind::<Array<Text>, _>(pt0)
            .bind::<Array<Text>, _>(pt1)
            .bind::<Array<Text>, _>(pt2)
            .bind::<Array<Text>, _>(pt3)
            .bind::<Array<Text>, _>(pt4)
            .bind::<Array<Int8>, _>(pn0)
            .bind::<Array<Int8>, _>(pn1)
            .bind::<Array<Int8>, _>(pn2)
            .bind::<Array<Int8>, _>(pn3)
            .bind::<Array<Int8>, _>(pn4)
            .bind::<Array<Text>, _>(self.i_uid)
            .bind::<Array<Int4>, _>(self.i_pos)
            .bind::<Array<Text>, _>(it0)
            .bind::<Array<Text>, _>(it1)
            .bind::<Array<Text>, _>(it2)
            .bind::<Array<Text>, _>(it3)
            .bind::<Array<Text>, _>(it4)
            .bind::<Array<Int8>, _>(il0)
            .bind::<Array<Int8>, _>(il1)
            .bind::<Array<Int8>, _>(il2)
            .bind::<Array<Int8>, _>(il3)
            .bind::<Array<Int4>, _>(ii0)
            .bind::<Array<Int4>, _>(ii1)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    order_uid: String,
    track_number: String,
    entry: String,
    locale: String,
    internal_signature: String,
    customer_id: String,
    delivery_service: String,
    shardkey: String,
    sm_id: i32,
    date_created: DateTime<Utc>,
    oof_shard: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = deliveries, check_for_backend(diesel::pg::Pg))]
struct DeliveryRow {
    name: String,
    phone: String,
    zip: String,
    city: String,
    address: String,
    region: String,
    email: String,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
struct PaymentRow {
    transaction: String,
    request_id: String,
    currency: String,
    provider: String,
    amount: i64,
    payment_dt: i64,
    bank: String,
    delivery_cost: i64,
    goods_total: i64,
    custom_fee: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = items, check_for_backend(diesel::pg::Pg))]
struct ItemRow {
    order_uid: String,
    position: i32,
    chrt_id: i64,
    track_number: String,
    price: i64,
    rid: String,
    name: String,
    sale: i32,
    size: String,
    total_price: i64,
    nm_id: i64,
    brand: String,
    status: i32,
}

impl ItemRow {
    fn into_item(self) -> Item {
        Item {
            chrt_id: self.chrt_id,
            track_number: self.track_number,
            price: self.price,
            rid: self.rid,
            name: self.name,
            sale: self.sale.into(),
            size: self.size,
            total_price: self.total_price,
            nm_id: self.nm_id,
            brand: self.brand,
            status: self.status.into(),
        }
    }
}

impl OrderRow {
    /// The order, or [`StoreError::Corrupt`] when its rows do not add up: a
    /// delivery or payment row missing, no items, or a gap in their positions
    /// (every stored order was valid, so each of these means rows were
    /// changed by hand or lost).
    fn into_order(
        self,
        d: Option<DeliveryRow>,
        p: Option<PaymentRow>,
        lines: Vec<ItemRow>,
    ) -> Result<Order, StoreError> {
        let corrupt = |problem: String| StoreError::Corrupt {
            uid: self.order_uid.clone(),
            problem,
        };
        let order_uid = OrderUid::parse(&self.order_uid).map_err(|e| corrupt(e.to_string()))?;
        let d = d.ok_or_else(|| corrupt("its delivery row is missing".into()))?;
        let p = p.ok_or_else(|| corrupt("its payment row is missing".into()))?;
        if lines.is_empty() {
            return Err(corrupt("it has no item rows".into()));
        }
        if let Some((i, _)) = lines
            .iter()
            .enumerate()
            .find(|(i, l)| usize::try_from(l.position).ok() != Some(*i))
        {
            return Err(corrupt(format!("its item row at position {i} is missing")));
        }
        let items = lines.into_iter().map(ItemRow::into_item).collect();
        Ok(Order {
            order_uid,
            track_number: self.track_number,
            entry: self.entry,
            delivery: Delivery {
                name: d.name,
                phone: d.phone,
                zip: d.zip,
                city: d.city,
                address: d.address,
                region: d.region,
                email: d.email,
            },
            payment: Payment {
                transaction: p.transaction,
                request_id: p.request_id,
                currency: p.currency,
                provider: p.provider,
                amount: p.amount,
                payment_dt: p.payment_dt,
                bank: p.bank,
                delivery_cost: p.delivery_cost,
                goods_total: p.goods_total,
                custom_fee: p.custom_fee,
            },
            items,
            locale: self.locale,
            internal_signature: self.internal_signature,
            customer_id: self.customer_id,
            delivery_service: self.delivery_service,
            shardkey: self.shardkey,
            sm_id: self.sm_id.into(),
            date_created: Timestamp::from(self.date_created),
            oof_shard: self.oof_shard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact_url("postgres://app@db/orders"),
            "postgres://app@db/orders"
        );
        // The client cannot read it, so it may be anything, a password too.
        assert_eq!(redact_url("not a url"), "***");
    }
}
