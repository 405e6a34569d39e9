DROP FUNCTION order_cache_insert(text[], text[], text[], text[], text[], text[], text[], text[], int4[], timestamptz[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int8[], text[], text[], int4[], text[], text[], text[], text[], text[], int8[], int8[], int8[], int8[], int4[], int4[], text[]);
ALTER TABLE items DROP COLUMN extra;
ALTER TABLE payments DROP COLUMN extra;
ALTER TABLE deliveries DROP COLUMN extra;
ALTER TABLE orders DROP COLUMN extra, DROP COLUMN date_created_text;
