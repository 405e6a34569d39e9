//! The running service conforms to `openapi.yaml`: schemathesis reads the
//! document the service serves, generates valid and invalid requests for
//! every route, and checks every answer's status, content type, headers and
//! body against it (`--checks all`).
//!
//! The service runs with an access token, which schemathesis sends as the
//! document's bearer scheme says; its `ignored_auth` check (in `all`)
//! sends requests without it too, and expects the routes that declare the
//! scheme to refuse them.
//!
//! Needs `schemathesis` (PyPI), which `.ci/run` installs; built only with
//! the `e2e` feature. `SCHEMATHESIS_SEED` replays another seed.

use order_cache::BearerTokens;
use serde_json::{json, Value};

use crate::helpers::{
    example_order, require_tool, run_checker, set_at, spawn_app_with, TestDb, TestStreams,
};
use crate::services::temp_dir;

/// The id in the spec's examples: it must exist so the 200 answers (and
/// their body schema) are checked, not only the errors.
const EXAMPLE_ID: &str = "b563feb7b2b84b6test";

/// The service's access token.
const TOKEN: &str = "schemathesis-token-0123456789";

/// The example order as the service may now serve it, so that the answers
/// checked against the spec hold what it must allow: a field the model does
/// not know at every level, and a date that a JSON Schema `date-time`
/// validator refuses (a space for the `T`, and a leap second at 23:59:60
/// local time, 20:59:60 UTC).
fn order_with_unknown_fields(uid: &str) -> Value {
    let mut order = example_order(uid);
    set_at(
        &mut order,
        "/date_created",
        "2026-12-01 23:59:60.708645252+03:00".into(),
    );
    set_at(
        &mut order,
        "/gift_wrap",
        json!({"paper": "red", "weight": 1.5}),
    );
    set_at(&mut order, "/delivery/floor", 3.into());
    set_at(&mut order, "/payment/installments", json!([1, 2, null]));
    set_at(&mut order, "/items/0/color", "red".into());
    order
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_service_conforms_to_its_openapi_document() {
    let schemathesis = require_tool(
        "schemathesis",
        "SCHEMATHESIS",
        "install it (pip install schemathesis)",
    );
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let mut app = spawn_app_with(&db, &streams, |config| {
        config.api_tokens = BearerTokens::parse(TOKEN).expect("a valid token");
    })
    .await;
    app.client = app.client.clone().bearer(TOKEN);
    app.publish_order(&order_with_unknown_fields(EXAMPLE_ID))
        .await;
    app.publish_order(&example_order("second-order_2")).await;
    let served = app.wait_for_order(EXAMPLE_ID).await;
    assert_eq!(
        served,
        order_with_unknown_fields(EXAMPLE_ID),
        "served as sent"
    );
    app.wait_for_order("second-order_2").await;

    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261127".into());
    let reports = temp_dir("schemathesis");
    let mut command = tokio::process::Command::new(schemathesis);
    command
        .arg("run")
        .arg(format!("http://{}/openapi.yaml", app.client.addr()))
        .args(["--checks", "all", "--max-examples", "200", "--seed", &seed])
        .args(["--workers", "2", "--request-timeout", "10"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .arg("--report-dir")
        .arg(&reports)
        // It keeps a cache in its working directory: not in the checkout.
        .current_dir(&reports)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    let stdout = run_checker(
        &mut command,
        &format!("the service does not conform to openapi.yaml (seed {seed})"),
    )
    .await;
    // Every route was exercised, and none was only ever answered 404.
    assert!(stdout.contains("Tested: 11"), "{stdout}");
    assert!(!stdout.contains("Missing test data"), "{stdout}");
    let _ = std::fs::remove_dir_all(&reports);
    app.stop().await.expect("clean stop");
}

/// The document reads, to a YAML parser, as what its authors wrote. An
/// unquoted comma inside a flow mapping ends the value there:
/// `{ type: integer, description: Messages dead-lettered, whatever the
/// reason. }` gives `dead_letters` a key `whatever the reason.` with no
/// value (so does `payment_dt`'s `Unix time, seconds`), which the OpenAPI
/// 3.0 schema forbids: openapi-spec-validator and openapi-core refuse the
/// whole document ("is not valid under any of the given schemas"), so a
/// client generated or validated from it cannot be had. schemathesis is
/// lenient and does not notice. Read with the PyYAML schemathesis brings.
#[test]
fn every_key_in_the_openapi_document_has_a_value() {
    let schemathesis = require_tool(
        "schemathesis",
        "SCHEMATHESIS",
        "install it (pip install schemathesis)",
    );
    let python = schemathesis.with_file_name("python");
    let document = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
    let script = r#"
import sys, yaml
def walk(node, path):
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None:
                print("/".join(path + [str(key)]))
            walk(value, path + [str(key)])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, path + [str(i)])
walk(yaml.safe_load(open(sys.argv[1], encoding="utf-8")), [])
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(&document)
        .output()
        .expect("run schemathesis' python");
    assert!(output.status.success(), "{output:?}");
    let empty = String::from_utf8_lossy(&output.stdout);
    assert!(
        empty.trim().is_empty(),
        "keys without a value (an unquoted ', ' in a flow mapping?):\n{empty}"
    );
}
