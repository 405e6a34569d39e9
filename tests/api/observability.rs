//! What operators watch: the metrics move when the service works (a cache
//! hit, a miss, an insert's latency, a backlog in JetStream and its end),
//! `/status` says the same as `/metrics`, and every metric the alert rules
//! and the dashboard in `deploy/` name is one the running service exports.

use std::collections::BTreeSet;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::Value;

use crate::helpers::{
    eventually, example_order, metric, publish_orders, spawn_app, unique, TestApp, TestDb,
    TestStreams,
};

async fn scrape(app: &TestApp) -> String {
    let (status, body) = app.client.get("/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    String::from_utf8(body).expect("metrics are text")
}

async fn status(app: &TestApp) -> Value {
    let (code, body) = app.client.get("/status").await.expect("GET /status");
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status is JSON")
}

/// The value of one series, labels included (`name{a="b"}`); 0 if absent,
/// as Prometheus would read a series that never moved.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Messages waiting for the consumer, by `/metrics`.
fn lag(text: &str) -> f64 {
    sample(text, "order_cache_consumer_pending_messages")
        + sample(text, "order_cache_consumer_ack_pending_messages")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hit_a_miss_an_insert_and_a_dead_letter_move_their_metrics() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let before = scrape(&app).await;
    let inserts = r#"order_cache_store_query_seconds_count{query="insert"}"#;
    assert_eq!(sample(&before, inserts), 0.0, "nothing inserted yet");

    let uid = unique("metrics");
    app.publish_order(&example_order(&uid)).await;
    app.publish(&b"{not json"[..], None).await;
    // Waiting on the metrics, not on GET, which would count lookups.
    let ingested = eventually(Duration::from_secs(20), "order ingested", || async {
        let text = scrape(&app).await;
        let done = metric(&text, "order_cache_orders_ingested_total") == Some(1.0)
            && sample(
                &text,
                r#"order_cache_orders_rejected_total{reason="syntax"}"#,
            ) == 1.0;
        done.then_some(text)
    })
    .await;
    assert_eq!(sample(&ingested, inserts), 1.0, "one batch, one insert");
    let insert_seconds = r#"order_cache_store_query_seconds_sum{query="insert"}"#;
    assert!(
        sample(&ingested, insert_seconds) > 0.0,
        "its latency observed"
    );

    let (hit, _) = app.client.get(&format!("/orders/{uid}")).await.unwrap();
    let (miss, _) = app.client.get("/orders/no-such-order").await.unwrap();
    assert_eq!((hit, miss), (200, 404));

    let after = scrape(&app).await;
    let moved = |series: &str| sample(&after, series) - sample(&ingested, series);
    assert_eq!(moved("order_cache_cache_hits_total"), 1.0, "{after}");
    assert_eq!(moved("order_cache_cache_misses_total"), 1.0);
    // The miss was asked of PostgreSQL.
    assert_eq!(
        moved(r#"order_cache_store_query_seconds_count{query="get"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"order_cache_http_request_seconds_count{route="/orders/{order_uid}"}"#),
        2.0
    );
    assert_eq!(
        sample(&after, "order_cache_ready"),
        1.0,
        "checked at scrape"
    );

    let status = status(&app).await;
    assert_eq!(status["orders_ingested"], 1, "{status}");
    assert_eq!(status["dead_letters"], 1, "{status}");
    assert_eq!(status["cache_orders"], 1, "{status}");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_lag_shows_a_backlog_and_returns_to_zero() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    assert_eq!(lag(&scrape(&app).await), 0.0);

    // Every insert waits for this lock: the messages pile up, delivered
    // and unacknowledged or not yet delivered.
    let mut lock = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    lock.batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock orders");
    let prefix = unique("lag");
    let uids: Vec<String> = (0..200).map(|i| format!("{prefix}-{i}")).collect();
    publish_orders(&app.js, &app.ingest.subject, &uids).await;

    let backlog = eventually(Duration::from_secs(20), "the backlog shows", || async {
        let text = scrape(&app).await;
        (lag(&text) == 200.0).then_some(text)
    })
    .await;
    assert_eq!(
        metric(&backlog, "order_cache_orders_ingested_total"),
        Some(0.0)
    );
    let waiting = status(&app).await;
    let status_lag = |s: &Value| {
        s["consumer_pending"].as_u64().unwrap_or(0)
            + s["consumer_ack_pending"].as_u64().unwrap_or(0)
    };
    assert_eq!(status_lag(&waiting), 200, "{waiting}");

    lock.batch_execute("COMMIT").await.expect("unlock");
    let drained = eventually(Duration::from_secs(30), "the backlog drains", || async {
        let text = scrape(&app).await;
        let done =
            lag(&text) == 0.0 && metric(&text, "order_cache_orders_ingested_total") == Some(200.0);
        done.then_some(text)
    })
    .await;
    assert_eq!(metric(&drained, "order_cache_cache_orders"), Some(200.0));
    let done = status(&app).await;
    assert_eq!(status_lag(&done), 0, "{done}");
    assert_eq!(done["orders_ingested"], 200, "{done}");
    app.stop().await.expect("clean stop");
}

/// Names of our series in `text`: every `order_cache_…` token (the rules'
/// `up` is Prometheus's own series for each target, not ours).
fn names_in(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("order_cache_") {
        let starts_word = rest[..at].chars().next_back().is_none_or(|c| !word(c));
        let len = rest[at..]
            .find(|c: char| !word(c))
            .unwrap_or(rest.len() - at);
        if starts_word {
            names.insert(rest[at..at + len].to_owned());
        }
        rest = &rest[at + len..];
    }
    names
}

/// Series names in an exposition, without labels.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_alert_rules_and_dashboard_name_is_exported() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut named = BTreeSet::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&deploy).expect("deploy/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<Value>(&text).expect("the dashboard is JSON");
        }
        named.extend(names_in(&text));
        files.push(path);
    }
    assert!(
        files.iter().any(|f| f.ends_with("alerts.rules.yml"))
            && files.iter().any(|f| f.ends_with("grafana-dashboard.json")),
        "{files:?}"
    );
    assert!(named.len() >= 10, "too few metric names found: {named:?}");

    // A service that has done everything once: ingested, dead-lettered,
    // served a hit and a miss, answered /readyz.
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let uid = unique("names");
    app.publish_order(&example_order(&uid)).await;
    app.publish(&b""[..], None).await;
    app.wait_for_order(&uid).await;
    app.dead_letters(1).await;
    app.client.get("/orders/no-such-order").await.unwrap();
    let text = scrape(&app).await;
    let exported = exported(&text);

    let missing: Vec<&String> = named.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "deploy/ names metrics /metrics does not export: {missing:?}\n\n{text}"
    );
    app.stop().await.expect("clean stop");
}

#[test]
fn metric_names_are_found_whole_and_only_where_they_start() {
    let expr =
        r#"sum(rate(order_cache_orders_ingested_total{job=~"$job"}[1m])) / x_order_cache_no"#;
    let found: Vec<String> = names_in(expr).into_iter().collect();
    assert_eq!(found, ["order_cache_orders_ingested_total"]);
    let text = "# TYPE order_cache_ready gauge\norder_cache_ready 1\na_b{x=\"y\"} 2\n";
    let names: Vec<String> = exported(text).into_iter().collect();
    assert_eq!(names, ["a_b", "order_cache_ready"]);
}

/// Review (issue 10): a batch costing more than the small queue's tenth of
/// the budget evicts its own first orders as it is inserted (policy.rs:83),
/// and `fill_committed` (persist.rs:108) then finds them "committed but not
/// cached" and reads every one back from PostgreSQL, only for `fill` to
/// evict them again. With a 64 KiB budget (or `CACHE_MAX_BYTES=0`, where
/// nothing fits) ingest pays a second query per batch for orders it has in
/// hand, and no lookup ever asked for them.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_into_a_small_budget_reads_nothing_back_from_postgresql() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = crate::helpers::spawn_app_with(&db, &streams, |config| {
        config.cache_max_bytes = Some(64 << 10);
    })
    .await;
    let gets = r#"order_cache_store_query_seconds_count{query="get"}"#;
    let before = sample(&scrape(&app).await, gets);

    let prefix = unique("small");
    let uids: Vec<String> = (0..300).map(|i| format!("{prefix}-{i}")).collect();
    publish_orders(&app.js, &app.ingest.subject, &uids).await;
    let ingested = eventually(Duration::from_secs(30), "orders ingested", || async {
        let text = scrape(&app).await;
        (metric(&text, "order_cache_orders_ingested_total") == Some(300.0)).then_some(text)
    })
    .await;

    assert_eq!(
        sample(&ingested, gets) - before,
        0.0,
        "no lookup was made, yet ingest read orders back"
    );
    app.stop().await.expect("clean stop");
}
