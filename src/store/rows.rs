//! The tables' rows as diesel reads them, and how they become an order
//! again.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::error::{Corruption, StoreError};
use crate::model::{Delivery, Extra, Item, Order, OrderUid, Payment, Timestamp};
use crate::schema::{deliveries, items, orders, payments};

#[derive(Queryable, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub(super) struct OrderRow {
    pub(super) order_uid: String,
    track_number: String,
    entry: String,
    locale: String,
    internal_signature: String,
    customer_id: String,
    delivery_service: String,
    shardkey: String,
    sm_id: i32,
    date_created: DateTime<Utc>,
    oof_shard: String,
    date_created_text: Option<String>,
    extra: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = deliveries, check_for_backend(diesel::pg::Pg))]
pub(super) struct DeliveryRow {
    name: String,
    phone: String,
    zip: String,
    city: String,
    address: String,
    region: String,
    email: String,
    extra: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub(super) struct PaymentRow {
    transaction: String,
    request_id: String,
    currency: String,
    provider: String,
    amount: i64,
    payment_dt: i64,
    bank: String,
    delivery_cost: i64,
    goods_total: i64,
    custom_fee: i64,
    extra: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = items, check_for_backend(diesel::pg::Pg))]
pub(super) struct ItemRow {
    pub(super) order_uid: String,
    pub(super) position: i32,
    chrt_id: i64,
    track_number: String,
    price: i64,
    rid: String,
    name: String,
    sale: i32,
    size: String,
    total_price: i64,
    nm_id: i64,
    brand: String,
    status: i32,
    extra: Option<String>,
}

/// The fields kept in an `extra` column: none when NULL.
fn extra(column: Option<String>) -> Result<Extra, Corruption> {
    match column {
        None => Ok(Extra::default()),
        Some(text) => Extra::from_object(&text).map_err(Corruption::Extra),
    }
}

impl ItemRow {
    fn into_item(self) -> Result<Item, Corruption> {
        Ok(Item {
            chrt_id: self.chrt_id,
            track_number: self.track_number,
            price: self.price,
            rid: self.rid,
            name: self.name,
            sale: self.sale.into(),
            size: self.size,
            total_price: self.total_price,
            nm_id: self.nm_id,
            brand: self.brand,
            status: self.status.into(),
            extra: extra(self.extra)?,
        })
    }
}

impl OrderRow {
    /// The order, or [`StoreError::Corrupt`] when its rows do not add up: a
    /// delivery or payment row missing, no items, or a gap in their positions
    /// (every stored order was valid, so each of these means rows were
    /// changed by hand or lost).
    pub(super) fn into_order(
        self,
        d: Option<DeliveryRow>,
        p: Option<PaymentRow>,
        lines: Vec<ItemRow>,
    ) -> Result<Order, StoreError> {
        let corrupt = |problem: Corruption| StoreError::Corrupt {
            uid: self.order_uid.clone(),
            problem,
        };
        let order_uid = OrderUid::parse(&self.order_uid).map_err(|e| corrupt(Corruption::Id(e)))?;
        let d = d.ok_or_else(|| corrupt(Corruption::NoDelivery))?;
        let p = p.ok_or_else(|| corrupt(Corruption::NoPayment))?;
        if lines.is_empty() {
            return Err(corrupt(Corruption::NoItems));
        }
        if let Some((i, _)) = lines
            .iter()
            .enumerate()
            .find(|(i, l)| usize::try_from(l.position).ok() != Some(*i))
        {
            return Err(corrupt(Corruption::MissingItem(i)));
        }
        let items = lines
            .into_iter()
            .map(ItemRow::into_item)
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        // The text as sent; a row stored without it (by an earlier release)
        // was sent in the canonical spelling of its instant.
        let date_created = match self.date_created_text {
            Some(text) => Timestamp::parse(&text).map_err(|e| corrupt(Corruption::Date(e)))?,
            None => Timestamp::from(self.date_created),
        };
        Ok(Order {
            order_uid,
            track_number: self.track_number,
            entry: self.entry,
            delivery: Delivery {
                name: d.name,
                phone: d.phone,
                zip: d.zip,
                city: d.city,
                address: d.address,
                region: d.region,
                email: d.email,
                extra: extra(d.extra).map_err(corrupt)?,
            },
            payment: Payment {
                transaction: p.transaction,
                request_id: p.request_id,
                currency: p.currency,
                provider: p.provider,
                amount: p.amount,
                payment_dt: p.payment_dt,
                bank: p.bank,
                delivery_cost: p.delivery_cost,
                goods_total: p.goods_total,
                custom_fee: p.custom_fee,
                extra: extra(p.extra).map_err(corrupt)?,
            },
            items,
            locale: self.locale,
            internal_signature: self.internal_signature,
            customer_id: self.customer_id,
            delivery_service: self.delivery_service,
            shardkey: self.shardkey,
            sm_id: self.sm_id.into(),
            date_created,
            oof_shard: self.oof_shard,
            extra: extra(self.extra).map_err(corrupt)?,
        })
    }
}
