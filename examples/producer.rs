//! Publishes orders to JetStream so the pipeline can be watched:
//! `cargo run --release --features cli,demo --example producer -- --help`
//! (the flags `scripts/build-release` builds with, so nothing is rebuilt).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use clap::Parser;
use order_cache::demo::OrderGenerator;
use serde_json::Value;

/// Publish orders: by default a varied order (its own customer, city,
/// items and totals; see `--seed`) every 2 s.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// NATS server URL(s), comma separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
    /// Subject orders are published to.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    orders_subject: String,
    /// Seed of the generated orders: the same seed publishes the same
    /// orders, ids included (the service stores an id once), with the
    /// current time as their date. Default: a new seed, printed at start.
    #[arg(long, conflicts_with_all = ["file", "example_order"])]
    seed: Option<u64>,
    /// Most items a generated order has (1 to 1000).
    #[arg(long, default_value_t = OrderGenerator::DEFAULT_MAX_ITEMS as u16, value_parser = clap::value_parser!(u16).range(1..=1000), conflicts_with_all = ["file", "example_order"])]
    max_items: u16,
    /// Publish this order instead, each time with a fresh id.
    #[arg(long, conflicts_with = "example_order")]
    file: Option<PathBuf>,
    /// Publish examples/example.json (built into this program) instead,
    /// each time with a fresh id: the same order over and over.
    #[arg(long)]
    example_order: bool,
    /// How many to publish (default: forever).
    #[arg(long)]
    count: Option<u64>,
    /// Seconds between orders.
    #[arg(long, default_value_t = 2.0, conflicts_with = "rate")]
    interval: f64,
    /// Orders per second (for load); overrides --interval.
    #[arg(long)]
    rate: Option<f64>,
    /// Publish a garbage message after every K orders.
    #[arg(long)]
    invalid_every: Option<u64>,
    /// Print only a summary, not a line per message (or, on a terminal, a
    /// running count).
    #[arg(long)]
    quiet: bool,
    /// Create this stream (and the service's consumer) first if missing, so
    /// orders can be queued before the server ever ran.
    #[arg(long, env = "ORDERS_STREAM")]
    ensure_stream: Option<String>,
    /// Dead-letter subject, for --ensure-stream (as the server's).
    #[arg(long, env = "ORDERS_DLQ_SUBJECT", default_value = "orders.dlq")]
    orders_dlq_subject: String,
}

/// The example order, in the binary so that a producer copied out of its
/// build tree (into an image, say) still has it.
const EXAMPLE_ORDER: &[u8] = include_bytes!("example.json");

/// Where the orders come from.
enum Orders {
    /// Varied orders from a seed.
    Generated(OrderGenerator),
    /// One order, published again and again with a fresh id.
    Template(Value),
}

impl Orders {
    fn from_args(args: &Args) -> anyhow::Result<Orders> {
        let template = |bytes: &[u8], what: &str| -> anyhow::Result<Orders> {
            let order: Value =
                serde_json::from_slice(bytes).with_context(|| format!("{what} is not JSON"))?;
            // Each copy gets its own id (and payment's transaction): the
            // order must be an object, and its payment too if it has one.
            if !order.is_object() {
                anyhow::bail!("{what} is not an order: an order is a JSON object");
            }
            if order.get("payment").is_some_and(|p| !p.is_object()) {
                anyhow::bail!("{what} is not an order: its payment is not a JSON object");
            }
            Ok(Orders::Template(order))
        };
        if let Some(file) = &args.file {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            return template(&bytes, &file.display().to_string());
        }
        if args.example_order {
            return template(EXAMPLE_ORDER, "examples/example.json");
        }
        let seed = args.seed.unwrap_or_else(rand::random);
        Ok(Orders::Generated(
            OrderGenerator::new(seed).with_max_items(args.max_items.into()),
        ))
    }

    /// The next order's id and payload.
    fn next(&mut self) -> anyhow::Result<(String, Bytes)> {
        match self {
            Orders::Generated(generator) => {
                let order = generator.order(chrono::Utc::now());
                Ok((order.order_uid.to_string(), order.to_json()))
            }
            Orders::Template(template) => {
                let uid = nuid::next().to_string();
                let mut order = template.clone();
                if let Some(order) = order.as_object_mut() {
                    order.insert("order_uid".into(), Value::String(uid.clone()));
                    if let Some(payment) = order.get_mut("payment").and_then(Value::as_object_mut) {
                        payment.insert("transaction".into(), Value::String(uid.clone()));
                    }
                }
                Ok((uid, serde_json::to_vec(&order)?.into()))
            }
        }
    }

    /// What is published, for the first line printed.
    fn describe(&self) -> String {
        match self {
            Orders::Generated(g) => format!(
                "generated orders of 1 to {} items, seed {} (--seed {} --max-items {} publishes the same ones again)",
                g.max_items(),
                g.seed(),
                g.seed(),
                g.max_items()
            ),
            Orders::Template(_) => "the template order, each time with a fresh id".to_owned(),
        }
    }
}

const GARBAGE: &[&[u8]] = &[
    b"not json at all",
    b"{\"order_uid\":\"\"}",
    b"[]",
    b"\xff\xfe\xfd",
    b"{\"order_uid\":\"x\",\"unexpected\":true}",
    b"",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // NATS_URL as ./scripts/up wrote it to ./.env, under the environment.
    let dotenv = order_cache::dotenv::load().context("cannot read ./.env")?;
    if let Some(note) = dotenv.skipped_note() {
        eprintln!("warning: {note}");
    }
    let args = Args::parse();
    let traces = Traces::from_env()?;
    let mut orders = Orders::from_args(&args)?;
    let period = match args.rate {
        Some(rate) if rate > 0.0 => Duration::try_from_secs_f64(1.0 / rate)
            .with_context(|| format!("--rate {rate}: not an interval between orders"))?,
        _ => Duration::try_from_secs_f64(args.interval.max(0.0))
            .with_context(|| format!("--interval {}: not a number of seconds", args.interval))?,
    };
    let nats_url = order_cache::NatsUrl::parse(&args.nats_url);
    let client = nats_url
        .connect(async_nats::ConnectOptions::new())
        .await
        .with_context(|| format!("cannot reach NATS at {nats_url}"))?;
    let js = jetstream::new(client);
    if let Some(stream) = &args.ensure_stream {
        let config = order_cache::IngestConfig {
            stream: stream.clone(),
            subject: args.orders_subject.clone(),
            dlq_subject: args.orders_dlq_subject.clone(),
            ..order_cache::IngestConfig::default()
        };
        order_cache::ingest::ensure_topology(&js, &config).await?;
    }

    if !args.quiet {
        println!("publishing {}", orders.describe());
    }

    let mut ticker = tokio::time::interval(period.max(Duration::from_micros(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // Acks are awaited in windows so a high rate is not one round trip each.
    let mut pending: Vec<Pending> = Vec::new();
    let mut sent = 0u64;
    let mut garbage = 0usize;
    let mut already = 0usize;
    let mut progress = Progress::new(args.quiet);
    while args.count.is_none_or(|n| sent < n) {
        ticker.tick().await;
        if let Some(k) = args.invalid_every {
            if k > 0 && sent > 0 && sent.is_multiple_of(k) {
                let payload = GARBAGE[garbage % GARBAGE.len()];
                garbage += 1;
                let id = format!("garbage-{}", nuid::next());
                let mut headers = headers(Some(&id));
                let _span = traces.start(&args.orders_subject, &mut headers);
                publish(
                    &js,
                    &args.orders_subject,
                    headers,
                    Bytes::from_static(payload),
                    &mut pending,
                )
                .await;
                progress.garbage(garbage, payload);
            }
        }
        let (uid, payload) = orders.next()?;
        {
            let mut headers = headers(Some(&uid));
            let _span = traces.start(&args.orders_subject, &mut headers);
            publish(&js, &args.orders_subject, headers, payload, &mut pending).await;
        }
        sent += 1;
        progress.order(sent, garbage, &uid);
        if pending.len() >= 256 || period >= Duration::from_millis(100) {
            already += confirm(&js, &args.orders_subject, &mut pending).await;
        }
    }
    already += confirm(&js, &args.orders_subject, &mut pending).await;
    progress.finish(sent, garbage);
    if already > 0 {
        eprintln!(
            "{already} of them the stream already held (the same ids within its duplicate window, \
             as from the same --seed again): not stored again"
        );
    }
    match &orders {
        Orders::Generated(g) => eprintln!(
            "published {sent} orders (seed {}) and {garbage} garbage messages",
            g.seed()
        ),
        Orders::Template(_) => eprintln!("published {sent} orders and {garbage} garbage messages"),
    }
    traces.shutdown();
    Ok(())
}

/// What is printed per message: a short line each, or on a terminal one
/// line counting them, rewritten in place, so what was printed before (the
/// page's address) stays on the screen at any rate.
struct Progress {
    quiet: bool,
    terminal: bool,
    drawn: Option<std::time::Instant>,
}

impl Progress {
    /// Redrawing the count more often than this only costs the terminal.
    const REDRAW: Duration = Duration::from_millis(100);

    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            terminal: std::io::stdout().is_terminal(),
            drawn: None,
        }
    }

    fn order(&mut self, sent: u64, garbage: usize, uid: &str) {
        if self.quiet {
            return;
        }
        if !self.terminal {
            println!("order {sent} published: {uid}");
            return;
        }
        if self.drawn.is_none_or(|at| at.elapsed() >= Self::REDRAW) {
            self.drawn = Some(std::time::Instant::now());
            self.draw(sent, garbage, uid);
        }
    }

    fn garbage(&self, garbage: usize, payload: &[u8]) {
        if !self.quiet && !self.terminal {
            println!(
                "garbage {garbage} published: {:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    /// Ends the count's line, showing the final numbers.
    fn finish(&self, sent: u64, garbage: usize) {
        if !self.quiet && self.terminal && self.drawn.is_some() {
            self.draw(sent, garbage, "");
            println!();
        }
    }

    fn draw(&self, sent: u64, garbage: usize, uid: &str) {
        let mut out = std::io::stdout().lock();
        // \r and "erase to the end of the line": the count replaces itself.
        let _ = write!(out, "\r\x1b[Korders published: {sent}, garbage: {garbage}");
        if !uid.is_empty() {
            let _ = write!(out, " (last {uid})");
        }
        let _ = out.flush();
    }
}

/// A problem worth a line of its own, also when the count is on the screen.
fn warn(message: std::fmt::Arguments<'_>) {
    if std::io::stdout().is_terminal() {
        // Starts a fresh line under the count; the count redraws below it.
        println!();
    }
    eprintln!("{message}");
}

/// Each message's W3C trace context. With feature `otel` it is a `send`
/// span's, exported when `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector;
/// without, fresh ids nothing records (flags `00`), which still tie a dead
/// letter to the message it came from.
struct Traces {
    #[cfg(feature = "otel")]
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
    #[cfg(feature = "otel")]
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

/// A message's span, ended when dropped.
#[cfg(feature = "otel")]
type Span = opentelemetry_sdk::trace::Span;
#[cfg(not(feature = "otel"))]
struct Span;

impl Traces {
    #[cfg(not(feature = "otel"))]
    fn from_env() -> anyhow::Result<Traces> {
        Ok(Traces {})
    }

    #[cfg(feature = "otel")]
    fn from_env() -> anyhow::Result<Traces> {
        use opentelemetry::trace::TracerProvider;
        use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};

        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        let mut provider = SdkTracerProvider::builder();
        if set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .context("cannot set up the OTLP trace exporter")?;
            provider = provider.with_batch_exporter(exporter);
        }
        let mut resource = Resource::builder();
        let named =
            std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
        if !set("OTEL_SERVICE_NAME") && !named {
            resource = resource.with_service_name("order-cache-producer");
        }
        let provider = provider.with_resource(resource.build()).build();
        Ok(Traces {
            tracer: provider.tracer("order-cache-producer"),
            provider,
        })
    }

    /// Starts a message's span and writes its context into `headers`.
    #[cfg(feature = "otel")]
    fn start(&self, subject: &str, headers: &mut async_nats::HeaderMap) -> Span {
        use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer};
        use opentelemetry::{Context, KeyValue};

        let span = self
            .tracer
            .span_builder(format!("send {subject}"))
            .with_kind(SpanKind::Producer)
            .with_attributes([
                KeyValue::new("messaging.system", "nats"),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("messaging.destination.name", subject.to_owned()),
            ])
            .start(&self.tracer);
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        order_cache::trace::inject(&cx, headers);
        span
    }

    #[cfg(not(feature = "otel"))]
    fn start(&self, _subject: &str, headers: &mut async_nats::HeaderMap) -> Span {
        let trace_id = rand::random::<u128>().max(1);
        let span_id = rand::random::<u64>().max(1);
        let traceparent = format!("00-{trace_id:032x}-{span_id:016x}-00");
        headers.insert(order_cache::trace::TRACEPARENT, traceparent.as_str());
        Span
    }

    /// Exports the spans still queued.
    fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Err(e) = self.provider.shutdown() {
            eprintln!("cannot export the last spans: {e}");
        }
    }
}

/// A publish waiting for JetStream's ack, with what is needed to resend it.
struct Pending {
    headers: async_nats::HeaderMap,
    payload: Bytes,
    ack: Option<jetstream::context::PublishAckFuture>,
}

fn headers(msg_id: Option<&str>) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = msg_id {
        // JetStream drops a re-sent message with the same id: resending
        // after a lost ack cannot duplicate an order.
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    headers
}

/// Sends one message, retrying until NATS takes it (it may be restarting,
/// or the stream may not exist yet because the server has not started).
async fn publish(
    js: &jetstream::Context,
    subject: &str,
    headers: async_nats::HeaderMap,
    payload: Bytes,
    pending: &mut Vec<Pending>,
) {
    loop {
        match js
            .publish_with_headers(subject.to_owned(), headers.clone(), payload.clone())
            .await
        {
            Ok(ack) => {
                pending.push(Pending {
                    headers,
                    payload,
                    ack: Some(ack),
                });
                return;
            }
            Err(e) => {
                warn(format_args!("publish failed ({e}); retrying in 1 s"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Waits for every pending ack; re-sends (same message id) what was not
/// confirmed, until all are. Returns how many of the first sends the stream
/// already held (the same id within its duplicate window: not stored
/// again). A re-send's duplicate is the first send, stored after all.
async fn confirm(js: &jetstream::Context, subject: &str, pending: &mut Vec<Pending>) -> usize {
    let mut already = 0;
    let mut resending = false;
    while !pending.is_empty() {
        let mut failed = Vec::new();
        for mut p in pending.drain(..) {
            if let Some(ack) = p.ack.take() {
                match ack.await {
                    Ok(ack) => already += usize::from(ack.duplicate && !resending),
                    Err(e) => {
                        warn(format_args!("publish not confirmed ({e}); re-sending"));
                        failed.push(p);
                    }
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        resending = true;
        tokio::time::sleep(Duration::from_secs(1)).await;
        for p in failed {
            publish(js, subject, p.headers, p.payload, pending).await;
        }
    }
    already
}
