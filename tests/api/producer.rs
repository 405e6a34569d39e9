//! The producer example as a user runs it: varied orders that the service
//! stores, the same ones again for the same seed, and a given order from a
//! file or from the binary itself.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{run_to_exit, spawn_app, TestApp, TestDb, TestStreams};
use crate::services::{server_bin, temp_dir};

/// Runs `producer` with `args` against the app's stream, from `dir`, and
/// returns the ids it printed.
async fn produce(producer: &Path, dir: &Path, streams: &TestStreams, args: &[&str]) -> Vec<String> {
    produce_said(producer, dir, streams, args).await.0
}

/// [`produce`], and all it printed.
async fn produce_said(
    producer: &Path,
    dir: &Path,
    streams: &TestStreams,
    args: &[&str],
) -> (Vec<String>, String) {
    let (status, output) = run_to_exit(
        tokio::process::Command::new(producer)
            .args(args)
            .args(["--interval", "0"])
            .current_dir(dir)
            .env("NATS_URL", &streams.nats_url)
            .env("ORDERS_SUBJECT", &streams.config.subject),
        Duration::from_secs(60),
    )
    .await;
    assert!(status.is_some_and(|s| s.success()), "{output}");
    // Not a terminal: a line per order, "order N published: <id>".
    let ids = output
        .lines()
        .filter_map(|l| l.split_once(" published: ").map(|(_, id)| id.to_owned()))
        .collect();
    (ids, output)
}

async fn orders(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut orders = Vec::new();
    for id in ids {
        orders.push(app.wait_for_order(id).await);
    }
    orders
}

#[tokio::test(flavor = "multi_thread")]
async fn by_default_the_producer_publishes_varied_orders_that_are_all_stored_and_a_seed_repeats_them(
) {
    let (db, streams) = (TestDb::create().await, TestStreams::new());
    let app = spawn_app(&db, &streams).await;
    let producer = server_bin().with_file_name("producer");
    let here = std::env::temp_dir();

    let ids = produce(
        &producer,
        &here,
        &streams,
        &["--count", "40", "--seed", "11"],
    )
    .await;

    assert_eq!(ids.len(), 40);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 40, "{ids:?}");
    let served = orders(&app, &ids).await;
    let distinct = |f: &dyn Fn(&Value) -> Value| served.iter().map(f).collect::<HashSet<_>>().len();
    assert!(distinct(&|o| o["delivery"]["name"].clone()) > 5);
    assert!(distinct(&|o| o["delivery"]["city"].clone()) > 5);
    assert!(distinct(&|o| o["items"].as_array().map_or(0, Vec::len).into()) > 1);
    assert!(distinct(&|o| o["payment"]["amount"].clone()) > 30);
    // Dated now, not in 2021 as the example order.
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(served.iter().all(|o| o["date_created"]
        .as_str()
        .is_some_and(|d| d.starts_with(&year))));

    let (again, said) = produce_said(
        &producer,
        &here,
        &streams,
        &["--count", "40", "--seed", "11"],
    )
    .await;
    assert_eq!(again, ids, "the same seed publishes the same orders");
    // Which the stream already holds: the producer says they were not
    // stored again, rather than only "published".
    assert!(
        said.contains("40 of them the stream already held"),
        "{said}"
    );
    let other = produce(
        &producer,
        &here,
        &streams,
        &["--count", "5", "--seed", "12"],
    )
    .await;
    assert!(other.iter().all(|id| !ids.contains(id)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_copied_out_of_its_build_tree_publishes_the_example_or_a_given_order() {
    let (db, streams) = (TestDb::create().await, TestStreams::new());
    let app = spawn_app(&db, &streams).await;
    // Alone in a directory of its own, as in an image.
    let dir = temp_dir("order-cache-producer");
    let producer = dir.join("producer");
    std::fs::copy(server_bin().with_file_name("producer"), &producer).expect("copy the producer");

    let ids = produce(
        &producer,
        &dir,
        &streams,
        &["--count", "2", "--example-order"],
    )
    .await;
    for order in orders(&app, &ids).await {
        assert_eq!(order["delivery"]["name"], "Test Testov");
        assert_eq!(order["items"][0]["name"], "Mascaras");
    }

    let mut given: Value =
        serde_json::from_slice(include_bytes!("../../examples/example.json")).expect("JSON");
    given["delivery"]["name"] = "Given Person".into();
    let file = dir.join("given.json");
    std::fs::write(&file, serde_json::to_vec(&given).expect("JSON")).expect("write");
    let ids = produce(
        &producer,
        &dir,
        &streams,
        &["--count", "2", "--file", "given.json"],
    )
    .await;
    assert_eq!(ids.len(), 2);
    for order in orders(&app, &ids).await {
        assert_eq!(order["delivery"]["name"], "Given Person");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--file` with JSON that is not an object (an array, a string), or whose
/// `payment` is not an object, is outside input: refused with an error that
/// names the file, not a panic (setting the fresh id panicked on such
/// values, exit status 101). So is an interval no clock can wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_an_order_object_is_refused_with_an_error_not_a_panic() {
    let streams = TestStreams::new();
    let dir = temp_dir("order-cache-producer-file");
    let producer = server_bin().with_file_name("producer");
    // Runs the producer with `args`; it must refuse them, naming `what`.
    let refused = |args: Vec<&'static str>, what: &'static str| {
        let mut command = tokio::process::Command::new(&producer);
        command
            .args(&args)
            .args(["--count", "1"])
            .current_dir(&dir)
            .env("NATS_URL", &streams.nats_url)
            .env("ORDERS_SUBJECT", &streams.config.subject)
            .env_remove("RUST_BACKTRACE");
        async move {
            let (status, output) = run_to_exit(&mut command, Duration::from_secs(60)).await;
            assert_eq!(status.and_then(|s| s.code()), Some(1), "{args:?}: {output}");
            assert!(!output.contains("panicked"), "{args:?}: {output}");
            assert!(output.contains(what), "the error names {what}: {output}");
        }
    };
    for (name, content) in [
        ("array.json", "[1, 2]"),
        ("string.json", "\"an order\""),
        (
            "payment.json",
            "{\"order_uid\": \"x\", \"payment\": \"cash\"}",
        ),
    ] {
        std::fs::write(dir.join(name), content).expect("write");
        refused(vec!["--file", name, "--interval", "0"], name).await;
    }
    refused(vec!["--interval", "inf"], "--interval").await;
    refused(vec!["--interval", "1e30"], "--interval").await;
    refused(vec!["--rate", "1e-30"], "--rate").await;
    let _ = std::fs::remove_dir_all(&dir);
}
