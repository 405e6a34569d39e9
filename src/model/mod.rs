//! The order as it travels on the wire, and the rules a payload must pass to
//! become one.
//!
//! A message becomes an [`Order`] through [`Order::decode`], or a typed
//! [`Rejection`] that says why not. Nothing else in the crate ever sees an
//! unchecked payload.
//!
//! # Validation rules
//!
//! A payload is rejected when:
//!
//! | rule | rejection |
//! |---|---|
//! | it is empty, or only white space | [`Rejection::Empty`] |
//! | it is larger than [`MAX_PAYLOAD_BYTES`] (1 MiB, NATS' default max payload) | [`Rejection::TooLarge`] |
//! | it is not UTF-8 | [`Rejection::NotUtf8`] |
//! | it is not JSON (syntax error, truncated, trailing data, lone surrogates, nesting deeper than 128) | [`Rejection::Syntax`] |
//! | it is JSON but not the shape of `examples/example.json`: not an object, a field missing, a field given twice, a wrong type (a number as a string, a float where an integer belongs, an integer beyond 64 bits) | [`Rejection::Shape`] |
//! | a field the model does not know differs from a known field of its object only in case, as Go's `encoding/json` folds it (`Order_UID`, `ſm_id`), is nested more than [`MAX_EXTRA_DEPTH`] (64) levels deep, holds half a surrogate pair (`"\ud800"`) or a NUL (`"\u0000"`, in its name or a string) | [`Rejection::Shape`] |
//! | with [`UnknownFields::Reject`] only: any field the model does not know | [`Rejection::Shape`] |
//! | `order_uid` is empty, longer than [`MAX_UID_LEN`] (64) bytes, or has a character outside `A-Z a-z 0-9 _ -` (so every stored order can be served at `/orders/{order_uid}` without escaping) | [`Rejection::Invalid`] |
//! | any text field holds a NUL character (PostgreSQL cannot store it) or is longer than [`MAX_TEXT_LEN`] (1,024) bytes | [`Rejection::Invalid`] |
//! | `items` is empty or has more than [`MAX_ITEMS`] (1,000) entries | [`Rejection::Invalid`] |
//! | a money amount, id or timestamp is negative: `payment.amount`, `payment.payment_dt`, `payment.delivery_cost`, `payment.goods_total`, `payment.custom_fee`, `items[].chrt_id`, `items[].price`, `items[].total_price`, `items[].nm_id` | [`Rejection::Invalid`] |
//! | `sm_id` or `items[].status` is negative or beyond a 32-bit integer | [`Rejection::Invalid`] |
//! | `items[].sale` (a percentage) is outside 0..=100 | [`Rejection::Invalid`] |
//! | `date_created` is not an RFC 3339 `date-time` (see [`Timestamp`]): no UTC offset, a day the month lacks, an hour, minute, second or offset out of range, or longer than [`MAX_DATE_LEN`] (64) bytes | [`Rejection::Invalid`] |
//!
//! # What is kept
//!
//! An accepted order is served back as the JSON value that was accepted:
//!
//! - `date_created` as the text sent, in any RFC 3339 spelling (`Z` or an
//!   offset, 0 to many fractional digits, `T`, `t` or a space, a leap
//!   second); the instant it names is stored beside it.
//! - Fields the model does not know, at every level (the order, `delivery`,
//!   `payment`, each item), with their values as sent (numbers as written:
//!   `1e3` stays `1e3`), in each object's [`Extra`]. They follow the known
//!   fields when served; the order of keys is not kept.
//!
//! PostgreSQL enforces the same rules again with `CHECK` constraints, so a row
//! that reaches the database by another path cannot break them either.

mod extra;
mod rejection;
mod timestamp;
mod uid;

use serde::{Deserialize, Serialize};

use extra::deserialize_object;
pub use extra::{Extra, UnknownFields};
pub use rejection::{DateProblem, Problem, Rejection};
pub use timestamp::{Timestamp, MAX_DATE_LEN};
pub use uid::OrderUid;

/// Largest payload accepted, in bytes (NATS' default `max_payload`).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest `order_uid`, in bytes.
pub const MAX_UID_LEN: usize = 64;
/// Longest text field other than `order_uid`, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;
/// Most items one order may carry.
pub const MAX_ITEMS: usize = 1000;
/// Deepest nesting of a field the model does not know: its value may hold
/// arrays and objects this many levels deep.
pub const MAX_EXTRA_DEPTH: usize = 64;

/// An order, field for field the shape of `examples/example.json`.
///
/// Build one from bytes with [`Order::decode`], which applies every rule in the
/// [module documentation](self); serialise it with `serde_json` to get the same
/// JSON value back.
///
/// # Examples
///
/// ```
/// use order_cache::Order;
///
/// let bytes = include_bytes!("../../examples/example.json");
/// let order = Order::decode(bytes).unwrap();
/// assert_eq!(order.order_uid.as_str(), "b563feb7b2b84b6test");
/// assert_eq!(order.items.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Draft")]
pub struct Order {
    /// The order's unique id; also its URL: `/orders/{order_uid}`.
    pub order_uid: OrderUid,
    /// Tracking number of the shipment.
    pub track_number: String,
    /// Entry point code.
    pub entry: String,
    /// Where and to whom the order goes.
    pub delivery: Delivery,
    /// How the order was paid.
    pub payment: Payment,
    /// The goods, in the order given.
    pub items: Vec<Item>,
    /// Customer's locale.
    pub locale: String,
    /// Internal signature.
    pub internal_signature: String,
    /// Customer id.
    pub customer_id: String,
    /// Delivery service name.
    pub delivery_service: String,
    /// Shard key.
    pub shardkey: String,
    /// Service id.
    pub sm_id: i64,
    /// When the order was created.
    pub date_created: Timestamp,
    /// Out-of-frame shard.
    pub oof_shard: String,
    /// Fields of the order the model does not know, kept as sent.
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

/// An order as parsed, before the id and date have been checked: the checks
/// run in [`Order::try_from`] so that their failures name the field.
struct Draft {
    order_uid: String,
    track_number: String,
    entry: String,
    delivery: Delivery,
    payment: Payment,
    items: Vec<Item>,
    locale: String,
    internal_signature: String,
    customer_id: String,
    delivery_service: String,
    shardkey: String,
    sm_id: i64,
    date_created: String,
    oof_shard: String,
    extra: Extra,
}

deserialize_object!(Draft {
    order_uid,
    track_number,
    entry,
    delivery,
    payment,
    items,
    locale,
    internal_signature,
    customer_id,
    delivery_service,
    shardkey,
    sm_id,
    date_created,
    oof_shard,
});

impl TryFrom<Draft> for Order {
    type Error = Rejection;

    fn try_from(d: Draft) -> Result<Order, Rejection> {
        let order = Order {
            order_uid: OrderUid::parse(&d.order_uid)
                .map_err(|p| Rejection::invalid("order_uid", p))?,
            track_number: d.track_number,
            entry: d.entry,
            delivery: d.delivery,
            payment: d.payment,
            items: d.items,
            locale: d.locale,
            internal_signature: d.internal_signature,
            customer_id: d.customer_id,
            delivery_service: d.delivery_service,
            shardkey: d.shardkey,
            sm_id: d.sm_id,
            date_created: Timestamp::parse(&d.date_created)
                .map_err(|p| Rejection::invalid("date_created", p))?,
            oof_shard: d.oof_shard,
            extra: d.extra,
        };
        order.validate()?;
        Ok(order)
    }
}

/// Delivery details of an [`Order`]. Every field is free text (at most
/// [`MAX_TEXT_LEN`] bytes, no NUL), kept exactly as sent.
///
/// # Examples
///
/// ```
/// use order_cache::Order;
///
/// let order = Order::decode(include_bytes!("../../examples/example.json")).unwrap();
/// assert_eq!(order.delivery.city, "Kiryat Mozkin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Recipient's name.
    pub name: String,
    /// Recipient's phone number.
    pub phone: String,
    /// Postal code.
    pub zip: String,
    /// City.
    pub city: String,
    /// Street address.
    pub address: String,
    /// Region or state.
    pub region: String,
    /// Recipient's e-mail address (not checked for form).
    pub email: String,
    /// Fields the model does not know, kept as sent.
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

deserialize_object!(Delivery {
    name,
    phone,
    zip,
    city,
    address,
    region,
    email
});

/// Payment details of an [`Order`]. Amounts are in minor units and never
/// negative.
///
/// # Examples
///
/// ```
/// use order_cache::Order;
///
/// let order = Order::decode(include_bytes!("../../examples/example.json")).unwrap();
/// let p = &order.payment;
/// assert_eq!((p.currency.as_str(), p.amount), ("USD", 1817));
/// assert_eq!(p.amount, p.goods_total + p.delivery_cost);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    /// Transaction id (in the example, the order's id).
    pub transaction: String,
    /// Payment request id; may be empty.
    pub request_id: String,
    /// Currency code, e.g. `USD`.
    pub currency: String,
    /// Payment provider.
    pub provider: String,
    /// Total paid.
    pub amount: i64,
    /// Unix time of the payment, in seconds.
    pub payment_dt: i64,
    /// Bank.
    pub bank: String,
    /// Cost of delivery.
    pub delivery_cost: i64,
    /// Total of the goods.
    pub goods_total: i64,
    /// Customs fee.
    pub custom_fee: i64,
    /// Fields the model does not know, kept as sent.
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

deserialize_object!(Payment {
    transaction,
    request_id,
    currency,
    provider,
    amount,
    payment_dt,
    bank,
    delivery_cost,
    goods_total,
    custom_fee
});

/// One line of an [`Order`].
///
/// # Examples
///
/// ```
/// use order_cache::Order;
///
/// let order = Order::decode(include_bytes!("../../examples/example.json")).unwrap();
/// let item = &order.items[0];
/// assert_eq!((item.name.as_str(), item.sale), ("Mascaras", 30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Catalogue item id; not negative.
    pub chrt_id: i64,
    /// Tracking number of the shipment.
    pub track_number: String,
    /// Unit price; not negative.
    pub price: i64,
    /// Item's unique reference.
    pub rid: String,
    /// Product name.
    pub name: String,
    /// Discount, in percent (0..=100).
    pub sale: i64,
    /// Size.
    pub size: String,
    /// Price after the discount; not negative.
    pub total_price: i64,
    /// Product id; not negative.
    pub nm_id: i64,
    /// Brand.
    pub brand: String,
    /// Status code; a 32-bit integer, not negative.
    pub status: i64,
    /// Fields the model does not know, kept as sent.
    #[serde(flatten, skip_serializing_if = "Extra::is_empty")]
    pub extra: Extra,
}

deserialize_object!(Item {
    chrt_id,
    track_number,
    price,
    rid,
    name,
    sale,
    size,
    total_price,
    nm_id,
    brand,
    status
});

impl Order {
    /// Parses and validates a payload, keeping the fields the model does not
    /// know ([`UnknownFields::Keep`]).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] naming the first rule the payload breaks.
    pub fn decode(payload: &[u8]) -> Result<Order, Rejection> {
        Order::decode_with(payload, UnknownFields::Keep)
    }

    /// Parses and validates a payload, doing with fields the model does not
    /// know what `unknown` says.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] naming the first rule the payload breaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use order_cache::model::UnknownFields;
    /// use order_cache::Order;
    ///
    /// let mut order: serde_json::Value =
    ///     serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap();
    /// order["delivery"]["floor"] = 3.into();
    /// let sent = order.to_string();
    ///
    /// let kept = Order::decode_with(sent.as_bytes(), UnknownFields::Keep).unwrap();
    /// assert_eq!(kept.delivery.extra.get("floor").unwrap().get(), "3");
    ///
    /// let err = Order::decode_with(sent.as_bytes(), UnknownFields::Reject).unwrap_err();
    /// assert_eq!(err.reason(), "shape");
    /// assert!(order_cache::Report(&err).to_string().contains("delivery.floor"));
    /// ```
    pub fn decode_with(payload: &[u8], unknown: UnknownFields) -> Result<Order, Rejection> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Rejection::TooLarge {
                size: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let text = std::str::from_utf8(payload).map_err(Rejection::NotUtf8)?;
        if text.trim().is_empty() {
            return Err(Rejection::Empty);
        }
        let draft: Draft = serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Rejection::Shape(e),
            _ => Rejection::Syntax(e),
        })?;
        let order = Order::try_from(draft)?;
        if unknown == UnknownFields::Reject {
            if let Some(name) = order.unknown_fields().next() {
                return Err(Rejection::Shape(serde::de::Error::custom(format_args!(
                    "unknown field `{name}` (unknown fields are refused)"
                ))));
            }
        }
        Ok(order)
    }

    /// The names of the fields the model does not know, with their place:
    /// `colour`, `delivery.floor`, `payment.tip`, `items[].gift_wrap` (an
    /// item's field is named once, whichever items carry it).
    pub fn unknown_fields(&self) -> impl Iterator<Item = String> + '_ {
        let mut items = std::collections::BTreeSet::new();
        for item in &self.items {
            items.extend(item.extra.names("items[]."));
        }
        self.extra
            .names("")
            .chain(self.delivery.extra.names("delivery."))
            .chain(self.payment.extra.names("payment."))
            .chain(items)
    }

    /// Whether any object of the order has a field the model does not know.
    pub fn has_unknown_fields(&self) -> bool {
        !(self.extra.is_empty()
            && self.delivery.extra.is_empty()
            && self.payment.extra.is_empty()
            && self.items.iter().all(|i| i.extra.is_empty()))
    }

    /// The JSON served for this order: the same JSON value that was decoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use order_cache::Order;
    ///
    /// let sent = include_bytes!("../../examples/example.json");
    /// let json = Order::decode(sent).unwrap().to_json();
    /// let value = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
    /// assert_eq!(value(&json), value(sent));
    /// ```
    pub fn to_json(&self) -> bytes::Bytes {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Serialised into a reused buffer, then copied once into an
        // allocation of exactly its size: the cache keeps these bytes for
        // good, and growing a fresh Vec by doubling would both leave slack
        // in every entry and touch several times the memory on the way.
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            // Serialising plain structs of strings and integers cannot fail.
            match serde_json::to_writer(&mut *buf, self) {
                Ok(()) => bytes::Bytes::copy_from_slice(buf),
                Err(_) => bytes::Bytes::new(),
            }
        })
    }

    fn validate(&self) -> Result<(), Rejection> {
        text("track_number", &self.track_number)?;
        text("entry", &self.entry)?;
        let d = &self.delivery;
        for (name, value) in [
            ("delivery.name", &d.name),
            ("delivery.phone", &d.phone),
            ("delivery.zip", &d.zip),
            ("delivery.city", &d.city),
            ("delivery.address", &d.address),
            ("delivery.region", &d.region),
            ("delivery.email", &d.email),
        ] {
            text(name, value)?;
        }
        let p = &self.payment;
        for (name, value) in [
            ("payment.transaction", &p.transaction),
            ("payment.request_id", &p.request_id),
            ("payment.currency", &p.currency),
            ("payment.provider", &p.provider),
            ("payment.bank", &p.bank),
        ] {
            text(name, value)?;
        }
        for (name, value) in [
            ("payment.amount", p.amount),
            ("payment.payment_dt", p.payment_dt),
            ("payment.delivery_cost", p.delivery_cost),
            ("payment.goods_total", p.goods_total),
            ("payment.custom_fee", p.custom_fee),
        ] {
            range(name, value, 0, i64::MAX)?;
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(Rejection::invalid(
                "items",
                Problem::Count {
                    len: self.items.len(),
                    min: 1,
                    max: MAX_ITEMS,
                },
            ));
        }
        for (i, item) in self.items.iter().enumerate() {
            item.validate(i)?;
        }
        for (name, value) in [
            ("locale", &self.locale),
            ("internal_signature", &self.internal_signature),
            ("customer_id", &self.customer_id),
            ("delivery_service", &self.delivery_service),
            ("shardkey", &self.shardkey),
            ("oof_shard", &self.oof_shard),
        ] {
            text(name, value)?;
        }
        range("sm_id", self.sm_id, 0, i32::MAX.into())?;
        Ok(())
    }
}

impl Item {
    fn validate(&self, i: usize) -> Result<(), Rejection> {
        let field = |name: &str| format!("items[{i}].{name}");
        for (name, value) in [
            ("track_number", &self.track_number),
            ("rid", &self.rid),
            ("name", &self.name),
            ("size", &self.size),
            ("brand", &self.brand),
        ] {
            text(&field(name), value)?;
        }
        for (name, value) in [
            ("chrt_id", self.chrt_id),
            ("price", self.price),
            ("total_price", self.total_price),
            ("nm_id", self.nm_id),
        ] {
            range(&field(name), value, 0, i64::MAX)?;
        }
        range(&field("sale"), self.sale, 0, 100)?;
        range(&field("status"), self.status, 0, i32::MAX.into())?;
        Ok(())
    }
}

fn text(field: &str, value: &str) -> Result<(), Rejection> {
    if value.len() > MAX_TEXT_LEN {
        return Err(Rejection::invalid(
            field,
            Problem::TooLong {
                len: value.len(),
                max: MAX_TEXT_LEN,
            },
        ));
    }
    if value.contains('\0') {
        return Err(Rejection::invalid(field, Problem::Nul));
    }
    Ok(())
}

fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), Rejection> {
    if value < min || value > max {
        return Err(Rejection::invalid(
            field,
            Problem::OutOfRange { value, min, max },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn example() -> Value {
        serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap()
    }

    fn decode(v: &Value) -> Result<Order, Rejection> {
        Order::decode(&serde_json::to_vec(v).unwrap())
    }

    fn set(path: &[&str], value: Value) -> Result<Order, Rejection> {
        let mut v = example();
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            cur = match p.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => &mut cur[*p],
            };
        }
        cur[path[path.len() - 1]] = value;
        decode(&v)
    }

    fn invalid_field(r: Result<Order, Rejection>) -> String {
        match r {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn the_example_decodes_and_serialises_to_the_same_json_value() {
        let order = Order::decode(include_bytes!("../../examples/example.json")).unwrap();
        let back: Value = serde_json::from_slice(&order.to_json()).unwrap();
        assert_eq!(back, example());
        // Byte for byte: an order without unknown fields is served, and
        // cached, exactly as before they were kept.
        let sent = include_str!("../../examples/example.json").trim_end();
        assert_eq!(std::str::from_utf8(&order.to_json()).unwrap(), sent);
    }

    #[test]
    fn empty_and_blank_payloads_are_rejected() {
        assert!(matches!(Order::decode(b""), Err(Rejection::Empty)));
        assert!(matches!(Order::decode(b" \r\n\t"), Err(Rejection::Empty)));
    }

    #[test]
    fn oversized_payloads_are_rejected_before_parsing() {
        let big = vec![b'{'; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            Order::decode(&big),
            Err(Rejection::TooLarge { .. })
        ));
    }

    #[test]
    fn non_utf8_is_rejected() {
        assert!(matches!(
            Order::decode(b"{\"a\":\"\xff\"}"),
            Err(Rejection::NotUtf8(_))
        ));
    }

    #[test]
    fn non_json_is_a_syntax_rejection() {
        let mut trailing = include_bytes!("../../examples/example.json").to_vec();
        trailing.extend_from_slice(b" {}");
        for bad in [
            &b"nope"[..],
            b"{",
            b"{\"order_uid\":\"x\",}",
            &trailing,
            b"\"\\ud800\"",
        ] {
            assert!(
                matches!(Order::decode(bad), Err(Rejection::Syntax(_))),
                "{bad:?}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Order::decode(deep.as_bytes()).is_err());
    }

    #[test]
    fn wrong_shapes_are_shape_rejections() {
        let mut missing = example();
        missing.as_object_mut().unwrap().remove("payment");
        let dup = String::from_utf8(include_bytes!("../../examples/example.json").to_vec())
            .unwrap()
            .replacen(
                "\"entry\":\"WBIL\"",
                "\"entry\":\"WBIL\",\"entry\":\"X\"",
                1,
            );
        for v in [json!([]), json!(1), json!("s"), json!(null), missing] {
            assert!(matches!(decode(&v), Err(Rejection::Shape(_))), "{v}");
        }
        assert!(matches!(
            Order::decode(dup.as_bytes()),
            Err(Rejection::Shape(_))
        ));
        for (path, value) in [
            (&["sm_id"][..], json!("99")),
            (&["sm_id"][..], json!(9.5)),
            (&["payment", "amount"][..], json!(1e30)),
            (
                &["payment", "amount"][..],
                json!(18446744073709551616u128 as f64),
            ),
            (&["track_number"][..], json!(5)),
            (&["track_number"][..], json!(null)),
            (&["items"][..], json!({})),
            (&["delivery"][..], json!("x")),
        ] {
            assert!(
                matches!(set(path, value.clone()), Err(Rejection::Shape(_))),
                "{path:?}={value}"
            );
        }
    }

    #[test]
    fn a_bad_order_uid_or_date_is_reported_at_its_field() {
        // The rules themselves are tested beside OrderUid and Timestamp.
        assert_eq!(
            invalid_field(set(&["order_uid"], json!("a/b"))),
            "order_uid"
        );
        assert_eq!(
            invalid_field(set(&["date_created"], json!("2016-12-31T23:59:61Z"))),
            "date_created"
        );
        let order = set(&["date_created"], json!("2021-11-26T09:22:19.5+03:00")).unwrap();
        assert_eq!(
            order.date_created.to_string(),
            "2021-11-26T09:22:19.5+03:00"
        );
    }

    #[test]
    fn text_fields_reject_nul_and_excess_length() {
        assert_eq!(invalid_field(set(&["entry"], json!("a\u{0}b"))), "entry");
        assert_eq!(
            invalid_field(set(
                &["delivery", "email"],
                json!("x".repeat(MAX_TEXT_LEN + 1))
            )),
            "delivery.email"
        );
        assert_eq!(
            invalid_field(set(&["payment", "bank"], json!("\u{0}"))),
            "payment.bank"
        );
        assert_eq!(
            invalid_field(set(&["items", "0", "brand"], json!("\u{0}"))),
            "items[0].brand"
        );
        assert!(set(&["entry"], json!("x".repeat(MAX_TEXT_LEN))).is_ok());
        assert!(set(&["entry"], json!("<script>alert(1)</script>")).is_ok());
    }

    #[test]
    fn amounts_and_ids_must_not_be_negative() {
        for path in [
            &["payment", "amount"][..],
            &["payment", "payment_dt"],
            &["payment", "delivery_cost"],
            &["payment", "goods_total"],
            &["payment", "custom_fee"],
            &["items", "0", "chrt_id"],
            &["items", "0", "price"],
            &["items", "0", "total_price"],
            &["items", "0", "nm_id"],
            &["items", "0", "status"],
            &["sm_id"],
        ] {
            set(path, json!(-1)).expect_err(&format!("{path:?}"));
        }
    }

    #[test]
    fn small_integers_must_fit_their_columns() {
        assert_eq!(invalid_field(set(&["sm_id"], json!(1i64 << 31))), "sm_id");
        assert_eq!(
            invalid_field(set(&["items", "0", "status"], json!(1i64 << 31))),
            "items[0].status"
        );
        assert_eq!(
            invalid_field(set(&["items", "0", "sale"], json!(101))),
            "items[0].sale"
        );
        assert!(set(&["items", "0", "sale"], json!(100)).is_ok());
        assert!(set(&["payment", "amount"], json!(i64::MAX)).is_ok());
    }

    #[test]
    fn items_must_be_present_and_bounded() {
        assert_eq!(invalid_field(set(&["items"], json!([]))), "items");
        let item = example()["items"][0].clone();
        let many = Value::Array(vec![item; MAX_ITEMS + 1]);
        assert_eq!(invalid_field(set(&["items"], many)), "items");
    }

    /// The example with `fields` spliced into the object that `at` opens
    /// (`{"order_uid"`, `"delivery":{`, …): raw text, so numbers and
    /// repeated names arrive exactly as written.
    fn with_fields(at: &str, fields: &str) -> Vec<u8> {
        let sent = std::str::from_utf8(include_bytes!("../../examples/example.json")).unwrap();
        let split = sent.find(at).expect("the example has it") + at.len();
        let (head, tail) = sent.split_at(split);
        let tail = tail.trim_start_matches('{');
        let open = if at.ends_with('{') { "" } else { "{" };
        format!("{head}{open}{fields},{tail}").into_bytes()
    }

    #[test]
    fn unknown_fields_are_kept_at_every_level_and_served_as_sent() {
        let extra = r#""n":1e3,"f":1.0,"big":123456789012345678901234567890,"deep":{"a":[1,{"b":null}]},"s":"<b>\u00e9</b>""#;
        for at in ["{", "\"delivery\":{", "\"payment\":{", "\"items\":[{"] {
            let sent = with_fields(at, extra);
            let order = Order::decode(&sent).unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(order.has_unknown_fields());
            let kept = match at {
                "{" => &order.extra,
                "\"delivery\":{" => &order.delivery.extra,
                "\"payment\":{" => &order.payment.extra,
                _ => &order.items[0].extra,
            };
            let raw: Vec<(&str, &str)> = kept.iter().map(|(n, v)| (n, v.get())).collect();
            assert_eq!(
                raw,
                [
                    ("n", "1e3"),
                    ("f", "1.0"),
                    ("big", "123456789012345678901234567890"),
                    ("deep", r#"{"a":[1,{"b":null}]}"#),
                    ("s", r#""<b>\u00e9</b>""#),
                ],
                "{at}"
            );
            let served = order.to_json();
            let served = std::str::from_utf8(&served).unwrap();
            assert!(
                served.contains(r#""n":1e3,"f":1.0,"big":123456789012345678901234567890"#),
                "{served}"
            );
            let value = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
            assert_eq!(value(served.as_bytes()), value(&sent), "{at}");
        }
        let plain = Order::decode(include_bytes!("../../examples/example.json")).unwrap();
        assert!(!plain.has_unknown_fields());
        assert_eq!(plain.unknown_fields().count(), 0);
    }

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let mut v = example();
        v["priority"] = json!(1);
        v["delivery"]["floor"] = json!(3);
        v["payment"]["tip"] = json!(5);
        v["items"] = json!([v["items"][0].clone(), v["items"][0].clone()]);
        v["items"][0]["gift"] = json!(true);
        v["items"][1]["gift"] = json!(false);
        let order = decode(&v).unwrap();
        let names: Vec<String> = order.unknown_fields().collect();
        assert_eq!(
            names,
            ["priority", "delivery.floor", "payment.tip", "items[].gift"]
        );
    }

    #[test]
    fn unknown_fields_are_refused_when_the_policy_says_so() {
        for (at, name) in [
            ("{", "x"),
            ("\"delivery\":{", "delivery.x"),
            ("\"payment\":{", "payment.x"),
            ("\"items\":[{", "items[].x"),
        ] {
            let sent = with_fields(at, r#""x":1"#);
            let err = Order::decode_with(&sent, UnknownFields::Reject).unwrap_err();
            assert!(matches!(err, Rejection::Shape(_)), "{at}: {err:?}");
            let message = crate::Report(&err).to_string();
            assert!(message.contains(&format!("`{name}`")), "{message}");
        }
        let plain = include_bytes!("../../examples/example.json");
        assert!(Order::decode_with(plain, UnknownFields::Reject).is_ok());
    }

    #[test]
    fn unknown_fields_that_repeat_shadow_or_nest_too_deep_are_refused() {
        let deep = format!(
            "\"d\":{}1{}",
            "[".repeat(MAX_EXTRA_DEPTH + 1),
            "]".repeat(MAX_EXTRA_DEPTH + 1)
        );
        let deep_enough = format!(
            "\"d\":{}1{}",
            "[".repeat(MAX_EXTRA_DEPTH),
            "]".repeat(MAX_EXTRA_DEPTH)
        );
        // Deeper than serde_json's own limit: a raw value is read without it.
        let very_deep = format!("\"d\":{}", "[".repeat(100_000));
        for (at, fields, why) in [
            ("{", r#""x":1,"x":2"#, "duplicate field `x`"),
            (
                "\"items\":[{",
                r#""x":1,"y":0,"x":1"#,
                "duplicate field `x`",
            ),
            ("{", r#""ORDER_UID":"other""#, "only in case"),
            ("\"payment\":{", r#""Amount":1"#, "only in case"),
            ("\"delivery\":{", r#""EMAIL":"x""#, "only in case"),
            // Folded by Go as bytes.EqualFold does: the Kelvin sign and the long s.
            ("{", "\"\u{17F}hard\u{212A}ey\":\"9\"", "only in case"),
            ("{", r#""\u017fm_id":1"#, "only in case"),
            ("{", &deep, "levels deep"),
            ("{", r#""s":"\ud800""#, "surrogate"),
            ("{", r#""s":"\udc00\ud800""#, "surrogate"),
            ("{", r#""s":["\ud800x"]"#, "surrogate"),
            ("{", r#""s":"\ud800\u0041""#, "surrogate"),
            ("{", r#""s":"a\u0000b""#, "NUL"),
            ("\"items\":[{", r#""s":{"k":["\u0000"]}"#, "NUL"),
            ("{", r#""\u0000":1"#, "NUL"),
        ] {
            let sent = with_fields(at, fields);
            let err = Order::decode(&sent).expect_err(fields);
            let message = crate::Report(&err).to_string();
            assert!(message.contains(why), "{fields}: {message}");
        }
        let sent = with_fields("{", &very_deep);
        assert!(Order::decode(&sent).is_err());
        // A known field given twice is refused as before, whatever else.
        assert!(Order::decode(&with_fields("{", r#""entry":"again""#)).is_err());
        for fine in [
            deep_enough.as_str(),
            r#""s":"\ud83d\ude00 \"quoted\" \\ back""#,
            r#""order-uid":1,"orderuid":2,"Order":3,"ORDER_UİD":4"#,
            r#""":0,"\u0001":"\u0001\\u0000""#,
        ] {
            let sent = with_fields("{", fine);
            let order = Order::decode(&sent).unwrap_or_else(|e| panic!("{fine}: {e}"));
            let value = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
            assert_eq!(value(&order.to_json()), value(&sent), "{fine}");
        }
    }

    #[test]
    fn rejections_have_stable_reasons() {
        assert_eq!(Order::decode(b"").unwrap_err().reason(), "empty");
        assert_eq!(Order::decode(b"x").unwrap_err().reason(), "syntax");
        assert_eq!(Order::decode(b"[]").unwrap_err().reason(), "shape");
        assert_eq!(
            set(&["order_uid"], json!("")).unwrap_err().reason(),
            "invalid"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn example() -> Value {
        serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap()
    }

    /// Every leaf path of a JSON value.
    fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(k.clone());
                    leaves(child, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    path.push(i.to_string());
                    leaves(child, path, out);
                    path.pop();
                }
            }
            _ => out.push(path.clone()),
        }
    }

    fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
        path.iter().fold(v, |cur, p| match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[p.as_str()],
        })
    }

    fn any_json() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::String),
            "[A-Za-z0-9_-]{0,70}".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
                .prop_map(Value::String),
            Just(json!([])),
            Just(json!({})),
        ]
    }

    /// A random order that follows every rule.
    fn valid_order() -> impl Strategy<Value = Value> {
        let text = "\\PC{0,30}"; // any printable text, unicode included
        (
            "[A-Za-z0-9_-]{1,64}",
            prop::collection::vec(text, 20),
            prop::collection::vec(0i64..=i64::MAX, 9),
            prop::collection::vec((0i64..=100, 0i64..=i64::from(i32::MAX)), 1..5),
            0i64..=i64::from(i32::MAX),
            0i64..=253_402_300_799, // up to 9999-12-31T23:59:59Z
            prop_oneof![Just(0u32), 1u32..1000, 1u32..1_000_000],
        )
            .prop_map(|(uid, t, n, items, sm_id, secs, frac)| {
                let micros = if frac >= 1000 { frac } else { frac * 1000 };
                let date = DateTime::from_timestamp(secs, micros * 1000).unwrap();
                let mut v = example();
                v["order_uid"] = json!(uid);
                for (i, f) in [
                    "track_number",
                    "entry",
                    "locale",
                    "internal_signature",
                    "customer_id",
                    "delivery_service",
                    "shardkey",
                    "oof_shard",
                ]
                .iter()
                .enumerate()
                {
                    v[*f] = json!(t[i]);
                }
                for (i, f) in ["name", "phone", "zip", "city", "address", "region", "email"]
                    .iter()
                    .enumerate()
                {
                    v["delivery"][*f] = json!(t[8 + i]);
                }
                for (i, f) in ["transaction", "request_id", "currency", "provider", "bank"]
                    .iter()
                    .enumerate()
                {
                    v["payment"][*f] = json!(t[15 + i]);
                }
                for (i, f) in [
                    "amount",
                    "payment_dt",
                    "delivery_cost",
                    "goods_total",
                    "custom_fee",
                ]
                .iter()
                .enumerate()
                {
                    v["payment"][*f] = json!(n[i]);
                }
                let template = v["items"][0].clone();
                v["items"] = Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, (sale, status))| {
                            let mut it = template.clone();
                            it["sale"] = json!(sale);
                            it["status"] = json!(status);
                            it["chrt_id"] = json!(n[5 + i % 4]);
                            it["name"] = json!(t[i]);
                            it
                        })
                        .collect(),
                );
                v["sm_id"] = json!(sm_id);
                v["date_created"] = json!(Timestamp::from(date).to_string());
                v
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = Order::decode(&bytes);
        }

        #[test]
        fn mutated_orders_never_panic_and_what_is_accepted_round_trips(
            pick in any::<prop::sample::Index>(),
            value in any_json(),
            remove in any::<bool>(),
        ) {
            let mut v = example();
            let mut paths = Vec::new();
            leaves(&v, &mut Vec::new(), &mut paths);
            let path = &paths[pick.index(paths.len())];
            if remove {
                let (last, parent) = path.split_last().unwrap();
                if let Some(m) = at(&mut v, parent).as_object_mut() {
                    m.remove(last);
                }
            } else {
                *at(&mut v, path) = value;
            }
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(order) = Order::decode(&bytes) {
                let back: Value = serde_json::from_slice(&order.to_json()).unwrap();
                prop_assert_eq!(back, v);
            }
        }

        #[test]
        fn unknown_fields_anywhere_are_kept_and_round_trip(
            v in valid_order(),
            fields in prop::collection::vec(
                (0usize..4, "[a-z_][a-z0-9_]{0,12}", any_json()),
                1..6,
            ),
        ) {
            let mut v = v;
            let known = |o: &Value, name: &str| {
                o.as_object().unwrap().keys().any(|k| k.eq_ignore_ascii_case(name))
            };
            for (level, name, value) in fields {
                let object = match level {
                    0 => &mut v,
                    1 => &mut v["delivery"],
                    2 => &mut v["payment"],
                    _ => &mut v["items"][0],
                };
                // NUL is refused in unknown values as in known text.
                let nul = value.to_string().contains("\\u0000");
                if !known(object, &name) && !nul {
                    object[name.as_str()] = value;
                }
            }
            let bytes = serde_json::to_vec(&v).unwrap();
            let order = Order::decode(&bytes);
            prop_assert!(order.is_ok(), "{:?}", order.err());
            let order = order.unwrap();
            // Both read by the same parser: serde_json's own float reading
            // is not exact, but the text it reads is the same.
            let back: Value = serde_json::from_slice(&order.to_json()).unwrap();
            let sent: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, sent);
        }

        #[test]
        fn every_valid_order_is_accepted_and_round_trips(v in valid_order()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            let order = Order::decode(&bytes);
            prop_assert!(order.is_ok(), "{:?}", order.err());
            let back: Value = serde_json::from_slice(&order.unwrap().to_json()).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
