-- Prints :count stored orders, one JSON document per line in the wire format
-- (as a producer would send them), spread evenly over the ingestion order.
-- psql variables: count, and total (how many orders are stored).
SELECT json_build_object(
    'order_uid', o.order_uid,
    'track_number', o.track_number,
    'entry', o.entry,
    'delivery', json_build_object(
        'name', d.name, 'phone', d.phone, 'zip', d.zip, 'city', d.city,
        'address', d.address, 'region', d.region, 'email', d.email),
    'payment', json_build_object(
        'transaction', p.transaction, 'request_id', p.request_id, 'currency', p.currency,
        'provider', p.provider, 'amount', p.amount, 'payment_dt', p.payment_dt,
        'bank', p.bank, 'delivery_cost', p.delivery_cost, 'goods_total', p.goods_total,
        'custom_fee', p.custom_fee),
    'items', (SELECT json_agg(json_build_object(
                  'chrt_id', i.chrt_id, 'track_number', i.track_number, 'price', i.price,
                  'rid', i.rid, 'name', i.name, 'sale', i.sale, 'size', i.size,
                  'total_price', i.total_price, 'nm_id', i.nm_id, 'brand', i.brand,
                  'status', i.status) ORDER BY i.position)
              FROM items i WHERE i.order_uid = o.order_uid),
    'locale', o.locale,
    'internal_signature', o.internal_signature,
    'customer_id', o.customer_id,
    'delivery_service', o.delivery_service,
    'shardkey', o.shardkey,
    'sm_id', o.sm_id,
    'date_created', to_char(o.date_created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'oof_shard', o.oof_shard)
FROM orders o
JOIN deliveries d USING (order_uid)
JOIN payments p USING (order_uid)
WHERE o.seq % greatest(1, :total / :count) = 0
ORDER BY o.seq
LIMIT :count;
