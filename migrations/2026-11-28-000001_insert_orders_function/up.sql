-- The batched insert, as a function so that PostgreSQL's verdict on the rows
-- reaches the service intact: diesel hands back the SQLSTATE of only a few
-- errors, and an order is the order's fault only when PostgreSQL says so
-- about its data (class 22, data exception; class 23, integrity constraint
-- violation). Those are raised again as check_violation (which the service
-- maps to "refused"), with the original SQLSTATE in the detail; every other
-- error (read-only, disk full, timeouts, deadlocks, permissions, a missing
-- table, shutdown) keeps its own code and so counts as the database's fault.
--
-- Parameters, one array per column (see `Columns` in src/store.rs):
-- orders $1..$11, deliveries $12..$18, payments $19..$28, items $29..$41.
CREATE FUNCTION order_cache_insert(text[], text[], text[], text[], text[], text[], text[], text[], int4[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int8[], text[], int4[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int4[], int4[])
RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY
WITH o AS (
    INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature,
                        customer_id, delivery_service, shardkey, sm_id, date_created, oof_shard)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::int4[], $10::timestamptz[], $11::text[])
    ON CONFLICT (order_uid) DO NOTHING
    RETURNING order_uid
), d AS (
    INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email)
    SELECT t.* FROM unnest($1::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                           $16::text[], $17::text[], $18::text[])
        AS t(order_uid, name, phone, zip, city, address, region, email)
    JOIN o USING (order_uid)
), p AS (
    INSERT INTO payments (order_uid, transaction, request_id, currency, provider, bank,
                          amount, payment_dt, delivery_cost, goods_total, custom_fee)
    SELECT t.* FROM unnest($1::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                           $24::int8[], $25::int8[], $26::int8[], $27::int8[], $28::int8[])
        AS t(order_uid, transaction, request_id, currency, provider, bank,
             amount, payment_dt, delivery_cost, goods_total, custom_fee)
    JOIN o USING (order_uid)
), i AS (
    INSERT INTO items (order_uid, position, track_number, rid, name, size, brand,
                       chrt_id, price, total_price, nm_id, sale, status)
    SELECT t.* FROM unnest($29::text[], $30::int4[], $31::text[], $32::text[], $33::text[],
                           $34::text[], $35::text[], $36::int8[], $37::int8[], $38::int8[],
                           $39::int8[], $40::int4[], $41::int4[])
        AS t(order_uid, position, track_number, rid, name, size, brand,
             chrt_id, price, total_price, nm_id, sale, status)
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
