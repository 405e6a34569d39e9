//! The recent list's entries: each id with what a person scans a list for
//! (when, how many items, how much), read from the cached order.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::cache::Snapshot;

/// The body of `GET /orders`. `orders` is the list as it always was (old
/// clients keep reading it); `recent` is the same ids, in the same order,
/// each with its summary.
#[derive(Serialize)]
pub(super) struct Recent<'a> {
    orders: Vec<&'a str>,
    recent: Vec<RecentOrder<'a>>,
}

impl<'a> Recent<'a> {
    /// The snapshot's recent ids, newest first, each with the summary of
    /// its cached order.
    pub(super) fn of(snapshot: &'a Snapshot) -> Recent<'a> {
        let orders: Vec<&str> = snapshot.recent().collect();
        let recent = orders
            .iter()
            .map(|&order_uid| RecentOrder {
                order_uid,
                summary: snapshot.get(order_uid).and_then(|json| Summary::of(&json)),
            })
            .collect();
        Recent { orders, recent }
    }
}

/// One entry: the id alone when its order is no longer cached (with a
/// budget, an id can outlive its order in the list).
#[derive(Serialize)]
struct RecentOrder<'a> {
    order_uid: &'a str,
    #[serde(flatten)]
    summary: Option<Summary>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Summary {
    /// As the order has it: RFC 3339 text, as it was sent.
    date_created: String,
    item_count: usize,
    /// `payment.amount`, in `currency`.
    amount: i64,
    currency: String,
}

/// The parts of a cached order the summary reads; the rest is skipped
/// without being built.
#[derive(Deserialize)]
struct Cached<'a> {
    #[serde(borrow)]
    date_created: Cow<'a, str>,
    #[serde(borrow)]
    payment: CachedPayment<'a>,
    items: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
struct CachedPayment<'a> {
    amount: i64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

impl Summary {
    /// The summary of an order's JSON. The cache holds only orders that
    /// were valid when they came in, so `None` is not expected; should it
    /// happen, the entry is the id alone rather than a failed list.
    fn of(json: &[u8]) -> Option<Summary> {
        let order: Cached<'_> = serde_json::from_slice(json).ok()?;
        Some(Summary {
            date_created: order.date_created.into_owned(),
            item_count: order.items.len(),
            amount: order.payment.amount,
            currency: order.payment.currency.into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn a_summary_reads_the_date_items_and_amount_of_an_order() {
        let json = br#"{"order_uid":"a","date_created":"2021-11-26T06:22:19Z","extra":[1],
            "payment":{"amount":1817,"currency":"U\"SD","bank":"x"},"items":[{"a":1},{}]}"#;
        assert_eq!(
            Summary::of(json),
            Some(Summary {
                date_created: "2021-11-26T06:22:19Z".into(),
                item_count: 2,
                amount: 1817,
                currency: "U\"SD".into(),
            })
        );
        assert_eq!(Summary::of(b"{\"order_uid\":\"a\"}"), None);
    }
}
