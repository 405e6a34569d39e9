//! The JetStream consumer: pulls orders in batches, stores them, caches them,
//! and only then acknowledges them; dead-letters what cannot be an order.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, MessagesError, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::jetstream::{self, stream};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tracing::{debug, warn};

use crate::cache::Cache;
use crate::metrics::Metrics;
use crate::model::{Order, OrderUid};
use crate::store::Store;

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
///     dlq_stream: "SHOP_ORDERS_DLQ".into(),
///     dlq_subject: "shop.orders.dlq".into(),
///     batch_size: 500,
///     ..IngestConfig::default()
/// };
/// assert_eq!(config.consumer, "order-cache");
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
    /// Stream holding dead letters.
    pub dlq_stream: String,
    /// Subject dead letters are published to.
    pub dlq_subject: String,
    /// Most messages processed (and written to PostgreSQL) at once.
    pub batch_size: usize,
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
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            stream: "ORDERS".into(),
            subject: "orders".into(),
            consumer: "order-cache".into(),
            dlq_stream: "ORDERS_DLQ".into(),
            dlq_subject: "orders.dlq".into(),
            batch_size: 1000,
            pull_expires: Duration::from_secs(5),
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// What went wrong setting up or running the consumer.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The stream or consumer could not be created or read.
    #[error("cannot set up JetStream {what}: {source}")]
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
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("stream {}", config.stream))(e.into()))?;
    js.get_or_create_stream(stream::Config {
        name: config.dlq_stream.clone(),
        subjects: vec![config.dlq_subject.clone()],
        storage: stream::StorageType::File,
        duplicate_window: config.duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(|e| setup(&format!("stream {}", config.dlq_stream))(e.into()))?;
    orders
        .get_or_create_consumer(
            &config.consumer,
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
            },
        )
        .await
        .map_err(|e| setup(&format!("consumer {}", config.consumer))(e.into()))
}

/// Most batches being written to PostgreSQL at once.
pub const IN_FLIGHT: usize = 2;
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
    /// Up to [`IN_FLIGHT`] batches are written at once: while one commits,
    /// the next is collected and decoded, so a batch's size follows the rate
    /// messages arrive at during one commit, up to `batch_size`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut delay = self.config.retry_delay;
        let mut in_flight = FuturesUnordered::new();
        'pull: loop {
            let messages = tokio::select! {
                biased;
                () = &mut shutdown => break 'pull,
                m = self.pull() => m,
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "cannot pull from JetStream; retrying");
                    if self.pause(&mut shutdown, &mut delay).await {
                        break 'pull;
                    }
                    continue;
                }
            };
            loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'pull,
                    Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                        match outcome {
                            Outcome::Done => delay = self.config.retry_delay,
                            Outcome::RetryLater => {
                                if self.pause(&mut shutdown, &mut delay).await {
                                    break 'pull;
                                }
                            }
                        }
                    }
                    first = messages.next(), if in_flight.len() < IN_FLIGHT => {
                        let Some(first) = first else { continue 'pull };
                        let (batch, broken) = self.collect(first, &mut messages).await;
                        in_flight.push(self.process(batch));
                        if broken {
                            continue 'pull;
                        }
                    }
                }
            }
        }
        // Finish what was started: those messages are acknowledged only
        // once their orders are committed.
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
        let mut next = Some(first);
        loop {
            match next {
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => {
                    warn!(error = %e, "pull stream failed; re-subscribing");
                    return (batch, true);
                }
                None => return (batch, true),
            }
            if batch.len() >= self.config.batch_size {
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
        Ok(consumer
            .stream()
            // Keep a second batch's worth arriving while one is written.
            .max_messages_per_batch(self.config.batch_size * IN_FLIGHT)
            .expires(expires)
            .heartbeat(expires / 3)
            .messages()
            .await?)
    }

    /// Sleeps for the current delay and doubles it; true if shutdown came
    /// first.
    async fn pause(
        &self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
        delay: &mut Duration,
    ) -> bool {
        let wait = *delay;
        *delay = (*delay * 2).min(self.config.max_retry_delay);
        tokio::select! {
            biased;
            () = shutdown => true,
            () = tokio::time::sleep(wait) => false,
        }
    }

    /// Decodes, stores, caches and acknowledges one batch.
    async fn process(&self, messages: Vec<Message>) -> Outcome {
        if messages.is_empty() {
            return Outcome::Done;
        }
        let started = Instant::now();
        let size = messages.len();
        let mut valid: Vec<(Order, Message)> = Vec::with_capacity(size);
        let mut letters: Vec<(Message, &'static str, String)> = Vec::new();
        for m in messages {
            match Order::decode(&m.payload) {
                Ok(order) => valid.push((order, m)),
                Err(rejection) => {
                    let reason = rejection.reason();
                    letters.push((m, reason, rejection.to_string()));
                }
            }
        }

        let outcome = self.persist(valid, &mut letters).await;
        self.dead_letter(letters).await;
        self.metrics.batch(size, started.elapsed());
        outcome
    }

    /// Stores the valid orders. A batch PostgreSQL refuses is split in halves
    /// until the refused orders are alone; those join `letters`.
    async fn persist(
        &self,
        valid: Vec<(Order, Message)>,
        letters: &mut Vec<(Message, &'static str, String)>,
    ) -> Outcome {
        if valid.is_empty() {
            return Outcome::Done;
        }
        let (orders, messages): (Vec<Order>, Vec<Message>) = valid.into_iter().unzip();
        let mut committed = vec![false; orders.len()];
        let mut refused: Vec<(usize, String)> = Vec::new();
        let mut inserted: HashSet<OrderUid> = HashSet::new();
        // Ranges of `orders` still to store; split on refusal.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..orders.len());
        let mut outcome = Outcome::Done;
        while let Some(range) = pending.pop() {
            match self.store.insert(&orders[range.clone()]).await {
                Ok(ids) => {
                    inserted.extend(ids);
                    committed[range].iter_mut().for_each(|c| *c = true);
                }
                Err(e) if !e.is_transient() && range.len() > 1 => {
                    debug!(error = %e, len = range.len(), "batch refused; splitting");
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                // A single order refused while PostgreSQL itself answers is
                // the order's fault; anything else may pass on a retry.
                Err(e) if !e.is_transient() && self.store.ping().await.is_ok() => {
                    refused.push((range.start, e.to_string()));
                }
                Err(e) => {
                    warn!(error = %e, "cannot store orders; will retry");
                    self.metrics.store_error();
                    outcome = Outcome::RetryLater;
                    break;
                }
            }
        }

        // Cache what this batch inserted, in batch order, first occurrence
        // of an id only: the same order the store kept.
        let mut fresh = Vec::with_capacity(inserted.len());
        for order in &orders {
            if inserted.remove(&order.order_uid) {
                fresh.push((order.order_uid.clone(), order.to_json()));
            }
        }
        let ingested = fresh.len();
        self.cache.insert(fresh);
        self.metrics.ingested(ingested);
        self.metrics.cache(&self.cache.snapshot());

        let refused: HashMap<usize, String> = refused.into_iter().collect();
        let duplicates = committed.iter().filter(|c| **c).count() - ingested;
        let delay = self.config.retry_delay;
        for (i, message) in messages.into_iter().enumerate() {
            if committed[i] {
                ack(&message, AckKind::Ack).await;
            } else if let Some(error) = refused.get(&i) {
                letters.push((message, "database", error.clone()));
            } else {
                ack(&message, AckKind::Nak(Some(delay))).await;
            }
        }
        self.metrics.duplicates(duplicates);
        outcome
    }

    /// Publishes each rejected message, with its reason, to the dead-letter
    /// subject, then terminates it. One that cannot be published is nak'ed
    /// to try again later.
    async fn dead_letter(&self, letters: Vec<(Message, &'static str, String)>) {
        let mut acks = Vec::with_capacity(letters.len());
        for (message, reason, error) in letters {
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            warn!(
                reason,
                error = %error,
                stream_sequence = seq,
                "order rejected; dead-lettered"
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REASON_HEADER, reason);
            headers.insert(ERROR_HEADER, header_text(&error).as_str());
            headers.insert(SEQUENCE_HEADER, seq.to_string().as_str());
            // Redelivery of the same bad message must not be dead-lettered
            // twice.
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                format!("{}-{}", self.config.stream, seq).as_str(),
            );
            let publish = self
                .js
                .publish_with_headers(
                    self.config.dlq_subject.clone(),
                    headers,
                    message.payload.clone(),
                )
                .await;
            acks.push((message, reason, publish));
        }
        for (message, reason, publish) in acks {
            let stored = match publish {
                Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
                Err(e) => Err(e.into()),
            };
            match stored {
                Ok(()) => {
                    self.metrics.rejected(reason);
                    ack(&message, AckKind::Term).await;
                }
                Err(e) => {
                    warn!(error = %e, "cannot dead-letter; will retry");
                    ack(&message, AckKind::Nak(Some(self.config.retry_delay))).await;
                }
            }
        }
    }
}

async fn ack(message: &Message, kind: AckKind) {
    // A lost ack only means a redelivery, which the store absorbs.
    if let Err(e) = message.ack_with(kind).await {
        debug!(error = %e, "acknowledgement not sent");
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
