//! A corpus of hostile payloads, each with the rejection reason it must get.

use serde_json::{json, Value};

use crate::helpers::{example_order, remove_at, set_at};

fn valid() -> Value {
    example_order("placeholder")
}

/// The example order with the value at `pointer` set.
fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut v = valid();
    set_at(&mut v, pointer, value);
    serde_json::to_vec(&v).unwrap()
}

/// The example order without the key at `pointer`.
fn without(pointer: &str) -> Vec<u8> {
    let mut v = valid();
    remove_at(&mut v, pointer);
    serde_json::to_vec(&v).unwrap()
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// (payload, expected `Order-Cache-Reason`).
pub fn hostile() -> Vec<(Vec<u8>, &'static str)> {
    let example = text(&valid());
    let item = valid()["items"][0].clone();
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let deep_in_field = example.replacen(
        "\"delivery\":{",
        &format!("\"delivery\":{}{{", "{\"a\":".repeat(5_000)),
        1,
    );
    vec![
        (b"".to_vec(), "empty"),
        (b"   ".to_vec(), "empty"),
        (b"\n\r\n\t".to_vec(), "empty"),
        (vec![b' '; 900_000], "empty"),
        (b"\xff\xfe\xfd".to_vec(), "not_utf8"),
        (b"{\"order_uid\":\"\xc0\xaf\"}".to_vec(), "not_utf8"),
        (format!("\u{feff}{example}").into_bytes(), "syntax"),
        (b"not json".to_vec(), "syntax"),
        (example.as_bytes()[..example.len() / 2].to_vec(), "syntax"),
        (format!("{example}{example}").into_bytes(), "syntax"),
        (b"{\"order_uid\":\"\\ud800\"}".to_vec(), "syntax"),
        (b"{\"order_uid\":\"a\x01b\"}".to_vec(), "syntax"),
        (deep.into_bytes(), "shape"),
        // Unbalanced: read as an unknown field to its end, it is not JSON.
        (deep_in_field.into_bytes(), "syntax"),
        (b"[1,2,3]".to_vec(), "shape"),
        (b"42".to_vec(), "shape"),
        (b"\"an order\"".to_vec(), "shape"),
        (b"null".to_vec(), "shape"),
        (b"true".to_vec(), "shape"),
        (b"{}".to_vec(), "shape"),
        (
            example
                .replacen(
                    "\"entry\":\"WBIL\"",
                    "\"entry\":\"WBIL\",\"entry\":\"X\"",
                    1,
                )
                .into_bytes(),
            "shape",
        ),
        (without("/items"), "shape"),
        (without("/payment"), "shape"),
        (without("/delivery/email"), "shape"),
        // Unknown fields are kept, but not one a case-blind reader would
        // take for a known field, nor one nested past the limit.
        (with("/ORDER_UID", json!("other")), "shape"),
        (with("/items/0/Price", json!(1)), "shape"),
        (
            example
                .replacen(
                    "\"entry\":\"WBIL\"",
                    &format!("\"entry\":\"WBIL\",\"x\":{}", "[".repeat(100_000)),
                    1,
                )
                .into_bytes(),
            "syntax",
        ),
        (
            example
                .replacen(
                    "\"entry\":\"WBIL\"",
                    &format!(
                        "\"entry\":\"WBIL\",\"x\":{}{}",
                        "[".repeat(65),
                        "]".repeat(65)
                    ),
                    1,
                )
                .into_bytes(),
            "shape",
        ),
        (
            example
                .replacen(
                    "\"entry\":\"WBIL\"",
                    "\"entry\":\"WBIL\",\"x\":1,\"x\":2",
                    1,
                )
                .into_bytes(),
            "shape",
        ),
        (with("/payment/amount", json!("1817")), "shape"),
        (with("/payment/amount", json!(18.17)), "shape"),
        (with("/payment/amount", json!(1e3)), "shape"),
        (
            example
                .replacen("\"amount\":1817", "\"amount\":99999999999999999999", 1)
                .into_bytes(),
            "shape",
        ),
        (with("/track_number", json!(null)), "shape"),
        (with("/date_created", json!(1637907727)), "shape"),
        (with("/items", json!({"0": item.clone()})), "shape"),
        (with("/payment/amount", json!(-1)), "invalid"),
        (with("/items/0/sale", json!(101)), "invalid"),
        (with("/sm_id", json!(1u64 << 31)), "invalid"),
        (with("/items/0/status", json!(-1)), "invalid"),
        (with("/order_uid", json!("")), "invalid"),
        (with("/order_uid", json!("a/b")), "invalid"),
        (with("/order_uid", json!("a?b=1")), "invalid"),
        (with("/order_uid", json!("a%2Fb")), "invalid"),
        (with("/order_uid", json!("..")), "invalid"),
        (with("/order_uid", json!("b563feb7b2b84b6tеst")), "invalid"), // Cyrillic е
        (with("/order_uid", json!("ｂ563")), "invalid"),
        (with("/order_uid", json!("a b")), "invalid"),
        (with("/order_uid", json!("x".repeat(65))), "invalid"),
        (with("/delivery/name", json!("nul\u{0}here")), "invalid"),
        (with("/items/0/brand", json!("x".repeat(2000))), "invalid"),
        (with("/entry", json!("y".repeat(1_000_000))), "invalid"),
        (with("/items", json!([])), "invalid"),
        (with("/items", Value::Array(vec![item; 1001])), "invalid"),
        (with("/date_created", json!("yesterday")), "invalid"),
        (
            with("/date_created", json!("2021-11-26T09:22:19.123456789")),
            "invalid",
        ),
        (
            with("/date_created", json!("2021-11-26T09:22:19+24:00")),
            "invalid",
        ),
        (
            with("/date_created", json!("2021-02-30T06:22:19Z")),
            "invalid",
        ),
    ]
}
