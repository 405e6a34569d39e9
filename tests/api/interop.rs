//! Orders from real producers in other languages, each written the way that
//! runtime writes JSON and dates by default, through its own NATS client
//! (`tests/producers/`): Go's `time.Time` (nanoseconds, the local offset),
//! Python's `isoformat()` (`+00:00`, or the local offset), JavaScript's
//! `toISOString()` and Java's `Instant.toString()`. Each producer's schema
//! also grew fields the service does not know.
//!
//! Every order each one sends must be stored, none dead-lettered, and
//! served back with its `date_created` text exactly as sent and its unknown
//! fields with their values.
//!
//! Needs Go with Debian's nats.go, a JDK, Node.js with
//! `npm ci --prefix tests/producers/node`, and a Python with nats-py, which
//! `scripts/test` installs (`ensure_interop_tools` in `scripts/services.sh`);
//! built only with the `e2e` feature.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use order_cache::ingest::DeadLetter;
use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{
    count_at, eventually, require_tool, run_checker, spawn_app, unique, TestApp, TestDb,
    TestStreams,
};

/// Orders each producer sends: enough for many distinct dates, few enough
/// for a short run.
const COUNT: usize = 50;

/// What a producer must have sent, checked before the service is judged,
/// so that a producer that quietly did something else (a time zone that is
/// not installed falls back to UTC) fails here instead of passing.
struct Sends {
    /// Names the producer in messages and uid prefixes.
    name: &'static str,
    /// The time zone it runs in (`TZ`).
    tz: &'static str,
    /// How every `date_created` it writes ends: its offset.
    offset: &'static str,
    /// The fields it adds that the service does not know, as JSON Pointers.
    unknown: &'static [&'static str],
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory of the test's own, removed with it.
struct Scratch(PathBuf);

impl Scratch {
    fn new(prefix: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds the Go producer in GOPATH mode against the nats.go in
/// `$NATS_GOPATH` (Debian's, in `/usr/share/gocode`, unless set): no Go
/// module can be downloaded here.
async fn go_producer(scratch: &Scratch) -> PathBuf {
    let go = require_tool(
        "go",
        "GO",
        "install Debian's Go (apt-get install golang-go)",
    );
    let gocode = std::env::var_os("NATS_GOPATH").unwrap_or_else(|| "/usr/share/gocode".into());
    assert!(
        Path::new(&gocode)
            .join("src/github.com/nats-io/nats.go")
            .is_dir(),
        "nats.go is not in {gocode:?}: install Debian's (apt-get install \
         golang-github-nats-io-go-nats-dev), or set NATS_GOPATH to a GOPATH that has it"
    );
    let gopath = std::env::join_paths([scratch.0.as_os_str(), &gocode]).expect("GOPATH");
    let binary = scratch.0.join("producer");
    let mut build = Command::new(go);
    build
        .current_dir(root().join("tests/producers/go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(".");
    run_checker(&mut build, "the Go producer does not build").await;
    binary
}

/// The Python that has nats-py: `$NATS_PYTHON`, else `python3`.
async fn nats_python() -> PathBuf {
    let python = require_tool(
        "python3",
        "NATS_PYTHON",
        "install Python 3 (apt-get install python3-venv)",
    );
    let has_nats = Command::new(&python)
        .args(["-c", "import nats"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    assert!(
        has_nats,
        "{python:?} has no nats-py: pip install --require-hashes -r \
         tests/producers/python/requirements.txt into a virtualenv and set NATS_PYTHON to its \
         python (scripts/test does)"
    );
    python
}

fn node() -> PathBuf {
    let node = require_tool("node", "NODE", "install Node.js (apt-get install nodejs)");
    assert!(
        root()
            .join("tests/producers/node/node_modules/nats")
            .is_dir(),
        "run `npm ci --prefix tests/producers/node` first (installs the `nats` package)"
    );
    node
}

/// Runs a producer against a service of its own and checks that every
/// order it sent is stored and served as sent. `producer` makes the
/// producer's command from its arguments: the NATS URL, the subject, a uid
/// prefix and [`COUNT`]. Returns what it sent.
async fn served_as_sent(sends: &Sends, producer: impl FnOnce(&[String]) -> Command) -> Vec<Value> {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    let args = [
        streams.nats_url.clone(),
        app.ingest.subject.clone(),
        unique(sends.name),
        COUNT.to_string(),
    ];
    let mut command = producer(&args);
    command.env("TZ", sends.tz);
    let sent = run_producer(sends, &mut command).await;
    check_what_was_sent(sends, &sent);

    let (stored, dead) = settled(&app, &db).await;
    if dead > 0 {
        panic!("{}", dead_letter_report(&app, sends, dead).await);
    }
    assert_eq!(stored, COUNT as i64, "orders stored from {}", sends.name);
    assert_served_as_sent(&app, sends, &sent).await;
    app.stop().await.expect("clean stop");
    sent
}

/// Runs the producer to its end (a minute at most) and parses what it
/// printed: each payload it had acked, one a line.
async fn run_producer(sends: &Sends, command: &mut Command) -> Vec<Value> {
    let run = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("the {} producer did not finish within 60 s", sends.name))
        .unwrap_or_else(|e| panic!("run the {} producer: {e}", sends.name));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {} producer failed ({}):\n{stdout}\n{stderr}",
        sends.name,
        output.status
    );
    let sent: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "the {} producer printed a line that is not JSON ({e}): {line}",
                    sends.name
                )
            })
        })
        .collect();
    assert_eq!(sent.len(), COUNT, "orders the {} producer sent", sends.name);
    sent
}

/// The producer wrote its dates its runtime's way, in its time zone, and
/// the fields the service does not know.
fn check_what_was_sent(sends: &Sends, sent: &[Value]) {
    for order in sent {
        let date = order["date_created"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(date).is_ok() && date.ends_with(sends.offset),
            "the {} producer (TZ={}) should write RFC 3339 dates ending in {:?}, not {date:?}; \
             is its time zone installed (apt-get install tzdata)?",
            sends.name,
            sends.tz,
            sends.offset
        );
        for pointer in sends.unknown {
            assert!(
                order.pointer(pointer).is_some(),
                "the {} producer sent no {pointer}: {order}",
                sends.name
            );
        }
    }
}

/// Waits until every order is either stored or dead-lettered; how many
/// are which.
async fn settled(app: &TestApp, db: &TestDb) -> (i64, u64) {
    eventually(
        Duration::from_secs(30),
        "every order stored or dead-lettered",
        || async {
            let stored = count_at(&db.url, "SELECT count(*) AS n FROM orders").await?;
            let dead = dead_letter_count(app).await;
            if stored + dead as i64 >= COUNT as i64 {
                Ok((stored, dead))
            } else {
                Err(format!("{stored} stored, {dead} dead-lettered"))
            }
        },
    )
    .await
}

/// Messages in the service's dead-letter stream (none if it has none yet).
async fn dead_letter_count(app: &TestApp) -> u64 {
    match app.js.get_stream(app.ingest.dlq_stream()).await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Why orders were dead-lettered: each reason with how many letters give
/// it and the first one's error, and the first letter's payload.
async fn dead_letter_report(app: &TestApp, sends: &Sends, dead: u64) -> String {
    let letters = app.dead_letters(dead).await;
    let mut reasons: Vec<(DeadLetter, usize)> = Vec::new();
    for m in &letters {
        let letter = DeadLetter::from_headers(Some(&m.headers), &app.ingest.stream);
        match reasons.iter_mut().find(|(l, _)| l.reason == letter.reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((letter, 1)),
        }
    }
    let mut report = format!(
        "{dead} of {COUNT} orders from the {} producer were dead-lettered, not stored:",
        sends.name
    );
    for (letter, n) in &reasons {
        report += &format!("\n  {n} × {} (the first: {})", letter.reason, letter.error);
    }
    if let Some(first) = letters.first() {
        report += &format!(
            "\nthe first sent {}",
            String::from_utf8_lossy(&first.payload)
        );
    }
    report
}

/// Every order is served, its date's text as sent, its unknown fields with
/// their values, and as a whole equal to what was sent.
async fn assert_served_as_sent(app: &TestApp, sends: &Sends, sent: &[Value]) {
    let mut failures = Vec::new();
    for order in sent {
        let uid = order["order_uid"].as_str().expect("order_uid");
        let served = match app.client.get(&format!("/orders/{uid}")).await {
            Ok((200, body)) => serde_json::from_slice::<Value>(&body).expect("order is JSON"),
            Ok((status, body)) => {
                let body = String::from_utf8_lossy(&body);
                failures.push(format!("{uid}: status {status}: {body}"));
                continue;
            }
            Err(e) => {
                failures.push(format!("{uid}: {e}"));
                continue;
            }
        };
        if served["date_created"].as_str() != order["date_created"].as_str() {
            failures.push(format!(
                "{uid}: date_created sent {} served {}",
                order["date_created"], served["date_created"]
            ));
        }
        for pointer in sends.unknown {
            if served.pointer(pointer) != order.pointer(pointer) {
                failures.push(format!(
                    "{uid}: {pointer} sent {} served {}",
                    order.pointer(pointer).unwrap_or(&Value::Null),
                    served
                        .pointer(pointer)
                        .map_or("nothing".into(), Value::to_string)
                ));
            }
        }
        if &served != order {
            failures.push(format!("{uid}: sent {order}\n  served {served}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems with the orders from the {} producer, e.g.:\n{}",
        failures.len(),
        sends.name,
        failures[..failures.len().min(5)].join("\n")
    );
}

/// How many fractional digits a date's seconds have.
fn fraction_digits(date: &str) -> usize {
    date.split_once('.').map_or(0, |(_, rest)| {
        rest.bytes().take_while(u8::is_ascii_digit).count()
    })
}

/// Asserts that some of the dates carry more than microseconds, as Go's
/// `time.Time` does (it drops only trailing zeros).
fn assert_some_nanoseconds(sent: &[Value]) {
    let dates: Vec<&str> = sent
        .iter()
        .filter_map(|o| o["date_created"].as_str())
        .collect();
    assert!(
        dates.iter().any(|d| fraction_digits(d) > 6),
        "no Go date has nanoseconds: {dates:?}"
    );
}

const GO_UTC: Sends = Sends {
    name: "go_utc",
    tz: "UTC",
    offset: "Z",
    unknown: &["/priority", "/items/0/colour"],
};

const GO_KOLKATA: Sends = Sends {
    name: "go_kolkata",
    tz: "Asia/Kolkata",
    offset: "+05:30",
    unknown: GO_UTC.unknown,
};

#[tokio::test(flavor = "multi_thread")]
async fn go_orders_with_utc_time_time_dates_are_served_as_sent() {
    let scratch = Scratch::new("go-producer");
    let producer = go_producer(&scratch).await;
    let sent = served_as_sent(&GO_UTC, |args| {
        let mut command = Command::new(&producer);
        command.args(args);
        command
    })
    .await;
    assert_some_nanoseconds(&sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn go_orders_with_local_time_time_dates_are_served_as_sent() {
    let scratch = Scratch::new("go-producer");
    let producer = go_producer(&scratch).await;
    let sent = served_as_sent(&GO_KOLKATA, |args| {
        let mut command = Command::new(&producer);
        command.args(args);
        command
    })
    .await;
    assert_some_nanoseconds(&sent);
}

/// Runs `tests/producers/python/producer.py` with this date variant.
async fn python_producer(sends: &Sends, variant: &str) {
    let python = nats_python().await;
    let script = root().join("tests/producers/python/producer.py");
    served_as_sent(sends, |args| {
        let mut command = Command::new(python);
        command.arg(script).args(args).arg(variant);
        command
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_orders_with_utc_isoformat_dates_are_served_as_sent() {
    let sends = Sends {
        name: "python_utc",
        tz: "UTC",
        offset: "+00:00",
        unknown: &["/gift_wrap", "/delivery/floor"],
    };
    python_producer(&sends, "utc").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_orders_with_local_isoformat_dates_are_served_as_sent() {
    let sends = Sends {
        name: "python_local",
        tz: "America/Phoenix",
        offset: "-07:00",
        unknown: &["/gift_wrap", "/delivery/floor"],
    };
    python_producer(&sends, "local").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_orders_with_to_iso_string_dates_are_served_as_sent() {
    let node = node();
    let script = root().join("tests/producers/node/producer.mjs");
    let sends = Sends {
        name: "node",
        tz: "UTC",
        offset: "Z",
        unknown: &["/channel", "/payment/installments"],
    };
    served_as_sent(&sends, |args| {
        let mut command = Command::new(node);
        command.arg(script).args(args);
        command
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn java_orders_with_instant_to_string_dates_are_served_as_sent() {
    let java = require_tool(
        "java",
        "JAVA",
        "install Debian's JDK (apt-get install default-jdk-headless)",
    );
    let source = root().join("tests/producers/java/Producer.java");
    let sends = Sends {
        name: "java",
        tz: "Europe/Moscow",
        offset: "Z",
        unknown: &["/source_system", "/items/0/warehouse"],
    };
    served_as_sent(&sends, |args| {
        let mut command = Command::new(java);
        command.arg(source).args(args);
        command
    })
    .await;
}
