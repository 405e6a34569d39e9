//! One batch's orders: decoded, stored (split and retried when PostgreSQL
//! refuses some), cached exactly as committed, then acknowledged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::message::{AckKind, Message};
use bytes::Bytes;
use tracing::{debug, info, warn};

use super::dead_letter::Rejected;
use super::{ack, Ingestor, Outcome};
use crate::model::{Order, OrderUid};
use crate::report::Report;

impl Ingestor {
    pub(super) async fn handle(&self, messages: &[Message]) -> Outcome {
        let mut valid: Vec<(Order, usize)> = Vec::with_capacity(messages.len());
        let mut letters: Vec<Rejected> = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            match Order::decode_with(&m.payload, self.config.unknown_fields) {
                Ok(order) => valid.push((order, i)),
                Err(rejection) => letters.push(Rejected {
                    index: i,
                    reason: rejection.reason(),
                    error: Report(&rejection).to_string(),
                }),
            }
        }
        let outcome = self.persist(messages, valid, &mut letters).await;
        self.dead_letter(messages, letters).await;
        outcome
    }

    /// Stores the valid orders, caches exactly what was committed, then acks
    /// or naks their messages. Orders PostgreSQL refuses for their data join
    /// `letters`; any other failure is the database's, and the orders not
    /// yet stored are nak'ed with a growing delay.
    async fn persist(
        &self,
        messages: &[Message],
        valid: Vec<(Order, usize)>,
        letters: &mut Vec<Rejected>,
    ) -> Outcome {
        if valid.is_empty() {
            return Outcome::Done;
        }
        let (orders, index): (Vec<Order>, Vec<usize>) = valid.into_iter().unzip();
        let stored = self.store_all(&orders).await;
        let uncached = self.cache_committed(&orders, &stored).await;
        let failed = stored.failed;
        self.acknowledge(messages, &index, &orders, stored, &uncached, letters)
            .await;
        if failed {
            Outcome::RetryLater
        } else {
            Outcome::Done
        }
    }

    /// Caches what the batch committed and counts it; returns the ids
    /// committed but not cached (see [`Ingestor::fill_committed`]).
    async fn cache_committed(&self, orders: &[Order], stored: &Stored) -> HashSet<OrderUid> {
        let ingested = stored.fresh.len();
        self.metrics.with_unknown_fields(stored.with_unknown_fields);
        self.cache.insert(stored.fresh.iter().cloned());
        // What this batch inserted is not read back, cached or not: with a
        // small budget the batch may have evicted its own first orders,
        // which PostgreSQL serves on a miss like any other.
        let inserted: HashSet<&str> = stored.fresh.iter().map(|(uid, _)| uid.as_str()).collect();
        let earlier: Vec<bool> = orders
            .iter()
            .zip(&stored.committed)
            .map(|(o, c)| *c && !inserted.contains(o.order_uid.as_str()))
            .collect();
        let uncached = self.fill_committed(orders, &earlier).await;
        self.metrics.ingested(ingested);
        self.metrics.cache(&self.cache.snapshot());
        let committed = stored.committed.iter().filter(|c| **c).count();
        self.metrics.duplicates(committed - ingested);
        uncached
    }

    /// Acks each message whose order is committed and cached, dead-letters
    /// those PostgreSQL refused, and naks the rest with a growing delay.
    /// `index` gives each order's message.
    async fn acknowledge(
        &self,
        messages: &[Message],
        index: &[usize],
        orders: &[Order],
        stored: Stored,
        uncached: &HashSet<OrderUid>,
        letters: &mut Vec<Rejected>,
    ) {
        let mut refused: HashMap<usize, String> = stored.refused.into_iter().collect();
        for (i, &m) in index.iter().enumerate() {
            let message = &messages[m];
            if stored.committed[i] && !uncached.contains(&orders[i].order_uid) {
                ack(message, AckKind::Ack).await;
            } else if let Some(error) = refused.remove(&i) {
                letters.push(Rejected {
                    index: m,
                    reason: "database",
                    error,
                });
            } else {
                ack(message, AckKind::Nak(Some(self.backoff(message)))).await;
            }
        }
    }

    /// Caches the committed orders this batch did not insert and the cache
    /// lacks, read back from PostgreSQL: an order an earlier delivery
    /// committed after the client had given up on it (a query timeout), or
    /// that another instance stored. Returns the ids that could not be read
    /// because PostgreSQL failed, whose messages must come back later
    /// rather than be acked.
    async fn fill_committed(&self, orders: &[Order], committed: &[bool]) -> HashSet<OrderUid> {
        let missing: HashSet<OrderUid> = orders
            .iter()
            .zip(committed)
            .filter(|(o, c)| **c && !self.cache.contains(o.order_uid.as_str()))
            .map(|(o, _)| o.order_uid.clone())
            .collect();
        if missing.is_empty() {
            return missing;
        }
        let ids: Vec<OrderUid> = missing.iter().cloned().collect();
        match self.store.get_many(&ids).await {
            Ok(found) => {
                let mut filled = Vec::with_capacity(found.len());
                for (uid, order) in found {
                    match order {
                        Ok(order) => filled.push((uid, order.to_json())),
                        Err(e) => warn!(error = %Report(&e), "committed order cannot be cached"),
                    }
                }
                self.cache.fill(filled);
                // Read, or gone or inconsistent in PostgreSQL (logged; a
                // lookup answers it with a clear error): nothing left that
                // a redelivery could mend.
                HashSet::new()
            }
            Err(e) => {
                warn!(error = %Report(&e), "cannot read committed orders back; will retry");
                missing
            }
        }
    }

    /// Inserts `orders`, splitting a batch PostgreSQL refuses for its data in
    /// halves until the refused orders are alone. Stops at the first failure
    /// that is the database's.
    async fn store_all(&self, orders: &[Order]) -> Stored {
        let mut stored = Stored {
            committed: vec![false; orders.len()],
            ..Stored::default()
        };
        // Ranges of `orders` still to store.
        let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
        pending.push(0..orders.len());
        while let Some(range) = pending.pop() {
            let insert = self.store.insert(&orders[range.clone()]);
            match self.config.tracer.insert(range.len(), insert).await {
                Ok(ids) => {
                    for order in committed(&orders[range.clone()], ids) {
                        if order.has_unknown_fields() {
                            stored.with_unknown_fields += 1;
                            self.new_fields.note(order);
                        }
                        stored
                            .fresh
                            .push((order.order_uid.clone(), order.to_json()));
                    }
                    stored.committed[range].iter_mut().for_each(|c| *c = true);
                }
                Err(e) if e.is_refusal() && range.len() > 1 => {
                    debug!(error = %Report(&e), len = range.len(), "batch refused; splitting");
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e) if e.is_refusal() => {
                    stored.refused.push((range.start, Report(&e).to_string()))
                }
                Err(e) => {
                    warn!(error = %Report(&e), "cannot store orders; will retry");
                    self.metrics.store_error();
                    stored.failed = true;
                    break;
                }
            }
        }
        stored
    }
}

/// What [`Ingestor::store_all`] did with a batch's orders.
#[derive(Default)]
struct Stored {
    /// By position in the batch: whether the order is in PostgreSQL now
    /// (inserted by this batch, or there already).
    committed: Vec<bool>,
    /// The orders this batch inserted, as the cache must hold them.
    fresh: Vec<(OrderUid, Bytes)>,
    /// Orders PostgreSQL refused, by position, with its reason.
    refused: Vec<(usize, String)>,
    /// Whether it stopped at a failure of the database.
    failed: bool,
    /// How many of `fresh` carry fields the model does not know.
    with_unknown_fields: usize,
}

/// The orders one successful insert of `orders` stored (`ids`): for each
/// id, its first occurrence in `orders`, which is the one the insert kept.
/// Taken per insert, not per batch, so that an id whose first copy was
/// refused is cached with the copy that was stored.
fn committed(orders: &[Order], ids: Vec<OrderUid>) -> impl Iterator<Item = &Order> {
    let mut ids: HashSet<OrderUid> = ids.into_iter().collect();
    orders.iter().filter(move |o| ids.remove(&o.order_uid))
}

/// The names of fields the model does not know that this process has seen
/// stored, so that a new one is logged when it first appears: the sign that
/// an upstream schema grew. One line per order that brings new names, naming
/// at most [`NewFields::PER_LINE`] of them (cut to
/// [`NewFields::NAME_BYTES`]) and counting the rest, so that one order of
/// 70,000 made-up names is one line. At most [`NewFields::REMEMBERED`]
/// names are kept; when full the memory starts again, so a producer that
/// sends a new name with every order costs a line per order (as a dead
/// letter does), never memory, and never silences a later real change.
#[derive(Clone, Default)]
pub(super) struct NewFields(Arc<Mutex<HashSet<String>>>);

impl NewFields {
    const REMEMBERED: usize = 1000;
    const PER_LINE: usize = 8;
    const NAME_BYTES: usize = 128;

    fn note(&self, order: &Order) {
        let (fresh, more) = self.fresh(order);
        if !fresh.is_empty() {
            // Debug-formatted: the names are the producer's, and may hold
            // line breaks or control characters.
            info!(
                fields = ?fresh,
                more,
                order_uid = %order.order_uid,
                "fields the model does not know are kept with their orders"
            );
        }
    }

    /// The names of `order` not seen before that its line names, now
    /// remembered, and how many more it has.
    fn fresh(&self, order: &Order) -> (Vec<String>, usize) {
        let mut fresh: Vec<String> = Vec::new();
        let mut more = 0usize;
        {
            // A poisoned lock only means another thread panicked while
            // holding it; the set is still a set.
            let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for name in order.unknown_fields() {
                let name = cut(name, Self::NAME_BYTES);
                if seen.contains(&name) {
                    continue;
                }
                if fresh.len() < Self::PER_LINE {
                    if seen.len() >= Self::REMEMBERED {
                        seen.clear();
                    }
                    seen.insert(name.clone());
                    fresh.push(name);
                } else {
                    more += 1;
                }
            }
        }
        (fresh, more)
    }
}

/// `name` cut to at most `max` bytes, at a character boundary.
fn cut(mut name: String, max: usize) -> String {
    if name.len() > max {
        let mut end = max;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_with(names: impl IntoIterator<Item = String>) -> Order {
        let mut v: serde_json::Value =
            serde_json::from_slice(include_bytes!("../../examples/example.json")).unwrap();
        for name in names {
            v[name] = serde_json::Value::Null;
        }
        Order::decode(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_new_field_is_named_once_and_one_order_of_many_is_one_bounded_line() {
        let new = NewFields::default();
        let one = order_with(["colour".to_owned()]);
        assert_eq!(new.fresh(&one), (vec!["colour".to_owned()], 0));
        assert_eq!(new.fresh(&one), (vec![], 0), "named once");

        let many = order_with((0..70).map(|i| format!("f{i:02}")));
        let (named, more) = new.fresh(&many);
        assert_eq!(
            (named.len(), more),
            (NewFields::PER_LINE, 70 - NewFields::PER_LINE)
        );

        let long = order_with(["é".repeat(100)]);
        let (named, _) = new.fresh(&long);
        assert!(named[0].len() <= NewFields::NAME_BYTES && named[0].starts_with('é'));
    }

    #[test]
    fn a_full_memory_starts_again_rather_than_falling_silent() {
        let new = NewFields::default();
        for i in 0..NewFields::REMEMBERED / NewFields::PER_LINE + 1 {
            let names = (0..NewFields::PER_LINE).map(|j| format!("made_up_{i}_{j}"));
            new.fresh(&order_with(names));
        }
        let upstream = order_with(["schema_version".to_owned()]);
        assert_eq!(new.fresh(&upstream).0, ["schema_version"]);
        let seen = new.0.lock().unwrap().len();
        assert!(seen <= NewFields::REMEMBERED, "{seen}");
    }
}
