//! Diesel's view of the tables in `migrations/`.

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
    }
}

diesel::joinable!(deliveries -> orders (order_uid));
diesel::joinable!(payments -> orders (order_uid));
diesel::joinable!(items -> orders (order_uid));
diesel::allow_tables_to_appear_in_same_query!(orders, deliveries, payments, items);
