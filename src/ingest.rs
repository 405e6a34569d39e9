//! The JetStream consumer: pulls orders in batches, stores them, caches them,
//! and only then acknowledges them; dead-letters what cannot be an order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, MessagesError, Stream as Messages};
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::model::{Order, OrderUid};
use crate::report::Report;
use crate::store::Store;
use crate::trace::Tracer;

/// Header of a dead letter that gives the short reason (`syntax`, `shape`,
/// `invalid`, `database`, ...).
pub const REASON_HEADER: &str = "Order-Cache-Reason";
/// Header of a dead letter that explains the reason in full.
pub const ERROR_HEADER: &str = "Order-Cache-Error";
/// Header of a dead letter that gives the message's sequence in the source
/// stream.
pub const SEQUENCE_HEADER: &str = "Order-Cache-Stream-Sequence";
/// Header of a dead letter that names the stream the message came from; with
/// [`SEQUENCE_HEADER`] it locates the original message there.
pub const SOURCE_STREAM_HEADER: &str = "Order-Cache-Source-Stream";
/// Header of a dead letter whose payload was too large to carry with the
/// letter's headers within the broker's `max_payload`: the letter's body is
/// empty, this header gives the original size in bytes, and the original
/// bytes stay readable at [`SEQUENCE_HEADER`] in [`SOURCE_STREAM_HEADER`]
/// while that stream retains them.
pub const PAYLOAD_OMITTED_HEADER: &str = "Order-Cache-Payload-Omitted";

/// Names and tuning of the ingest pipeline.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::IngestConfig;
///
/// let config = IngestConfig {
///     stream: "SHOP_ORDERS".into(),
///     subject: "shop.orders".into(),
///     dlq_subject: "shop.orders.dlq".into(),
///     batch_size: 500,
///     ..IngestConfig::default()
/// };
/// assert_eq!(config.consumer, "order-cache");
/// assert_eq!(config.dlq_stream(), "SHOP_ORDERS_DLQ");
/// assert_eq!(config.pull_expires, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// JetStream stream holding the orders.
    pub stream: String,
    /// Subject orders are published to.
    pub subject: String,
    /// Durable consumer name; instances sharing it share the work.
    pub consumer: String,
    /// Subject dead letters are published to; they are kept in stream
    /// [`IngestConfig::dlq_stream`].
    pub dlq_subject: String,
    /// Most messages processed (and written to PostgreSQL) at once.
    pub batch_size: usize,
    /// Most payload bytes in one batch (a batch holds at least one message,
    /// whatever its size). With the two batches in flight and the pull buffer
    /// this bounds the memory ingestion holds: a stream of maximum-size
    /// payloads must not run the process out of memory.
    pub max_batch_bytes: usize,
    /// How long one pull request waits on the server for messages.
    pub pull_expires: Duration,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// First delay before retrying after PostgreSQL or NATS failed; doubles
    /// up to `max_retry_delay`.
    pub retry_delay: Duration,
    /// Longest delay between retries.
    pub max_retry_delay: Duration,
    /// How long the server remembers `Nats-Msg-Id`s to drop re-published
    /// duplicates.
    pub duplicate_window: Duration,
    /// Where the spans of each batch and database write go
    /// ([`trace`](crate::trace)); off by default.
    pub tracer: Tracer,
    /// Copies JetStream keeps of each stream it creates (`num_replicas`):
    /// 3 on a cluster of three or more lets the streams survive a node.
    pub replicas: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: "ORDERS".into(),
            subject: "orders".into(),
            consumer: "order-cache".into(),
            dlq_subject: "orders.dlq".into(),
            batch_size: 1000,
            max_batch_bytes: 8 * 1024 * 1024,
            pull_expires: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            tracer: Tracer::default(),
            replicas: 1,
        }
    }
}

impl IngestConfig {
    /// The stream dead letters are kept in: [`dead_letter_stream`] of
    /// `stream`.
    pub fn dlq_stream(&self) -> String {
        dead_letter_stream(&self.stream)
    }
}

/// The stream that keeps the dead letters of the orders in `stream`:
/// `{stream}_DLQ`. The service, the producer and the dead-letter tool all
/// name it this way.
pub fn dead_letter_stream(stream: &str) -> String {
    format!("{stream}_DLQ")
}

/// What went wrong setting up or running the consumer.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The durable consumer exists with settings that would lose messages
    /// or deliver the wrong ones, and JetStream would not update them.
    #[error(
        "durable consumer {consumer} exists with settings this service cannot use \
         ({}); delete it or change its settings",
        differences.join("; ")
    )]
    ConsumerMismatch {
        /// Name of the consumer.
        consumer: String,
        /// Each setting that differs, as `setting: found X, need Y`.
        differences: Vec<String>,
    },
    /// The stream or consumer could not be created or read.
    #[error("cannot set up JetStream {what}")]
    Setup {
        /// Which object.
        what: String,
        /// Why.
        #[source]
        source: async_nats::Error,
    },
}

/// Moves orders from JetStream into the [`Store`] and the [`Cache`].
///
/// A message is acknowledged only after its order is committed to PostgreSQL
/// and inserted into the cache. A payload that is not an order, or that
/// PostgreSQL refuses, is published to the dead-letter subject with its
/// reason, then terminated. While PostgreSQL is unreachable messages are
/// nak'ed with a growing delay and nothing is lost.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{Cache, IngestConfig, Ingestor, Metrics, Store, StoreConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))?;
/// let nats = async_nats::connect("127.0.0.1:4222").await?;
/// let ingestor = Ingestor::new(
///     async_nats::jetstream::new(nats),
///     store,
///     Cache::new(),
///     Metrics::new(),
///     IngestConfig::default(),
/// )
/// .await?;
/// ingestor.run(async { tokio::signal::ctrl_c().await.ok(); }).await;
/// # Ok(())
/// # }
/// ```
pub struct Ingestor {
    js: jetstream::Context,
    store: Store,
    cache: Cache,
    metrics: Metrics,
    config: IngestConfig,
    consumer: PullConsumer,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Creates the orders stream, the dead-letter stream and the durable
/// consumer where they are missing; returns the consumer.
///
/// A producer can call it too, so that orders published before the service
/// ever ran are kept (`examples/producer.rs --ensure-stream` does).
///
/// # Examples
///
/// ```no_run
/// use order_cache::ingest::{ensure_topology, IngestConfig};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let js = async_nats::jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
/// let consumer = ensure_topology(&js, &IngestConfig::default()).await?;
/// # let _ = consumer;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`IngestError::Setup`] when JetStream refuses or does not answer.
pub async fn ensure_topology(
    js: &jetstream::Context,
    config: &IngestConfig,
) -> Result<PullConsumer, IngestError> {
    let setup = |what: &str| {
        let what = what.to_owned();
        move |e: async_nats::Error| IngestError::Setup { what, source: e }
    };
    let orders = js
        .get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![config.subject.clone()],
            storage: stream::StorageType::File,
            duplicate_window: config.duplicate_window,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("stream {}", config.stream))(e.into()))?;
    js.get_or_create_stream(stream::Config {
        name: config.dlq_stream(),
        subjects: vec![config.dlq_subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| setup(&format!("stream {}", config.dlq_stream()))(e.into()))?;
    let wanted = consumer_config(config);
    let consumer_setup = || setup(&format!("consumer {}", config.consumer));
    let mut consumer: PullConsumer = orders
        .get_or_create_consumer(&config.consumer, wanted.clone())
        .await
        .map_err(|e| consumer_setup()(e.into()))?;
    let differences = |found: &consumer::Config| consumer_differences(found, &wanted, config);
    if differences(&consumer.cached_info().config).is_empty() {
        return Ok(consumer);
    }
    // A consumer made earlier (by another version, or by hand) with a
    // finite max_deliver or another ack_wait would silently drop messages
    // during an outage. Creating it again with our settings updates what
    // JetStream lets change; what it does not is an error.
    warn!(consumer = %config.consumer, "durable consumer settings differ; updating");
    if let Ok(updated) = orders.create_consumer(wanted.clone()).await {
        consumer = updated;
    }
    let info = consumer
        .get_info()
        .await
        .map_err(|e| consumer_setup()(e.into()))?;
    let differences = differences(&info.config);
    if differences.is_empty() {
        Ok(consumer)
    } else {
        Err(IngestError::ConsumerMismatch {
            consumer: config.consumer.clone(),
            differences,
        })
    }
}

/// The durable consumer this service needs.
fn consumer_config(config: &IngestConfig) -> pull::Config {
    pull::Config {
        durable_name: Some(config.consumer.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: config.ack_wait,
        filter_subject: config.subject.clone(),
        // Never give up on a message: one that cannot be stored
        // because PostgreSQL is down must be retried until it is.
        max_deliver: -1,
        max_ack_pending: i64::try_from(config.batch_size * 20).unwrap_or(20_000),
        ..Default::default()
    }
}

/// The settings of an existing consumer that differ from what this service
/// needs, as `setting: found X, need Y`.
fn consumer_differences(
    found: &consumer::Config,
    wanted: &pull::Config,
    config: &IngestConfig,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, found: String, wanted: String| {
        if found != wanted {
            out.push(format!("{name}: found {found}, need {wanted}"));
        }
    };
    let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
    for (name, f, w) in [
        (
            "ack_policy",
            debug(&found.ack_policy),
            debug(&wanted.ack_policy),
        ),
        (
            "deliver_policy",
            debug(&found.deliver_policy),
            debug(&wanted.deliver_policy),
        ),
        ("ack_wait", debug(&found.ack_wait), debug(&wanted.ack_wait)),
        (
            "filter_subject",
            debug(&found.filter_subject),
            debug(&wanted.filter_subject),
        ),
        (
            "replay_policy",
            debug(&found.replay_policy),
            debug(&wanted.replay_policy),
        ),
    ] {
        check(name, f, w);
    }
    // -1 and 0 both mean "no limit" to the server.
    let unlimited = |n: i64| if n <= 0 { -1 } else { n };
    check(
        "max_deliver",
        unlimited(found.max_deliver).to_string(),
        unlimited(wanted.max_deliver).to_string(),
    );
    check(
        "max_ack_pending",
        found.max_ack_pending.to_string(),
        wanted.max_ack_pending.to_string(),
    );
    check(
        "push delivery",
        format!("{:?}", found.deliver_subject),
        "None".into(),
    );
    check(
        "headers_only",
        found.headers_only.to_string(),
        "false".into(),
    );
    // Limits on a pull request: one below what this service asks for makes
    // the server refuse every pull, and nothing is consumed.
    let limit = |n: i64| if n <= 0 { None } else { Some(n) };
    let at_least = |name: &str, found: Option<i64>, need: i64| {
        found
            .filter(|&n| n < need)
            .map(|n| format!("{name}: found {n}, need at least {need} or no limit"))
    };
    let need_batch = i64::try_from(config.batch_size).unwrap_or(i64::MAX);
    out.extend(at_least("max_batch", limit(found.max_batch), need_batch));
    if found.max_bytes > 0 {
        out.push(format!(
            "max_bytes: found {}, need no limit (a message may be as large as the server allows)",
            found.max_bytes
        ));
    }
    if !found.max_expires.is_zero() && found.max_expires < config.pull_expires {
        out.push(format!(
            "max_expires: found {:?}, need at least {:?} or no limit",
            found.max_expires, config.pull_expires
        ));
    }
    out
}

/// Most batches being written to PostgreSQL at once.
pub(crate) const IN_FLIGHT: usize = 2;
/// How long a batch waits for more messages once they stop arriving.
const LINGER: Duration = Duration::from_millis(5);

/// How one batch ended, for the retry delay.
enum Outcome {
    Done,
    RetryLater,
}

impl Ingestor {
    /// Sets up the streams and the consumer (see [`ensure_topology`]).
    ///
    /// # Errors
    ///
    /// [`IngestError::Setup`] when JetStream refuses or does not answer.
    pub async fn new(
        js: jetstream::Context,
        store: Store,
        cache: Cache,
        metrics: Metrics,
        config: IngestConfig,
    ) -> Result<Ingestor, IngestError> {
        let consumer = ensure_topology(&js, &config).await?;
        Ok(Ingestor {
            js,
            store,
            cache,
            metrics,
            config,
            consumer,
        })
    }

    /// Consumes until `shutdown` completes. The batches in flight when it
    /// does are finished and acknowledged first; messages fetched but not
    /// started are left unacknowledged for redelivery.
    ///
    /// Up to two batches are written at once: while one commits,
    /// the next is collected and decoded, so a batch's size follows the rate
    /// messages arrive at during one commit, up to `batch_size`.
    ///
    /// Meanwhile the consumer's backlog is read every second into
    /// the metrics (`order_cache_consumer_pending_messages`,
    /// `order_cache_consumer_ack_pending_messages`).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let lag = watch_lag(self.consumer.clone(), self.metrics.clone());
        tokio::select! {
            () = self.consume(shutdown) => {}
            () = lag => {}
        }
    }

    async fn consume(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut delay = self.retry_backoff();
        let mut in_flight = FuturesUnordered::new();
        // The pull in use; `None` until (re)created.
        let mut messages: Option<Messages> = None;
        // Whether the pull in use has yielded a message yet: one that ends
        // or fails before any (a consumer limit the server enforces, a
        // broker going away) must not be re-created in a hot loop.
        let mut yielded = false;
        // A batch collected while every slot was busy. Its messages are
        // ours already, so they get progress acks while they wait: with
        // slow batches they would otherwise pass `ack_wait` and be
        // redelivered while still in hand.
        let mut waiting: Option<Vec<Message>> = None;
        // After a failure (of the database, or of a pull): no new batch
        // starts and no pull is made before then, while the batches in
        // flight go on.
        let mut paused_until: Option<tokio::time::Instant> = None;
        let mut ticks = tokio::time::interval(self.keep_alive_every());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if paused_until.is_none() && in_flight.len() < IN_FLIGHT {
                if let Some(batch) = waiting.take() {
                    in_flight.push(self.process(batch));
                }
            }
            let can_pull = paused_until.is_none() && waiting.is_none();
            let has_stream = messages.is_some();
            let resume_at = paused_until;
            let resume = async move {
                match resume_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = async {
                match messages.as_mut() {
                    Some(m) => m.next().await,
                    None => std::future::pending().await,
                }
            };
            let pause = |paused_until: &mut Option<tokio::time::Instant>, delay: &mut Backoff| {
                *paused_until = Some(tokio::time::Instant::now() + delay.next());
            };
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    match outcome {
                        Outcome::Done => delay.reset(),
                        Outcome::RetryLater => pause(&mut paused_until, &mut delay),
                    }
                }
                () = resume => paused_until = None,
                _ = ticks.tick(), if waiting.is_some() => {
                    for m in waiting.iter().flatten() {
                        ack(m, AckKind::Progress).await;
                    }
                }
                pulled = self.pull(), if can_pull && !has_stream => match pulled {
                    Ok(m) => {
                        messages = Some(m);
                        yielded = false;
                    }
                    Err(e) => {
                        warn!(error = %Report(&*e), "cannot pull from JetStream; retrying");
                        pause(&mut paused_until, &mut delay);
                    }
                },
                first = next, if can_pull && has_stream => {
                    let batch = match (first, messages.as_mut()) {
                        (Some(first), Some(stream)) => {
                            yielded |= first.is_ok();
                            let (batch, broken) = self.collect(first, stream).await;
                            if broken {
                                messages = None;
                            }
                            batch
                        }
                        _ => {
                            messages = None;
                            Vec::new()
                        }
                    };
                    if messages.is_none() && !yielded {
                        warn!("pull ended before any message; retrying later");
                        pause(&mut paused_until, &mut delay);
                    }
                    if !batch.is_empty() {
                        // Waiting starts now: the first progress ack is due
                        // a full period later.
                        ticks.reset();
                        waiting = Some(batch);
                    }
                }
            }
        }
        // A batch not started goes back at once, to this consumer's other
        // instances; what was started is finished: those messages are
        // acknowledged only once their orders are committed.
        for m in waiting.iter().flatten() {
            ack(m, AckKind::Nak(None)).await;
        }
        while in_flight.next().await.is_some() {}
    }

    /// Collects a batch: `first`, then whatever arrives until the batch is
    /// full or the stream pauses for [`LINGER`]. Returns the messages and
    /// whether the stream failed (and must be re-created).
    async fn collect(
        &self,
        first: Result<Message, MessagesError>,
        messages: &mut Messages,
    ) -> (Vec<Message>, bool) {
        let mut batch = Vec::with_capacity(self.config.batch_size);
        let mut bytes = 0;
        let mut next = Some(first);
        loop {
            match next {
                Some(Ok(m)) => {
                    bytes += m.payload.len();
                    batch.push(m);
                }
                Some(Err(e)) => {
                    warn!(error = %Report(&e), "pull stream failed; re-subscribing");
                    return (batch, true);
                }
                None => return (batch, true),
            }
            if batch.len() >= self.config.batch_size || bytes >= self.config.max_batch_bytes {
                return (batch, false);
            }
            match tokio::time::timeout(LINGER, messages.next()).await {
                Ok(item) => next = item,
                Err(_) => return (batch, false),
            }
        }
    }

    async fn pull(&self) -> Result<Messages, async_nats::Error> {
        let consumer = match self.consumer.get_info().await {
            Ok(_) => self.consumer.clone(),
            // The consumer may have been deleted, or the server replaced:
            // make sure the topology exists again.
            Err(_) => ensure_topology(&self.js, &self.config).await?,
        };
        let expires = self.config.pull_expires;
        // The server never sends a message larger than a pull's byte limit
        // (it fails the pull instead), so the limit leaves room for the
        // largest message the server accepts.
        let max_payload = self.js.client().server_info().max_payload;
        let max_bytes = (self.config.max_batch_bytes * IN_FLIGHT).max(2 * max_payload + 64 * 1024);
        Ok(consumer
            .stream()
            // Two batches' worth, so the next batch is on its way while
            // one is written: with one, ingest fell to 0.73x of the
            // database's ceiling. Messages collected into a batch are kept
            // alive (in flight, or waiting for a slot); what waits unseen
            // in the client's buffer waits at most about one batch.
            .max_messages_per_batch(self.config.batch_size * IN_FLIGHT)
            .max_bytes_per_batch(max_bytes)
            .expires(expires)
            .heartbeat(expires / 3)
            .messages()
            .await?)
    }

    /// Decodes, stores, caches and acknowledges one batch, telling the
    /// server meanwhile that its messages are still being worked on.
    async fn process(&self, messages: Vec<Message>) -> Outcome {
        if messages.is_empty() {
            return Outcome::Done;
        }
        let started = Instant::now();
        let work = self.keep_alive(&messages, self.handle(&messages));
        let outcome = self
            .config
            .tracer
            .batch(&self.config, &messages, work)
            .await;
        self.metrics.batch(messages.len(), started.elapsed());
        outcome
    }

    /// Runs `work`, sending a progress ack for every message of the batch
    /// each third of `ack_wait`: a batch slower than `ack_wait` (a slow
    /// database) must not be redelivered while it is still being written,
    /// which would double the load on a database that is already slow.
    async fn keep_alive(
        &self,
        messages: &[Message],
        work: impl Future<Output = Outcome>,
    ) -> Outcome {
        let every = self.keep_alive_every();
        let mut work = std::pin::pin!(work);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                biased;
                outcome = &mut work => return outcome,
                _ = ticks.tick() => {
                    debug!(messages = messages.len(), "batch still in progress");
                    for m in messages {
                        ack(m, AckKind::Progress).await;
                    }
                }
            }
        }
    }

    /// How often messages in hand are reported in progress: a third of
    /// `ack_wait`, so two reports may be lost before one is redelivered.
    fn keep_alive_every(&self) -> Duration {
        (self.config.ack_wait / 3).max(Duration::from_millis(100))
    }

    async fn handle(&self, messages: &[Message]) -> Outcome {
        let mut valid: Vec<(Order, usize)> = Vec::with_capacity(messages.len());
        let mut letters: Vec<DeadLetter> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            match Order::decode(&m.payload) {
                Ok(order) => valid.push((order, i)),
                Err(rejection) => letters.push(DeadLetter {
                    index: i,
                    reason: rejection.reason(),
                    error: Report(&rejection).to_string(),
                }),
            }
        }
        let outcome = self.persist(messages, valid, &mut letters).await;
        self.dead_letter(messages, letters).await;
        outcome
    }

    /// Stores the valid orders, caches exactly what was committed, and acks
    /// or naks their messages. Orders PostgreSQL refuses for their data join
    /// `letters`; any other failure is the database's, and the orders not
    /// yet stored are nak'ed with a growing delay.
    async fn persist(
        &self,
        messages: &[Message],
        valid: Vec<(Order, usize)>,
        letters: &mut Vec<DeadLetter>,
    ) -> Outcome {
        if valid.is_empty() {
            return Outcome::Done;
        }
        let (orders, index): (Vec<Order>, Vec<usize>) = valid.into_iter().unzip();
        let stored = self.store_all(&orders).await;

        let ingested = stored.fresh.len();
        self.cache.insert(stored.fresh);
        let uncached = self.fill_committed(&orders, &stored.committed).await;
        self.metrics.ingested(ingested);
        self.metrics.cache(&self.cache.snapshot());
        let committed = stored.committed.iter().filter(|c| **c).count();
        self.metrics.duplicates(committed - ingested);

        let mut refused: HashMap<usize, String> = stored.refused.into_iter().collect();
        for (i, &m) in index.iter().enumerate() {
            let message = &messages[m];
            if stored.committed[i] && !uncached.contains(&orders[i].order_uid) {
                ack(message, AckKind::Ack).await;
            } else if let Some(error) = refused.remove(&i) {
                letters.push(DeadLetter {
                    index: m,
                    reason: "database",
                    error,
                });
            } else {
                ack(message, AckKind::Nak(Some(self.backoff(message)))).await;
            }
        }
        if stored.failed {
            Outcome::RetryLater
        } else {
            Outcome::Done
        }
    }

    /// Caches the committed orders this batch did not insert and the cache
    /// lacks, read back from PostgreSQL: an order an earlier delivery
    /// committed after the client had given up on it (a query timeout), or
    /// that another instance stored. Returns the ids that could not be read
    /// because PostgreSQL failed, whose messages must come back later
    /// rather than be acked.
    async fn fill_committed(&self, orders: &[Order], committed: &[bool]) -> HashSet<OrderUid> {
        let missing: HashSet<OrderUid> = orders
            .iter()
            .zip(committed)
            .filter(|(o, c)| **c && self.cache.get(o.order_uid.as_str()).is_none())
            .map(|(o, _)| o.order_uid.clone())
            .collect();
        if missing.is_empty() {
            return missing;
        }
        let ids: Vec<OrderUid> = missing.iter().cloned().collect();
        match self.store.get_many(&ids).await {
            Ok(found) => {
                let mut filled = Vec::with_capacity(found.len());
                for (uid, order) in found {
                    match order {
                        Ok(order) => filled.push((uid, order.to_json())),
                        Err(e) => warn!(error = %Report(&e), "committed order cannot be cached"),
                    }
                }
                self.cache.fill(filled);
                // Read, or gone or inconsistent in PostgreSQL (logged; a
                // lookup answers it with a clear error): nothing left that
                // a redelivery could mend.
                HashSet::new()
            }
            Err(e) => {
                warn!(error = %Report(&e), "cannot read committed orders back; will retry");
                missing
            }
        }
    }

    /// Inserts `orders`, splitting a batch PostgreSQL refuses for its data in
    /// halves until the refused orders are alone. Stops at the first failure
    /// that is the database's.
    async fn store_all(&self, orders: &[Order]) -> Stored {
        let mut stored = Stored {
            committed: vec![false; orders.len()],
            ..Stored::default()
        };
        // Ranges of `orders` still to store.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..orders.len());
        while let Some(range) = pending.pop() {
            let insert = self.store.insert(&orders[range.clone()]);
            match self.config.tracer.insert(range.len(), insert).await {
                Ok(ids) => {
                    stored
                        .fresh
                        .extend(committed_json(&orders[range.clone()], ids));
                    stored.committed[range].iter_mut().for_each(|c| *c = true);
                }
                Err(e) if e.is_refusal() && range.len() > 1 => {
                    debug!(error = %Report(&e), len = range.len(), "batch refused; splitting");
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e) if e.is_refusal() => {
                    stored.refused.push((range.start, Report(&e).to_string()))
                }
                Err(e) => {
                    warn!(error = %Report(&e), "cannot store orders; will retry");
                    self.metrics.store_error();
                    stored.failed = true;
                    break;
                }
            }
        }
        stored
    }

    /// How long to wait before this message comes back: doubling with each
    /// delivery, from `retry_delay` up to `max_retry_delay`.
    fn backoff(&self, message: &Message) -> Duration {
        let delivered = message.info().map_or(1, |i| i.delivered).max(1);
        self.retry_backoff()
            .nth(u64::try_from(delivered).unwrap_or(u64::MAX))
    }

    /// `retry_delay` doubling up to `max_retry_delay`.
    fn retry_backoff(&self) -> Backoff {
        Backoff::new(self.config.retry_delay, self.config.max_retry_delay)
    }

    /// Publishes each rejected message, with its reason, to the dead-letter
    /// subject, then terminates it. A payload too large to travel with the
    /// letter's headers is left out of the letter, which then points at the
    /// original in the source stream. A message that cannot be dead-lettered
    /// at all is nak'ed with a growing delay; the messages behind it go on.
    async fn dead_letter(&self, messages: &[Message], letters: Vec<DeadLetter>) {
        let mut acks = Vec::with_capacity(letters.len());
        for letter in letters {
            let message = &messages[letter.index];
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            warn!(
                reason = letter.reason,
                error = %letter.error,
                stream_sequence = seq,
                "order rejected; dead-lettered"
            );
            let size = message.payload.len();
            let mut publish = self
                .publish_letter(&letter, message, seq, size, message.payload.clone())
                .await;
            if let Err(e) = &publish {
                if e.kind() == PublishErrorKind::MaxPayloadExceeded {
                    publish = self
                        .publish_letter(&letter, message, seq, size, Bytes::new())
                        .await;
                }
            }
            acks.push((message, letter.reason, publish));
        }
        let mut failed = false;
        for (message, reason, publish) in acks {
            let stored = match publish {
                Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
                Err(e) => Err(e.into()),
            };
            match stored {
                Ok(()) => {
                    self.metrics.rejected(reason);
                    ack(message, AckKind::Term).await;
                }
                Err(e) => {
                    warn!(error = %Report(&*e), "cannot dead-letter; will retry");
                    ack(message, AckKind::Nak(Some(self.backoff(message)))).await;
                    failed = true;
                }
            }
        }
        if failed {
            // The dead-letter stream may have been deleted (a natural way
            // to empty it): make it again, or every rejected message would
            // be nak'ed forever and, at max_ack_pending, stop ingestion.
            if let Err(e) = ensure_topology(&self.js, &self.config).await {
                warn!(error = %Report(&e), "cannot set up the streams again");
            }
        }
    }

    /// Publishes one letter carrying `payload`; when that is not the whole
    /// original (`size` bytes), the letter says so and points at it. The
    /// letter keeps the original's trace context.
    async fn publish_letter(
        &self,
        letter: &DeadLetter,
        original: &Message,
        seq: u64,
        size: usize,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REASON_HEADER, letter.reason);
        headers.insert(ERROR_HEADER, header_text(&letter.error).as_str());
        headers.insert(SEQUENCE_HEADER, seq.to_string().as_str());
        headers.insert(SOURCE_STREAM_HEADER, self.config.stream.as_str());
        if payload.len() != size {
            headers.insert(PAYLOAD_OMITTED_HEADER, size.to_string().as_str());
        }
        crate::trace::keep_context(original.headers.as_ref(), &mut headers);
        // Redelivery of the same bad message must not be dead-lettered
        // twice.
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{}-{}", self.config.stream, seq).as_str(),
        );
        self.js
            .publish_with_headers(self.config.dlq_subject.clone(), headers, payload)
            .await
    }
}

/// How often [`Ingestor::run`] reads the consumer's backlog.
pub(crate) const LAG_EVERY: Duration = Duration::from_secs(1);

/// Reads the consumer's backlog into `metrics` every [`LAG_EVERY`], for
/// ever. A failed read (NATS away, the consumer being re-created) leaves
/// the last values: readiness says when NATS is away.
async fn watch_lag(consumer: PullConsumer, metrics: Metrics) {
    let mut ticks = tokio::time::interval(LAG_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match consumer.get_info().await {
            Ok(info) => metrics.consumer(info.num_pending, info.num_ack_pending),
            Err(e) => debug!(error = %Report(&e), "cannot read the consumer's backlog"),
        }
    }
}

/// A message to dead-letter: where it is in its batch, and why.
struct DeadLetter {
    index: usize,
    reason: &'static str,
    error: String,
}

/// What [`Ingestor::store_all`] did with a batch's orders.
#[derive(Default)]
struct Stored {
    /// By position in the batch: whether the order is in PostgreSQL now
    /// (inserted by this batch, or there already).
    committed: Vec<bool>,
    /// The orders this batch inserted, as the cache must hold them.
    fresh: Vec<(OrderUid, Bytes)>,
    /// Orders PostgreSQL refused, by position, with its reason.
    refused: Vec<(usize, String)>,
    /// Whether it stopped at a failure of the database.
    failed: bool,
}

/// The response bytes of the orders one successful insert of `orders`
/// stored (`ids`): for each id, its first occurrence in `orders`, which is
/// the one the insert kept. Taken per insert, not per batch, so that an id
/// whose first copy was refused is cached with the copy that was stored.
fn committed_json(orders: &[Order], ids: Vec<OrderUid>) -> Vec<(OrderUid, Bytes)> {
    let mut ids: HashSet<OrderUid> = ids.into_iter().collect();
    orders
        .iter()
        .filter(|o| ids.remove(&o.order_uid))
        .map(|o| (o.order_uid.clone(), o.to_json()))
        .collect()
}

async fn ack(message: &Message, kind: AckKind) {
    // A lost ack only means a redelivery, which the store absorbs.
    if let Err(e) = message.ack_with(kind).await {
        debug!(error = %Report(&*e), "acknowledgement not sent");
    }
}

/// Header values are one line of visible text.
fn header_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if out.is_empty() {
        out.push('-');
    }
    out
}
