//! The promise where it used to break: faults of the database, payloads at
//! the broker's limit, concurrent misses, rows changed by hand, consumers
//! made by someone else. Each test failed on the code before its fix.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use order_cache::ingest::{
    ensure_topology, PAYLOAD_OMITTED_HEADER, REASON_HEADER, SEQUENCE_HEADER, SOURCE_STREAM_HEADER,
};
use order_cache::{app, Cache, IngestError, Store, StoreConfig, StoreError};
use serde_json::{json, Value};

use crate::helpers::{
    admin_url, all_handled, assert_all_served, consumer_made_by_hand, eventually, example,
    example_order, execute_at, metric, publish_orders, spawn_app, unique, TestApp, TestDb,
    TestStreams,
};

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| unique(prefix)).collect()
}

async fn metrics_of(app: &TestApp) -> String {
    let (_, body) = app.client.get("/metrics").await.expect("metrics");
    String::from_utf8_lossy(&body).into_owned()
}

async fn dead_letter_count(app: &TestApp) -> u64 {
    let mut stream = app
        .js
        .get_stream(&app.ingest.dlq_stream())
        .await
        .expect("dead-letter stream");
    stream.info().await.expect("stream info").state.messages
}

/// Closes every other session on the test database, so the service's pool
/// reconnects and picks up new per-database settings.
async fn reconnect_all(db: &TestDb) {
    execute_at(
        &admin_url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        ),
    )
    .await;
}

/// How PostgreSQL misbehaves while answering.
enum DbFault {
    /// Every transaction read-only, as on a standby after a failover.
    ReadOnly,
    /// The orders table locked by another session while statements time out.
    LockedWithStatementTimeout,
}

/// Valid orders published while PostgreSQL refuses writes are retried, not
/// dead-lettered; readiness names postgres; all are stored once it heals.
async fn a_database_fault_costs_no_order(fault: DbFault) {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let before = ids("pre", 20);
    publish_orders(&app.js, &app.ingest.subject, &before).await;
    for uid in &before {
        app.wait_for_order(uid).await;
    }

    let mut holder: Option<AsyncPgConnection> = None;
    match fault {
        DbFault::ReadOnly => {
            execute_at(
                &admin_url(),
                &format!(
                    "ALTER DATABASE {} SET default_transaction_read_only = on",
                    db.name
                ),
            )
            .await;
            reconnect_all(&db).await;
        }
        DbFault::LockedWithStatementTimeout => {
            execute_at(
                &admin_url(),
                &format!("ALTER DATABASE {} SET statement_timeout = '300ms'", db.name),
            )
            .await;
            reconnect_all(&db).await;
            let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
            // SHARE blocks inserts and lets reads (and pings) through.
            conn.batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
                .await
                .unwrap();
            holder = Some(conn);
        }
    }

    let during = ids("during", 300);
    publish_orders(&app.js, &app.ingest.subject, &during).await;
    eventually(Duration::from_secs(20), "store errors counted", || async {
        let text = metrics_of(&app).await;
        (metric(&text, "order_cache_store_errors_total")? >= 2.0).then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "readyz names postgres", || async {
        let (status, body) = app.client.get("/readyz").await.ok()?;
        let body: Value = serde_json::from_slice(&body).ok()?;
        (status == 503 && body["failing"].as_array()?.contains(&json!("postgres"))).then_some(())
    })
    .await;
    assert_eq!(
        dead_letter_count(&app).await,
        0,
        "valid orders dead-lettered"
    );
    assert!(app.is_running());

    match fault {
        DbFault::ReadOnly => {
            execute_at(
                &admin_url(),
                &format!(
                    "ALTER DATABASE {} RESET default_transaction_read_only",
                    db.name
                ),
            )
            .await;
            reconnect_all(&db).await;
        }
        DbFault::LockedWithStatementTimeout => {
            if let Some(mut conn) = holder.take() {
                conn.batch_execute("COMMIT").await.unwrap();
            }
        }
    }

    eventually(Duration::from_secs(30), "all orders stored", || async {
        (db.count("SELECT count(*) AS n FROM orders").await == 320).then_some(())
    })
    .await;
    app.wait_ready().await;
    for table in ["deliveries", "payments", "items"] {
        assert_eq!(
            db.count(&format!("SELECT count(*) AS n FROM {table}"))
                .await,
            320,
            "{table}"
        );
    }
    assert_eq!(
        dead_letter_count(&app).await,
        0,
        "valid orders dead-lettered"
    );
    assert_all_served(&app.client, &during, true).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_costs_no_order() {
    a_database_fault_costs_no_order(DbFault::ReadOnly).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_timeout_behind_a_lock_costs_no_order() {
    a_database_fault_costs_no_order(DbFault::LockedWithStatementTimeout).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deadlock_is_the_databases_fault_not_the_orders() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    // Our insert detects the deadlock (a short deadlock_timeout), the other
    // session waits longer: the insert is the one PostgreSQL aborts.
    execute_at(
        &admin_url(),
        &format!("ALTER DATABASE {} SET deadlock_timeout = '100ms'", db.name),
    )
    .await;
    let mut other = AsyncPgConnection::establish(&db.url).await.unwrap();
    other
        .batch_execute("SET deadlock_timeout = '10s'; BEGIN; LOCK TABLE payments IN EXCLUSIVE MODE")
        .await
        .unwrap();
    // The insert locks `orders`, then waits for `payments`...
    let insert = tokio::spawn({
        let store = store.clone();
        async move { store.insert(&[example("deadlocked")]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...while the other session, holding `payments`, waits for `orders`.
    let lock = other.batch_execute("LOCK TABLE orders IN EXCLUSIVE MODE");
    let (err, _) = tokio::join!(insert, lock);
    let err = err.unwrap().expect_err("one of the two is aborted");
    let err_text = order_cache::Report(&err).to_string();
    assert!(err_text.contains("deadlock"), "{err_text}");
    assert!(err.is_transient() && !err.is_refusal(), "{err:?}");
    assert!(store.writes_failing());
    other.batch_execute("ROLLBACK").await.unwrap();
    store.insert(&[example("after")]).await.unwrap();
    assert!(
        !store.writes_failing(),
        "a successful write clears the flag"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_of_the_data_stays_a_refusal() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    // A data exception raised by the database (class 22), not a constraint.
    db.execute(
        "CREATE FUNCTION no_zz() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.customer_id = 'zz' THEN PERFORM 'x'::int; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER no_zz BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION no_zz();",
    )
    .await;
    let mut bad = example("zz");
    bad.customer_id = "zz".into();
    let err = store.insert(&[bad]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Refused(_)) && err.is_refusal(),
        "{err:?}"
    );
    assert!(!store.writes_failing(), "the database itself is fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_for_one_stored_order_all_get_it() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    // Stored by "another instance": in PostgreSQL, not in this cache.
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    let uids = ids("other", 10);
    let orders: Vec<_> = uids.iter().map(|u| example(u)).collect();
    store.insert(&orders).await.unwrap();

    let mut answers = Vec::new();
    for uid in &uids {
        for _ in 0..32 {
            let client = app.client.clone();
            let path = format!("/orders/{uid}");
            answers.push(tokio::spawn(async move { client.get(&path).await }));
        }
    }
    let mut bad = 0;
    for a in answers {
        match a.await.unwrap() {
            Ok((200, _)) => {}
            _ => bad += 1,
        }
    }
    assert_eq!(bad, 0, "of {} concurrent misses", uids.len() * 32);
    assert_all_served(&app.client, &uids, true).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_missing_a_row_is_reported_and_the_others_restore_exactly() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    // Ids sort in this order: the broken ones come first, so a restore that
    // loses step would hand every later order the wrong items.
    let mut uids: Vec<String> = (0..50).map(|i| format!("o{i:03}")).collect();
    uids.sort();
    let orders: Vec<_> = uids.iter().map(|u| example(u)).collect();
    store.insert(&orders).await.unwrap();
    db.execute("DELETE FROM deliveries WHERE order_uid = 'o000'")
        .await;
    db.execute("DELETE FROM payments WHERE order_uid = 'o001'")
        .await;
    db.execute("DELETE FROM items WHERE order_uid = 'o002'")
        .await;

    let cache = Cache::new();
    let restored = order_cache::restore(&store, &cache).await.unwrap();
    assert_eq!((restored.orders, restored.inconsistent), (47, 3));
    for uid in &uids[3..] {
        let body = cache
            .get(uid)
            .unwrap_or_else(|| panic!("{uid} not restored"));
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            example_order(uid)
        );
    }
    for uid in &uids[..3] {
        assert!(cache.get(uid).is_none());
        let err = store
            .get(&order_cache::OrderUid::parse(uid).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    // Served: a clear error for the broken ones, the rest from the cache.
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let (status, body) = app.client.get("/orders/o000").await.unwrap();
    assert_eq!(status, 500);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "inconsistent", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("delivery"),
        "{body}"
    );
    let (_, text) = app.client.get("/metrics").await.unwrap();
    assert_eq!(
        metric(
            &String::from_utf8_lossy(&text),
            "order_cache_store_inconsistent_orders"
        ),
        Some(3.0)
    );
    let rest: Vec<String> = uids[3..].to_vec();
    assert_all_served(&app.client, &rest, true).await;
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_whose_first_copy_is_refused_is_cached_as_stored() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    db.execute("ALTER TABLE orders ADD CONSTRAINT not_blocked CHECK (customer_id <> 'blocked')")
        .await;
    let js = app.js.clone();
    app.stop().await.unwrap();

    // Both copies wait in the stream, so one batch takes them together.
    let uid = unique("twice");
    let mut refused = example_order(&uid);
    refused["customer_id"] = json!("blocked");
    let stored = example_order(&uid);
    for (copy, msg_id) in [(&refused, "first"), (&stored, "second")] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        js.publish_with_headers(
            streams.config.subject.clone(),
            headers,
            serde_json::to_vec(copy).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let app = spawn_app(&db, &streams).await;
    let letters = app.dead_letters(1).await;
    assert_eq!(
        letters[0].headers.get(REASON_HEADER).unwrap().as_str(),
        "database"
    );
    assert_eq!(
        app.wait_for_order(&uid).await,
        stored,
        "the cache holds what was committed"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM orders WHERE order_uid = '{uid}' AND customer_id = 'test'"
        ))
        .await,
        1
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_payload_at_the_brokers_limit_is_dead_lettered_and_recoverable() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let max_payload = app.js.client().server_info().max_payload;
    // Fits alone; with a letter's headers it would not.
    let big = vec![b'x'; max_payload - 100];
    app.publish(big.clone(), Some("big")).await;
    let after = ids("after", 50);
    publish_orders(&app.js, &app.ingest.subject, &after).await;

    let letters = app.dead_letters(1).await;
    let letter = &letters[0];
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(REASON_HEADER).as_deref(), Some("syntax"));
    assert_eq!(header(PAYLOAD_OMITTED_HEADER), Some(big.len().to_string()));
    assert_eq!(
        header(SOURCE_STREAM_HEADER),
        Some(streams.config.stream.clone())
    );
    assert!(letter.payload.is_empty());
    // The original bytes are where the letter points.
    let seq: u64 = header(SEQUENCE_HEADER).unwrap().parse().unwrap();
    let source = app
        .js
        .get_stream(&streams.config.stream)
        .await
        .unwrap()
        .get_raw_message(seq)
        .await
        .unwrap();
    assert!(source.payload[..] == big[..]);
    // Terminated, not retried: nothing stays pending. Waited for before the
    // orders are asked for: when the service pulled the big message alone,
    // its letter is written before the batches behind it are stored.
    all_handled(&app.js, &streams, Duration::from_secs(10)).await;
    // And the messages behind it went on.
    assert_all_served(&app.client, &after, true).await;
    assert_eq!(dead_letter_count(&app).await, 1);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_made_with_other_settings_is_updated_or_refused() {
    // Made by hand: gives up after 3 deliveries, waits 5 s for acks.
    let streams = TestStreams::new();
    consumer_made_by_hand(&streams, |c| {
        c.max_deliver = 3;
        c.ack_wait = Duration::from_secs(5);
    })
    .await;
    let js = jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .unwrap(),
    );
    let mut consumer = ensure_topology(&js, &streams.config).await.unwrap();
    let info = consumer.info().await.unwrap();
    assert!(
        info.config.max_deliver <= 0,
        "{:?}",
        info.config.max_deliver
    );
    assert_eq!(info.config.ack_wait, streams.config.ack_wait);

    // A setting JetStream cannot change: refuse to start, saying which.
    let other = TestStreams::new();
    consumer_made_by_hand(&other, |c| c.deliver_policy = DeliverPolicy::New).await;
    let err = ensure_topology(&js, &other.config).await.unwrap_err();
    assert!(
        matches!(&err, IngestError::ConsumerMismatch { differences, .. }
            if differences.iter().any(|d| d.starts_with("deliver_policy"))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_slower_than_ack_wait_is_not_redelivered() {
    let db = TestDb::create().await;
    let mut streams = TestStreams::new();
    streams.config.ack_wait = Duration::from_secs(2);
    let app = spawn_app(&db, &streams).await;
    let mut holder = AsyncPgConnection::establish(&db.url).await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
        .await
        .unwrap();
    let uids = ids("slow", 50);
    publish_orders(&app.js, &app.ingest.subject, &uids).await;
    // The batch waits on the lock for more than twice ack_wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    assert_all_served_eventually(&app, &uids).await;

    let mut consumer: jetstream::consumer::PullConsumer = app
        .js
        .get_stream(&streams.config.stream)
        .await
        .unwrap()
        .get_consumer(&streams.config.consumer)
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_redelivered, 0, "redelivered while being written");
    let text = metrics_of(&app).await;
    assert_eq!(
        metric(&text, "order_cache_orders_duplicate_total"),
        Some(0.0)
    );
    app.stop().await.unwrap();
}

async fn assert_all_served_eventually(app: &TestApp, uids: &[String]) {
    for uid in uids {
        app.wait_for_order(uid).await;
    }
    assert_all_served(&app.client, uids, true).await;
}

/// Peak resident memory of a process, from `/proc`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_maximum_size_payloads_keeps_memory_bounded() {
    const N: usize = 300;
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let client = async_nats::connect(streams.nats_url.as_str())
        .await
        .unwrap();
    let js = jetstream::new(client);
    ensure_topology(&js, &streams.config).await.unwrap();
    // Close to the broker's limit, parsed whole before a rule fails: the
    // decoded copy costs memory too.
    let mut order = example_order("big");
    let item = order["items"][0].clone();
    order["items"] = Value::Array(
        (0..700)
            .map(|_| {
                let mut it = item.clone();
                it["name"] = json!("n".repeat(1000));
                it
            })
            .collect(),
    );
    order["sm_id"] = json!(-1);
    let payload = serde_json::to_vec(&order).unwrap();
    assert!(payload.len() > 800 * 1024, "{}", payload.len());
    for i in 0..N {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("big-{i}").as_str(),
        );
        js.publish_with_headers(
            streams.config.subject.clone(),
            headers,
            payload.clone().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let mut server =
        crate::services::ServerProcess::spawn(&db.url, &streams.nats_url, &streams.config);
    server.wait_ready(Duration::from_secs(30)).await;
    let dlq = js.get_stream(&streams.config.dlq_stream()).await.unwrap();
    eventually(Duration::from_secs(120), "all dead-lettered", || async {
        let n = dlq.clone().info().await.ok()?.state.messages;
        (n == N as u64).then_some(())
    })
    .await;
    let peak = peak_rss_mib(server.pid());
    eprintln!(
        "peak RSS {peak:.0} MiB while taking {N} payloads of {} KiB",
        payload.len() / 1024
    );
    // Bounded: 130 MiB in a debug build. Unbounded, the pull held the whole
    // backlog (240 MiB here) plus a batch's decoded copies: 263 MiB.
    assert!(peak < 200.0, "peak RSS {peak:.0} MiB");
    assert!(server.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_stops_the_http_server_it_started() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    // The restore's query cannot run: the start fails after the HTTP
    // server is up.
    db.execute("ALTER TABLE items RENAME COLUMN brand TO label")
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = order_cache::AppConfig::new(db.url.clone(), streams.nats_url.clone());
    config.ingest = streams.config.clone();
    config.startup_timeout = Duration::from_secs(10);
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        app::run(listener, config, std::future::pending()),
    )
    .await
    .expect("a failed start returns");
    assert!(result.is_err(), "{result:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening after a failed start"
    );
}
