//! What the `server` example writes to its log: JSON lines when asked, one
//! `WARN` line per rejected message naming its reason and stream sequence,
//! and never the database password.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{example_order, poll, set_at, unique, TestDb, TestStreams};
use crate::services::{server_bin, temp_dir, ServerProcess};

const PASSWORD: &str = "pw-that-must-not-leak";

/// The test database's URL with a password in it (trust authentication
/// ignores it, so the server still connects).
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

/// Every line of the log, each of which must be a JSON object.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_one_warning_per_rejection_and_no_password() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let dir = temp_dir("order-cache-logs");
    let log = dir.join("server.log");
    let url = with_password(&db.url);
    assert!(url.contains(PASSWORD));
    let mut server = ServerProcess::spawn_with(
        &url,
        &streams.nats_url,
        &streams.config,
        &[("LOG_JSON", "1"), ("RUST_LOG", "info")],
        Some(&log),
    );
    server.wait_ready(Duration::from_secs(30)).await;

    let js = async_nats::jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .expect("NATS"),
    );
    let publish = |payload: Vec<u8>| {
        let js = js.clone();
        let subject = streams.config.subject.clone();
        async move {
            js.publish(subject, payload.into())
                .await
                .expect("publish")
                .await
                .expect("ack")
                .sequence
        }
    };
    let garbage_seq = publish(b"{\"order_uid\": \"x\", oops".to_vec()).await;
    let invalid = {
        let mut o = example_order(&unique("neg"));
        set_at(&mut o, "/payment/amount", (-5).into());
        serde_json::to_vec(&o).expect("json")
    };
    let invalid_seq = publish(invalid).await;
    let good = unique("good");
    publish(serde_json::to_vec(&example_order(&good)).expect("json")).await;

    // The valid order behind them is served, so both rejections were handled.
    server
        .wait_status(&format!("/orders/{good}"), 200, Duration::from_secs(20))
        .await;
    let rejections = |lines: &[Value]| -> Vec<(String, u64)> {
        lines
            .iter()
            .filter(|l| {
                l["level"] == "WARN" && l["fields"]["message"] == "order rejected; dead-lettered"
            })
            .map(|l| {
                (
                    l["fields"]["reason"].as_str().unwrap_or("").to_owned(),
                    l["fields"]["stream_sequence"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    // Log lines are written as they happen; the HTTP answer may come first.
    // If they never come, the checks below say what the log holds instead.
    let lines = poll(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let lines = json_lines(&log);
            (rejections(&lines).len() >= 2).then_some(lines)
        },
    )
    .await
    .unwrap_or_else(|_| json_lines(&log));
    let mut seen = rejections(&lines);
    seen.sort_by_key(|(_, seq)| *seq);
    assert_eq!(
        seen,
        [
            ("syntax".to_owned(), garbage_seq),
            ("invalid".to_owned(), invalid_seq)
        ],
        "one line per rejection, with reason and stream sequence"
    );
    let error = lines
        .iter()
        .find(|l| l["fields"]["reason"] == "invalid")
        .and_then(|l| l["fields"]["error"].as_str())
        .unwrap_or("");
    assert_eq!(
        error,
        "payment.amount: -5 is outside 0..=9223372036854775807"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"),
        "info lines are logged too"
    );

    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains(PASSWORD),
        "the password leaked into the log:\n{text}"
    );
    let _ = server.terminate(Duration::from_secs(20)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_help_nor_a_failed_start_shows_a_password() {
    let help = std::process::Command::new(server_bin())
        .arg("--help")
        .env_remove("DATABASE_URL")
        .output()
        .expect("server --help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--database-url"), "{help}");
    assert!(
        !help.contains("postgres://"),
        "--help shows a database URL:\n{help}"
    );

    // Nothing listens on port 1: the start fails, and says where it tried.
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/orders");
    let out = std::process::Command::new(server_bin())
        .env("DATABASE_URL", &url)
        .env("STARTUP_TIMEOUT", "1")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .output()
        .expect("server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "start must fail:\n{text}");
    assert!(
        text.contains("postgres://postgres:***@127.0.0.1:1/orders"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
}
