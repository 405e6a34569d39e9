//! The JetStream consumer: pulls orders in batches, stores them, caches them,
//! and only then acknowledges them; dead-letters what cannot be an order.
//!
//! - `topology`: the streams and the durable consumer, set up and checked;
//! - the pull loop, here: batches pulled, kept alive, processed two at a
//!   time;
//! - `persist`: one batch stored (split and retried on a refusal), cached
//!   and acknowledged;
//! - `dead_letter`: what is rejected, published with its reason.

mod dead_letter;
mod persist;
mod topology;

pub use dead_letter::{
    DeadLetter, ERROR_HEADER, PAYLOAD_OMITTED_HEADER, REASONS, REASON_HEADER, SEQUENCE_HEADER,
    SOURCE_STREAM_HEADER,
};
pub use topology::ensure_topology;

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::{MessagesError, MessagesErrorKind, Stream as Messages};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::{AckKind, Message};
use futures::future::{Fuse, FusedFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tracing::{debug, warn};

use crate::backoff::Backoff;
use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::model::UnknownFields;
use crate::report::Report;
use crate::store::Store;
use crate::trace::Tracer;

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
    /// What to do with a field the model does not know: keep it (the
    /// default) or dead-letter the order.
    pub unknown_fields: UnknownFields,
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
            unknown_fields: UnknownFields::Keep,
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
#[derive(Clone)]
pub struct Ingestor {
    js: jetstream::Context,
    store: Store,
    cache: Cache,
    metrics: Metrics,
    config: IngestConfig,
    consumer: PullConsumer,
    new_fields: persist::NewFields,
}

impl std::fmt::Debug for Ingestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Most batches being written to PostgreSQL at once.
pub(crate) const IN_FLIGHT: usize = 2;
/// How long a batch waits for more messages once they stop arriving.
const LINGER: Duration = Duration::from_millis(5);
/// How often the server tells an idle pull that it is still there (at most:
/// a third of `pull_expires` when that is shorter). Two missed in a row end
/// the pull, which is made again at once.
///
/// This is how fast a dead node is noticed: when the node leading the
/// consumer dies, its pull goes silent, and a new pull reaches the new
/// leader within about two heartbeats of its election (nats-server 2.9 took
/// 3.9-8.4 s to elect it in our tests; nothing on this side can shorten
/// that).
///
/// A healthy but slow broker that lets a full second pass without a
/// heartbeat loses nothing by it: its pull is dropped and another made, and what it
/// sends to the dropped pull is never acknowledged, so the server
/// redelivers it after `ack_wait` and the store writes each order once
/// (`ON CONFLICT DO NOTHING`). The cost is that delay, never a message.
const PULL_HEARTBEAT: Duration = Duration::from_millis(500);

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
            new_fields: persist::NewFields::default(),
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
        let mut in_flight = FuturesUnordered::new();
        let mut pull = Pull::default();
        // After a failure (of the database, or of a pull): no new batch
        // starts and no pull is made before then, while the batches in
        // flight go on.
        let mut pause = Pause::new(self.retry_backoff());
        // A batch collected while every slot was busy. Its messages are
        // ours already, so they get progress acks while they wait: with
        // slow batches they would otherwise pass `ack_wait` and be
        // redelivered while still in hand.
        let mut waiting: Option<Vec<Message>> = None;
        let mut ticks = tokio::time::interval(self.keep_alive_every());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the consumer still exists, asked when a pull is made; it
        // runs beside the pull and never holds it up (see `check_topology`).
        let mut check = std::pin::pin!(Fuse::terminated());
        loop {
            if !pause.is_on() && in_flight.len() < IN_FLIGHT {
                if let Some(batch) = waiting.take() {
                    in_flight.push(self.process(batch));
                }
            }
            let can_pull = !pause.is_on() && waiting.is_none();
            let has_stream = pull.messages.is_some();
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                    Outcome::Done => pause.succeeded(),
                    Outcome::RetryLater => pause.start(),
                },
                () = pause.over() => pause.end(),
                remade = &mut check, if !check.is_terminated() => {
                    // A pull made before the consumer was made again waits
                    // on nothing: made again at once.
                    if remade && !pull.yielded {
                        pull.messages = None;
                    }
                }
                _ = ticks.tick(), if waiting.is_some() => {
                    for m in waiting.iter().flatten() {
                        ack(m, AckKind::Progress).await;
                    }
                }
                pulled = self.pull(), if can_pull && !has_stream => match pulled {
                    Ok(messages) => {
                        pull.started(messages);
                        if check.is_terminated() {
                            check.set(self.check_topology().fuse());
                        }
                    }
                    Err(e) => {
                        warn!(error = %Report(&*e), "cannot pull from JetStream; retrying");
                        pause.start();
                    }
                },
                first = pull.next(), if can_pull && has_stream => {
                    let batch = self.collect_from(&mut pull, first).await;
                    if pull.ended_empty() {
                        warn!("pull ended before any message; retrying later");
                        pause.start();
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

    /// The batch that `first` starts, collected from the pull in use; a
    /// pull that failed or ended is dropped, to be made again.
    async fn collect_from(
        &self,
        pull: &mut Pull,
        first: Option<Result<Message, MessagesError>>,
    ) -> Vec<Message> {
        let (Some(first), Some(messages)) = (first, pull.messages.as_mut()) else {
            pull.messages = None;
            return Vec::new();
        };
        pull.yielded |= first.is_ok();
        let (batch, broken) = self.collect(first, messages).await;
        if let Some(ended) = broken {
            pull.messages = None;
            pull.silent = ended == Ended::Silent;
        }
        batch
    }

    /// Collects a batch: `first`, then whatever arrives until the batch is
    /// full or the stream pauses for [`LINGER`]. Returns the messages and,
    /// if the stream failed or ended (and must be re-created), how.
    async fn collect(
        &self,
        first: Result<Message, MessagesError>,
        messages: &mut Messages,
    ) -> (Vec<Message>, Option<Ended>) {
        let mut batch = Vec::with_capacity(self.config.batch_size);
        let mut bytes = 0;
        let mut next = Some(first);
        let mut graced = false;
        loop {
            match next {
                Some(Ok(m)) => {
                    bytes += m.payload.len();
                    batch.push(m);
                }
                Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat && !graced => {
                    // The heartbeat may be waiting in the connection: after
                    // the process was not scheduled for a while (a stopped
                    // process, CPU starvation, a VM's steal) the timer can
                    // fire before the connection hands over what arrived
                    // meanwhile. Dropping a pull that still delivers costs
                    // what the broker sent to it: `ack_wait` until it comes
                    // back. So one more look, as long as one heartbeat.
                    graced = true;
                    match tokio::time::timeout(PULL_HEARTBEAT, messages.next()).await {
                        Ok(item) => {
                            next = item;
                            continue;
                        }
                        Err(_) => {
                            warn!(error = %Report(&e), "pull stream silent; re-subscribing");
                            return (batch, Some(Ended::Silent));
                        }
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %Report(&e), "pull stream failed; re-subscribing");
                    let ended = match e.kind() {
                        MessagesErrorKind::MissingHeartbeat => Ended::Silent,
                        _ => Ended::Failed,
                    };
                    return (batch, Some(ended));
                }
                None => return (batch, Some(Ended::Failed)),
            }
            if batch.len() >= self.config.batch_size || bytes >= self.config.max_batch_bytes {
                return (batch, None);
            }
            match tokio::time::timeout(LINGER, messages.next()).await {
                Ok(item) => next = item,
                Err(_) => return (batch, None),
            }
        }
    }

    /// A new pull on the consumer. It asks JetStream nothing first: during
    /// the election that follows the death of the consumer's leader a
    /// request goes unanswered until the client's request timeout (10 s),
    /// while a pull reaches the new leader as soon as it is elected.
    async fn pull(&self) -> Result<Messages, async_nats::Error> {
        let expires = self.config.pull_expires;
        // The server never sends a message larger than a pull's byte limit
        // (it fails the pull instead), so the limit leaves room for the
        // largest message the server accepts.
        let max_payload = self.js.client().server_info().max_payload;
        let max_bytes = (self.config.max_batch_bytes * IN_FLIGHT).max(2 * max_payload + 64 * 1024);
        Ok(self
            .consumer
            .stream()
            // Two batches' worth, so the next batch is on its way while
            // one is written: with one, ingest fell to 0.73x of the
            // database's ceiling. Messages collected into a batch are kept
            // alive (in flight, or waiting for a slot); what waits unseen
            // in the client's buffer waits at most about one batch.
            .max_messages_per_batch(self.config.batch_size * IN_FLIGHT)
            .max_bytes_per_batch(max_bytes)
            .expires(expires)
            .heartbeat(PULL_HEARTBEAT.min(expires / 3))
            .messages()
            .await?)
    }

    /// Re-creates the streams and the consumer if the consumer's info cannot
    /// be read (it was deleted, or the server replaced without its
    /// storage), so that the next pull finds it. It takes as long as the
    /// broker does, up to the client's request timeout: it runs beside the
    /// pulls, so a slow answer delays nothing, and re-creating only creates
    /// what is missing. Returns whether it set JetStream up again.
    async fn check_topology(&self) -> bool {
        let Err(e) = self.consumer.get_info().await else {
            return false;
        };
        debug!(error = %Report(&e), "cannot read the consumer's info; setting up JetStream again");
        match ensure_topology(&self.js, &self.config).await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %Report(&e), "cannot set up JetStream; retrying with the next pull");
                false
            }
        }
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
}

/// Why a pull was dropped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Two heartbeats missed: the node serving it may be gone.
    Silent,
    /// Failed or ended otherwise.
    Failed,
}

/// The pull in use, if any.
#[derive(Default)]
struct Pull {
    /// `None` until (re)created.
    messages: Option<Messages>,
    /// Whether it has yielded a message yet: one that ends or fails before
    /// any (a consumer limit the server enforces, a broker going away) must
    /// not be re-created in a hot loop.
    yielded: bool,
    /// Whether it was dropped for missed heartbeats: it waited two
    /// heartbeats already, so it is made again at once, with no pause,
    /// to reach a newly elected leader soon.
    silent: bool,
}

impl Pull {
    fn started(&mut self, messages: Messages) {
        self.messages = Some(messages);
        self.yielded = false;
        self.silent = false;
    }

    /// The pull's next message; never, without a pull.
    async fn next(&mut self) -> Option<Result<Message, MessagesError>> {
        match self.messages.as_mut() {
            Some(m) => m.next().await,
            None => std::future::pending().await,
        }
    }

    /// Whether the pull is gone without having yielded a message, for
    /// another reason than silence.
    fn ended_empty(&self) -> bool {
        self.messages.is_none() && !self.yielded && !self.silent
    }
}

/// A pause in pulling and starting batches after a failure, growing with
/// each failure in a row.
struct Pause {
    backoff: Backoff,
    until: Option<tokio::time::Instant>,
}

impl Pause {
    fn new(backoff: Backoff) -> Pause {
        Pause {
            backoff,
            until: None,
        }
    }

    fn is_on(&self) -> bool {
        self.until.is_some()
    }

    /// Pauses for the next delay of the backoff.
    fn start(&mut self) {
        self.until = Some(tokio::time::Instant::now() + self.backoff.next());
    }

    /// A batch went through: the next failure starts from the first delay.
    fn succeeded(&mut self) {
        self.backoff.reset();
    }

    /// Completes when the pause is over; never, when there is none.
    fn over(&self) -> impl Future<Output = ()> + 'static {
        let until = self.until;
        async move {
            match until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }

    fn end(&mut self) {
        self.until = None;
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

async fn ack(message: &Message, kind: AckKind) {
    // A lost ack only means a redelivery, which the store absorbs.
    if let Err(e) = message.ack_with(kind).await {
        debug!(error = %Report(&*e), "acknowledgement not sent");
    }
}
