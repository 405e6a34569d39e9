-- What a producer sent, kept: the date's text as sent beside the instant it
-- names, and at each level the fields the model does not know, as one JSON
-- object's text (type json, not jsonb: json keeps numbers as written, `1e3`
-- stays `1e3`). NULL means "nothing beyond the canonical form": the date was
-- sent in the canonical spelling of `date_created` (as every date stored
-- before this migration, or by the release before it, was), and the object
-- had no unknown fields.
--
-- Expand only: the columns are new and NULL; the release before this one
-- keeps calling the old order_cache_insert (41 arrays), which stays as it
-- was and leaves them NULL. The constraints are NOT VALID: every existing
-- row is NULL in these columns, so nothing needs checking, and adding them
-- does not read the tables; every new row is checked.
--
-- ALTER TABLE waits for every open transaction on the table (an old
-- instance's restore reads all orders in one), and every query after it
-- waits behind it: without a limit one long restore would stall every
-- instance's lookups and inserts. With one, the migration gives up and
-- `Store::migrate` tries it again a little later.
SET LOCAL lock_timeout = '2s';

ALTER TABLE orders
    ADD COLUMN date_created_text TEXT,
    ADD COLUMN extra JSON,
    ADD CONSTRAINT orders_date_created_text_check
        CHECK (octet_length(date_created_text) <= 64) NOT VALID,
    ADD CONSTRAINT orders_extra_check CHECK (json_typeof(extra) = 'object') NOT VALID;

ALTER TABLE deliveries
    ADD COLUMN extra JSON,
    ADD CONSTRAINT deliveries_extra_check CHECK (json_typeof(extra) = 'object') NOT VALID;

ALTER TABLE payments
    ADD COLUMN extra JSON,
    ADD CONSTRAINT payments_extra_check CHECK (json_typeof(extra) = 'object') NOT VALID;

ALTER TABLE items
    ADD COLUMN extra JSON,
    ADD CONSTRAINT items_extra_check CHECK (json_typeof(extra) = 'object') NOT VALID;

-- The batched insert with the new columns: an overload of the old function
-- (PostgreSQL tells them apart by their parameters), with the same handling
-- of errors (see 2026-11-28-000001_insert_orders_function).
--
-- Parameters, one array per column (see `ORDER_COLUMNS` and `ITEM_COLUMNS`
-- in src/store/insert.rs): orders $1..$13, deliveries $14..$21, payments
-- $22..$32, items $33..$46.
CREATE FUNCTION order_cache_insert(text[], text[], text[], text[], text[], text[], text[], text[], int4[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int8[], text[], text[], int4[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int4[], int4[], text[])
RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY
WITH o AS (
    INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature,
                        customer_id, delivery_service, shardkey, sm_id, date_created,
                        date_created_text, oof_shard, extra)
    SELECT t.order_uid, t.track_number, t.entry, t.locale, t.internal_signature,
           t.customer_id, t.delivery_service, t.shardkey, t.sm_id, t.date_created,
           t.date_created_text, t.oof_shard, t.extra::json
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::int4[], $10::timestamptz[],
                $11::text[], $12::text[], $13::text[])
        AS t(order_uid, track_number, entry, locale, internal_signature,
             customer_id, delivery_service, shardkey, sm_id, date_created,
             date_created_text, oof_shard, extra)
    ON CONFLICT (order_uid) DO NOTHING
    RETURNING order_uid
), d AS (
    INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email, extra)
    SELECT t.order_uid, t.name, t.phone, t.zip, t.city, t.address, t.region, t.email,
           t.extra::json
    FROM unnest($1::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::text[], $19::text[], $20::text[], $21::text[])
        AS t(order_uid, name, phone, zip, city, address, region, email, extra)
    JOIN o USING (order_uid)
), p AS (
    INSERT INTO payments (order_uid, transaction, request_id, currency, provider, bank,
                          amount, payment_dt, delivery_cost, goods_total, custom_fee, extra)
    SELECT t.order_uid, t.transaction, t.request_id, t.currency, t.provider, t.bank,
           t.amount, t.payment_dt, t.delivery_cost, t.goods_total, t.custom_fee,
           t.extra::json
    FROM unnest($1::text[], $22::text[], $23::text[], $24::text[], $25::text[], $26::text[],
                $27::int8[], $28::int8[], $29::int8[], $30::int8[], $31::int8[], $32::text[])
        AS t(order_uid, transaction, request_id, currency, provider, bank,
             amount, payment_dt, delivery_cost, goods_total, custom_fee, extra)
    JOIN o USING (order_uid)
), i AS (
    INSERT INTO items (order_uid, position, track_number, rid, name, size, brand,
                       chrt_id, price, total_price, nm_id, sale, status, extra)
    SELECT t.order_uid, t.position, t.track_number, t.rid, t.name, t.size, t.brand,
           t.chrt_id, t.price, t.total_price, t.nm_id, t.sale, t.status, t.extra::json
    FROM unnest($33::text[], $34::int4[], $35::text[], $36::text[], $37::text[],
                $38::text[], $39::text[], $40::int8[], $41::int8[], $42::int8[],
                $43::int8[], $44::int4[], $45::int4[], $46::text[])
        AS t(order_uid, position, track_number, rid, name, size, brand,
             chrt_id, price, total_price, nm_id, sale, status, extra)
    JOIN o USING (order_uid)
)
SELECT o.order_uid FROM o
    ;
EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
    RAISE EXCEPTION USING
        ERRCODE = 'check_violation',
        MESSAGE = SQLERRM,
        DETAIL = 'SQLSTATE ' || SQLSTATE;
END
$fn$;
