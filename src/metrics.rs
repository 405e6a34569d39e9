//! Prometheus metrics, kept in a registry owned by the service (no global
//! state), rendered as text at `GET /metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// The service's counters. Cheap to clone: clones share the same registry.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `order_cache_orders_ingested_total` | counter | |
/// | `order_cache_orders_duplicate_total` | counter | |
/// | `order_cache_orders_with_unknown_fields_total` | counter | |
/// | `order_cache_orders_rejected_total` | counter | `reason` |
/// | `order_cache_cache_orders` | gauge | |
/// | `order_cache_cache_json_bytes` | gauge | |
/// | `order_cache_cache_bytes` | gauge | |
/// | `order_cache_cache_max_bytes` | gauge | |
/// | `order_cache_cache_evictions_total` | counter | |
/// | `order_cache_http_requests_total` | counter | `route`, `status` |
/// | `order_cache_ingest_batch_seconds` | histogram | |
/// | `order_cache_ingest_batch_size` | histogram | |
/// | `order_cache_store_errors_total` | counter | |
/// | `order_cache_store_inconsistent_orders` | gauge | |
/// | `order_cache_cache_hits_total` | counter | |
/// | `order_cache_cache_misses_total` | counter | |
/// | `order_cache_store_query_seconds` | histogram | `query`: `insert`, `get`, `scan`, `recent`, `ping` |
/// | `order_cache_http_request_seconds` | histogram | `route` |
/// | `order_cache_consumer_pending_messages` | gauge | |
/// | `order_cache_consumer_ack_pending_messages` | gauge | |
/// | `order_cache_ready` | gauge | |
///
/// # Examples
///
/// ```
/// use order_cache::Metrics;
///
/// let metrics = Metrics::new();
/// let text = metrics.render();
/// assert!(text.contains("order_cache_orders_ingested_total 0"));
/// assert!(text.ends_with("# EOF\n"));
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    ingested: Counter,
    duplicates: Counter,
    unknown_fields: Counter,
    rejected: Family<ReasonLabel, Counter>,
    cache_orders: Gauge,
    cache_bytes: Gauge,
    cache_cost: Gauge,
    cache_max_bytes: Gauge,
    cache_evictions: Counter,
    http: Family<HttpLabels, Counter>,
    batch_seconds: Histogram,
    batch_size: Histogram,
    store_errors: Counter,
    inconsistent: Gauge,
    // Plain counters, not a family with a `result` label: a lookup is the
    // hot read path, and a family takes a lock to find its series.
    cache_hits: Counter,
    cache_misses: Counter,
    queries: Histograms,
    http_seconds: Histograms,
    pending: Gauge,
    ack_pending: Gauge,
    ready: Gauge,
    /// Every dead letter whatever its reason, for [`Metrics::status`]; not
    /// exported (the sum of `orders_rejected` says the same).
    dead_letters: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: u16,
}

/// Prefix of every metric name.
const PREFIX: &str = "order_cache";

impl Inner {
    fn register_into(&self, registry: &mut Registry) {
        registry.register(
            "orders_ingested",
            "Orders newly stored and cached",
            self.ingested.clone(),
        );
        registry.register(
            "orders_duplicate",
            "Valid orders whose id was already stored",
            self.duplicates.clone(),
        );
        registry.register(
            "orders_with_unknown_fields",
            "Orders newly stored that carry fields the model does not know (kept as sent)",
            self.unknown_fields.clone(),
        );
        registry.register(
            "orders_rejected",
            "Messages dead-lettered, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "cache_orders",
            "Orders in the cache",
            self.cache_orders.clone(),
        );
        registry.register(
            "cache_json_bytes",
            "Size of the cached JSON bodies",
            self.cache_bytes.clone(),
        );
        registry.register(
            "cache_bytes",
            "Memory the cached orders take as the cache counts it against its \
             budget: JSON, ids, the allocator's rounding and a per-entry overhead",
            self.cache_cost.clone(),
        );
        registry.register(
            "cache_max_bytes",
            "The cache's byte budget (cache_bytes stays below it); 0 when unlimited",
            self.cache_max_bytes.clone(),
        );
        registry.register(
            "cache_evictions",
            "Orders the cache gave up to stay within its budget (served from \
             PostgreSQL when asked for again)",
            self.cache_evictions.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            self.http.clone(),
        );
        registry.register(
            "ingest_batch_seconds",
            "Time to process one batch of messages",
            self.batch_seconds.clone(),
        );
        registry.register(
            "ingest_batch_size",
            "Messages per processed batch",
            self.batch_size.clone(),
        );
        registry.register(
            "store_errors",
            "Batch writes PostgreSQL failed for its own sake (unreachable, read-only, \
             full, timed out, ...); the orders are retried",
            self.store_errors.clone(),
        );
        registry.register(
            "store_inconsistent_orders",
            "Stored orders left out of the cache at the last restore because their \
             rows do not add up",
            self.inconsistent.clone(),
        );
        registry.register(
            "cache_hits",
            "Order lookups answered from the cache",
            self.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Order lookups the cache did not hold (then asked of PostgreSQL, if the \
             id was not missed within the last second)",
            self.cache_misses.clone(),
        );
        registry.register(
            "store_query_seconds",
            "PostgreSQL queries by kind, from asking the pool for a connection to \
             the answer (failures and timeouts included)",
            self.queries.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time to answer an HTTP request, by route",
            self.http_seconds.clone(),
        );
        registry.register(
            "consumer_pending_messages",
            "Messages in the orders stream not yet delivered to the durable consumer \
             (JetStream's num_pending, read every second)",
            self.pending.clone(),
        );
        registry.register(
            "consumer_ack_pending_messages",
            "Messages delivered to the durable consumer and not yet acknowledged \
             (JetStream's num_ack_pending, read every second)",
            self.ack_pending.clone(),
        );
        registry.register(
            "ready",
            "1 when the last readiness check (at /readyz and at each scrape) passed, \
             else 0",
            self.ready.clone(),
        );
    }
}

/// The rejection reasons counted in `orders_rejected`: the model's
/// (`Rejection::reason`) and `database`. Each series exists from the start,
/// at 0, so that `increase()` sees the first dead letter of a reason too (a
/// series born at 1 has no earlier sample to rise from).
const REJECT_REASONS: [&str; 7] = crate::ingest::REASONS;

/// Upper bounds, in seconds, of the latency histograms: from a cache hit
/// (tens of microseconds) to a restore or a query timeout (tens of seconds).
const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// A kind of PostgreSQL query, the `query` label of `store_query_seconds`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Query {
    Insert,
    Get,
    Scan,
    Recent,
    Ping,
}

impl Query {
    const LABELS: [&'static str; 5] = ["insert", "get", "scan", "recent", "ping"];
}

/// A latency histogram whose observations are two relaxed atomic adds:
/// prometheus-client's `Histogram` takes a mutex per observation, which
/// every HTTP request would contend on.
#[derive(Debug)]
struct Latency {
    /// Observations per bucket of [`LATENCY_BUCKETS`], then `+Inf`; not
    /// cumulative (the encoder adds them up).
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observations in nanoseconds: an integer, so that adding
    /// is one atomic instruction; it overflows after 584 years.
    sum_nanos: AtomicU64,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(&self.counts)
            .map(|(le, n)| (le, n.load(Ordering::Relaxed)))
            .collect();
        // The count is the buckets' sum, so `_count` and `le="+Inf"` agree
        // even while requests are observed during the scrape.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }
}

/// One [`Latency`] per value of one label, all known up front (a bounded
/// set), so an observation finds its histogram without a lock and every
/// series is exported from the start.
#[derive(Clone, Debug)]
struct Histograms(Arc<HistogramsInner>);

#[derive(Debug)]
struct HistogramsInner {
    label: &'static str,
    values: &'static [&'static str],
    latencies: Box<[Latency]>,
}

impl Histograms {
    fn new(label: &'static str, values: &'static [&'static str]) -> Histograms {
        Histograms(Arc::new(HistogramsInner {
            label,
            values,
            latencies: values.iter().map(|_| Latency::new()).collect(),
        }))
    }

    /// Observes `took` for the label value at `index` (ignored if none).
    fn observe(&self, index: usize, took: Duration) {
        if let Some(latency) = self.0.latencies.get(index) {
            latency.observe(took);
        }
    }

    fn index_of(&self, value: &str) -> Option<usize> {
        self.0.values.iter().position(|v| *v == value)
    }
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (value, latency) in self.0.values.iter().zip(&self.0.latencies) {
            let labels = [(self.0.label, *value)];
            latency.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// What the page's live status strip shows, as `GET /status` sends it: this
/// instance's counts since it started, and the consumer's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Status {
    /// Orders newly stored and cached.
    pub(crate) orders_ingested: u64,
    /// Messages dead-lettered, whatever the reason.
    pub(crate) dead_letters: u64,
    /// Messages in the stream not yet delivered to the consumer.
    pub(crate) consumer_pending: u64,
    /// Messages delivered and not yet acknowledged.
    pub(crate) consumer_ack_pending: u64,
    /// Orders in the cache.
    pub(crate) cache_orders: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let inner = Inner {
            registry: Registry::default(),
            ingested: Counter::default(),
            duplicates: Counter::default(),
            unknown_fields: Counter::default(),
            rejected: Family::<ReasonLabel, Counter>::default(),
            cache_orders: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_cost: Gauge::default(),
            cache_max_bytes: Gauge::default(),
            cache_evictions: Counter::default(),
            http: Family::<HttpLabels, Counter>::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            store_errors: Counter::default(),
            inconsistent: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            queries: Histograms::new("query", &Query::LABELS),
            http_seconds: Histograms::new("route", &crate::http::ROUTE_LABELS),
            pending: Gauge::default(),
            ack_pending: Gauge::default(),
            ready: Gauge::default(),
            dead_letters: Counter::default(),
        };
        for reason in REJECT_REASONS {
            let _ = inner.rejected.get_or_create(&ReasonLabel { reason });
        }
        let mut registry = Registry::default();
        inner.register_into(registry.sub_registry_with_prefix(PREFIX));
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }

    /// Adds these metrics, under the `order_cache` prefix, to a registry of
    /// the host's, so that its own exposition shows them beside its own
    /// metrics. The values are shared: what the service counts shows in
    /// both this registry and [`Metrics::render`].
    ///
    /// # Examples
    ///
    /// ```
    /// use order_cache::Metrics;
    /// use prometheus_client::registry::Registry;
    ///
    /// let metrics = Metrics::new();
    /// let mut host = Registry::with_prefix("shop");
    /// metrics.register(&mut host);
    ///
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &host).unwrap();
    /// assert!(text.contains("shop_order_cache_orders_ingested_total 0"));
    /// ```
    pub fn register(&self, registry: &mut Registry) {
        self.inner
            .register_into(registry.sub_registry_with_prefix(PREFIX));
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    pub(crate) fn ingested(&self, n: usize) {
        self.inner.ingested.inc_by(n as u64);
    }

    pub(crate) fn duplicates(&self, n: usize) {
        self.inner.duplicates.inc_by(n as u64);
    }

    pub(crate) fn rejected(&self, reason: &'static str) {
        self.inner
            .rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.inner.dead_letters.inc();
    }

    /// Takes the cache's figures from one of its snapshots.
    pub(crate) fn cache(&self, snapshot: &crate::cache::Snapshot) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let stats = snapshot.stats();
        self.inner.cache_orders.set(gauge(stats.entries as u64));
        self.inner.cache_bytes.set(gauge(stats.json_bytes as u64));
        self.inner.cache_cost.set(gauge(stats.bytes));
        self.inner
            .cache_max_bytes
            .set(gauge(stats.max_bytes.unwrap_or(0)));
        // The snapshot carries the total since the cache began; callers may
        // pass an older snapshot than the last one seen, so the counter only
        // ever rises to it.
        self.inner
            .cache_evictions
            .inner()
            .fetch_max(stats.evictions, Ordering::Relaxed);
    }

    pub(crate) fn http(&self, route: &'static str, status: u16, took: Duration) {
        self.inner
            .http
            .get_or_create(&HttpLabels { route, status })
            .inc();
        if let Some(i) = self.inner.http_seconds.index_of(route) {
            self.inner.http_seconds.observe(i, took);
        }
    }

    pub(crate) fn batch(&self, size: usize, took: Duration) {
        self.inner.batch_seconds.observe(took.as_secs_f64());
        self.inner.batch_size.observe(size as f64);
    }

    pub(crate) fn with_unknown_fields(&self, n: usize) {
        self.inner.unknown_fields.inc_by(n as u64);
    }

    pub(crate) fn store_error(&self) {
        self.inner.store_errors.inc();
    }

    pub(crate) fn inconsistent(&self, n: usize) {
        self.inner
            .inconsistent
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A lookup found its order in the cache.
    pub(crate) fn cache_hit(&self) {
        self.inner.cache_hits.inc();
    }

    /// A lookup did not find its order in the cache.
    pub(crate) fn cache_miss(&self) {
        self.inner.cache_misses.inc();
    }

    /// A PostgreSQL query of this kind took `took`.
    pub(crate) fn query(&self, kind: Query, took: Duration) {
        self.inner.queries.observe(kind as usize, took);
    }

    /// The durable consumer's backlog, as JetStream reported it.
    pub(crate) fn consumer(&self, pending: u64, ack_pending: usize) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.pending.set(gauge(pending));
        self.inner
            .ack_pending
            .set(gauge(u64::try_from(ack_pending).unwrap_or(u64::MAX)));
    }

    /// Whether the last readiness check passed.
    pub(crate) fn ready(&self, ready: bool) {
        self.inner.ready.set(i64::from(ready));
    }

    /// The numbers the page's status strip shows.
    pub(crate) fn status(&self) -> Status {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Status {
            orders_ingested: self.inner.ingested.get(),
            dead_letters: self.inner.dead_letters.get(),
            consumer_pending: count(self.inner.pending.get()),
            consumer_ack_pending: count(self.inner.ack_pending.get()),
            cache_orders: count(self.inner.cache_orders.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Metrics, Query, REJECT_REASONS};
    use crate::model::Order;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn latency_buckets_are_cumulative_and_agree_with_count_and_sum() {
        let metrics = Metrics::new();
        for ms in [0.05, 3.0, 3.0, 20_000.0, 100_000.0] {
            metrics.query(Query::Insert, Duration::from_secs_f64(ms / 1000.0));
        }
        let text = metrics.render();
        let bucket = |le: &str| {
            let series =
                format!("order_cache_store_query_seconds_bucket{{le=\"{le}\",query=\"insert\"}}");
            sample(&text, &series).unwrap_or_else(|| panic!("{series} missing:\n{text}"))
        };
        assert_eq!(bucket("0.0001"), 1.0);
        assert_eq!(bucket("0.0025"), 1.0);
        assert_eq!(bucket("0.005"), 3.0);
        assert_eq!(bucket("30.0"), 4.0);
        assert_eq!(bucket("60.0"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        let count = r#"order_cache_store_query_seconds_count{query="insert"}"#;
        assert_eq!(sample(&text, count), Some(5.0));
        let sum = sample(
            &text,
            r#"order_cache_store_query_seconds_sum{query="insert"}"#,
        );
        assert!((sum.unwrap_or(0.0) - 120.00605).abs() < 1e-6, "{sum:?}");
        // The other kinds are there from the start, at zero.
        let ping = r#"order_cache_store_query_seconds_count{query="ping"}"#;
        assert_eq!(sample(&text, ping), Some(0.0));
    }

    #[test]
    fn every_rejection_reason_is_exported_from_the_start() {
        let mut invalid: serde_json::Value =
            serde_json::from_slice(include_bytes!("../examples/example.json")).unwrap();
        invalid["payment"]["amount"] = (-1).into();
        let payloads = [
            Vec::new(),
            vec![b' '; 2 * 1024 * 1024],
            vec![0xff],
            b"{".to_vec(),
            b"{}".to_vec(),
            serde_json::to_vec(&invalid).unwrap(),
        ];
        let text = Metrics::new().render();
        for payload in payloads {
            let reason = Order::decode(&payload).unwrap_err().reason();
            assert!(REJECT_REASONS.contains(&reason), "{reason}");
        }
        for reason in REJECT_REASONS {
            let series = format!("order_cache_orders_rejected_total{{reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
    }

    #[test]
    fn cache_figures_come_from_the_snapshot_and_evictions_never_go_back() {
        use crate::cache::{entry_cost, Cache};
        use crate::model::OrderUid;

        let cost = entry_cost("o0", 100);
        let cache = Cache::with_max_bytes(3 * cost);
        let metrics = Metrics::new();
        let before = cache.snapshot();
        for i in 0..5 {
            let id = OrderUid::parse(&format!("o{i}")).unwrap();
            cache.insert([(id, bytes::Bytes::from(vec![b'x'; 100]))]);
        }
        metrics.cache(&cache.snapshot());
        let text = metrics.render();
        assert_eq!(sample(&text, "order_cache_cache_orders"), Some(3.0));
        assert_eq!(sample(&text, "order_cache_cache_json_bytes"), Some(300.0));
        assert_eq!(
            sample(&text, "order_cache_cache_bytes"),
            Some((3 * cost) as f64)
        );
        assert_eq!(
            sample(&text, "order_cache_cache_max_bytes"),
            Some((3 * cost) as f64)
        );
        assert_eq!(
            sample(&text, "order_cache_cache_evictions_total"),
            Some(2.0)
        );
        // A snapshot older than the last one seen: the gauges follow it,
        // the counter does not go back.
        metrics.cache(&before);
        let text = metrics.render();
        assert_eq!(sample(&text, "order_cache_cache_orders"), Some(0.0));
        assert_eq!(
            sample(&text, "order_cache_cache_evictions_total"),
            Some(2.0)
        );

        let unlimited = Metrics::new();
        unlimited.cache(&Cache::new().snapshot());
        let text = unlimited.render();
        assert_eq!(sample(&text, "order_cache_cache_max_bytes"), Some(0.0));
        assert_eq!(
            sample(&text, "order_cache_cache_evictions_total"),
            Some(0.0)
        );
    }

    #[test]
    fn http_latency_is_recorded_by_route_and_other_routes_stay_at_zero() {
        let metrics = Metrics::new();
        metrics.http("/orders/{order_uid}", 200, Duration::from_micros(40));
        let text = metrics.render();
        let count = |route: &str| {
            sample(
                &text,
                &format!("order_cache_http_request_seconds_count{{route=\"{route}\"}}"),
            )
        };
        assert_eq!(count("/orders/{order_uid}"), Some(1.0));
        assert_eq!(count("/status"), Some(0.0));
    }
}
