//! The restore's read: every stored order, in two streamed, set-based
//! queries merged by id.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures::TryStreamExt;

use super::error::StoreError;
use super::rows::{DeliveryRow, ItemRow, OrderRow, PaymentRow};
use super::Store;
use crate::metrics::Query;
use crate::model::{Order, OrderUid};
use crate::report::Report;
use crate::schema::{deliveries, items, orders, payments};

impl Store {
    /// Calls `f` with stored orders, the most recently stored first, until
    /// `f` says [`ControlFlow::Break`] or every order has been read: a
    /// restore into a cache with a byte budget stops when the budget is
    /// full, having read no more than that. Each page of `page` orders is
    /// three set-based queries (the page's ids by the `seq` index, then
    /// [`Store::get_many`]), so nothing is held open between pages. An order
    /// whose rows do not add up is logged, counted and skipped.
    ///
    /// # Errors
    ///
    /// When a query fails.
    pub async fn scan_newest(
        &self,
        page: usize,
        mut f: impl FnMut(Order) -> ControlFlow<()> + Send,
    ) -> Result<Scanned, StoreError> {
        let page = i64::try_from(page.max(1)).unwrap_or(i64::MAX);
        let mut before = i64::MAX;
        let mut scanned = Scanned::default();
        loop {
            let ids: Vec<(String, i64)> = self
                .timed(Query::Recent, async {
                    let mut conn = self.conn().await?;
                    Ok(orders::table
                        .select((orders::order_uid, orders::seq))
                        .filter(orders::seq.lt(before))
                        .order(orders::seq.desc())
                        .limit(page)
                        .load(&mut conn)
                        .await?)
                })
                .await?;
            let Some(&(_, last)) = ids.last() else {
                return Ok(scanned);
            };
            before = last;
            let uids: Vec<OrderUid> = ids
                .iter()
                .filter_map(|(id, _)| OrderUid::parse(id).ok())
                .collect();
            let mut found = self.get_many(&uids).await?;
            for uid in &uids {
                match found.remove(uid) {
                    Some(Ok(order)) => {
                        scanned.orders += 1;
                        if f(order).is_break() {
                            return Ok(scanned);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %Report(&e), "stored order left out of the cache");
                        scanned.inconsistent += 1;
                    }
                    // Gone since the page was read: nothing to restore.
                    None => {}
                }
            }
        }
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
            // Without sorts, the heads are planned as merge joins over the
            // primary keys and stream from the first row. Planned for the
            // whole result, they were hash joins and a sort of every order
            // first: at ten million orders no row came within the query
            // timeout, and the restore failed. At one million both plans
            // take the same time (5.1 s and 5.2 s for the COPY).
            head_conn
                .batch_execute(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_sort = off",
                )
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
pub(super) type Head = (OrderRow, Option<DeliveryRow>, Option<PaymentRow>);

#[diesel::dsl::auto_type(no_type_alias)]
pub(super) fn heads_query() -> _ {
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
pub(super) fn items_query() -> _ {
    let item: diesel::dsl::AsSelect<ItemRow, diesel::pg::Pg> = ItemRow::as_select();
    items::table
        .select(item)
        .order((items::order_uid, items::position))
}

/// Puts orders together from heads and item rows, both sorted by id.
#[derive(Default)]
pub(super) struct Assembler {
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
    pub(super) async fn assemble_with<S>(
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

pub(super) fn order_uid_of(order: &Result<Order, StoreError>) -> &str {
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
    StoreError::Timeout(quiet)
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
