//! Fault injection: the service, PostgreSQL and NATS are killed mid-ingest
//! (each test owns its PostgreSQL cluster and nats-server, on free ports);
//! afterwards every published order is stored exactly once and served.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use order_cache::ingest::ensure_topology;
use rand::Rng;

use crate::helpers::{
    assert_all_served, count_at, eventually, example_order, metric, poll, publish_orders, unique,
    TestDb, TestStreams,
};
use crate::services::{temp_dir, OwnNats, OwnPostgres, ServerProcess};

/// Everything one fault test owns. Fields drop in order: streams are deleted
/// while NATS still runs, then the servers stop.
struct Rig {
    streams: TestStreams,
    js: jetstream::Context,
    nats: OwnNats,
    pg: OwnPostgres,
    db_url: String,
}

async fn rig() -> Rig {
    let pg = OwnPostgres::start().await;
    pg.create_database("orders");
    let nats = OwnNats::start().await;
    let mut streams = TestStreams::on(nats.url());
    // Redeliver what a killed instance had fetched within seconds.
    streams.config.ack_wait = Duration::from_secs(3);
    streams.config.batch_size = 500;
    let client = async_nats::connect(nats.url()).await.expect("own NATS");
    let js = jetstream::new(client);
    ensure_topology(&js, &streams.config)
        .await
        .expect("topology");
    Rig {
        db_url: pg.url("orders"),
        streams,
        js,
        nats,
        pg,
    }
}

impl Rig {
    fn spawn(&self) -> ServerProcess {
        ServerProcess::spawn(&self.db_url, &self.nats.url(), &self.streams.config)
    }

    async fn publish(&self, uids: &[String]) {
        publish_orders(&self.js, &self.streams.config.subject, uids).await;
    }

    /// Rows in `orders` (None while PostgreSQL is down or not migrated).
    async fn stored(&self) -> Option<i64> {
        count_at(&self.db_url, "SELECT count(*) AS n FROM orders")
            .await
            .ok()
    }

    async fn wait_stored(&self, at_least: i64, within: Duration) -> i64 {
        eventually(within, &format!("{at_least} orders stored"), || async {
            let n = self.stored().await.unwrap_or(0);
            if n >= at_least {
                Ok(n)
            } else {
                Err(format!("only {n}"))
            }
        })
        .await
    }

    /// Every published order stored exactly once, with its one item.
    async fn assert_exactly_once(&self, n: usize) {
        crate::helpers::assert_exactly_once(&self.db_url, n).await;
    }
}

async fn cache_size(server: &ServerProcess) -> f64 {
    let (_, text) = server.client().get("/metrics").await.expect("metrics");
    metric(&String::from_utf8_lossy(&text), "order_cache_cache_orders").unwrap_or(-1.0)
}

/// Every published order is served, equal to what was published: from the
/// cache where one instance ingested them all (the PostgreSQL fallback must
/// not hide an empty cache).
async fn assert_served(server: &ServerProcess, uids: &[String], from_cache: bool) {
    assert_all_served(&server.client(), uids, from_cache).await;
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| unique("f")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_points_loses_and_duplicates_nothing() {
    const N: usize = 20_000;
    let rig = rig().await;
    let uids = ids(N);
    rig.publish(&uids).await;

    let mut rng = rand::rng();
    let mut kills = 0;
    let mut last = 0;
    while kills < 3 {
        let mut server = rig.spawn();
        // Let it make some progress, then kill it at a random moment.
        let target = last + rng.random_range(500..2500);
        // Killed after a minute all the same, if it never gets there.
        let _ = poll(
            Duration::from_secs(60),
            Duration::from_millis(5),
            || async { (rig.stored().await.unwrap_or(0) >= target).then_some(()) },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..200))).await;
        assert!(server.is_running(), "the server died by itself");
        server.kill9();
        kills += 1;
        last = rig.stored().await.unwrap_or(0);
        assert!(
            last < N as i64,
            "ingest finished before kill {kills}; publish more"
        );
    }

    let mut server = rig.spawn();
    rig.wait_stored(N as i64, Duration::from_secs(120)).await;
    server.wait_ready(Duration::from_secs(30)).await;
    rig.assert_exactly_once(N).await;
    // The cache is complete: restored from PostgreSQL plus what it ingested.
    eventually(Duration::from_secs(30), "cache complete", || async {
        let size = cache_size(&server).await;
        (size >= N as f64).then_some(()).ok_or(size)
    })
    .await;
    assert_served(&server, &uids, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_stopped_hard_mid_ingest_loses_nothing_and_cached_orders_stay_served() {
    const FIRST: usize = 2_000;
    const SECOND: usize = 8_000;
    let rig = rig().await;
    let first = ids(FIRST);
    let second = ids(SECOND);
    rig.publish(&first).await;
    let mut server = rig.spawn();
    rig.wait_stored(FIRST as i64, Duration::from_secs(60)).await;
    server.wait_ready(Duration::from_secs(30)).await;
    let cached = first[0].clone();
    server
        .wait_status(&format!("/orders/{cached}"), 200, Duration::from_secs(10))
        .await;

    // Keep publishing while PostgreSQL goes away.
    let publisher = {
        let js = rig.js.clone();
        let subject = rig.streams.config.subject.clone();
        let second = second.clone();
        tokio::spawn(async move {
            for chunk in second.chunks(500) {
                publish_orders(&js, &subject, chunk).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    rig.pg.stop_immediate().await;
    let down = Instant::now();
    let to_503 = server
        .wait_status("/readyz", 503, Duration::from_secs(10))
        .await;
    while down.elapsed() < Duration::from_secs(10) {
        let (status, _) = server
            .client()
            .get(&format!("/orders/{cached}"))
            .await
            .unwrap();
        assert_eq!(
            status, 200,
            "cached orders are served while PostgreSQL is down"
        );
        assert!(server.is_running());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.pg.resume().await;
    let back = Instant::now();
    server.wait_ready(Duration::from_secs(30)).await;
    let to_ready = back.elapsed();
    publisher.await.unwrap();
    rig.wait_stored((FIRST + SECOND) as i64, Duration::from_secs(120))
        .await;
    let caught_up = back.elapsed();
    assert!(server.is_running());
    rig.assert_exactly_once(FIRST + SECOND).await;
    assert_served(&server, &second, true).await;
    assert_served(&server, &first, true).await;
    eprintln!(
        "postgres outage: 503 after {to_503:?}, ready {to_ready:?} after restart, all stored {caught_up:?} after restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_killed_and_restarted_mid_ingest_loses_nothing() {
    const N: usize = 20_000;
    let mut rig = rig().await;
    let uids = ids(N);
    rig.publish(&uids).await;
    let mut server = rig.spawn();
    rig.wait_stored(1_000, Duration::from_secs(60)).await;

    rig.nats.kill().await;
    let stored_while_down = rig.stored().await.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.nats.resume().await;
    let back = Instant::now();

    rig.wait_stored(N as i64, Duration::from_secs(120)).await;
    eprintln!(
        "nats outage: {stored_while_down} stored when killed, all {N} stored {:?} after restart",
        back.elapsed()
    );
    assert!(server.is_running(), "the server survived the broker");
    server.wait_ready(Duration::from_secs(30)).await;
    rig.assert_exactly_once(N).await;
    assert_served(&server, &uids, true).await;
}

/// The durable consumer deleted under a running service (by hand, or a
/// broker replaced without its storage): the service makes it again by
/// itself, and what is published afterwards is stored, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_deleted_under_the_service_is_made_again() {
    let rig = rig().await;
    let before = ids(200);
    rig.publish(&before).await;
    let mut server = rig.spawn();
    rig.wait_stored(200, Duration::from_secs(30)).await;

    let stream = rig
        .js
        .get_stream(&rig.streams.config.stream)
        .await
        .expect("stream");
    // nats-server 2.9 sometimes answers the first delete with a 500 ("unlinkat
    // …/obs/order-cache: directory not empty"), the consumer deleted all the
    // same or not: asked again until it is gone.
    eventually(Duration::from_secs(10), "the consumer deleted", || async {
        match stream.delete_consumer(&rig.streams.config.consumer).await {
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let after = ids(200);
    rig.publish(&after).await;

    rig.wait_stored(400, Duration::from_secs(30)).await;
    let info = stream
        .consumer_info(&rig.streams.config.consumer)
        .await
        .expect("the consumer made again");
    assert_eq!(
        info.config.max_deliver, -1,
        "made with the service's settings"
    );
    assert!(server.is_running());
    server.wait_ready(Duration::from_secs(10)).await;
    // The new consumer starts from the stream's first message: the orders
    // stored before come again and are not stored twice.
    rig.assert_exactly_once(400).await;
    assert_served(&server, &[before, after].concat(), false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_ingest_commits_the_batch_in_flight_and_exits_zero() {
    const N: usize = 20_000;
    let rig = rig().await;
    let uids = ids(N);
    rig.publish(&uids).await;
    let server = rig.spawn();
    rig.wait_stored(2_000, Duration::from_secs(60)).await;

    let (status, took) = server
        .terminate(Duration::from_secs(15))
        .await
        .expect("exits within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    eprintln!("sigterm: exited in {took:?}");

    let mut server = rig.spawn();
    rig.wait_stored(N as i64, Duration::from_secs(120)).await;
    server.wait_ready(Duration::from_secs(30)).await;
    rig.assert_exactly_once(N).await;
    // What the first instance committed, it also acknowledged: nothing came
    // back to the second one as an already-stored order.
    let (_, text) = server.client().get("/metrics").await.unwrap();
    let dups = metric(
        &String::from_utf8_lossy(&text),
        "order_cache_orders_duplicate_total",
    );
    assert_eq!(dups, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_database_and_stream_store_once_and_both_serve_all() {
    const N: usize = 5_000;
    let rig = rig().await;
    let mut a = rig.spawn();
    let mut b = rig.spawn();
    a.wait_ready(Duration::from_secs(30)).await;
    b.wait_ready(Duration::from_secs(30)).await;
    let uids = ids(N);
    rig.publish(&uids).await;

    rig.wait_stored(N as i64, Duration::from_secs(120)).await;
    rig.assert_exactly_once(N).await;
    // Each instance serves all, half of them missed and read from
    // PostgreSQL, concurrently (the shared miss must answer every waiter).
    for server in [&a, &b] {
        assert_served(server, &uids, false).await;
    }
    // Both consumed a share of the stream.
    for server in [&a, &b] {
        let (_, text) = server.client().get("/metrics").await.unwrap();
        let ingested = metric(
            &String::from_utf8_lossy(&text),
            "order_cache_orders_ingested_total",
        );
        assert!(
            ingested.unwrap_or(0.0) > 0.0,
            "an instance ingested nothing"
        );
    }
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// A server not scheduled for 1.5 s, four times while orders arrive (as a
/// stopped process, CPU starvation or a VM's steal would): the pull's
/// heartbeats look missed when it runs again, but a pull that still
/// delivers is not dropped (what the broker sent to a dropped pull comes
/// back only after `ack_wait`, 30 s). Every order is stored within seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_stalled_for_one_and_a_half_seconds_stores_every_order_within_seconds() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let dir = temp_dir("order-cache-stall");
    let log = dir.join("server.log");
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &streams.nats_url,
        &streams.config,
        // The server default, as scripts/up runs it.
        &[("BATCH_SIZE", "1000")],
        Some(&log),
    );
    server.wait_ready(Duration::from_secs(30)).await;
    let nats = async_nats::connect(streams.nats_url.as_str())
        .await
        .expect("NATS");
    let js = async_nats::jetstream::new(nats);

    // Orders keep coming, 300 a second, while the server is stopped
    // (SIGSTOP) for 1.5 s four times, 0.75 s apart.
    let pid = server.pid();
    let stalls = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(750)).await;
            signal(pid, "-STOP");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            signal(pid, "-CONT");
        }
    });
    // A steady 300 orders a second, as `producer --rate 300` publishes.
    let mut acks = Vec::new();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_micros(3_333));
    while started.elapsed() < Duration::from_secs(9) {
        ticks.tick().await;
        let uid = unique("stall");
        let payload = serde_json::to_vec(&example_order(&uid)).expect("json");
        acks.push(
            js.publish(streams.config.subject.clone(), payload.into())
                .await
                .expect("publish"),
        );
    }
    let total = acks.len() as i64;
    for ack in acks {
        ack.await.expect("publish ack");
    }
    stalls.await.expect("stalls");
    let published = Instant::now();

    let all_stored = poll(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let n = count_at(&db.url, "SELECT count(*) AS n FROM orders").await;
            n.ok().filter(|&n| n >= total)
        },
    )
    .await;
    let took = published.elapsed();
    let stored = match all_stored {
        Ok(n) => n,
        Err(_) => count_at(&db.url, "SELECT count(*) AS n FROM orders")
            .await
            .unwrap_or(0),
    };
    let output = server.output();
    let drops = output.matches("missed idle heartbeat").count();
    eprintln!("stored {stored} of {total} {took:?} after the last publish; pulls dropped: {drops}");
    assert_eq!(stored, total, "{output}");
    assert!(
        took < Duration::from_secs(10),
        "the last of {total} orders stored {took:?} after the last publish; \
         pulls dropped for missed heartbeats: {drops}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
