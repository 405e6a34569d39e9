//! The batched insert: a batch of orders laid out column by column and sent
//! to the `order_cache_insert` function (see its migration) as one array per
//! column, so one statement stores the whole batch whatever its size and
//! the 65,535-bind limit never applies.
//!
//! [`ORDER_COLUMNS`] and [`ITEM_COLUMNS`] are the one place that says which
//! field goes to which parameter: the SQL and the binds are both made from
//! them. A field added to the tables is a line here and a new version of the
//! function.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;

use crate::model::{Item, Order};

/// How one column's value is read from a row, by SQL type.
enum Get<R> {
    Text(fn(&R) -> &str),
    /// Text or NULL: what is kept only where there is something to keep
    /// (the date as sent when it is not the canonical spelling, an
    /// [`Extra::to_object`](crate::model::Extra::to_object)).
    OptText(fn(&R) -> Option<String>),
    Int4(fn(&R) -> i32),
    Int8(fn(&R) -> i64),
    Timestamptz(fn(&R) -> DateTime<Utc>),
}

/// One parameter of `order_cache_insert`: a column's name (for readers and
/// error messages; the function takes its parameters by position) and how
/// to read it.
struct Column<R> {
    name: &'static str,
    get: Get<R>,
}

const fn text<R>(name: &'static str, get: fn(&R) -> &str) -> Column<R> {
    Column {
        name,
        get: Get::Text(get),
    }
}

const fn int4<R>(name: &'static str, get: fn(&R) -> i32) -> Column<R> {
    Column {
        name,
        get: Get::Int4(get),
    }
}

const fn int8<R>(name: &'static str, get: fn(&R) -> i64) -> Column<R> {
    Column {
        name,
        get: Get::Int8(get),
    }
}

const fn opt_text<R>(name: &'static str, get: fn(&R) -> Option<String>) -> Column<R> {
    Column {
        name,
        get: Get::OptText(get),
    }
}

/// Validation keeps these within `int4`; out of range becomes -1 rather
/// than wrapping, so the table's CHECK constraints refuse anything that
/// bypassed validation.
fn narrow(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(-1)
}

/// The order, delivery and payment columns, one value per order, in the
/// function's order of parameters ($1 …).
const ORDER_COLUMNS: [Column<Order>; 32] = [
    text("order_uid", |o| o.order_uid.as_str()),
    text("track_number", |o| &o.track_number),
    text("entry", |o| &o.entry),
    text("locale", |o| &o.locale),
    text("internal_signature", |o| &o.internal_signature),
    text("customer_id", |o| &o.customer_id),
    text("delivery_service", |o| &o.delivery_service),
    text("shardkey", |o| &o.shardkey),
    int4("sm_id", |o| narrow(o.sm_id)),
    Column {
        name: "date_created",
        get: Get::Timestamptz(|o| o.date_created.as_datetime()),
    },
    opt_text("date_created_text", |o| {
        o.date_created.as_sent_if_not_canonical().map(str::to_owned)
    }),
    text("oof_shard", |o| &o.oof_shard),
    opt_text("extra", |o| o.extra.to_object()),
    text("delivery.name", |o| &o.delivery.name),
    text("delivery.phone", |o| &o.delivery.phone),
    text("delivery.zip", |o| &o.delivery.zip),
    text("delivery.city", |o| &o.delivery.city),
    text("delivery.address", |o| &o.delivery.address),
    text("delivery.region", |o| &o.delivery.region),
    text("delivery.email", |o| &o.delivery.email),
    opt_text("delivery.extra", |o| o.delivery.extra.to_object()),
    text("payment.transaction", |o| &o.payment.transaction),
    text("payment.request_id", |o| &o.payment.request_id),
    text("payment.currency", |o| &o.payment.currency),
    text("payment.provider", |o| &o.payment.provider),
    text("payment.bank", |o| &o.payment.bank),
    int8("payment.amount", |o| o.payment.amount),
    int8("payment.payment_dt", |o| o.payment.payment_dt),
    int8("payment.delivery_cost", |o| o.payment.delivery_cost),
    int8("payment.goods_total", |o| o.payment.goods_total),
    int8("payment.custom_fee", |o| o.payment.custom_fee),
    opt_text("payment.extra", |o| o.payment.extra.to_object()),
];

/// The item columns, one value per item, following [`ORDER_COLUMNS`] and
/// the two that place each item: its order's id (`text`) and its position
/// in the order (`int4`).
const ITEM_COLUMNS: [Column<Item>; 12] = [
    text("items.track_number", |i| &i.track_number),
    text("items.rid", |i| &i.rid),
    text("items.name", |i| &i.name),
    text("items.size", |i| &i.size),
    text("items.brand", |i| &i.brand),
    int8("items.chrt_id", |i| i.chrt_id),
    int8("items.price", |i| i.price),
    int8("items.total_price", |i| i.total_price),
    int8("items.nm_id", |i| i.nm_id),
    int4("items.sale", |i| narrow(i.sale)),
    int4("items.status", |i| narrow(i.status)),
    opt_text("items.extra", |i| i.extra.to_object()),
];

/// Every parameter's name and SQL type, in order.
fn parameters() -> impl Iterator<Item = (&'static str, &'static str)> {
    ORDER_COLUMNS
        .iter()
        .map(|c| (c.name, sql_type(&c.get)))
        .chain([("items.order_uid", "text"), ("items.position", "int4")])
        .chain(ITEM_COLUMNS.iter().map(|c| (c.name, sql_type(&c.get))))
}

/// The statement, made once from the two tables of columns.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    // Each parameter is named in a comment, for whoever reads the
    // statement in PostgreSQL's logs or pg_stat_statements.
    let params: Vec<String> = parameters()
        .enumerate()
        .map(|(i, (name, t))| format!("${}::{t}[] /* {name} */", i + 1))
        .collect();
    format!(
        "SELECT uid AS order_uid FROM order_cache_insert({}) AS uid",
        params.join(", ")
    )
});

fn sql_type<R>(get: &Get<R>) -> &'static str {
    match get {
        Get::Text(_) | Get::OptText(_) => "text",
        Get::Int4(_) => "int4",
        Get::Int8(_) => "int8",
        Get::Timestamptz(_) => "timestamptz",
    }
}

/// One column's values for the whole batch.
enum Values {
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Int4(Vec<i32>),
    Int8(Vec<i64>),
    Timestamptz(Vec<DateTime<Utc>>),
}

impl Values {
    fn for_column<R>(get: &Get<R>, capacity: usize) -> Values {
        match get {
            Get::Text(_) => Values::Text(Vec::with_capacity(capacity)),
            Get::OptText(_) => Values::OptText(Vec::with_capacity(capacity)),
            Get::Int4(_) => Values::Int4(Vec::with_capacity(capacity)),
            Get::Int8(_) => Values::Int8(Vec::with_capacity(capacity)),
            Get::Timestamptz(_) => Values::Timestamptz(Vec::with_capacity(capacity)),
        }
    }

    fn push<R>(&mut self, get: &Get<R>, row: &R) {
        match (self, get) {
            (Values::Text(v), Get::Text(f)) => v.push(f(row).to_owned()),
            (Values::OptText(v), Get::OptText(f)) => v.push(f(row)),
            (Values::Int4(v), Get::Int4(f)) => v.push(f(row)),
            (Values::Int8(v), Get::Int8(f)) => v.push(f(row)),
            (Values::Timestamptz(v), Get::Timestamptz(f)) => v.push(f(row)),
            // `for_column` made the values from this same column.
            _ => unreachable!("values and column disagree on the SQL type"),
        }
    }

    fn bind<'f>(self, query: BoxedSqlQuery<'f, Pg, SqlQuery>) -> BoxedSqlQuery<'f, Pg, SqlQuery> {
        match self {
            Values::Text(v) => query.bind::<Array<Text>, _>(v),
            // All NULL, as for every order without unknown fields: sent
            // as an empty array, which `unnest` pads with NULL for each
            // row, rather than one NULL per row.
            Values::OptText(v) if v.iter().all(Option::is_none) => {
                query.bind::<Array<Nullable<Text>>, _>(Vec::<Option<String>>::new())
            }
            Values::OptText(v) => query.bind::<Array<Nullable<Text>>, _>(v),
            Values::Int4(v) => query.bind::<Array<Int4>, _>(v),
            Values::Int8(v) => query.bind::<Array<Int8>, _>(v),
            Values::Timestamptz(v) => query.bind::<Array<Timestamptz>, _>(v),
        }
    }
}

/// What the function returns: the id of each order it inserted.
#[derive(QueryableByName)]
pub(super) struct Inserted {
    #[diesel(sql_type = Text)]
    pub(super) order_uid: String,
}

/// The statement storing `batch`: orders whose id is already stored are
/// left out by the function; an id given twice in the batch is sent once,
/// from its first occurrence (one statement cannot insert the same child
/// rows twice).
pub(super) fn query(batch: &[Order]) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    let mut seen = HashSet::with_capacity(batch.len());
    let orders: Vec<&Order> = batch
        .iter()
        .filter(|o| seen.insert(o.order_uid.as_str()))
        .collect();
    // Each item with its order's id and its position in the order.
    let items: Vec<(&str, i32, &Item)> = orders
        .iter()
        .flat_map(|o| {
            o.items.iter().enumerate().map(|(position, item)| {
                let position = i32::try_from(position).unwrap_or(-1);
                (o.order_uid.as_str(), position, item)
            })
        })
        .collect();
    let mut query = diesel::sql_query(INSERT_SQL.as_str()).into_boxed::<Pg>();
    for column in &ORDER_COLUMNS {
        let mut values = Values::for_column(&column.get, orders.len());
        for order in &orders {
            values.push(&column.get, *order);
        }
        query = values.bind(query);
    }
    let order_uids = items.iter().map(|(uid, _, _)| (*uid).to_owned()).collect();
    let positions = items.iter().map(|(_, position, _)| *position).collect();
    query = Values::Text(order_uids).bind(query);
    query = Values::Int4(positions).bind(query);
    for column in &ITEM_COLUMNS {
        let mut values = Values::for_column(&column.get, items.len());
        for (_, _, item) in &items {
            values.push(&column.get, *item);
        }
        query = values.bind(query);
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_has_one_parameter_per_column_in_order() {
        let n = parameters().count();
        assert_eq!(n, 46);
        assert!(INSERT_SQL.starts_with(
            "SELECT uid AS order_uid FROM order_cache_insert($1::text[] /* order_uid */, $2::text[]"
        ));
        assert!(INSERT_SQL.contains(
            "$10::timestamptz[] /* date_created */, $11::text[] /* date_created_text */"
        ));
        assert!(INSERT_SQL.ends_with(&format!("${n}::text[] /* items.extra */) AS uid")));
        let names: HashSet<&str> = parameters().map(|(name, _)| name).collect();
        assert_eq!(names.len(), n, "each column once");
    }

    #[test]
    fn the_columns_match_the_functions_parameters() {
        // The function as the newest migration that (re)creates it declares it.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut migrations: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path().join("up.sql"))
            .collect();
        migrations.sort();
        let up = migrations
            .iter()
            .rev()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .find(|sql| sql.contains("FUNCTION order_cache_insert("))
            .expect("a migration creates the function");
        let declared = up
            .split("FUNCTION order_cache_insert(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .expect("the migration declares the function");
        let ours: Vec<String> = parameters().map(|(_, t)| format!("{t}[]")).collect();
        assert_eq!(declared.split(", ").collect::<Vec<_>>(), ours);
    }
}
