DROP FUNCTION order_cache_insert;
