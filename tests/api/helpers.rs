//! Spawns the real service against real PostgreSQL and NATS, each test in
//! its own database and its own streams, and cleans them up on drop.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use order_cache::{app, AppConfig, AppError, IngestConfig, Order};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Superuser URL of the server tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// NATS server the tests use.
pub fn nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A short random name, unique enough for parallel tests.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// A single number (`... AS n`) from a query, or why not.
pub async fn count_at(url: &str, sql: &str) -> Result<i64, String> {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::Int8)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    let row: N = diesel::sql_query(sql)
        .get_result(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.n)
}

/// Publishes orders with these ids (each its own `Nats-Msg-Id`), awaiting
/// the acks in windows so tens of thousands take seconds, not minutes.
pub async fn publish_orders(js: &jetstream::Context, subject: &str, uids: &[String]) {
    for chunk in uids.chunks(512) {
        let mut acks = Vec::with_capacity(chunk.len());
        for uid in chunk {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, uid.as_str());
            let payload = serde_json::to_vec(&example_order(uid)).expect("json");
            acks.push(
                js.publish_with_headers(subject.to_owned(), headers, payload.into())
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.await.expect("publish ack");
        }
    }
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A database of the test's own, dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = unique("order_cache_test");
        let mut admin = AsyncPgConnection::establish(&admin_url())
            .await
            .expect("tests need PostgreSQL: set TEST_DATABASE_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let base = admin_url();
        let (server, _) = base.rsplit_once('/').expect("database URL has a path");
        TestDb {
            url: format!("{server}/{name}"),
            name,
        }
    }

    /// Runs SQL in this database.
    pub async fn execute(&self, sql: &str) {
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect");
        conn.batch_execute(sql).await.expect("sql");
    }

    /// A single number from a query.
    pub async fn count(&self, sql: &str) -> i64 {
        use diesel::QueryableByName;
        use diesel_async::RunQueryDsl;
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::Int8)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect");
        let row: N = diesel::sql_query(sql)
            .get_result(&mut conn)
            .await
            .expect("count");
        row.n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup(async move {
            if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url()).await {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// Runs async clean-up from `Drop`, which may run inside a runtime it must
/// not block: on a thread and runtime of its own, waiting for it to finish.
fn cleanup(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(work);
        }
    })
    .join();
}

/// Stream names of the test's own, deleted with it.
pub struct TestStreams {
    pub config: IngestConfig,
    pub nats_url: String,
}

impl TestStreams {
    pub fn new() -> TestStreams {
        TestStreams::on(nats_url())
    }

    pub fn on(nats_url: String) -> TestStreams {
        let id = unique("T");
        TestStreams {
            config: IngestConfig {
                stream: id.clone(),
                subject: format!("{id}.orders"),
                consumer: "order-cache".into(),
                dlq_subject: format!("{id}.dlq"),
                batch_size: 500,
                pull_expires: Duration::from_secs(2),
                ack_wait: Duration::from_secs(10),
                ..IngestConfig::default()
            },
            nats_url,
        }
    }
}

impl Drop for TestStreams {
    fn drop(&mut self) {
        let streams = [self.config.stream.clone(), self.config.dlq_stream().clone()];
        let url = self.nats_url.clone();
        cleanup(async move {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(1))
                .connect(url.as_str());
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                let js = jetstream::new(client);
                for s in streams {
                    let _ = js.delete_stream(&s).await;
                }
            }
        });
    }
}

/// A running service.
pub struct TestApp {
    pub client: http_client::Client,
    pub js: jetstream::Context,
    pub ingest: IngestConfig,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), AppError>>>,
}

/// Starts the service on port 0 against `db` and `streams`.
pub async fn spawn_app(db: &TestDb, streams: &TestStreams) -> TestApp {
    spawn_app_with(db, streams, |_| {}).await
}

/// Like [`spawn_app`], with `configure` applied to the service's config.
pub async fn spawn_app_with(
    db: &TestDb,
    streams: &TestStreams,
    configure: impl FnOnce(&mut AppConfig),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = AppConfig::new(db.url.clone(), streams.nats_url.clone());
    config.ingest = streams.config.clone();
    config.startup_timeout = Duration::from_secs(10);
    configure(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app::run(listener, config, async {
        let _ = stopped.await;
    }));
    let client = async_nats::connect(streams.nats_url.as_str())
        .await
        .expect("tests need NATS: set TEST_NATS_URL");
    let app = TestApp {
        client: http_client::Client::new(addr),
        js: jetstream::new(client),
        ingest: streams.config.clone(),
        stop: Some(stop),
        handle: Some(handle),
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    /// Waits until `/readyz` says 200.
    pub async fn wait_ready(&self) {
        eventually(Duration::from_secs(20), "service ready", || async {
            match self.client.get("/readyz").await {
                Ok((200, _)) => Ok(()),
                Ok((status, _)) => Err(format!("status {status}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Publishes a payload and waits for JetStream to store it.
    pub async fn publish(&self, payload: impl Into<Bytes>, msg_id: Option<&str>) {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        }
        self.publish_with_headers(headers, payload).await;
    }

    /// Publishes a payload with these headers and waits for JetStream to
    /// store it.
    pub async fn publish_with_headers(
        &self,
        headers: async_nats::HeaderMap,
        payload: impl Into<Bytes>,
    ) {
        self.js
            .publish_with_headers(self.ingest.subject.clone(), headers, payload.into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }

    /// Publishes an order with its id as `Nats-Msg-Id`.
    pub async fn publish_order(&self, order: &Value) {
        let id = order["order_uid"].as_str().unwrap_or("").to_owned();
        self.publish(serde_json::to_vec(order).expect("json"), Some(&id))
            .await;
    }

    /// Polls `GET /orders/{uid}` until it answers 200, or panics.
    pub async fn wait_for_order(&self, uid: &str) -> Value {
        let path = format!("/orders/{uid}");
        let body = eventually(
            Duration::from_secs(20),
            &format!("order {uid} served"),
            || async {
                match self.client.get(&path).await.expect("GET order") {
                    (200, body) => Ok(body),
                    (status, _) => Err(format!("status {status}")),
                }
            },
        )
        .await;
        serde_json::from_slice(&body).expect("order is JSON")
    }

    /// Every message in the dead-letter stream, once it holds at least `n`.
    pub async fn dead_letters(&self, n: u64) -> Vec<jetstream::message::StreamMessage> {
        let stream = self
            .js
            .get_stream(&self.ingest.dlq_stream())
            .await
            .expect("dead-letter stream");
        let state = eventually(
            Duration::from_secs(20),
            &format!("{n} dead letters"),
            || {
                let mut stream = stream.clone();
                async move {
                    let state = stream.info().await.expect("stream info").state.clone();
                    if state.messages >= n {
                        Ok(state)
                    } else {
                        Err(format!("{} arrived", state.messages))
                    }
                }
            },
        )
        .await;
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(m);
            }
        }
        out
    }

    /// Whether the service task is still running (it never exits by itself).
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops the service as SIGTERM would, and waits for it to exit.
    pub async fn stop(mut self) -> Result<(), AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(20), handle)
            .await
            .expect("service stops in time")
            .expect("service task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The example order as a JSON value, with a fresh id.
pub fn example_order(uid: &str) -> Value {
    let mut v: Value =
        serde_json::from_slice(include_bytes!("../../examples/example.json")).expect("example");
    set_at(&mut v, "/order_uid", uid.into());
    set_at(&mut v, "/payment/transaction", uid.into());
    v
}

/// Splits a JSON Pointer (`/items/0/brand`) into its parent's and the last
/// key, unescaped (`~1` is `/`, `~0` is `~`).
fn parent_and_key(pointer: &str) -> (&str, String) {
    let (parent, key) = pointer
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{pointer:?} is not a JSON Pointer"));
    (parent, key.replace("~1", "/").replace("~0", "~"))
}

/// Sets the value at `pointer` (a JSON Pointer: `/items/0/brand`), adding
/// the key if its object lacks it; panics if the parent does not exist or
/// an array has no such index, so a mistyped path never passes quietly.
pub fn set_at(value: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = parent_and_key(pointer);
    match value.pointer_mut(parent) {
        Some(Value::Object(fields)) => {
            fields.insert(key, new);
        }
        Some(Value::Array(items)) => {
            let slot = key.parse::<usize>().ok().and_then(|i| items.get_mut(i));
            *slot.unwrap_or_else(|| panic!("no element {pointer}")) = new;
        }
        _ => panic!("no object or array to set {pointer} in"),
    }
}

/// Removes the key at `pointer` from its object; panics if there is none.
pub fn remove_at(value: &mut Value, pointer: &str) {
    let (parent, key) = parent_and_key(pointer);
    value
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|fields| fields.remove(&key))
        .unwrap_or_else(|| panic!("nothing to remove at {pointer}"));
}

/// The example order, decoded, with a fresh id.
pub fn example(uid: &str) -> Order {
    Order::decode(&serde_json::to_vec(&example_order(uid)).expect("json")).expect("valid")
}

/// The tests' HTTP client: hyper's, one fresh connection per request (no
/// pool), so each request meets the listener as a new client would.
pub mod http_client {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http::{HeaderMap, Method, Request};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::{connect::HttpConnector, Client as Hyper};
    use hyper_util::rt::TokioExecutor;

    /// Why a request got no answer, with its causes (hyper's own `Display`
    /// says only "client error (Connect)").
    #[derive(Debug)]
    pub struct Error(Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}", self.0)?;
            let mut cause = self.0.source();
            while let Some(e) = cause {
                write!(f, ": {e}")?;
                cause = e.source();
            }
            Ok(())
        }
    }

    impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for Error {
        fn from(e: E) -> Error {
            Error(e.into())
        }
    }

    /// A whole answer.
    pub struct Response {
        pub status: u16,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    #[derive(Clone)]
    pub struct Client {
        addr: SocketAddr,
        hyper: Hyper<HttpConnector, Empty<Bytes>>,
        /// Sent as `Authorization: Bearer <token>` with every request.
        token: Option<String>,
    }

    impl Client {
        pub fn new(addr: SocketAddr) -> Client {
            let hyper = Hyper::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http();
            Client {
                addr,
                hyper,
                token: None,
            }
        }

        /// This client, sending `Authorization: Bearer <token>` with every
        /// request, for a service started with an access token.
        pub fn bearer(mut self, token: &str) -> Client {
            self.token = Some(token.to_owned());
            self
        }

        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// Sends `GET path` and returns the status and body.
        pub async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), Error> {
            let answer = self.send(Method::GET, path).await?;
            Ok((answer.status, answer.body.to_vec()))
        }

        /// Sends `method path` and reads the whole answer.
        pub async fn send(&self, method: Method, path: &str) -> Result<Response, Error> {
            let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|a| ("authorization", a.as_str()))
                .collect();
            self.send_with(method, path, &headers).await
        }

        /// Sends `method path` with exactly these headers (and not the
        /// client's token), and reads the whole answer.
        pub async fn send_with(
            &self,
            method: Method,
            path: &str,
            headers: &[(&str, &str)],
        ) -> Result<Response, Error> {
            let mut request = Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", self.addr));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(Empty::new())?;
            let (head, body) = self.hyper.request(request).await?.into_parts();
            Ok(Response {
                status: head.status.as_u16(),
                headers: head.headers,
                body: body.collect().await?.to_bytes(),
            })
        }
    }
}

/// The path of an external program the end-to-end tests drive: `$VAR` if
/// set, else `name` on `PATH`; panics with how to install it otherwise.
#[cfg(feature = "e2e")]
pub fn require_tool(name: &str, var: &str, install: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return path.into();
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found: {install}, or set {var}"))
}

/// Runs an outside checker to the end and returns what it printed; panics
/// with `failure` and all its output unless it exits 0.
#[cfg(feature = "e2e")]
pub async fn run_checker(command: &mut tokio::process::Command, failure: &str) -> String {
    let output = command
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the checker");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{failure}:\n{stdout}\n{stderr}");
    stdout
}

/// Runs `command` to its exit, killed after `within`; its exit status (None
/// if it was killed) and what it printed, stdout then stderr.
pub async fn run_to_exit(
    command: &mut tokio::process::Command,
    within: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::process::Stdio;
    use tokio::io::AsyncReadExt;
    async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes).await;
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // The pipes are read while it runs, so a chatty child never blocks on
    // a full one.
    let exited = async {
        match tokio::time::timeout(within, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    };
    let (status, out, err) = tokio::join!(exited, read_all(stdout), read_all(stderr));
    (status, out + &err)
}

/// Runs SQL at `url` (e.g. `ALTER DATABASE …` from the admin database).
pub async fn execute_at(url: &str, sql: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    conn.batch_execute(sql).await.expect("sql");
}

/// What a check polled by [`eventually`] answers: `Some`/`Ok` when done,
/// `None`/`Err` while not yet (an `Err` says why, for the failure message).
pub trait Outcome {
    type Value;
    fn done(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Outcome for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// A check that was not done in time, with what it last said.
#[derive(Debug)]
pub struct NotInTime {
    pub within: Duration,
    pub last: Option<String>,
}

impl std::fmt::Display for NotInTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not within {:?}", self.within)?;
        match &self.last {
            Some(last) => write!(f, " (last: {last})"),
            None => Ok(()),
        }
    }
}

/// Polls `check` every `every` until it is done, or gives up after `within`
/// with what it last said. [`eventually`] is this with 50 ms and a panic.
pub async fn poll<O, F, Fut>(
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<O::Value, NotInTime>
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = O>,
{
    let started = Instant::now();
    loop {
        let last = match check().await.done() {
            Ok(v) => return Ok(v),
            Err(last) => last,
        };
        if started.elapsed() >= within {
            return Err(NotInTime { within, last });
        }
        tokio::time::sleep(every).await;
    }
}

/// Polls `check` every 50 ms until it is done, or panics with `what` (and
/// what the check last said) after `within`.
pub async fn eventually<O, F, Fut>(within: Duration, what: &str, check: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = O>,
{
    poll(within, Duration::from_millis(50), check)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Every one of `uids` answers 200 with the example order of that id, and
/// (with `from_cache`) from the cache, not from PostgreSQL; 16 requests at a
/// time.
pub async fn assert_all_served(client: &http_client::Client, uids: &[String], from_cache: bool) {
    use futures::StreamExt;
    let failures: Vec<String> = futures::stream::iter(uids.iter().cloned())
        .map(|uid| {
            let client = client.clone();
            async move {
                let path = format!("/orders/{uid}");
                match client.send(http::Method::GET, &path).await {
                    Ok(answer) if answer.status == 200 => {
                        let value: Option<Value> = serde_json::from_slice(&answer.body).ok();
                        if value.as_ref() != Some(&example_order(&uid)) {
                            Some(format!("{uid}: wrong body"))
                        } else if from_cache && !is_cache_hit(&answer.headers) {
                            Some(format!("{uid}: not served from the cache"))
                        } else {
                            None
                        }
                    }
                    Ok(answer) => Some(format!("{uid}: status {}", answer.status)),
                    Err(e) => Some(format!("{uid}: {e}")),
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {} orders not served right, e.g. {:?}",
        failures.len(),
        uids.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Whether an answer says it came from the cache (`X-Order-Cache: hit`).
pub fn is_cache_hit(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-order-cache")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"hit"))
}

/// Creates the orders stream and a durable consumer with `tweak` applied,
/// as someone else (another version, an operator) might have.
pub async fn consumer_made_by_hand(
    streams: &TestStreams,
    tweak: impl FnOnce(&mut async_nats::jetstream::consumer::pull::Config),
) {
    let client = async_nats::connect(streams.nats_url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: streams.config.stream.clone(),
            subjects: vec![streams.config.subject.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut config = async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(streams.config.consumer.clone()),
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        filter_subject: streams.config.subject.clone(),
        ack_wait: streams.config.ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(streams.config.batch_size * 20).unwrap(),
        ..Default::default()
    };
    tweak(&mut config);
    stream.create_consumer(config).await.unwrap();
}

/// Waits until the consumer has nothing pending or unacknowledged.
pub async fn all_handled(js: &jetstream::Context, streams: &TestStreams, within: Duration) {
    eventually(within, "every message handled", || async {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream(&streams.config.stream)
            .await
            .ok()?
            .get_consumer(&streams.config.consumer)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "the answer: not within 100ms (last: still 41)")]
async fn eventually_gives_up_with_what_the_check_last_said() {
    eventually(Duration::from_millis(100), "the answer", || async {
        Err::<(), _>("still 41")
    })
    .await;
}

#[tokio::test]
async fn eventually_returns_the_first_value_the_check_is_done_with() {
    let tries = std::sync::atomic::AtomicU32::new(0);
    let n = eventually(Duration::from_secs(5), "three tries", || async {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(n, 3);
}

#[test]
fn set_at_sets_and_adds_by_json_pointer_and_remove_at_removes() {
    let mut v = serde_json::json!({"items": [{"brand": "a"}], "a/b": 1});
    set_at(&mut v, "/items/0/brand", "b".into());
    set_at(&mut v, "/items/0/colour", "red".into());
    set_at(&mut v, "/a~1b", 2.into());
    remove_at(&mut v, "/items/0/brand");
    assert_eq!(
        v,
        serde_json::json!({"items": [{"colour": "red"}], "a/b": 2})
    );
}

#[test]
#[should_panic(expected = "no object or array to set /itmes/0/brand in")]
fn set_at_refuses_a_path_whose_parent_is_missing() {
    set_at(&mut example_order("x"), "/itmes/0/brand", "b".into());
}

/// Every published order stored exactly once, with its child rows (one item each).
pub async fn assert_exactly_once(db_url: &str, n: usize) {
    for sql in [
        "SELECT count(*) AS n FROM orders",
        "SELECT count(DISTINCT order_uid) AS n FROM orders",
        "SELECT count(*) AS n FROM items",
        "SELECT count(*) AS n FROM payments",
        "SELECT count(*) AS n FROM deliveries",
    ] {
        assert_eq!(count_at(db_url, sql).await, Ok(n as i64), "{sql}");
    }
}
