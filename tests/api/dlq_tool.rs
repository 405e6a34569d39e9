//! The dead-letter tool, run as the operator would, against a live service.
#![cfg(feature = "cli")]

use std::process::Command;

use order_cache::ingest::REASON_HEADER;
use serde_json::json;

use crate::helpers::{example_order, spawn_app, unique, TestDb, TestStreams};

fn dlq_tool(streams: &TestStreams, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_order-cache-dlq"))
        .env("NATS_URL", &streams.nats_url)
        .env("ORDERS_STREAM", &streams.config.stream)
        .env("ORDERS_SUBJECT", &streams.config.subject)
        .args(args)
        .output()
        .expect("run order-cache-dlq");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

    let listing = dlq_tool(&streams, &["list", "--width", "4000"]);
    assert!(listing.contains("reason=database"), "{listing}");
    assert!(listing.contains(&uid), "{listing}");

    // The fix: the rule was wrong.
    db.execute("ALTER TABLE orders DROP CONSTRAINT no_test_customers")
        .await;
    let replayed = dlq_tool(&streams, &["replay", "--reason", "database", "--delete"]);
    assert!(replayed.contains("replayed #1"), "{replayed}");

    assert_eq!(app.wait_for_order(&uid).await, order);
    let listing = dlq_tool(&streams, &["list", "--width", "4000"]);
    assert!(!listing.contains(&uid), "deleted after replay: {listing}");
    app.stop().await.unwrap();
}
