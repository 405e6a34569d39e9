//! Defects a second adversarial review found; each test failed on the code
//! it was written against (6423384): a client that never reads, a deleted
//! dead-letter stream, a replay stored in another stream, a restore that
//! gets no answer, a redirect that dropped the order asked for.

use std::net::SocketAddr;
use std::time::Duration;

use order_cache::{Api, Cache, Metrics, Readiness, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use crate::helpers::http_client;

use crate::server::serve_in_process as serve_here;

/// A client that pipelines many requests for a 10 KB answer and never reads
/// one: once the socket buffers are full the server's write waits forever.
/// Returns the task that owns the socket (abort it to close the socket).
async fn never_reads(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(addr).await.expect("connect");
    let task = tokio::spawn(async move {
        let request = b"GET /openapi.yaml HTTP/1.1\r\nHost: slow-reader\r\n\r\n";
        for _ in 0..5_000 {
            if stream.write_all(request).await.is_err() {
                return;
            }
        }
        // Keep the socket open, unread.
        std::future::pending::<()>().await;
    });
    // Let the server fill the buffers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    task
}

fn short_timeouts(max_connections: usize) -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_does_not_hold_a_slot_forever() {
    // Arrange: one slot, taken by a client that asks and never reads.
    let (addr, stop, handle) = serve_here(short_timeouts(1));
    let slow = never_reads(addr).await;

    // Act: a well-behaved client asks, well past every timeout.
    let answer = tokio::time::timeout(
        Duration::from_secs(8),
        http_client::Client::new(addr).get("/healthz"),
    )
    .await;

    // Assert
    slow.abort();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    assert!(
        matches!(answer, Ok(Ok((200, _)))),
        "a client that never reads its answers held the only slot for 8 s \
         (header and idle timeouts 1 s): {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_although_a_client_never_reads_its_answers() {
    // Arrange
    let (addr, stop, handle) = serve_here(short_timeouts(100));
    let slow = never_reads(addr).await;

    // Act
    stop.send(()).expect("server running");
    let stopped = tokio::time::timeout(Duration::from_secs(8), handle).await;

    // Assert
    slow.abort();
    assert!(
        stopped.is_ok(),
        "serve did not return within 8 s of shutdown (timeouts 1 s) while a \
         client left its answers unread"
    );
}

/// The dead-letter stream deleted while the service runs (an operator
/// clearing it with `nats stream rm`): the service made it at start and
/// makes the orders stream again when that one goes, but never this one, so
/// every rejected message is nak'ed forever (and enough of them fill
/// `max_ack_pending` and stop ingestion) while `/readyz` says 200.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_message_is_dead_lettered_or_unready_after_the_dead_letter_stream_is_deleted() {
    use crate::helpers::{poll, spawn_app, TestDb, TestStreams};

    // Arrange
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    app.js
        .delete_stream(&streams.config.dlq_stream())
        .await
        .expect("delete the dead-letter stream");

    // Act
    app.publish(&b"not an order"[..], None).await;

    // Assert: within 20 s the letter is stored, or the service says it is
    // not ready.
    let every = Duration::from_millis(200);
    poll(Duration::from_secs(20), every, || async {
        if let Ok(mut dlq) = app.js.get_stream(&streams.config.dlq_stream()).await {
            if dlq.info().await.is_ok_and(|i| i.state.messages >= 1) {
                return Ok(());
            }
        }
        let ready = app.client.get("/readyz").await.map(|(s, _)| s).ok();
        match ready {
            Some(s) if s != 200 => Ok(()),
            _ => Err(format!("/readyz {ready:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "20 s after the dead-letter stream was deleted, a rejected message is \
             neither dead-lettered nor reported: {e}"
        )
    });
    app.stop().await.expect("clean stop");
}

/// `replay --delete` deletes a letter as soon as *some* stream stored its
/// replay: with `ORDERS_SUBJECT` bound to a stream other than
/// `ORDERS_STREAM` (a typo, another environment's stream) the letter is
/// deleted, the order never reaches the service, and the tool even reports
/// it as replayed into `ORDERS_STREAM`.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread")]
async fn replay_delete_keeps_a_letter_stored_in_another_stream_than_the_orders_stream() {
    use async_nats::jetstream;
    use order_cache::ingest::{ensure_topology, REASON_HEADER, SEQUENCE_HEADER};

    use crate::helpers::{example_order, unique, TestStreams};

    // Arrange: our streams, and another stream that owns another subject.
    let ours = TestStreams::new();
    let other = TestStreams::new();
    let js = jetstream::new(
        async_nats::connect(ours.nats_url.as_str())
            .await
            .expect("NATS"),
    );
    ensure_topology(&js, &ours.config)
        .await
        .expect("our streams");
    ensure_topology(&js, &other.config)
        .await
        .expect("other streams");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(REASON_HEADER, "database");
    headers.insert(SEQUENCE_HEADER, "1");
    let payload = serde_json::to_vec(&example_order(&unique("r2"))).expect("json");
    let letter = js
        .publish_with_headers(ours.config.dlq_subject.clone(), headers, payload.into())
        .await
        .expect("publish letter")
        .await
        .expect("letter stored")
        .sequence;

    // Act: the replay goes to the other stream's subject.
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_order-cache-dlq"))
            .env("NATS_URL", &ours.nats_url)
            .env("ORDERS_STREAM", &ours.config.stream)
            .env("ORDERS_SUBJECT", &other.config.subject)
            .args(["replay", &letter.to_string(), "--delete"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the tool ends")
    .expect("run the tool");
    let stdout = String::from_utf8_lossy(&out.stdout);

    // Assert: the letter is kept, since our orders stream did not get it.
    let dlq = js
        .get_stream(&ours.config.dlq_stream())
        .await
        .expect("dead-letter stream");
    let kept = dlq.get_raw_message(letter).await.is_ok();
    let ours_got = js
        .get_stream(&ours.config.stream)
        .await
        .expect("orders stream")
        .get_info()
        .await
        .expect("info")
        .state
        .messages;
    assert!(
        kept || ours_got > 0,
        "letter #{letter} deleted though {} never got its replay (exit {:?}):\n{stdout}",
        ours.config.stream,
        out.status.code()
    );
}

/// `app::run` promises that "a dependency that never answers is an error
/// once `startup_timeout` has passed, not a hang", and every other query has
/// `query_timeout`; the restore's scan has neither. A table locked by
/// another session (a migration, `VACUUM FULL`, an operator's `LOCK`), or a
/// connection that went silent, keeps the instance unready forever while
/// `/healthz` says 200, so nothing restarts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_gets_no_answer_ends_the_start_instead_of_hanging() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    use order_cache::{app, AppConfig, Store, StoreConfig};

    use crate::helpers::{TestDb, TestStreams};

    // Arrange: a migrated database whose items table another session holds
    // locked.
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    Store::new(StoreConfig::new(db.url.clone()))
        .expect("store")
        .migrate()
        .await
        .expect("migrate");
    let mut locker = AsyncPgConnection::establish(&db.url)
        .await
        .expect("connect");
    locker
        .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    // Act
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = AppConfig::new(db.url.clone(), streams.nats_url.clone());
    config.ingest = streams.config.clone();
    config.startup_timeout = Duration::from_secs(2);
    config.store.query_timeout = Duration::from_secs(2);
    config.shutdown_timeout = Duration::from_secs(2);
    let (stop, stopped) = oneshot::channel::<()>();
    let mut run = tokio::spawn(app::run(listener, config, async {
        let _ = stopped.await;
    }));
    let ended = tokio::time::timeout(Duration::from_secs(20), &mut run).await;

    // Assert
    let _ = locker.batch_execute("ROLLBACK").await;
    let _ = stop.send(());
    if ended.is_err() {
        let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
    }
    assert!(
        matches!(ended, Ok(Ok(Err(_)))),
        "20 s into a restore PostgreSQL does not answer (startup and query \
         timeouts 2 s), app::run neither failed nor finished: {ended:?}"
    );
}

/// Mounted under a prefix, `/prefix?id=…` (a link to one order) is
/// redirected to `/prefix/` without its query: the page opens empty.
#[tokio::test]
async fn the_prefix_redirect_keeps_the_order_asked_for() {
    use order_cache::{recover, routes};
    use warp::Filter;

    let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
    let app = warp::path("shop").and(routes(api)).recover(recover);

    let res = warp::test::request()
        .path("/shop?id=b563feb7b2b84b6test")
        .reply(&app)
        .await;

    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        "/shop/?id=b563feb7b2b84b6test",
        "the redirect drops the id the link asked for"
    );
}
