//! Failover of both engines, mid-ingest, with the service as a separate
//! process: the NATS node leading the orders stream is killed in a
//! three-node JetStream cluster (streams with 3 replicas), and a PostgreSQL
//! primary is killed and its synchronous standby promoted. Afterwards every
//! published order is stored exactly once and served, nothing valid is
//! dead-lettered, and the pause is measured and printed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use order_cache::NatsUrl;

use crate::helpers::{
    assert_all_served, assert_exactly_once, count_at, eventually, example_order, is_cache_hit,
    metric, poll, unique, TestDb, TestStreams,
};
use crate::services::{temp_dir, OwnNatsCluster, OwnPostgres, OwnPostgresPair, ServerProcess};

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|_| unique("fo")).collect()
}

/// A directory for the server's log, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(temp_dir("order-cache-failover"))
    }

    fn log(&self) -> PathBuf {
        self.0.join("server.log")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A failing test shows what the server said.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- server log (last 40 lines):\n{}", tail.join("\n"));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A JetStream context over every server in `urls`, whose requests (a
/// publish's ack among them) give up after 2 s, so a publish caught in a
/// leader election is retried soon.
async fn jetstream_on(urls: &str) -> jetstream::Context {
    let client = NatsUrl::parse(urls)
        .connect(async_nats::ConnectOptions::new())
        .await
        .expect("connect to NATS");
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

/// Publishes orders with these ids, each until the stream acknowledges it.
/// A retry carries the same `Nats-Msg-Id`, so one whose ack was lost (the
/// message stored all the same) is dropped by the stream as a duplicate.
/// Panics if some are still unacknowledged after `within`.
async fn publish_surely(js: &jetstream::Context, subject: &str, uids: &[String], within: Duration) {
    let started = Instant::now();
    for chunk in uids.chunks(256) {
        let pending = &Mutex::new(chunk.iter().collect::<Vec<&String>>());
        let every = Duration::from_millis(100);
        poll(
            within.saturating_sub(started.elapsed()),
            every,
            || async move {
                let mut acks = Vec::new();
                let round = std::mem::take(&mut *pending.lock().expect("pending"));
                for uid in round {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(async_nats::header::NATS_MESSAGE_ID, uid.as_str());
                    let payload = serde_json::to_vec(&example_order(uid)).expect("json");
                    let sent = js
                        .publish_with_headers(subject.to_owned(), headers, payload.into())
                        .await;
                    acks.push((uid, sent));
                }
                // Awaited together: each ack's timeout starts when it is
                // polled, and acks of messages sent on a connection that died
                // never come, so one by one a round could take 2 s per message.
                let acked =
                    futures::future::join_all(acks.into_iter().map(|(uid, sent)| async move {
                        match sent {
                            Ok(ack) => ack.await.is_ok().then_some(()).ok_or(uid),
                            Err(_) => Err(uid),
                        }
                    }))
                    .await;
                let failed: Vec<&String> = acked.into_iter().filter_map(Result::err).collect();
                let unacknowledged = failed.len();
                *pending.lock().expect("pending") = failed;
                match unacknowledged {
                    0 => Ok(()),
                    n => Err(format!("{n} orders never acknowledged by the stream")),
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("publishing: {e}"));
    }
}

/// Rows in `orders`, polled every 20 ms from the start, so the pause a
/// failover causes can be read afterwards.
struct Progress {
    samples: Arc<Mutex<Vec<(Instant, i64)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// How ingestion went on after a fault at `t0`.
#[derive(Debug)]
struct Pause {
    /// Rows stored when the fault was injected.
    at_fault: i64,
    /// From the fault to the first new row (often a batch in hand).
    first_growth: Option<Duration>,
    /// The longest time without a new row after the fault: the pause.
    stall: Duration,
    /// From the fault to the end of that stall: ingestion resumed.
    resumed_after: Duration,
}

impl Progress {
    fn start(db_url: String) -> Progress {
        let samples: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                loop {
                    if let Ok(n) = count_at(&db_url, "SELECT count(*) AS n FROM orders").await {
                        samples.lock().expect("samples").push((Instant::now(), n));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Progress { samples, task }
    }

    /// The latest count read (0 before the first).
    fn now(&self) -> i64 {
        self.samples
            .lock()
            .expect("samples")
            .last()
            .map_or(0, |s| s.1)
    }

    /// Waits until at least `n` rows are stored, or panics after `within`.
    async fn wait_for(&self, n: i64, within: Duration, what: &str) -> Duration {
        let started = Instant::now();
        let every = Duration::from_millis(20);
        poll(within, every, || async {
            let now = self.now();
            (now >= n).then_some(()).ok_or(now)
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: fewer than {n} orders stored: {e}"));
        started.elapsed()
    }

    /// How long after `t` the first row was stored that was not stored at
    /// `t`, read from the samples.
    fn first_growth_after(&self, t: Instant) -> Option<Duration> {
        let samples = self.samples.lock().expect("samples");
        let before = samples
            .iter()
            .take_while(|s| s.0 <= t)
            .last()
            .map_or(0, |s| s.1);
        samples
            .iter()
            .find(|s| s.0 > t && s.1 > before)
            .map(|s| s.0 - t)
    }

    /// The pause after a fault injected at `t0`, read from the samples.
    fn pause_after(&self, t0: Instant) -> Pause {
        let samples = self.samples.lock().expect("samples");
        let at_fault = samples
            .iter()
            .take_while(|s| s.0 <= t0)
            .last()
            .map_or(0, |s| s.1);
        let mut last = at_fault;
        let mut since = t0;
        let mut pause = Pause {
            at_fault,
            first_growth: None,
            stall: Duration::ZERO,
            resumed_after: Duration::ZERO,
        };
        for &(t, n) in samples.iter().filter(|s| s.0 > t0) {
            if n > last {
                pause.first_growth.get_or_insert(t - t0);
                if t - since > pause.stall {
                    pause.stall = t - since;
                    pause.resumed_after = t - t0;
                }
                since = t;
                last = n;
            }
        }
        pause
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An unlabelled metric of `server`'s (-1 if missing).
async fn metric_of(server: &ServerProcess, name: &str) -> f64 {
    let (_, text) = server.client().get("/metrics").await.expect("metrics");
    metric(&String::from_utf8_lossy(&text), name).unwrap_or(-1.0)
}

async fn messages_in(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("stream");
    stream.info().await.expect("stream info").state.messages
}

/// The server name of the node leading `stream`, and of the one leading its
/// consumer `consumer` if JetStream says.
async fn leaders(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    within: Duration,
) -> (String, Option<String>) {
    eventually(within, &format!("stream {stream} has a leader"), || async {
        let mut s = js.get_stream(stream).await.ok()?;
        let leader = s
            .info()
            .await
            .ok()
            .and_then(|i| i.cluster.clone()?.leader)?;
        let consumer_leader = s
            .consumer_info(consumer)
            .await
            .ok()
            .and_then(|i| i.cluster?.leader);
        Some((leader, consumer_leader))
    })
    .await
}

/// Steps the consumer's leader down until the node leading the stream leads
/// the consumer too, so that killing it takes both away (the consumer's
/// leader otherwise lands on any node). Returns that node's name.
async fn colocate_leaders(
    js: &jetstream::Context,
    stream: &str,
    consumer: &str,
    within: Duration,
) -> String {
    // After a step-down, the next look waits for the new election.
    let every = Duration::from_millis(500);
    poll(within, every, || async {
        let (stream_leader, consumer_leader) = leaders(js, stream, consumer, within).await;
        if consumer_leader.as_ref() == Some(&stream_leader) {
            return Ok(stream_leader);
        }
        let _ = js
            .client()
            .request(
                format!("$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"),
                bytes::Bytes::new(),
            )
            .await;
        Err(format!(
            "the consumer's leader is {consumer_leader:?}, not {stream_leader}"
        ))
    })
    .await
    .unwrap_or_else(|e| panic!("the consumer's leader never moved: {e}"))
}

/// How long after `killed` the consumer answered with a leader other than
/// `dead`: JetStream's own share of the pause, which no client can shorten.
/// Asked every 50 ms on `client` (connected to the nodes left only), each
/// question given up after 200 ms: one asked before the election is never
/// answered, and a longer wait would hide when the new leader came.
async fn consumer_leader_back(
    client: async_nats::Client,
    stream: String,
    consumer: String,
    dead: String,
    killed: Instant,
) -> Duration {
    let subject = format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}");
    let every = Duration::from_millis(50);
    let asked = || async {
        let request = async_nats::Request::new().timeout(Some(Duration::from_millis(200)));
        let answer = client.send_request(subject.clone(), request).await.ok()?;
        let info: serde_json::Value = serde_json::from_slice(&answer.payload).ok()?;
        let leader = info["cluster"]["leader"].as_str()?;
        (leader != dead).then_some(())
    };
    poll(Duration::from_secs(30), every, asked)
        .await
        .unwrap_or_else(|e| panic!("the consumer never had a new leader: {e}"));
    killed.elapsed()
}

/// Waits until `server` is ready, then stops it (SIGTERM, as a deployment
/// replaces an instance).
async fn first_ready(mut server: ServerProcess, within: Duration) {
    server.wait_ready(within).await;
    let stopped = server.terminate(Duration::from_secs(15)).await;
    assert!(stopped.is_some_and(|(status, _)| status.success()));
}

/// Publishes `uids` from a task of its own, in chunks, each order until the
/// stream has it.
fn publish_in_background(
    js: &jetstream::Context,
    subject: &str,
    uids: &[String],
) -> tokio::task::JoinHandle<()> {
    let js = js.clone();
    let subject = subject.to_owned();
    let uids = uids.to_vec();
    tokio::spawn(async move {
        for chunk in uids.chunks(1_000) {
            publish_surely(&js, &subject, chunk, Duration::from_secs(30)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nats_node_leading_the_stream_killed_mid_ingest_loses_and_duplicates_nothing() {
    const N: usize = 12_000;
    const BACKLOG: usize = 8_000;
    let test_started = Instant::now();
    let mut cluster = OwnNatsCluster::start(3).await;
    let urls = cluster.urls();
    let js = jetstream_on(&urls).await;
    cluster.wait_jetstream(&js, Duration::from_secs(20)).await;
    let db = TestDb::create().await;
    let mut streams = TestStreams::on(urls.clone());
    streams.config.batch_size = 200;
    let config = streams.config.clone();
    let scratch = Scratch::new();

    // The service makes the streams itself, with the replicas it is told.
    let first = ServerProcess::spawn_with(
        &db.url,
        &urls,
        &config,
        &[("ORDERS_REPLICAS", "3")],
        Some(&scratch.log()),
    );
    first_ready(first, Duration::from_secs(30)).await;
    for name in [&config.stream, &config.dlq_stream()] {
        let mut stream = js
            .get_stream(name)
            .await
            .expect("stream made by the service");
        let info = stream.info().await.expect("stream info");
        assert_eq!(info.config.num_replicas, 3, "{name}'s replicas");
        let followers = info.cluster.as_ref().map_or(0, |c| c.replicas.len());
        assert_eq!(followers, 2, "{name} has a leader and two followers");
    }

    // A backlog waits in the stream when the leader dies, so the pause
    // measured is the service's, not the publisher's; more keeps arriving
    // through the failover (each publish retried until the stream has it).
    let uids = ids(N);
    let (backlog, rest) = uids.split_at(BACKLOG);
    publish_surely(&js, &config.subject, backlog, Duration::from_secs(30)).await;
    colocate_leaders(
        &js,
        &config.stream,
        &config.consumer,
        Duration::from_secs(20),
    )
    .await;
    let progress = Progress::start(db.url.clone());
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &urls,
        &config,
        &[("ORDERS_REPLICAS", "3")],
        Some(&scratch.log()),
    );
    let publisher = publish_in_background(&js, &config.subject, rest);
    progress
        .wait_for(1_000, Duration::from_secs(30), "before the kill")
        .await;

    let (leader, consumer_leader) = leaders(
        &js,
        &config.stream,
        &config.consumer,
        Duration::from_secs(10),
    )
    .await;
    let published_at_kill = messages_in(&js, &config.stream).await;
    let node = cluster.node_named(&leader).expect("the leader is ours");
    let left: Vec<&str> = urls
        .split(',')
        .enumerate()
        .filter_map(|(i, url)| (i != node).then_some(url))
        .collect();
    let watcher = NatsUrl::parse(&left.join(","))
        .connect(async_nats::ConnectOptions::new())
        .await
        .expect("connect to the nodes left");
    cluster.kill(node).await;
    let killed = Instant::now();
    let elected = tokio::spawn(consumer_leader_back(
        watcher,
        config.stream.clone(),
        config.consumer.clone(),
        leader.clone(),
        killed,
    ));
    let at_kill = progress.now();
    assert!(
        at_kill < N as i64 / 2,
        "ingest nearly done before the kill ({at_kill}); publish more"
    );

    // It resumes by itself, on the two nodes left: well past what the
    // service had in hand when the leader died.
    let resumed = tokio::time::timeout(
        Duration::from_secs(40),
        progress.wait_for(
            at_kill + 10 * config.batch_size as i64,
            Duration::MAX,
            "with the leader dead",
        ),
    )
    .await;
    if resumed.is_err() {
        let mut stream = js.get_stream(&config.stream).await.expect("stream");
        let info = stream.info().await.expect("stream info").clone();
        let consumer = stream.consumer_info(&config.consumer).await;
        panic!(
            "ingest did not resume within 40 s with {leader} dead: {} stored ({at_kill} at \
             the kill)\nstream: {:?}\ncluster: {:?}\nconsumer: {consumer:?}\n{}",
            progress.now(),
            info.state,
            info.cluster,
            cluster.logs()
        );
    }
    let (new_leader, _) = leaders(
        &js,
        &config.stream,
        &config.consumer,
        Duration::from_secs(10),
    )
    .await;
    assert_ne!(new_leader, leader);
    cluster.resume(node).await;

    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("all published within 60 s")
        .expect("publisher");
    progress
        .wait_for(N as i64, Duration::from_secs(60), "after the restart")
        .await;
    let pause = progress.pause_after(killed);
    assert!(server.is_running(), "the server survived the node");
    server.wait_ready(Duration::from_secs(10)).await;
    // Until the consumer has a new leader nothing can be delivered, and
    // nats-server takes 4 s or more to elect it (its Raft election timeout,
    // not configurable; 3.9-8.4 s in our runs): what the service adds is
    // the time from that election to its next row. It used to be 8 s or more (missed
    // heartbeats, then a request for the consumer's info that went
    // unanswered until the client's 10 s timeout).
    let elected = elected.await.expect("leader watcher");
    let after_election = progress
        .first_growth_after(killed + elected)
        .expect("rows stored after the election");
    assert!(
        after_election <= Duration::from_secs(3),
        "ingestion resumed {after_election:?} after the consumer's new leader answered \
         ({elected:?} after the kill); paused {:?}, resumed {:?} after the kill",
        pause.stall,
        pause.resumed_after
    );
    // The restarted node catches up with the stream.
    eventually(
        Duration::from_secs(30),
        "the restarted node current",
        || async {
            let mut stream = js.get_stream(&config.stream).await.ok()?;
            let info = stream.info().await.ok()?;
            let replicas = &info.cluster.as_ref()?.replicas;
            (replicas.len() == 2 && replicas.iter().all(|p| p.current && !p.offline)).then_some(())
        },
    )
    .await;

    assert_exactly_once(&db.url, N).await;
    assert_eq!(messages_in(&js, &config.stream).await, N as u64);
    assert_eq!(
        messages_in(&js, &config.dlq_stream()).await,
        0,
        "dead letters"
    );
    assert_all_served(&server.client(), &uids, true).await;
    eprintln!(
        "nats: {leader}, leading the stream and the consumer ({consumer_leader:?}), \
         killed with {} stored of {published_at_kill} published: first new row after \
         {:?}, pause (longest time without a new row) {:?}, ended {:?} after the kill \
         (new stream leader {new_leader}); the consumer's new leader answered {elected:?} \
         after the kill, the next row came {after_election:?} later; test took {:?}",
        pause.at_fault,
        pause.first_growth,
        pause.stall,
        pause.resumed_after,
        test_started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_primary_killed_and_its_standby_promoted_mid_ingest_loses_nothing() {
    const N: usize = 10_000;
    /// How long the test leaves the cluster without a primary.
    const GAP: Duration = Duration::from_secs(2);
    let test_started = Instant::now();
    let pair = OwnPostgresPair::start("orders").await;
    let db_url = pair.url("orders");
    let streams = TestStreams::new();
    let js = jetstream_on(&streams.nats_url).await;
    let scratch = Scratch::new();
    let mut server = ServerProcess::spawn_with(
        &db_url,
        &streams.nats_url,
        &streams.config,
        &[],
        Some(&scratch.log()),
    );
    server.wait_ready(Duration::from_secs(30)).await;

    let progress = Progress::start(db_url.clone());
    let uids = ids(N);
    let publisher = publish_in_background(&js, &streams.config.subject, &uids);
    progress
        .wait_for(2_000, Duration::from_secs(30), "before the kill")
        .await;

    pair.primary.stop_immediate().await;
    let killed = Instant::now();
    let at_kill = progress.now();
    assert!(
        at_kill < N as i64 / 2,
        "ingest nearly done before the kill ({at_kill}); publish more"
    );
    let to_503 = server
        .wait_status("/readyz", 503, Duration::from_secs(5))
        .await;
    while killed.elapsed() < GAP {
        let (status, _) = server.client().get("/readyz").await.expect("readyz");
        assert_eq!(status, 503, "ready without a primary");
        assert!(server.is_running());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    pair.standby.promote();
    let promoted = Instant::now();
    let to_ready = server.wait_ready(Duration::from_secs(30)).await;
    tokio::time::timeout(Duration::from_secs(30), publisher)
        .await
        .expect("all published within 30 s")
        .expect("publisher");
    progress
        .wait_for(N as i64, Duration::from_secs(60), "after the promotion")
        .await;
    let caught_up = promoted.elapsed();
    let pause = progress.pause_after(killed);
    assert!(server.is_running(), "the server survived the failover");

    assert_exactly_once(&db_url, N).await;
    assert_eq!(
        messages_in(&js, &streams.config.dlq_stream()).await,
        0,
        "valid orders dead-lettered"
    );
    // Every order served; from the cache save those whose commit reply the
    // kill cut off (see the test below).
    assert_all_served(&server.client(), &uids, false).await;
    let not_cached = N as f64 - metric_of(&server, "order_cache_cache_orders").await;
    let promote_to_resumed = pause.resumed_after.saturating_sub(promoted - killed);
    // Nak'ed orders come back within the longest retry delay (5 s).
    assert!(
        promote_to_resumed < Duration::from_secs(10),
        "ingestion resumed only {promote_to_resumed:?} after the promotion"
    );
    eprintln!(
        "postgres primary killed at {} stored: 503 after {to_503:?}; standby promoted \
         {:?} after the kill; ingest resumed {promote_to_resumed:?} after the promotion \
         (pause, the longest time without a new row: {:?}), ready {to_ready:?} after it, \
         all stored {caught_up:?} after it; {not_cached} stored but not cached; test took {:?}",
        pause.at_fault,
        promoted - killed,
        pause.stall,
        test_started.elapsed()
    );
}

/// Found while testing the PostgreSQL failover: an order whose commit
/// PostgreSQL made but whose answer never reached the service (the
/// connection cut after the commit, as when a primary dies while its
/// synchronous standby already has the commit) is acknowledged without
/// ever entering the cache. The service retries it, the insert finds it
/// stored (`ON CONFLICT DO NOTHING` returns no id), and `Ingestor::persist`
/// caches only the ids an insert returned, counting the order as a
/// duplicate. It is served from PostgreSQL, not from the cache, so it is
/// unavailable while PostgreSQL is down.
///
/// Deterministic here: commits wait for a synchronous standby that does not
/// exist (committed locally, not yet answered), then the waiting sessions
/// are terminated, as PostgreSQL does at a failover.
#[tokio::test(flavor = "multi_thread")]
async fn an_order_whose_commit_reply_was_lost_is_still_cached() {
    let pg = OwnPostgres::start().await;
    pg.create_database("orders");
    let streams = TestStreams::new();
    let js = jetstream_on(&streams.nats_url).await;
    let scratch = Scratch::new();
    let mut server = ServerProcess::spawn_with(
        &pg.url("orders"),
        &streams.nats_url,
        &streams.config,
        &[],
        Some(&scratch.log()),
    );
    server.wait_ready(Duration::from_secs(30)).await;

    pg.psql(
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'nobody'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let uid = unique("lost_reply");
    publish_surely(
        &js,
        &streams.config.subject,
        std::slice::from_ref(&uid),
        Duration::from_secs(10),
    )
    .await;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    eventually(Duration::from_secs(10), "a commit waits", || async {
        (pg.psql("postgres", waiting) != "0").then_some(())
    })
    .await;
    pg.psql(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
    );
    pg.psql("postgres", "ALTER SYSTEM RESET synchronous_standby_names");
    pg.psql("postgres", "SELECT pg_reload_conf()");

    // The retry finds it stored and acknowledges it.
    let stream = js.get_stream(&streams.config.stream).await.expect("stream");
    eventually(
        Duration::from_secs(20),
        "the order acknowledged",
        || async {
            let info = stream.consumer_info(&streams.config.consumer).await.ok()?;
            (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        count_at(&pg.url("orders"), "SELECT count(*) AS n FROM orders").await,
        Ok(1)
    );
    let cached = metric_of(&server, "order_cache_cache_orders").await;
    let duplicates = metric_of(&server, "order_cache_orders_duplicate_total").await;
    let answer = server
        .client()
        .send(http::Method::GET, &format!("/orders/{uid}"))
        .await
        .expect("GET order");
    assert_eq!(answer.status, 200);
    assert!(
        is_cache_hit(&answer.headers),
        "acknowledged but not cached (cache gauge {cached}, counted as a duplicate \
         {duplicates} times although published once):\n{:?}",
        answer.headers
    );
}
