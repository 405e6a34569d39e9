//! The streams and the durable consumer: created when missing, checked
//! when found.

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};

use tracing::warn;

use super::{IngestConfig, IngestError};

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
