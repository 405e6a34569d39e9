//! The dead-letter tool, run as the operator would: against letters written
//! straight into a test's own dead-letter stream (in the format the service
//! writes), and end to end against a live service.
#![cfg(feature = "cli")]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use order_cache::ingest::{
    ensure_topology, ERROR_HEADER, PAYLOAD_OMITTED_HEADER, REASON_HEADER, SEQUENCE_HEADER,
    SOURCE_STREAM_HEADER,
};
use serde_json::json;

use crate::compatibility;
use crate::helpers::{example_order, poll, spawn_app, unique, TestDb, TestStreams};
use crate::services::{free_port, temp_dir, wait_for_port};

/// What a run of the tool printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the tool against `streams` (by their names) on `nats_url`, with
/// these extra environment variables, bounded in time.
async fn run_with(
    nats_url: &str,
    streams: &TestStreams,
    env: &[(&str, &str)],
    args: &[&str],
) -> Run {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-cache-dlq"))
        .env("NATS_URL", nats_url)
        .env("ORDERS_STREAM", &streams.config.stream)
        .env("ORDERS_SUBJECT", &streams.config.subject)
        .envs(env.iter().copied())
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .unwrap_or_else(|_| panic!("order-cache-dlq {args:?} still running after 90 s"))
        .expect("run order-cache-dlq");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn run_at(nats_url: &str, streams: &TestStreams, args: &[&str]) -> Run {
    run_with(nats_url, streams, &[], args).await
}

async fn run(streams: &TestStreams, args: &[&str]) -> Run {
    run_at(&streams.nats_url, streams, args).await
}

/// Runs the tool and insists that it succeeded; its stdout.
async fn dlq_tool(streams: &TestStreams, args: &[&str]) -> String {
    let run = run(streams, args).await;
    assert_eq!(run.code, Some(0), "order-cache-dlq {args:?}: {run}");
    run.stdout
}

/// One dead letter as the service writes it.
struct Letter {
    reason: &'static str,
    source_seq: u64,
    /// `None`: a letter written before the header existed.
    source_stream: Option<String>,
    /// The original's size when it was too large to carry.
    omitted: Option<usize>,
    payload: Bytes,
}

fn letter(reason: &'static str, source_seq: u64, payload: impl Into<Bytes>) -> Letter {
    Letter {
        reason,
        source_seq,
        source_stream: None,
        omitted: None,
        payload: payload.into(),
    }
}

/// A test's own streams, created as the service creates them, with nothing
/// consuming them.
struct Topology {
    streams: TestStreams,
    js: jetstream::Context,
}

impl Topology {
    async fn new() -> Topology {
        Topology::on(TestStreams::new()).await
    }

    async fn on(streams: TestStreams) -> Topology {
        let client = async_nats::connect(streams.nats_url.as_str())
            .await
            .expect("tests need NATS: set TEST_NATS_URL");
        Topology::with(streams, client).await
    }

    async fn with(streams: TestStreams, client: async_nats::Client) -> Topology {
        let js = jetstream::new(client);
        ensure_topology(&js, &streams.config)
            .await
            .expect("create streams");
        Topology { streams, js }
    }

    /// Publishes letters into the dead-letter stream, acks awaited in
    /// windows; their sequences.
    async fn dead_letters(&self, letters: impl IntoIterator<Item = Letter>) -> Vec<u64> {
        let mut seqs = Vec::new();
        let mut acks = Vec::new();
        for l in letters {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(REASON_HEADER, l.reason);
            headers.insert(ERROR_HEADER, format!("test letter: {}", l.reason).as_str());
            headers.insert(SEQUENCE_HEADER, l.source_seq.to_string().as_str());
            if let Some(stream) = &l.source_stream {
                headers.insert(SOURCE_STREAM_HEADER, stream.as_str());
            }
            if let Some(size) = l.omitted {
                headers.insert(PAYLOAD_OMITTED_HEADER, size.to_string().as_str());
            }
            acks.push(
                self.js
                    .publish_with_headers(
                        self.streams.config.dlq_subject.clone(),
                        headers,
                        l.payload,
                    )
                    .await
                    .expect("publish letter"),
            );
            if acks.len() == 256 {
                for ack in acks.drain(..) {
                    seqs.push(ack.await.expect("letter stored").sequence);
                }
            }
        }
        for ack in acks {
            seqs.push(ack.await.expect("letter stored").sequence);
        }
        seqs
    }

    /// Publishes a message to the orders subject as a producer would; its
    /// sequence in the orders stream.
    async fn original(&self, payload: impl Into<Bytes>, msg_id: Option<&str>) -> u64 {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        }
        self.js
            .publish_with_headers(self.streams.config.subject.clone(), headers, payload.into())
            .await
            .expect("publish original")
            .await
            .expect("original stored")
            .sequence
    }

    async fn stream(&self, name: &str) -> jetstream::stream::Stream {
        self.js.get_stream(name).await.expect("stream")
    }

    /// Every message in the orders stream, oldest first.
    async fn orders(&self) -> Vec<jetstream::message::StreamMessage> {
        let mut stream = self.stream(&self.streams.config.stream).await;
        let state = stream.info().await.expect("orders info").state.clone();
        let mut out = Vec::new();
        if state.messages > 0 {
            for seq in state.first_sequence..=state.last_sequence {
                match stream.get_raw_message(seq).await {
                    Ok(m) => out.push(m),
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::stream::RawMessageErrorKind::NoMessageFound
                        ) => {}
                    Err(e) => panic!("orders stream #{seq}: {e}"),
                }
            }
        }
        out
    }

    async fn dlq_messages(&self) -> u64 {
        let mut stream = self.stream(&self.streams.config.dlq_stream()).await;
        stream.info().await.expect("dlq info").state.messages
    }
}

/// The dead-letter sequences a listing shows, in order.
fn listed(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once(' '))
        .map(|(seq, _)| seq.parse().expect("listed sequence"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_order_is_listed_and_once_fixed_replayed_into_the_store() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    db.execute(
        "ALTER TABLE orders ADD CONSTRAINT no_test_customers CHECK (customer_id <> 'blocked')",
    )
    .await;
    let uid = unique("blocked");
    let mut order = example_order(&uid);
    order["customer_id"] = json!("blocked");
    app.publish_order(&order).await;
    let letters = app.dead_letters(1).await;
    assert_eq!(
        letters[0].headers.get(REASON_HEADER).unwrap().as_str(),
        "database"
    );

    let listing = dlq_tool(&streams, &["list", "--width", "4000"]).await;
    assert!(listing.contains("reason=database"), "{listing}");
    assert!(listing.contains(&uid), "{listing}");

    // The fix: the rule was wrong.
    db.execute("ALTER TABLE orders DROP CONSTRAINT no_test_customers")
        .await;
    let replayed = dlq_tool(&streams, &["replay", "--reason", "database", "--delete"]).await;
    assert!(replayed.contains("replayed #1"), "{replayed}");

    assert_eq!(app.wait_for_order(&uid).await, order);
    let listing = dlq_tool(&streams, &["list", "--width", "4000"]).await;
    assert!(!listing.contains(&uid), "deleted after replay: {listing}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn letters_the_old_rules_wrote_are_replayed_and_stored() {
    // What the release before dates and unknown fields were kept
    // dead-lettered: an order from a Go producer (a +03:00 date with
    // nanoseconds, fields added upstream).
    let t = Topology::new().await;
    let uid = unique("go");
    let date = compatibility::DATES[1];
    let sent = compatibility::grown(&uid, date);
    t.dead_letters([letter("shape", 1, sent.clone())]).await;
    let db = TestDb::create().await;
    let app = spawn_app(&db, &t.streams).await;

    let replayed = dlq_tool(&t.streams, &["replay", "--reason", "shape", "--delete"]).await;
    assert!(replayed.contains("replayed #1"), "{replayed}");

    app.wait_for_order(&uid).await;
    let (status, body) = app.client.get(&format!("/orders/{uid}")).await.unwrap();
    assert_eq!(status, 200);
    compatibility::assert_as_sent(&body, &sent, date);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn typos_and_missing_letters_are_errors_but_no_match_is_an_empty_answer() {
    let t = Topology::new().await;
    t.dead_letters([letter("syntax", 1, "{"), letter("shape", 2, "[]")])
        .await;

    // A reason that does not exist is a typo, not "0 letters".
    let bogus = run(&t.streams, &["list", "--reason", "bogus"]).await;
    assert_ne!(bogus.code, Some(0), "{bogus}");
    for valid in [
        "empty",
        "too_large",
        "not_utf8",
        "shape",
        "invalid",
        "database",
    ] {
        assert!(bogus.stderr.contains(valid), "lists {valid}: {bogus}");
    }
    let bogus = run(&t.streams, &["replay", "--reason", "bogus"]).await;
    assert_ne!(bogus.code, Some(0), "{bogus}");

    // A sequence that is not a letter: named, and nothing replayed.
    let missing = run(&t.streams, &["replay", "99"]).await;
    assert_ne!(missing.code, Some(0), "{missing}");
    assert!(missing.stderr.contains("#99"), "{missing}");
    let missing = run(&t.streams, &["replay", "1", "99", "100"]).await;
    assert_ne!(missing.code, Some(0), "{missing}");
    assert!(
        missing.stderr.contains("#99") && missing.stderr.contains("#100"),
        "{missing}"
    );
    assert!(!missing.stdout.contains("replayed"), "{missing}");
    assert!(t.orders().await.is_empty(), "nothing replayed");

    // A valid reason without letters is a legitimate empty answer.
    let none = run(&t.streams, &["list", "--reason", "database"]).await;
    assert_eq!(none.code, Some(0), "{none}");
    assert!(listed(&none.stdout).is_empty(), "{none}");
    assert!(
        none.stderr.contains("no dead letters with reason database"),
        "{none}"
    );
    let none = run(&t.streams, &["replay", "--reason", "database"]).await;
    assert_eq!(none.code, Some(0), "{none}");
    assert!(t.orders().await.is_empty(), "nothing replayed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_dropped_as_a_duplicate_is_reported_and_kept() {
    let t = Topology::new().await;
    // The producer published the order with its id as Nats-Msg-Id a moment
    // ago; a replay of its letter must not be mistaken for that publish.
    let body = serde_json::to_vec(&example_order("dup-1")).expect("json");
    let original = t.original(body.clone(), Some("dup-1")).await;
    let seqs = t.dead_letters([letter("database", original, body)]).await;
    assert_eq!(seqs, [1]);

    let first = run(&t.streams, &["replay", "1"]).await;
    assert_eq!(first.code, Some(0), "{first}");
    assert!(first.stdout.contains("replayed #1"), "{first}");
    assert_eq!(t.orders().await.len(), 2, "original and replay");

    // The same letter again, by accident, within the duplicate window.
    let again = run(&t.streams, &["replay", "1", "--delete"]).await;
    assert_ne!(again.code, Some(0), "{again}");
    assert!(!again.stdout.contains("replayed #1"), "{again}");
    assert!(again.stdout.contains("duplicate #1"), "{again}");
    assert_eq!(t.orders().await.len(), 2, "JetStream dropped it");
    assert_eq!(t.dlq_messages().await, 1, "kept, not deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_omitted_payload_is_replayed_from_the_source_stream_byte_for_byte() {
    let t = Topology::new().await;
    let orders = t.streams.config.stream.clone();
    // Not UTF-8 and large: only the source stream has these bytes.
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
    let other: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
    let gone: Vec<u8> = vec![b'x'; 200_000];
    let big_seq = t.original(big.clone(), None).await;
    let other_seq = t.original(other.clone(), None).await;
    let gone_seq = t.original(gone.clone(), None).await;
    assert!(t
        .stream(&orders)
        .await
        .delete_message(gone_seq)
        .await
        .expect("delete original"));
    let omitted = |source_seq, size, source_stream: Option<String>| Letter {
        reason: "not_utf8",
        source_seq,
        source_stream,
        omitted: Some(size),
        payload: Bytes::new(),
    };
    t.dead_letters([
        omitted(big_seq, big.len(), Some(orders.clone())),
        // Written before the source-stream header existed: the tool's
        // --orders-stream is the source.
        omitted(other_seq, other.len(), None),
        omitted(gone_seq, gone.len(), Some(orders.clone())),
    ])
    .await;

    let listing = dlq_tool(&t.streams, &["list"]).await;
    assert_eq!(listed(&listing), [1, 2, 3], "{listing}");
    assert!(listing.contains("omitted"), "{listing}");
    assert!(listing.contains(&big.len().to_string()), "{listing}");
    assert!(
        listing.contains(&format!("{orders} #{big_seq}")),
        "where it lives: {listing}"
    );

    let replay = run(&t.streams, &["replay", "1", "2"]).await;
    assert_eq!(replay.code, Some(0), "{replay}");
    let published = t.orders().await;
    assert_eq!(published.len(), 4, "two originals kept, two replayed");
    assert!(published[2].payload == big, "first replay is the original");
    assert!(
        published[3].payload == other,
        "second replay is the original"
    );

    // The source no longer has it: loud, and nothing published.
    let lost = run(&t.streams, &["replay", "3"]).await;
    assert_ne!(lost.code, Some(0), "{lost}");
    assert!(lost.stdout.contains("not replayed #3"), "{lost}");
    assert!(
        lost.stdout.contains(&format!("{orders} #{gone_seq}")),
        "{lost}"
    );
    assert_eq!(t.orders().await.len(), 4, "nothing published");
}

/// A nats-server of the test's own where a client without credentials is
/// user `reader`, who may look at streams but not read their messages (no
/// consumers, no message gets); user `admin` may do anything.
struct LockedNats {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl LockedNats {
    async fn start() -> LockedNats {
        let dir = temp_dir("order-cache-dlq-nats");
        let port = free_port();
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                r#"
listen: "127.0.0.1:{port}"
no_auth_user: reader
jetstream {{ store_dir: "{store}" }}
accounts {{
  APP {{
    jetstream: enabled
    users: [
      {{ user: admin, password: admin }}
      {{ user: reader, password: reader, permissions: {{
          publish: {{ deny: ["$JS.API.CONSUMER.>", "$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>"] }} }} }}
    ]
  }}
}}
"#,
                store = dir.join("js").display()
            ),
        )
        .expect("write nats.conf");
        let child = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH");
        let nats = LockedNats { dir, port, child };
        wait_for_port(port, true, Duration::from_secs(20)).await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn admin(&self) -> async_nats::Client {
        async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
            .connect(self.url())
            .await
            .expect("connect as admin")
    }
}

impl Drop for LockedNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn read_errors_are_fatal_never_an_empty_answer() {
    let nats = LockedNats::start().await;
    let t = Topology::with(TestStreams::on(nats.url()), nats.admin().await).await;
    t.dead_letters([letter("syntax", 1, "{")]).await;
    let dlq = t.streams.config.dlq_stream().clone();

    // The stream is there, its letters cannot be read: the server refuses
    // the requests, which then time out (after 2 s, not the default 10).
    // Whatever the command, it fails and says what it could not read.
    for args in [
        &["list"][..],
        &["list", "--reason", "syntax"],
        &["replay", "--reason", "syntax"],
        &["replay", "1"],
    ] {
        let denied = run_with(&nats.url(), &t.streams, &[("DLQ_TIMEOUT", "2")], args).await;
        assert_ne!(denied.code, Some(0), "{args:?}: {denied}");
        assert!(
            denied.stderr.contains(&dlq),
            "{args:?} names the stream: {denied}"
        );
        assert!(
            denied.stderr.to_lowercase().contains("permission"),
            "{args:?} passes on what the server said: {denied}"
        );
        assert!(!denied.stdout.contains("replayed"), "{args:?}: {denied}");
    }

    // No such dead-letter stream.
    let nowhere = TestStreams::new();
    let missing = run(&nowhere, &["list"]).await;
    assert_ne!(missing.code, Some(0), "{missing}");
    assert!(
        missing.stderr.contains(&nowhere.config.dlq_stream()),
        "{missing}"
    );

    // Nothing listening.
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let unreachable = run_at(&dead, &t.streams, &["list"]).await;
    assert_ne!(unreachable.code, Some(0), "{unreachable}");
    assert!(unreachable.stderr.contains(&dead), "{unreachable}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_letters_are_listed_completely() {
    const LETTERS: u64 = 3_000;
    use order_cache::ingest::REASONS;
    let t = Topology::new().await;
    let seqs = t
        .dead_letters((0..LETTERS).map(|i| {
            letter(
                REASONS[(i % 7) as usize],
                i + 1,
                format!("{{\"letter\": {i}}}"),
            )
        }))
        .await;
    // Gaps, as `replay --delete` leaves them.
    let dlq = t.stream(&t.streams.config.dlq_stream()).await;
    let deleted: BTreeSet<u64> = (1..=LETTERS).filter(|s| s % 97 == 0).collect();
    for &seq in &deleted {
        assert!(dlq.delete_message(seq).await.expect("delete letter"));
    }
    let expected: Vec<u64> = seqs.into_iter().filter(|s| !deleted.contains(s)).collect();

    let all = run(&t.streams, &["list", "--width", "20"]).await;
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    assert_eq!(listed(&all.stdout), expected);
    assert!(
        all.stderr
            .contains(&format!("{} dead letters", expected.len())),
        "{}",
        all.stderr
    );

    let shape = run(&t.streams, &["list", "--reason", "shape"]).await;
    assert_eq!(shape.code, Some(0), "{}", shape.stderr);
    let want: Vec<u64> = expected
        .iter()
        .copied()
        .filter(|s| (s - 1) % 7 == 4)
        .collect();
    assert_eq!(listed(&shape.stdout), want);
}

/// Peak resident memory of a child, sampled from /proc while it runs (the
/// high-water mark only grows, so the last sample is close to the peak).
async fn run_measuring_peak_kib(
    mut command: tokio::process::Command,
) -> (std::process::ExitStatus, u64) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let status_file = format!("/proc/{}/status", child.id().expect("running"));
    let mut peak = 0;
    let every = Duration::from_millis(5);
    let status = poll(Duration::from_secs(90), every, || {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        std::future::ready(child.try_wait().expect("wait"))
    })
    .await
    .unwrap_or_else(|e| panic!("the listing: {e}"));
    (status, peak)
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_memory_does_not_grow_with_the_letters() {
    // 160 letters of 640 KiB: 100 MiB of payloads.
    const LETTERS: usize = 160;
    let t = Topology::new().await;
    let payload = Bytes::from(vec![b'a'; 640 * 1024]);
    t.dead_letters((0..LETTERS).map(|i| letter("invalid", i as u64 + 1, payload.clone())))
        .await;

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-cache-dlq"));
    command
        .env("NATS_URL", &t.streams.nats_url)
        .env("ORDERS_STREAM", &t.streams.config.stream)
        .args(["list", "--width", "10"]);
    let (status, peak_kib) = run_measuring_peak_kib(command).await;
    assert!(status.success(), "{status}");
    assert!(
        peak_kib < 48 * 1024,
        "listing 100 MiB of letters peaked at {peak_kib} KiB"
    );
}
