//! Diesel's view of the tables in `migrations/`.
//!
//! The `extra` columns are `json` in PostgreSQL and `Text` here: a `json`
//! value travels as its text, which is what is kept (serde_json's `Value`,
//! diesel's mapping of `Json`, would rewrite numbers).

diesel::table! {
    orders (order_uid) {
        order_uid -> Text,
        seq -> Int8,
        track_number -> Text,
        entry -> Text,
        locale -> Text,
        internal_signature -> Text,
        customer_id -> Text,
        delivery_service -> Text,
        shardkey -> Text,
        sm_id -> Int4,
        date_created -> Timestamptz,
        oof_shard -> Text,
        ingested_at -> Timestamptz,
        date_created_text -> Nullable<Text>,
        extra -> Nullable<Text>,
    }
}

diesel::table! {
    deliveries (order_uid) {
        order_uid -> Text,
        name -> Text,
        phone -> Text,
        zip -> Text,
        city -> Text,
        address -> Text,
        region -> Text,
        email -> Text,
        extra -> Nullable<Text>,
    }
}

diesel::table! {
    payments (order_uid) {
        order_uid -> Text,
        transaction -> Text,
        request_id -> Text,
        currency -> Text,
        provider -> Text,
        amount -> Int8,
        payment_dt -> Int8,
        bank -> Text,
        delivery_cost -> Int8,
        goods_total -> Int8,
        custom_fee -> Int8,
        extra -> Nullable<Text>,
    }
}

diesel::table! {
    items (order_uid, position) {
        order_uid -> Text,
        position -> Int4,
        chrt_id -> Int8,
        track_number -> Text,
        price -> Int8,
        rid -> Text,
        name -> Text,
        sale -> Int4,
        size -> Text,
        total_price -> Int8,
        nm_id -> Int8,
        brand -> Text,
        status -> Int4,
        extra -> Nullable<Text>,
    }
}

diesel::joinable!(deliveries -> orders (order_uid));
diesel::joinable!(payments -> orders (order_uid));
diesel::joinable!(items -> orders (order_uid));
diesel::allow_tables_to_appear_in_same_query!(orders, deliveries, payments, items);
