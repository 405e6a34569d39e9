//! Prometheus metrics, kept in a registry owned by the service (no global
//! state), rendered as text at `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The service's counters. Cheap to clone: clones share the same registry.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `order_cache_orders_ingested_total` | counter | |
/// | `order_cache_orders_duplicate_total` | counter | |
/// | `order_cache_orders_rejected_total` | counter | `reason` |
/// | `order_cache_cache_orders` | gauge | |
/// | `order_cache_cache_json_bytes` | gauge | |
/// | `order_cache_http_requests_total` | counter | `route`, `status` |
/// | `order_cache_ingest_batch_seconds` | histogram | |
/// | `order_cache_ingest_batch_size` | histogram | |
/// | `order_cache_store_errors_total` | counter | |
/// | `order_cache_store_inconsistent_orders` | gauge | |
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
    rejected: Family<ReasonLabel, Counter>,
    cache_orders: Gauge,
    cache_bytes: Gauge,
    http: Family<HttpLabels, Counter>,
    batch_seconds: Histogram,
    batch_size: Histogram,
    store_errors: Counter,
    inconsistent: Gauge,
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
    }
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
            rejected: Family::<ReasonLabel, Counter>::default(),
            cache_orders: Gauge::default(),
            cache_bytes: Gauge::default(),
            http: Family::<HttpLabels, Counter>::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            store_errors: Counter::default(),
            inconsistent: Gauge::default(),
        };
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
    }

    pub(crate) fn cache(&self, snapshot: &crate::cache::Snapshot) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.cache_orders.set(gauge(snapshot.len()));
        self.inner.cache_bytes.set(gauge(snapshot.json_bytes()));
    }

    pub(crate) fn http(&self, route: &'static str, status: u16) {
        self.inner
            .http
            .get_or_create(&HttpLabels { route, status })
            .inc();
    }

    pub(crate) fn batch(&self, size: usize, took: Duration) {
        self.inner.batch_seconds.observe(took.as_secs_f64());
        self.inner.batch_size.observe(size as f64);
    }

    pub(crate) fn store_error(&self) {
        self.inner.store_errors.inc();
    }

    pub(crate) fn inconsistent(&self, n: usize) {
        self.inner
            .inconsistent
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
