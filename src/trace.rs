//! Traces across the pipeline: the W3C trace context a producer puts on an
//! order (the `traceparent` and `tracestate` headers) continues through
//! ingestion.
//!
//! With feature `otel` and a [`Tracer`] in [`IngestConfig::tracer`] the
//! ingestor records, with OpenTelemetry:
//!
//! - `process <subject>` (kind consumer), one span per batch. It is a root
//!   span with a *link* to each message's context: a batch mixes messages of
//!   many traces, so it cannot be the child of any one of them.
//! - `insert orders` (kind client), each write of the batch's orders to
//!   PostgreSQL, a child of its batch span. A batch PostgreSQL refuses is
//!   split until the refused order is alone, so each attempt is a span; one
//!   that failed has an error status saying why.
//!
//! Whatever the features, a dead letter carries its message's `traceparent`
//! and `tracestate`, so a rejected order stays in its trace.
//!
//! The library holds no global state: the host builds the tracer provider
//! (with its exporter, sampler and limits) and passes a [`Tracer`] made from
//! it; without one, or without the feature, no span is made and no header is
//! parsed. The SDK keeps 128 links per span unless told otherwise
//! (`OTEL_SPAN_LINK_COUNT_LIMIT`, `with_max_links_per_span`): a host with
//! larger batches raises it to the batch size, as `examples/server.rs` does.

use std::future::Future;

use async_nats::jetstream::message::Message;
use async_nats::HeaderMap;

use crate::ingest::IngestConfig;

/// The W3C header that carries a message's trace and parent span ids.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header that carries vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Longest trace header copied onto a dead letter. A valid `traceparent` is
/// 55 bytes, and W3C lets a `tracestate` over 512 characters be dropped: a
/// letter must never outgrow the broker's `max_payload` for the sake of its
/// trace headers, or it could not be published at all.
const MAX_COPIED: usize = 512;

/// Where the ingest pipeline's spans go: a tracer of the host's
/// OpenTelemetry provider, or off (the default).
///
/// # Examples
///
/// ```
/// use order_cache::{trace::Tracer, IngestConfig};
///
/// assert!(!IngestConfig::default().tracer.is_on());
/// # #[cfg(feature = "otel")]
/// # {
/// // With feature `otel`: the host's provider, with its exporter.
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let config = IngestConfig {
///     tracer: Tracer::new(&provider),
///     ..IngestConfig::default()
/// };
/// assert!(config.tracer.is_on());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Tracer {
    #[cfg(feature = "otel")]
    inner: Option<std::sync::Arc<opentelemetry::global::BoxedTracer>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("on", &self.is_on()).finish()
    }
}

impl Tracer {
    /// A tracer of `provider`, named after this crate (its instrumentation
    /// scope is `order_cache` and the crate's version).
    #[cfg(feature = "otel")]
    pub fn new<P, T, S>(provider: &P) -> Tracer
    where
        P: opentelemetry::trace::TracerProvider<Tracer = T>,
        T: opentelemetry::trace::Tracer<Span = S> + Send + Sync + 'static,
        S: opentelemetry::trace::Span + Send + Sync + 'static,
    {
        let scope = opentelemetry::InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer =
            opentelemetry::global::BoxedTracer::new(Box::new(provider.tracer_with_scope(scope)));
        Tracer {
            inner: Some(std::sync::Arc::new(tracer)),
        }
    }

    /// Whether spans are recorded.
    pub fn is_on(&self) -> bool {
        #[cfg(feature = "otel")]
        return self.inner.is_some();
        #[cfg(not(feature = "otel"))]
        false
    }

    /// Runs `work`, the processing of `messages`, inside a batch span linked
    /// to each message's trace context.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) async fn batch<F: Future>(
        &self,
        config: &IngestConfig,
        messages: &[Message],
        work: F,
    ) -> F::Output {
        #[cfg(feature = "otel")]
        if let Some(tracer) = &self.inner {
            return otel::batch(tracer, config, messages, work).await;
        }
        work.await
    }

    /// Runs `work`, a write of `orders` orders, as a child span of the batch
    /// being processed; marks the span failed when `work` fails.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) async fn insert<T, E: std::error::Error>(
        &self,
        orders: usize,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        #[cfg(feature = "otel")]
        if let Some(tracer) = &self.inner {
            return otel::insert(tracer, orders, work).await;
        }
        work.await
    }
}

/// Writes `cx`'s span context into a message's headers as `traceparent`
/// (and `tracestate`), for a producer to start a trace the ingestor
/// continues.
///
/// # Examples
///
/// ```
/// use opentelemetry::trace::{Tracer as _, TracerProvider as _, TraceContextExt as _};
/// use opentelemetry::Context;
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let span = provider.tracer("producer").start("send orders");
/// let mut headers = async_nats::HeaderMap::new();
/// order_cache::trace::inject(&Context::new().with_span(span), &mut headers);
/// assert!(headers.get(order_cache::trace::TRACEPARENT).is_some());
/// ```
#[cfg(feature = "otel")]
pub fn inject(cx: &opentelemetry::Context, headers: &mut HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator;
    opentelemetry_sdk::propagation::TraceContextPropagator::new()
        .inject_context(cx, &mut otel::HeadersMut(headers));
}

/// Copies the trace context headers of a message (`from`) onto its dead
/// letter (`to`), each as it arrived, unless it is too long to carry.
pub(crate) fn keep_context(from: Option<&HeaderMap>, to: &mut HeaderMap) {
    let Some(from) = from else { return };
    for name in [TRACEPARENT, TRACESTATE] {
        if let Some(value) = header(from, name).filter(|v| v.len() <= MAX_COPIED) {
            to.insert(name, value);
        }
    }
}

/// A header's value. W3C names are lower case, but NATS header names are
/// case-sensitive and some clients capitalise them: any case is accepted.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str()).or_else(|| {
        headers
            .iter()
            .find(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(|v| v.as_str())
    })
}

#[cfg(feature = "otel")]
mod otel {
    use std::future::Future;

    use async_nats::jetstream::message::Message;
    use async_nats::HeaderMap;
    use opentelemetry::context::FutureExt;
    use opentelemetry::global::BoxedTracer;
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::{
        Link, Span, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt, Tracer,
    };
    use opentelemetry::{Context, KeyValue};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use crate::ingest::IngestConfig;

    pub(super) async fn batch<F: Future>(
        tracer: &BoxedTracer,
        config: &IngestConfig,
        messages: &[Message],
        work: F,
    ) -> F::Output {
        let propagator = TraceContextPropagator::new();
        let links: Vec<Link> = messages
            .iter()
            .filter_map(|m| remote_context(&propagator, m.headers.as_ref()?))
            .map(Link::with_context)
            .collect();
        let builder = SpanBuilder::from_name(format!("process {}", config.subject))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.operation.name", "process"),
                KeyValue::new("messaging.destination.name", config.subject.clone()),
                KeyValue::new("messaging.consumer.group.name", config.consumer.clone()),
                KeyValue::new(
                    "messaging.batch.message_count",
                    i64::try_from(messages.len()).unwrap_or(i64::MAX),
                ),
            ])
            .with_links(links);
        // A root: whatever context the caller runs in, a batch belongs to
        // none of its messages' traces.
        let span = tracer.build_with_context(builder, &Context::new());
        let cx = Context::new().with_span(span);
        // The database writes inside `work` find the batch span as their
        // parent in the current context, attached on each poll.
        let out = work.with_context(cx.clone()).await;
        cx.span().end();
        out
    }

    pub(super) async fn insert<T, E: std::error::Error>(
        tracer: &BoxedTracer,
        orders: usize,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let builder = SpanBuilder::from_name("insert orders")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "INSERT"),
                KeyValue::new("db.collection.name", "orders"),
                KeyValue::new(
                    "db.operation.batch.size",
                    i64::try_from(orders).unwrap_or(i64::MAX),
                ),
            ]);
        let mut span = tracer.build_with_context(builder, &Context::current());
        let result = work.await;
        if let Err(e) = &result {
            span.set_status(Status::error(crate::Report(e).to_string()));
        }
        span.end();
        result
    }

    /// The span context a message's headers carry, if valid.
    fn remote_context(
        propagator: &TraceContextPropagator,
        headers: &HeaderMap,
    ) -> Option<SpanContext> {
        let cx = propagator.extract_with_context(&Context::new(), &Headers(headers));
        let span = cx.span().span_context().clone();
        span.is_valid().then_some(span)
    }

    /// NATS headers as the propagator writes them.
    pub(super) struct HeadersMut<'a>(pub(super) &'a mut HeaderMap);

    impl opentelemetry::propagation::Injector for HeadersMut<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key, value);
        }
    }

    /// NATS headers as the propagator reads them.
    struct Headers<'a>(&'a HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            super::header(self.0, key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0
                .iter()
                .map(|(k, _)| AsRef::<str>::as_ref(k))
                .collect()
        }
    }
}
