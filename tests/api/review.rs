//! Defects an adversarial review found in the first round of hardening; each
//! test failed on that code (bdf0e60): consumers made by hand with settings
//! that starve or blind the service, orders committed after the client gave
//! up on them, and passwords the client misreads.

use std::time::Duration;

use async_nats::jetstream;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use order_cache::{app, AppConfig, AppError};
use tokio::sync::oneshot;

use crate::helpers::{
    all_handled, assert_all_served, consumer_made_by_hand, eventually, http_client, poll,
    publish_orders, run_to_exit, spawn_app, unique, TestDb, TestStreams,
};
use crate::services::server_bin;

const MARK: &str = "Zq9Leak";

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| unique(prefix)).collect()
}

/// Runs the server to its exit (killed after 60 s) with these URLs and every
/// log line on; everything it printed.
async fn failed_start(database_url: &str, nats_url: &str) -> String {
    let mut server = tokio::process::Command::new(server_bin());
    server
        .env("DATABASE_URL", database_url)
        .env("NATS_URL", nats_url)
        .env("STARTUP_TIMEOUT", "1")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "trace");
    run_to_exit(&mut server, Duration::from_secs(60)).await.1
}

fn leaked_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.contains(MARK)).collect()
}

/// A query-string password holding an unescaped `&` (`p&ss`): tokio-postgres
/// reads the tail as the start of the next key, and `redact_database_url`
/// prints keys as written, so the tail of the password is in the error.
#[tokio::test]
async fn a_query_password_with_an_ampersand_is_never_printed() {
    let url = format!(
        "postgres://postgres@127.0.0.1:1/orders?password=head{MARK}&tail{MARK}&sslmode=disable"
    );
    let text = failed_start(&url, "nats://127.0.0.1:1").await;
    let leaks = leaked_lines(&text);
    assert!(leaks.is_empty(), "password printed:\n{}", leaks.join("\n"));
}

/// A query-string password holding an unescaped `@`: tokio-postgres takes
/// everything up to the first `@` as the user, connects, and PostgreSQL's
/// answer (`role "...password=..." does not exist`) repeats it.
#[tokio::test]
async fn a_query_password_with_an_at_sign_is_refused_before_the_server_sees_it() {
    let url = format!("postgres://127.0.0.1/postgres?password={MARK}@127.0.0.1/postgres");
    let text = failed_start(&url, "nats://127.0.0.1:1").await;
    let leaks = leaked_lines(&text);
    assert!(leaks.is_empty(), "password printed:\n{}", leaks.join("\n"));
}

/// An existing consumer with `headers_only` delivers empty payloads; the
/// settings check does not look at it, so every valid order is dead-lettered
/// as `syntax` and terminated.
#[tokio::test(flavor = "multi_thread")]
async fn a_headers_only_consumer_is_updated_and_no_valid_order_is_dead_lettered() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    consumer_made_by_hand(&streams, |c| c.headers_only = true).await;
    let app = spawn_app(&db, &streams).await;
    let uids = ids("hdr", 5);
    publish_orders(&app.js, &app.ingest.subject, &uids).await;
    all_handled(&app.js, &streams, Duration::from_secs(20)).await;
    let stored = db.count("SELECT count(*) AS n FROM orders").await;
    let letters = app
        .js
        .get_stream(&streams.config.dlq_stream())
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(
        (stored, letters),
        (5, 0),
        "valid orders dead-lettered instead of stored"
    );
    app.stop().await.unwrap();
}

/// An existing consumer with a `max_batch` (MaxRequestBatch) below the
/// service's batch size refuses every pull with 409; the settings check does
/// not look at it, the service reports ready, and nothing is ever consumed
/// (the run loop re-subscribes at once, with no backoff).
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_with_a_small_request_batch_limit_is_updated_and_consumes() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    consumer_made_by_hand(&streams, |c| c.max_batch = 10).await;
    let app = spawn_app(&db, &streams).await;
    let uids = ids("mb", 5);
    publish_orders(&app.js, &app.ingest.subject, &uids).await;
    let count = || db.count("SELECT count(*) AS n FROM orders");
    let every = Duration::from_millis(200);
    let _ = poll(Duration::from_secs(15), every, || async {
        (count().await >= 5).then_some(())
    })
    .await;
    let stored = count().await;
    let (ready, _) = app.client.get("/readyz").await.unwrap();
    assert_eq!(
        stored, 5,
        "nothing consumed in 15 s (readyz {ready}); start should refuse or fix the consumer"
    );
    app.stop().await.unwrap();
}

/// The service with `query_timeout` shortened; the app's HTTP client, its
/// JetStream context, and a way to stop it.
struct App {
    client: http_client::Client,
    js: jetstream::Context,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), AppError>>,
}

async fn spawn_with_query_timeout(db: &TestDb, streams: &TestStreams, timeout: Duration) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = AppConfig::new(db.url.clone(), streams.nats_url.clone());
    config.ingest = streams.config.clone();
    config.store.query_timeout = timeout;
    config.startup_timeout = Duration::from_secs(10);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app::run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = http_client::Client::new(addr);
    eventually(Duration::from_secs(20), "ready", || {
        let client = client.clone();
        async move { matches!(client.get("/readyz").await, Ok((200, _))).then_some(()) }
    })
    .await;
    let nats = async_nats::connect(streams.nats_url.as_str())
        .await
        .unwrap();
    App {
        client,
        js: jetstream::new(nats),
        stop: Some(stop),
        handle,
    }
}

/// A batch whose INSERT outlives the client's `query_timeout` (waiting on a
/// lock) is still committed by PostgreSQL; the redelivery finds the ids
/// stored, `fresh` is empty, the messages are acked, and the cache never
/// gets these committed orders: they are served from PostgreSQL (or 503
/// when it is down) instead of the cache.
#[tokio::test(flavor = "multi_thread")]
async fn orders_committed_after_a_client_timeout_are_cached() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let mut app = spawn_with_query_timeout(&db, &streams, Duration::from_secs(1)).await;
    let mut holder = AsyncPgConnection::establish(&db.url).await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE orders IN SHARE MODE")
        .await
        .unwrap();
    let uids = ids("late", 20);
    publish_orders(&app.js, &streams.config.subject, &uids).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    all_handled(&app.js, &streams, Duration::from_secs(30)).await;
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 20);
    assert_all_served(&app.client, &uids, true).await;
    if let Some(stop) = app.stop.take() {
        let _ = stop.send(());
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), &mut app.handle).await;
}
