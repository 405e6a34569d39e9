//! Traces across the pipeline (feature `otel`): a message's W3C trace
//! context reaches the batch span as a link, the database write is a child
//! of that batch span, a dead letter keeps the context, and the example
//! binaries export all of it with OTLP to a collector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use order_cache::trace::{Tracer, TRACEPARENT, TRACESTATE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{eventually, example_order, spawn_app, unique, TestApp, TestDb, TestStreams};
use crate::services::{server_bin, ServerProcess};

/// Keeps every exported span in memory. (The SDK's `InMemorySpanExporter`
/// does the same but needs its `testing` feature, which as a
/// dev-dependency would compile the SDK's metrics and logs into every test
/// build, `otel` or not.)
#[derive(Clone, Debug, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("spans").extend(batch);
        Ok(())
    }
}

impl Spans {
    fn named(&self, name: &str) -> Vec<SpanData> {
        let spans = self.0.lock().expect("spans");
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

/// A fresh, valid W3C context: (trace id, parent span id, header value).
fn context() -> (TraceId, SpanId, String) {
    let trace = rand::random::<u128>().max(1);
    let span = rand::random::<u64>().max(1);
    (
        TraceId::from(trace),
        SpanId::from(span),
        format!("00-{trace:032x}-{span:016x}-01"),
    )
}

/// The service with its spans going to `Spans` (exported as each ends).
async fn traced_app() -> (TestDb, TestStreams, TestApp, Spans, SdkTracerProvider) {
    let db = TestDb::create().await;
    let mut streams = TestStreams::new();
    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    streams.config.tracer = Tracer::new(&provider);
    let app = spawn_app(&db, &streams).await;
    (db, streams, app, spans, provider)
}

/// Publishes `payload` with these headers (and a fresh `Nats-Msg-Id`) and
/// waits for JetStream to store it.
async fn publish(app: &TestApp, payload: impl Into<Bytes>, trace: &[(&str, &str)]) {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, unique("m").as_str());
    for (name, value) in trace {
        headers.insert(*name, *value);
    }
    app.publish_with_headers(headers, payload).await;
}

fn order_bytes(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&example_order(uid)).expect("json")
}

/// The batch spans once their links name all of `contexts`.
async fn batches_linking(
    spans: &Spans,
    subject: &str,
    contexts: &[(TraceId, SpanId)],
) -> Vec<SpanData> {
    let name = format!("process {subject}");
    eventually(
        Duration::from_secs(20),
        "batch spans linking every message's context",
        || {
            let batches = spans.named(&name);
            let linked = contexts
                .iter()
                .all(|c| batches.iter().any(|b| links_to(b, *c)));
            async move { linked.then_some(batches) }
        },
    )
    .await
}

fn links_to(span: &SpanData, (trace, parent): (TraceId, SpanId)) -> bool {
    span.links
        .links
        .iter()
        .any(|l| l.span_context.trace_id() == trace && l.span_context.span_id() == parent)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_span_links_to_each_messages_trace_context() {
    let (_db, streams, app, spans, _provider) = traced_app().await;
    let (trace_a, span_a, parent_a) = context();
    let (trace_b, span_b, parent_b) = context();
    let uids: Vec<String> = (0..4).map(|_| unique("traced")).collect();

    publish(&app, order_bytes(&uids[0]), &[(TRACEPARENT, &parent_a)]).await;
    publish(&app, order_bytes(&uids[1]), &[(TRACEPARENT, &parent_b)]).await;
    publish(&app, order_bytes(&uids[2]), &[]).await;
    publish(
        &app,
        order_bytes(&uids[3]),
        &[(TRACEPARENT, "00-not-a-context-01")],
    )
    .await;

    for uid in &uids {
        app.wait_for_order(uid).await;
    }
    let batches = batches_linking(
        &spans,
        &streams.config.subject,
        &[(trace_a, span_a), (trace_b, span_b)],
    )
    .await;
    for batch in &batches {
        assert_eq!(batch.span_kind, SpanKind::Consumer);
        // A root: a batch of many traces is the child of none of them.
        assert_eq!(batch.parent_span_id, SpanId::INVALID, "{batch:?}");
        assert_ne!(batch.span_context.trace_id(), trace_a);
        assert_ne!(batch.span_context.trace_id(), trace_b);
        for link in &batch.links.links {
            assert!(link.span_context.is_remote(), "{link:?}");
        }
    }
    // One link per message with a valid context; none for the message
    // without one or with a malformed one.
    let links: usize = batches.iter().map(|b| b.links.links.len()).sum();
    assert_eq!(links, 2, "{batches:?}");
    app.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_database_write_is_a_child_span_of_its_batch() {
    let (_db, streams, app, spans, _provider) = traced_app().await;
    let (trace, parent, traceparent) = context();
    let uid = unique("traced");

    publish(&app, order_bytes(&uid), &[(TRACEPARENT, &traceparent)]).await;

    app.wait_for_order(&uid).await;
    let batches = batches_linking(&spans, &streams.config.subject, &[(trace, parent)]).await;
    let batch = batches
        .iter()
        .find(|b| links_to(b, (trace, parent)))
        .expect("the order's batch");
    let batch_id = batch.span_context.span_id();
    let writes = eventually(Duration::from_secs(20), "the batch's insert span", || {
        let writes: Vec<SpanData> = spans
            .named("insert orders")
            .into_iter()
            .filter(|s| s.parent_span_id == batch_id)
            .collect();
        async move { (!writes.is_empty()).then_some(writes) }
    })
    .await;
    for write in &writes {
        assert_eq!(
            write.span_context.trace_id(),
            batch.span_context.trace_id(),
            "{write:?}"
        );
        assert_eq!(write.span_kind, SpanKind::Client);
        assert_eq!(write.status, Status::Unset, "{write:?}");
        assert!(write.start_time >= batch.start_time && write.end_time <= batch.end_time);
    }
    app.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_keeps_its_messages_trace_context() {
    let (_db, streams, app, spans, _provider) = traced_app().await;
    let (trace, parent, traceparent) = context();
    let state = "vendor=opaque,other=1";

    publish(
        &app,
        b"not json at all".to_vec(),
        &[(TRACEPARENT, &traceparent), (TRACESTATE, state)],
    )
    .await;

    let letters = app.dead_letters(1).await;
    assert_eq!(letters.len(), 1);
    let header = |name: &str| letters[0].headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(TRACEPARENT).as_deref(), Some(traceparent.as_str()));
    assert_eq!(header(TRACESTATE).as_deref(), Some(state));
    // The rejected message is linked from its batch like any other.
    batches_linking(&spans, &streams.config.subject, &[(trace, parent)]).await;
    app.stop().await.expect("stops");
}

/// A stand-in OTLP/HTTP collector: answers every request 200 and keeps the
/// bodies posted to `/v1/traces` (protobuf, in which ids are raw bytes).
struct Collector {
    port: u16,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(Collector::serve(socket, kept.clone()));
            }
        });
        Collector { port, bodies, task }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Serves one kept-alive connection's requests.
    async fn serve(mut socket: tokio::net::TcpStream, bodies: Arc<Mutex<Vec<Vec<u8>>>>) {
        let mut buf = Vec::new();
        loop {
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match socket.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < head_end + length {
                match socket.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            let body = buf[head_end..head_end + length].to_vec();
            buf.drain(..head_end + length);
            if head.starts_with("post /v1/traces ") {
                bodies.lock().expect("bodies").push(body);
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            if socket.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    /// Whether one posted body holds every one of `needles`.
    fn received(&self, needles: &[&[u8]]) -> bool {
        let bodies = self.bodies.lock().expect("bodies");
        bodies
            .iter()
            .any(|b| needles.iter().all(|n| b.windows(n.len()).any(|w| w == *n)))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_producer_and_the_server_export_one_trace_over_otlp() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let (producer_collector, server_collector) =
        (Collector::start().await, Collector::start().await);
    let server_endpoint = server_collector.endpoint();
    let mut server = ServerProcess::spawn_with(
        &db.url,
        &streams.nats_url,
        &streams.config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &server_endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        None,
    );
    server.wait_ready(Duration::from_secs(30)).await;

    let produced = tokio::process::Command::new(server_bin().with_file_name("producer"))
        .args(["--count", "1", "--interval", "0", "--quiet"])
        .env("NATS_URL", &streams.nats_url)
        .env("ORDERS_SUBJECT", &streams.config.subject)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", producer_collector.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .kill_on_drop(true)
        .output();
    let produced = tokio::time::timeout(Duration::from_secs(30), produced)
        .await
        .expect("the producer finishes")
        .expect("run the producer");
    assert!(produced.status.success(), "{produced:?}");

    // What the producer published: its order id and trace context.
    let js = async_nats::jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .expect("NATS"),
    );
    let message = js
        .get_stream(&streams.config.stream)
        .await
        .expect("stream")
        .get_raw_message(1)
        .await
        .expect("the published order");
    let traceparent = message
        .headers
        .get(TRACEPARENT)
        .expect("the producer sets traceparent")
        .as_str()
        .to_owned();
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    let trace = TraceId::from_hex(fields[1]).expect("trace id").to_bytes();
    let parent = SpanId::from_hex(fields[2]).expect("span id").to_bytes();
    let order: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
    let uid = order["order_uid"].as_str().expect("order_uid");
    server
        .wait_status(&format!("/orders/{uid}"), 200, Duration::from_secs(20))
        .await;

    // The producer's span is the parent in traceparent; the server's batch
    // span links to both ids. Each under its service name.
    eventually(
        Duration::from_secs(20),
        "the producer's span at its collector",
        || {
            let seen = producer_collector.received(&[&trace, &parent, b"order-cache-producer"]);
            async move { seen.then_some(()) }
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the server's batch span at its collector",
        || {
            let seen = server_collector.received(&[
                &trace,
                &parent,
                b"order-cache",
                streams.config.subject.as_bytes(),
            ]);
            async move { seen.then_some(()) }
        },
    )
    .await;
    server.terminate(Duration::from_secs(20)).await;
}
