//! The lookup page in a real browser: Debian's Chromium, driven by
//! Playwright (`tests/browser/page.test.mjs`), against the service holding
//! an ordinary order, one whose text fields are HTML and script, one
//! whose integers are beyond what a JavaScript number holds exactly, and
//! one with fields the model does not know at every level, and one as a shop
//! would send it (for the screenshots).
//!
//! The live status strip is checked against the service's own numbers: a
//! dead letter is published first, and a trickle of orders when the script
//! asks for it (it creates a file), so the strip's ingest rate has
//! something to show.
//!
//! A second instance, on the same database, has an access token and the
//! listing turned off: the page asks for the token, keeps it for the tab,
//! and hides the list.
//!
//! Needs `node`, `chromium` and `npm ci --prefix tests/browser`, which
//! `.ci/run` installs; built only with the `e2e` feature. Writes the
//! screenshots `docs/page-phone.png` and `docs/page-desktop.png`.

use std::time::Duration;

use async_nats::jetstream;
use serde_json::Value;

use order_cache::BearerTokens;

use crate::helpers::{
    example_order, poll, require_tool, run_checker, set_at, spawn_app, spawn_app_with, unique,
    TestDb, TestStreams,
};
use crate::services::temp_dir;

/// The example order's own id: the order a newcomer's first run shows.
const ORDER_ID: &str = "b563feb7b2b84b6test";
const HOSTILE_ID: &str = "hostile-markup-order";
const BIG_ID: &str = "big-integers-order";
const OTHER_ID: &str = "unknown-fields-order";
/// An id as the producer makes them (a NUID: 22 characters).
const REAL_ID: &str = "kQ3m8ZyTbV1xN4dLrP7sWe";

/// An order as a shop would send it, for the screenshots: several items,
/// a sale on some, a delivery cost, a date with an offset.
fn realistic_order() -> Value {
    serde_json::json!({
        "order_uid": REAL_ID,
        "track_number": "WBILM4827301RU",
        "entry": "WBIL",
        "delivery": {
            "name": "Anna Petrova", "phone": "+79161234567", "zip": "125009",
            "city": "Moscow", "address": "Tverskaya St 7, apt 12", "region": "Moscow",
            "email": "anna.petrova@example.com"
        },
        "payment": {
            "transaction": REAL_ID, "request_id": "", "currency": "RUB", "provider": "wbpay",
            "amount": 6391, "payment_dt": 1_796_154_095_i64, "bank": "sber",
            "delivery_cost": 300, "goods_total": 6091, "custom_fee": 0
        },
        "items": [
            {"chrt_id": 4418203, "track_number": "WBILM4827301RU", "price": 4990,
             "rid": "f2a91c07d3e84b6c9test", "name": "Wireless earbuds", "sale": 20,
             "size": "0", "total_price": 3992, "nm_id": 1846602, "brand": "Soundcore",
             "status": 202},
            {"chrt_id": 4418377, "track_number": "WBILM4827301RU", "price": 1290,
             "rid": "a7c3e5f9b1d24e08atest", "name": "Cotton T-shirt", "sale": 0,
             "size": "M", "total_price": 1290, "nm_id": 2203915, "brand": "Uniqlo",
             "status": 202},
            {"chrt_id": 4419051, "track_number": "WBILM4827301RU", "price": 899,
             "rid": "c0e8b2d4f6a84c1estest", "name": "Running socks, 3 pairs", "sale": 10,
             "size": "42-44", "total_price": 809, "nm_id": 3071448, "brand": "Nike",
             "status": 202}
        ],
        "locale": "en", "internal_signature": "", "customer_id": "anna-p-5521",
        "delivery_service": "meest", "shardkey": "4", "sm_id": 99,
        "date_created": "2026-12-01T22:41:07.513+03:00", "oof_shard": "1"
    })
}

/// An order with fields the model does not know, kept by the service, at
/// every level: names and values in markup, a nested object, `null`, `true`,
/// an empty string, numbers written `1e3`, `1.0` and `-2.5E-3`, a field named
/// `__proto__`; and a date with an offset and nanoseconds. Text, not a
/// `Value`: serde_json would write `1e3` as `1000.0`. `page.test.mjs`
/// expects exactly these (its `OTHER_EXACT` and `OTHER_DATE`).
const OTHER_ORDER: &str = concat!(
    r#"{"order_uid":"unknown-fields-order","track_number":"WBILMTESTTRACK","entry":"WBIL","#,
    r#""delivery":{"name":"Test Testov","phone":"+9720000000","zip":"2639809","city":"Kiryat Mozkin","#,
    r#""address":"Ploshad Mira 15","region":"Kraiot","email":"test@gmail.com","floor":3,"#,
    r#""<img src=x onerror=\"window.__pwned = 9\">":"<b>ring twice</b>","geo":{"lat":55.75,"lon":37.61}},"#,
    r#""payment":{"transaction":"unknown-fields-order","request_id":"","currency":"USD","provider":"wbpay","#,
    r#""amount":1817,"payment_dt":1637907727,"bank":"alpha","delivery_cost":1500,"goods_total":317,"#,
    r#""custom_fee":0,"installments":[1e3,2],"refundable":false},"#,
    r#""items":[{"chrt_id":9934930,"track_number":"WBILMTESTTRACK","price":453,"rid":"ab4219087a764ae0btest","#,
    r#""name":"Mascaras","sale":30,"size":"0","total_price":317,"nm_id":2389212,"brand":"Vivienne Sabo","#,
    r#""status":202,"color":"red","dims":{"w":1.0,"h":2e-1},"gift":null},"#,
    r#"{"chrt_id":9934931,"track_number":"WBILMTESTTRACK","price":453,"rid":"ab4219087a764ae1btest","#,
    r#""name":"Mascaras","sale":30,"size":"0","total_price":317,"nm_id":2389212,"brand":"Vivienne Sabo","#,
    r#""status":202,"<iframe src=\"javascript:window.__pwned = 8\">":"1.0"}],"#,
    r#""locale":"en","internal_signature":"","customer_id":"test","delivery_service":"meest","#,
    r#""shardkey":"9","sm_id":99,"date_created":"2026-12-01T23:39:28.708645252+03:00","oof_shard":"1","#,
    r#""<img src=x onerror=\"window.__pwned = 5\">":"<script>window.__pwned = 6</script>","#,
    r#""weight":1e3,"gift_wrap":true,"note":null,"comment":"","#,
    r#""meta":{"source":"<svg onload=\"window.__pwned = 7\">","tags":["a",1.0,null],"deep":{"n":-2.5E-3}},"#,
    r#""__proto__":{"polluted":"yes"}}"#,
);

/// The example order with integers above 2^53 (where a JavaScript number
/// starts rounding): i64::MAX, and 2^53 + 1, the first it cannot hold.
/// `page.test.mjs` expects exactly these.
fn big_integers_order() -> Value {
    let mut order = example_order(BIG_ID);
    set_at(&mut order, "/payment/amount", i64::MAX.into());
    set_at(
        &mut order,
        "/payment/payment_dt",
        9_007_199_254_740_993_i64.into(),
    );
    set_at(
        &mut order,
        "/payment/goods_total",
        9_007_199_254_740_993_i64.into(),
    );
    set_at(
        &mut order,
        "/items/0/chrt_id",
        9_007_199_254_740_993_i64.into(),
    );
    set_at(&mut order, "/items/0/nm_id", i64::MAX.into());
    order
}

/// Markup an attacker might put into an order, each of which would run
/// script or change the page if the page treated order text as HTML.
const MARKUP: &[&str] = &[
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=\"window.__pwned = 2\">",
    "\"><svg onload=\"window.__pwned = 3\">",
    "<iframe src=\"javascript:window.__pwned = 4\"></iframe>",
    "<b>bold</b> &amp; &lt;not an entity&gt;",
    "javascript:alert(document.cookie)",
];

/// The example order with every text field but its id and date replaced by
/// markup, and a second item.
fn hostile_order() -> Value {
    fn poison(value: &mut Value, n: &mut usize) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if key != "order_uid" && key != "date_created" {
                        poison(v, n);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| poison(v, n)),
            Value::String(s) => {
                *s = MARKUP[*n % MARKUP.len()].to_owned();
                *n += 1;
            }
            _ => {}
        }
    }
    let mut order = example_order(HOSTILE_ID);
    let mut second = order["items"][0].clone();
    second["chrt_id"] = 1.into();
    order["items"].as_array_mut().expect("items").push(second);
    let mut n = 0;
    poison(&mut order, &mut n);
    set_at(&mut order, "/delivery/name", MARKUP[0].into());
    order
}

/// The token of the second instance, which lists no recent orders.
const TOKEN: &str = "page-test-token-0123456789abcdef";

/// Orders the script has published for the status strip's check.
const LIVE_COUNT: usize = 30;

/// Waits (up to 5 minutes, the whole browser run) until `signal` exists,
/// then publishes [`LIVE_COUNT`] orders, one every 100 ms.
async fn publish_when_asked(js: jetstream::Context, subject: String, signal: std::path::PathBuf) {
    let every = Duration::from_millis(50);
    let asked = poll(Duration::from_secs(300), every, || {
        std::future::ready(signal.exists().then_some(()))
    })
    .await;
    if asked.is_err() {
        return;
    }
    let prefix = unique("live");
    for i in 0..LIVE_COUNT {
        let payload = serde_json::to_vec(&example_order(&format!("{prefix}-{i}"))).expect("json");
        if let Ok(ack) = js.publish(subject.clone(), payload.into()).await {
            let _ = ack.await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lookup_page_works_in_a_real_browser_and_shows_markup_as_text() {
    let root = env!("CARGO_MANIFEST_DIR");
    let node = require_tool("node", "NODE", "install Node.js (apt-get install nodejs)");
    let chromium = require_tool(
        "chromium",
        "CHROMIUM",
        "install Debian's Chromium (apt-get install chromium)",
    );
    assert!(
        std::path::Path::new(root)
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/browser` first (installs playwright-core)"
    );
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let app = spawn_app(&db, &streams).await;
    app.publish_order(&example_order(ORDER_ID)).await;
    app.wait_for_order(ORDER_ID).await;
    app.publish_order(&hostile_order()).await;
    let served = app.wait_for_order(HOSTILE_ID).await;
    assert_eq!(
        served,
        hostile_order(),
        "the hostile order is valid and kept"
    );
    app.publish_order(&big_integers_order()).await;
    let served = app.wait_for_order(BIG_ID).await;
    assert_eq!(served, big_integers_order(), "the big integers are kept");
    app.publish(OTHER_ORDER, Some(OTHER_ID)).await;
    let served = app.wait_for_order(OTHER_ID).await;
    let sent: Value = serde_json::from_str(OTHER_ORDER).expect("OTHER_ORDER is JSON");
    assert_eq!(served, sent, "the unknown fields and the date are kept");
    app.publish_order(&realistic_order()).await;
    let served = app.wait_for_order(REAL_ID).await;
    assert_eq!(served, realistic_order(), "the realistic order is valid");
    app.publish(&b"not an order"[..], None).await;
    app.dead_letters(1).await;
    // Restores the orders above from the database they share.
    let closed_streams = TestStreams::new();
    let mut closed = spawn_app_with(&db, &closed_streams, |config| {
        config.api_tokens = BearerTokens::parse(TOKEN).expect("a valid token");
        config.recent_orders = false;
    })
    .await;
    closed.client = closed.client.clone().bearer(TOKEN);
    closed.wait_for_order(ORDER_ID).await;
    let signals = temp_dir("browser-live");
    let signal = signals.join("publish");
    let publisher = tokio::spawn(publish_when_asked(
        app.js.clone(),
        app.ingest.subject.clone(),
        signal.clone(),
    ));

    let mut command = tokio::process::Command::new(node);
    command
        .arg(format!("{root}/tests/browser/page.test.mjs"))
        .env("BASE_URL", format!("http://{}/", app.client.addr()))
        .env("ORDER_ID", ORDER_ID)
        .env("HOSTILE_ID", HOSTILE_ID)
        .env("BIG_ID", BIG_ID)
        .env("OTHER_ID", OTHER_ID)
        .env("REAL_ID", REAL_ID)
        .env(
            "TOKEN_BASE_URL",
            format!("http://{}/", closed.client.addr()),
        )
        .env("TOKEN", TOKEN)
        .env("SCREENSHOT_DIR", format!("{root}/docs"))
        .env("LIVE_SIGNAL", &signal)
        .env("LIVE_COUNT", LIVE_COUNT.to_string())
        .env("CHROMIUM", chromium);
    let stdout = run_checker(&mut command, "browser checks failed").await;
    publisher.abort();
    let _ = std::fs::remove_dir_all(&signals);
    assert!(
        stdout.contains("23 of 23 browser checks passed"),
        "{stdout}"
    );
    app.stop().await.expect("clean stop");
    closed.stop().await.expect("clean stop");
}
