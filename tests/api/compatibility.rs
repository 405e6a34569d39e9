//! What producers send, kept: any RFC 3339 date served as its text, fields
//! the model does not know served with their values as written, through
//! every path an order is served by (the cache, a restart's restore, a
//! second instance, a miss), and the previous release working against the
//! migrated database.

use std::time::Duration;

use order_cache::{Cache, Order, Store, StoreConfig, UnknownFields};
use serde_json::Value;

use crate::helpers::{
    example_order, metric, spawn_app, spawn_app_with, unique, TestDb, TestStreams,
};

/// The dates real runtimes write by default, and the edges RFC 3339 allows.
pub const DATES: [&str; 10] = [
    "2026-12-01T20:39:31.098161494Z",       // Go, UTC
    "2026-12-01T23:39:28.708645252+03:00",  // Go, a +03:00 zone
    "2026-12-01T20:39:31.098161+00:00",     // Python isoformat()
    "2026-12-01T13:39:31.098161-07:00",     // Python astimezone()
    "2026-12-01T20:39:31.098Z",             // JavaScript toISOString()
    "2026-12-01t20:39:31z",                 // lower case
    "2026-12-01 20:39:31Z",                 // the space of RFC 3339 §5.6
    "2016-12-31T23:59:60.5Z",               // a leap second
    "0000-01-01T00:00:00+23:59",            // the earliest date, east
    "9999-12-31T23:59:59.9999999999-23:59", // the latest, west, ten digits
];

/// Unknown fields at every level, as raw text: numbers as written.
const EXTRA: &str = r#""n":1e3,"f":1.0,"neg":-0,"big":123456789012345678901234567890,"o":{"a":[true,null,"\u00e9"]}"#;

/// An order with `date` and [`EXTRA`] in each of its objects, as text.
pub fn grown(uid: &str, date: &str) -> String {
    let mut v = example_order(uid);
    v["date_created"] = Value::String(date.into());
    // A marker in each object, then replaced by the fields as text.
    v["marker"] = Value::Null;
    v["delivery"]["marker"] = Value::Null;
    v["payment"]["marker"] = Value::Null;
    v["items"][0]["marker"] = Value::Null;
    let text = serde_json::to_string(&v).unwrap();
    assert_eq!(text.matches("\"marker\":null").count(), 4);
    text.replace("\"marker\":null", EXTRA)
}

/// Checks a served body against what was sent: the same JSON value, the
/// date's text and every unknown number's text as sent.
pub fn assert_as_sent(served: &[u8], sent: &str, date: &str) {
    let text = std::str::from_utf8(served).expect("UTF-8");
    let value = |t: &str| serde_json::from_str::<Value>(t).expect("JSON");
    assert_eq!(value(text), value(sent), "{text}");
    assert!(
        text.contains(&format!("\"date_created\":\"{date}\"")),
        "{text}"
    );
    assert_eq!(text.matches(EXTRA).count(), 4, "{text}");
}

fn uids(prefix: &str) -> Vec<String> {
    let prefix = unique(prefix);
    (0..DATES.len()).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn dates_and_unknown_fields_are_served_as_sent_from_the_cache_a_restart_and_another_instance()
{
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let uids = uids("sent");
    let sent: Vec<String> = uids.iter().zip(DATES).map(|(u, d)| grown(u, d)).collect();
    for (uid, text) in uids.iter().zip(&sent) {
        app.publish(text.clone().into_bytes(), Some(uid)).await;
    }
    let mut from_cache = Vec::new();
    for uid in &uids {
        app.wait_for_order(uid).await;
        let (status, body) = app.client.get(&format!("/orders/{uid}")).await.unwrap();
        assert_eq!(status, 200);
        from_cache.push(body);
    }
    for ((body, text), date) in from_cache.iter().zip(&sent).zip(DATES) {
        assert_as_sent(body, text, date);
    }
    let metrics = app.client.get("/metrics").await.unwrap().1;
    let counted = metric(
        std::str::from_utf8(&metrics).unwrap(),
        "order_cache_orders_with_unknown_fields_total",
    );
    assert_eq!(counted, Some(DATES.len() as f64));

    // Another instance on the same database restores them; so does this
    // one after a restart: byte for byte what the first one served.
    let other = spawn_app(&db, &streams).await;
    app.stop().await.unwrap();
    let restarted = spawn_app(&db, &streams).await;
    for instance in [&other, &restarted] {
        for (uid, body) in uids.iter().zip(&from_cache) {
            let (status, again) = instance
                .client
                .get(&format!("/orders/{uid}"))
                .await
                .unwrap();
            assert_eq!(status, 200);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(body)
            );
        }
    }
    other.stop().await.unwrap();
    restarted.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_reads_the_date_and_unknown_fields_back_from_postgresql() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    let uids = uids("miss");
    let sent: Vec<String> = uids.iter().zip(DATES).map(|(u, d)| grown(u, d)).collect();
    let orders: Vec<Order> = sent
        .iter()
        .map(|t| Order::decode(t.as_bytes()).expect("accepted"))
        .collect();
    store.insert(&orders).await.unwrap();
    // As an operator queries them: the instant in the timestamptz column,
    // the unknown fields in json columns.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM orders WHERE order_uid = '{}' \
             AND date_created = '2016-12-31T23:59:59.999999Z' \
             AND date_created_text = '2016-12-31T23:59:60.5Z' \
             AND extra->>'n' = '1e3'",
            uids[7]
        ))
        .await,
        1
    );

    // An order in the canonical spelling without unknown fields keeps
    // nothing more than before (the batch sends empty arrays for them).
    let plain = order_cache::Order::decode(
        serde_json::to_string(&example_order(&unique("plain")))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    store.insert(&[plain]).await.unwrap();
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM orders o JOIN deliveries d USING (order_uid) \
             JOIN payments p USING (order_uid) JOIN items i USING (order_uid) \
             WHERE o.order_uid LIKE 'plain%' AND o.date_created_text IS NULL \
             AND o.extra IS NULL AND d.extra IS NULL AND p.extra IS NULL AND i.extra IS NULL"
        )
        .await,
        1
    );

    let api = order_cache::Api::new(
        Cache::new(),
        order_cache::Metrics::new(),
        order_cache::Readiness::new(),
    )
    .with_store(store.clone());
    let routes = order_cache::router(api);
    for ((uid, text), date) in uids.iter().zip(&sent).zip(DATES) {
        for source in ["store", "hit"] {
            let res = warp::test::request()
                .path(&format!("/orders/{uid}"))
                .reply(&routes)
                .await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["x-order-cache"], source);
            assert_as_sent(res.body(), text, date);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_unknown_fields_refused_such_an_order_is_dead_lettered_and_the_rest_stored() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app_with(&db, &streams, |c| {
        c.ingest.unknown_fields = UnknownFields::Reject;
    })
    .await;
    let grown_uid = unique("grown");
    let plain_uid = unique("plain");
    app.publish(grown(&grown_uid, DATES[1]).into_bytes(), Some(&grown_uid))
        .await;
    let mut plain = example_order(&plain_uid);
    plain["date_created"] = Value::String(DATES[0].into());
    app.publish_order(&plain).await;

    let letters = app.dead_letters(1).await;
    let reason = letters[0].headers.get(order_cache::ingest::REASON_HEADER);
    assert_eq!(reason.map(|r| r.as_str()), Some("shape"));
    let error = letters[0].headers.get(order_cache::ingest::ERROR_HEADER);
    let error = error.map(|e| e.as_str().to_owned()).unwrap_or_default();
    assert!(error.contains("unknown field `n`"), "{error}");
    assert_eq!(app.wait_for_order(&plain_uid).await, plain);
    let (status, _) = app
        .client
        .get(&format!("/orders/{grown_uid}"))
        .await
        .unwrap();
    assert_eq!(status, 404);
    app.stop().await.unwrap();
}

/// The release before the migration that keeps the date's text and the
/// unknown fields, as it stores and reads an order: its statements,
/// verbatim.
mod previous_release {
    /// Its insert: the 41-array function, which the migration leaves as it was.
    pub const INSERT: &str = "SELECT uid AS order_uid FROM order_cache_insert(\
        ARRAY[$1]::text[], ARRAY['WBILMTESTTRACK']::text[], ARRAY['WBIL']::text[], \
        ARRAY['en']::text[], ARRAY['']::text[], ARRAY['test']::text[], ARRAY['meest']::text[], \
        ARRAY['9']::text[], ARRAY[99]::int4[], ARRAY['2021-11-26T06:22:19Z']::timestamptz[], \
        ARRAY['1']::text[], ARRAY['Test Testov']::text[], ARRAY['+9720000000']::text[], \
        ARRAY['2639809']::text[], ARRAY['Kiryat Mozkin']::text[], ARRAY['Ploshad Mira 15']::text[], \
        ARRAY['Kraiot']::text[], ARRAY['test@gmail.com']::text[], ARRAY[$1]::text[], \
        ARRAY['']::text[], ARRAY['USD']::text[], ARRAY['wbpay']::text[], ARRAY['alpha']::text[], \
        ARRAY[1817]::int8[], ARRAY[1637907727]::int8[], ARRAY[1500]::int8[], ARRAY[317]::int8[], \
        ARRAY[0]::int8[], ARRAY[$1]::text[], ARRAY[0]::int4[], ARRAY['WBILMTESTTRACK']::text[], \
        ARRAY['ab4219087a764ae0btest']::text[], ARRAY['Mascaras']::text[], ARRAY['0']::text[], \
        ARRAY['Vivienne Sabo']::text[], ARRAY[9934930]::int8[], ARRAY[453]::int8[], \
        ARRAY[317]::int8[], ARRAY[2389212]::int8[], ARRAY[30]::int4[], ARRAY[202]::int4[]) AS uid";

    /// Its read of an order's row: the columns it knows, by name.
    pub const READ: &str = "SELECT count(*) FROM orders o \
        JOIN deliveries d USING (order_uid) JOIN payments p USING (order_uid) \
        JOIN items i USING (order_uid) \
        WHERE o.order_uid = ANY($1) AND o.date_created IS NOT NULL AND d.email <> '' \
        AND p.amount >= 0 AND i.position = 0";
}

#[tokio::test(flavor = "multi_thread")]
async fn the_previous_release_keeps_storing_and_reading_against_the_migrated_database() {
    use diesel::sql_types::{Array, Text};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let new_uid = unique("new");
    app.publish(grown(&new_uid, DATES[1]).into_bytes(), Some(&new_uid))
        .await;
    app.wait_for_order(&new_uid).await;

    // The previous release stores an order through its own function…
    let old_uid = unique("old");
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Uid {
        #[diesel(sql_type = Text)]
        order_uid: String,
    }
    let stored: Vec<Uid> = diesel::sql_query(previous_release::INSERT)
        .bind::<Text, _>(&old_uid)
        .load(&mut conn)
        .await
        .expect("the previous release's insert");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].order_uid, old_uid);
    // …and reads both its own and the new release's rows by the columns it
    // knows.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        count: i64,
    }
    let read: Count = diesel::sql_query(previous_release::READ)
        .bind::<Array<Text>, _>(vec![old_uid.clone(), new_uid.clone()])
        .get_result(&mut conn)
        .await
        .expect("the previous release's read");
    assert_eq!(read.count, 2);

    // The new release serves the previous release's order as it was sent
    // then: the canonical date, no unknown fields.
    app.stop().await.unwrap();
    let restarted = spawn_app(&db, &streams).await;
    let served = restarted.wait_for_order(&old_uid).await;
    assert_eq!(served, example_order(&old_uid));
    restarted.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_does_not_stall_queries_behind_a_long_transaction() {
    use diesel_async::{
        AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection,
    };
    use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

    // A database at the previous release's schema: every migration but
    // the last.
    let db = TestDb::create().await;
    let conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    let mut harness = AsyncMigrationHarness::new(conn);
    let steps = harness.pending_migrations(MIGRATIONS).unwrap().len();
    for _ in 1..steps {
        harness.run_next_migration(MIGRATIONS).unwrap();
    }
    // An old instance's restore: one long transaction that has read orders.
    let mut restore = AsyncPgConnection::establish(&db.url).await.unwrap();
    restore
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT count(*) FROM orders",
        )
        .await
        .unwrap();

    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    let migrating = tokio::spawn(async move { store.migrate().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another instance's lookup, queued behind the migration's lock.
    let started = std::time::Instant::now();
    let lookup = db.count("SELECT count(*) AS n FROM orders WHERE order_uid = 'x'");
    let looked_up = tokio::time::timeout(Duration::from_secs(8), lookup)
        .await
        .expect("a lookup stalled behind the migration for 8 s");
    let waited = started.elapsed();
    assert_eq!(looked_up, 0);
    assert!(
        waited < Duration::from_secs(4),
        "a lookup waited {waited:?} behind the migration"
    );

    // Once the restore ends, the migration goes through.
    tokio::time::sleep(Duration::from_secs(3)).await;
    restore.batch_execute("COMMIT").await.unwrap();
    let migrated = tokio::time::timeout(Duration::from_secs(30), migrating)
        .await
        .expect("migrated within 30 s")
        .unwrap();
    assert!(migrated.is_ok(), "{migrated:?}");
    assert_eq!(
        db.count("SELECT count(*) AS n FROM information_schema.columns WHERE column_name = 'date_created_text'")
            .await,
        1
    );
}
