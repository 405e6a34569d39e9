-- Orders, normalised as the original design had them: one row per order, one
-- delivery and one payment row per order, and its items in their given order.
-- The CHECK constraints repeat the rules of `order_cache::model`, so a row that
-- reaches the database by another path cannot break them either.

CREATE TABLE orders (
    order_uid          TEXT COLLATE "C" PRIMARY KEY
                       CHECK (order_uid ~ '^[A-Za-z0-9_-]{1,64}$'),
    -- Ingestion order, for "most recent" lists; not part of the wire format.
    seq                BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    track_number       TEXT NOT NULL CHECK (octet_length(track_number) <= 1024),
    entry              TEXT NOT NULL CHECK (octet_length(entry) <= 1024),
    locale             TEXT NOT NULL CHECK (octet_length(locale) <= 1024),
    internal_signature TEXT NOT NULL CHECK (octet_length(internal_signature) <= 1024),
    customer_id        TEXT NOT NULL CHECK (octet_length(customer_id) <= 1024),
    delivery_service   TEXT NOT NULL CHECK (octet_length(delivery_service) <= 1024),
    shardkey           TEXT NOT NULL CHECK (octet_length(shardkey) <= 1024),
    sm_id              INTEGER NOT NULL CHECK (sm_id >= 0),
    date_created       TIMESTAMPTZ NOT NULL,
    oof_shard          TEXT NOT NULL CHECK (octet_length(oof_shard) <= 1024),
    ingested_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE deliveries (
    order_uid TEXT COLLATE "C" PRIMARY KEY REFERENCES orders (order_uid) ON DELETE CASCADE,
    name      TEXT NOT NULL CHECK (octet_length(name) <= 1024),
    phone     TEXT NOT NULL CHECK (octet_length(phone) <= 1024),
    zip       TEXT NOT NULL CHECK (octet_length(zip) <= 1024),
    city      TEXT NOT NULL CHECK (octet_length(city) <= 1024),
    address   TEXT NOT NULL CHECK (octet_length(address) <= 1024),
    region    TEXT NOT NULL CHECK (octet_length(region) <= 1024),
    email     TEXT NOT NULL CHECK (octet_length(email) <= 1024)
);

CREATE TABLE payments (
    order_uid     TEXT COLLATE "C" PRIMARY KEY REFERENCES orders (order_uid) ON DELETE CASCADE,
    transaction   TEXT NOT NULL CHECK (octet_length(transaction) <= 1024),
    request_id    TEXT NOT NULL CHECK (octet_length(request_id) <= 1024),
    currency      TEXT NOT NULL CHECK (octet_length(currency) <= 1024),
    provider      TEXT NOT NULL CHECK (octet_length(provider) <= 1024),
    amount        BIGINT NOT NULL CHECK (amount >= 0),
    payment_dt    BIGINT NOT NULL CHECK (payment_dt >= 0),
    bank          TEXT NOT NULL CHECK (octet_length(bank) <= 1024),
    delivery_cost BIGINT NOT NULL CHECK (delivery_cost >= 0),
    goods_total   BIGINT NOT NULL CHECK (goods_total >= 0),
    custom_fee    BIGINT NOT NULL CHECK (custom_fee >= 0)
);

CREATE TABLE items (
    order_uid    TEXT COLLATE "C" NOT NULL REFERENCES orders (order_uid) ON DELETE CASCADE,
    position     INTEGER NOT NULL CHECK (position >= 0 AND position < 1000),
    chrt_id      BIGINT NOT NULL CHECK (chrt_id >= 0),
    track_number TEXT NOT NULL CHECK (octet_length(track_number) <= 1024),
    price        BIGINT NOT NULL CHECK (price >= 0),
    rid          TEXT NOT NULL CHECK (octet_length(rid) <= 1024),
    name         TEXT NOT NULL CHECK (octet_length(name) <= 1024),
    sale         INTEGER NOT NULL CHECK (sale BETWEEN 0 AND 100),
    size         TEXT NOT NULL CHECK (octet_length(size) <= 1024),
    total_price  BIGINT NOT NULL CHECK (total_price >= 0),
    nm_id        BIGINT NOT NULL CHECK (nm_id >= 0),
    brand        TEXT NOT NULL CHECK (octet_length(brand) <= 1024),
    status       INTEGER NOT NULL CHECK (status >= 0),
    PRIMARY KEY (order_uid, position)
);
