//! The HTTP server under clients that never finish a request: the `server`
//! binary started with a soft limit of 1,024 open files keeps answering new
//! clients within a second while two thousand connections sit idle, trickle
//! or half-send their headers, and closes each of those within its timeout.
//! In process: the connection cap and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_cache::{router, server, Api, Cache, Metrics, Readiness, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use warp::Filter;

use crate::helpers::{example_order, unique, TestDb, TestStreams};
use crate::services::ServerProcess;

/// What the server is started with; short, so the test is quick.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// The soft limit on open files the server inherits (a common default).
const SOFT_NOFILE: u64 = 1024;
/// How long attackers keep reconnecting after the server closes them.
const ATTACK: Duration = Duration::from_secs(6);
/// How late after its timeout a connection may be seen closed (timers, a
/// busy machine slow to run the attacker that notices).
const SLACK: Duration = Duration::from_secs(2);
/// How early: none, but for rounding (see `attack_once`).
const EARLY: Duration = Duration::from_millis(20);
/// The longest a fresh client may wait for its answer during the attack.
const FRESH_WITHIN: Duration = Duration::from_secs(1);

/// What an attacking connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attacker {
    /// Connects and sends nothing.
    Silent,
    /// Sends the start of a request header, then nothing.
    HalfSent,
    /// Sends a long request header a byte every 500 ms.
    Trickle,
    /// Makes one request on a keep-alive connection, then sends nothing.
    KeptAlive,
}

impl Attacker {
    /// Connections of each kind, two thousand in all: twice the soft limit.
    const MIX: [(Attacker, usize); 4] = [
        (Attacker::Silent, 800),
        (Attacker::HalfSent, 500),
        (Attacker::Trickle, 400),
        (Attacker::KeptAlive, 300),
    ];

    /// The timeout that must close it.
    fn timeout(self) -> Duration {
        match self {
            Attacker::KeptAlive => IDLE_TIMEOUT,
            _ => HEADER_READ_TIMEOUT,
        }
    }
}

/// How one attacking connection ended.
#[derive(Debug)]
enum Outcome {
    /// The server closed it this long after the attacker began to connect
    /// (a kept-alive one: to ask its one request).
    Closed(Duration),
    /// Still open when the test gave up.
    NotClosed,
    /// Could not connect, or the request before idling failed.
    Failed(String),
}

const TRICKLED: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: attack\r\nX-Slow: \
    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";

/// One connection of `kind`, from connect to the server closing it (or
/// `give_up`).
async fn attack_once(addr: SocketAddr, kind: Attacker, give_up: Instant) -> Outcome {
    // The server's clock starts after ours: it cannot accept before we
    // connect, nor go idle before we ask. So a close it times right is
    // never measured early, however late this task is scheduled.
    let mut started = Instant::now();
    let mut stream =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Outcome::Failed(format!("connect: {e}")),
            Err(_) => return Outcome::Failed("connect timed out".into()),
        };
    match kind {
        Attacker::Silent | Attacker::Trickle => {}
        Attacker::HalfSent => {
            if let Err(e) = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: attack\r\n")
                .await
            {
                return Outcome::Failed(format!("write: {e}"));
            }
        }
        Attacker::KeptAlive => {
            started = Instant::now();
            let asked = async {
                stream
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: attack\r\n\r\n")
                    .await?;
                read_response(&mut stream).await
            };
            match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok(200)) => {}
                Ok(Ok(status)) => return Outcome::Failed(format!("status {status}")),
                Ok(Err(e)) => return Outcome::Failed(format!("request: {e}")),
                Err(_) => return Outcome::Failed("request timed out".into()),
            }
        }
    }
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Outcome::Closed(started.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick(), if kind == Attacker::Trickle && sent < TRICKLED.len() => {
                if stream.write_all(&TRICKLED[sent..=sent]).await.is_err() {
                    return Outcome::Closed(started.elapsed());
                }
                sent += 1;
            }
            () = tokio::time::sleep_until(give_up.into()) => return Outcome::NotClosed,
        }
    }
}

/// Reconnects as `kind` each time the server closes it, until `until`.
async fn attack(
    addr: SocketAddr,
    kind: Attacker,
    until: Instant,
    give_up: Instant,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    loop {
        let outcome = attack_once(addr, kind, give_up).await;
        let closed = matches!(outcome, Outcome::Closed(_));
        outcomes.push(outcome);
        if !closed || Instant::now() >= until {
            return outcomes;
        }
    }
}

/// Reads one response with a `Content-Length` body off a kept-alive
/// connection; returns its status.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<u16> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before a whole response"));
        }
        raw.extend_from_slice(&buf[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| std::io::Error::other("no content-length"))?;
        if raw.len() >= end + 4 + length {
            return head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("no status"));
        }
    }
}

/// The soft and hard limits on open files of a process (Linux).
fn nofile_limits(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line.split_whitespace().skip(3);
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_neither_starve_new_ones_nor_stay_open() {
    // Arrange: the test itself holds two thousand sockets.
    let attackers: usize = Attacker::MIX.iter().map(|(_, n)| n).sum();
    let own = rlimit::increase_nofile_limit(u64::MAX).expect("open-file limit");
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("open-file limit");
    assert!(
        own >= attackers as u64 + 500 && hard > SOFT_NOFILE + attackers as u64,
        "this test needs a hard limit on open files above {} (it is {hard})",
        SOFT_NOFILE + attackers as u64
    );
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let mut server = ServerProcess::spawn_with_soft_nofile(
        SOFT_NOFILE,
        &db.url,
        &streams.nats_url,
        &streams.config,
        &[
            (
                "HTTP_HEADER_READ_TIMEOUT",
                &HEADER_READ_TIMEOUT.as_secs().to_string(),
            ),
            ("HTTP_IDLE_TIMEOUT", &IDLE_TIMEOUT.as_secs().to_string()),
        ],
        None,
    );
    server.wait_ready(Duration::from_secs(30)).await;
    let js = async_nats::jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .expect("NATS"),
    );
    let uid = unique("fresh");
    js.publish(
        streams.config.subject.clone(),
        serde_json::to_vec(&example_order(&uid))
            .expect("json")
            .into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    let order = format!("/orders/{uid}");
    server
        .wait_status(&order, 200, Duration::from_secs(20))
        .await;
    let addr: SocketAddr = ([127, 0, 0, 1], server.port).into();

    // Act: the attack, in waves of 100 over two seconds so that the
    // attackers' reconnections spread out (this is about connections held
    // open, not a flood of connection attempts), and fresh clients asking
    // all along.
    let started = Instant::now();
    let until = started + ATTACK;
    let give_up = until + IDLE_TIMEOUT + SLACK + Duration::from_secs(2);
    let attackers = tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        let kinds = Attacker::MIX
            .iter()
            .flat_map(|&(kind, n)| std::iter::repeat_n(kind, n));
        for (i, kind) in kinds.enumerate() {
            tasks.spawn(async move { (kind, attack(addr, kind, until, give_up).await) });
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tasks
    });
    let client = server.client();
    let mut fresh = Vec::new();
    while Instant::now() < until {
        for path in ["/healthz", order.as_str()] {
            let asked = Instant::now();
            let answer = tokio::time::timeout(FRESH_WITHIN, client.get(path)).await;
            let status = match answer {
                Ok(Ok((status, _))) => Ok(status),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {FRESH_WITHIN:?}")),
            };
            fresh.push((asked - started, path, status, asked.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tasks = attackers.await.expect("attackers started");
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (kind, list) = done.expect("attacker task");
        outcomes.extend(list.into_iter().map(|o| (kind, o)));
    }
    let limits = nofile_limits(server.pid());

    // Assert. First what happened, for the log…
    let slowest = fresh.iter().map(|f| f.3).max().unwrap_or_default();
    let late: Vec<_> = fresh
        .iter()
        .filter(|(_, _, status, _)| *status != Ok(200))
        .collect();
    println!(
        "fresh requests: {} of {} answered 200 within {FRESH_WITHIN:?}, slowest {slowest:?}",
        fresh.len() - late.len(),
        fresh.len()
    );
    let mut summaries = Vec::new();
    for kind in Attacker::MIX.map(|(kind, _)| kind) {
        let (mut closed, mut open, mut failed) = (Vec::new(), 0, Vec::new());
        for (_, outcome) in outcomes.iter().filter(|(k, _)| *k == kind) {
            match outcome {
                Outcome::Closed(after) => closed.push(*after),
                Outcome::NotClosed => open += 1,
                Outcome::Failed(why) => failed.push(why.as_str()),
            }
        }
        let first = closed.iter().min().copied().unwrap_or_default();
        let last = closed.iter().max().copied().unwrap_or_default();
        println!(
            "{kind:?}: {} closed after {first:?}..{last:?}, {open} still open, {} failed {:?}",
            closed.len(),
            failed.len(),
            &failed[..failed.len().min(3)]
        );
        summaries.push((kind, first, last, open, failed.len()));
    }
    println!("the server's open-file limit (soft, hard): {limits:?}");

    // …then: every fresh client was served in time…
    assert!(
        late.is_empty(),
        "{} of {} fresh requests failed during the attack (at, path, outcome, took): {:?}",
        late.len(),
        fresh.len(),
        &late[..late.len().min(5)]
    );
    // …every attacking connection was made, and closed by its timeout, not
    // before…
    for (kind, first, last, open, failed) in summaries {
        assert_eq!(failed, 0, "{failed} {kind:?} connections failed");
        assert_eq!(open, 0, "{open} {kind:?} connections never closed");
        assert!(
            first + EARLY >= kind.timeout() && last <= kind.timeout() + SLACK,
            "{kind:?} connections closed after {first:?}..{last:?}, want {:?} (-{EARLY:?}, +{SLACK:?})",
            kind.timeout()
        );
    }
    // …and the server raised its soft limit on open files to the hard one.
    if let Some((soft, hard)) = limits {
        assert_eq!(soft, hard, "the server's open-file limit was not raised");
    }
}

/// Serves the real router with `config` in process; stops when the sender
/// is dropped or sent to.
pub(crate) fn serve_in_process(
    config: ServerConfig,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server::serve(
        listener,
        warp::service(router(api)),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, handle)
}

/// A connection that has made one keep-alive request and got 200.
async fn kept_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");
    let status = tokio::time::timeout(Duration::from_secs(2), read_response(&mut stream))
        .await
        .expect("answered in time")
        .expect("response");
    assert_eq!(status, 200);
    stream
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    // Arrange: a cap of two, both taken by idle keep-alive connections.
    let (addr, stop, handle) = serve_in_process(ServerConfig {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    });
    let first = kept_alive(addr).await;
    let mut second = kept_alive(addr).await;

    // Act: a third client asks.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .expect("write");

    // Assert: not served while the two are open, served once one closes.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), read_response(&mut third))
            .await
            .is_err(),
        "a third connection was served past a cap of two"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(1), read_response(&mut third))
        .await
        .expect("served within a second of a slot freeing")
        .expect("response");
    assert_eq!(status, 200);

    // Shutdown closes the idle connections and returns.
    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task");
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(1), second.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "an idle connection stayed open after shutdown: {closed:?}"
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish() {
    // Arrange: a route that answers 500 ms after it starts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let entered = Arc::new(Notify::new());
    let route = {
        let entered = Arc::clone(&entered);
        warp::path("slow").and_then(move || {
            let entered = Arc::clone(&entered);
            async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<_, Infallible>("done")
            }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server::serve(
        listener,
        warp::service(route),
        ServerConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = crate::helpers::http_client::Client::new(addr);
    let request = tokio::spawn(async move { client.get("/slow").await });
    tokio::time::timeout(Duration::from_secs(2), entered.notified())
        .await
        .expect("the request reached the route");

    // Act
    stop.send(()).expect("server running");

    // Assert: the request is answered, then serve returns, and nobody new
    // is let in.
    let (status, body) = tokio::time::timeout(Duration::from_secs(2), request)
        .await
        .expect("answered in time")
        .expect("request task")
        .expect("response");
    assert_eq!((status, body.as_slice()), (200, b"done".as_slice()));
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("serve returns once the request is answered")
        .expect("serve task");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
