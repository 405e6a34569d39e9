-- Inserts the orders numbered :lo .. :hi of a data set of :total varied
-- orders, into the four tables, in one statement, set-based. psql variables:
--   total   the size of the whole data set (dates are spread over it)
--   lo, hi  the orders this run inserts (1-based, inclusive), so that a big
--           set can be written in chunks: lo=1 hi=1000000, lo=1000001 ...
--   prefix  put before every id (may be empty: -v prefix=)
--
-- Every value is a hash of the order's number (and the item's position), so
-- a data set is the same on every run and the chunks need not be written in
-- one go. What varies, and how:
--   ids         unique by construction: a bijection of the number modulo
--               2^40 in hex (up to 1.1e12 orders), then 4..10 more hex
--               characters, so ids are 14..20 characters and arrive in no
--               particular order, as ids from many producers would
--   items       1 + geometric(1/2), at most 10, for 99% of orders (mean
--               2); 20..60 for the other 1%: mean about 2.4 per order
--   dates       2020-01-01 .. 2026-01-01 in the order of the numbers, with
--               up to an hour of jitter each way, whole seconds; the
--               ingestion order (seq) follows the dates, as it does when
--               orders are ingested as they are made
--   text        names, cities, streets, brands and products drawn from
--               small vocabularies of words of different lengths; emails,
--               phones, zips, tracking numbers and rids vary per order
--   amounts     item prices 50..50,000 with a 0..50% sale; the payment's
--               goods_total is the sum of the items' total_price and its
--               amount that plus the delivery cost
WITH base AS MATERIALIZED (
    SELECT g,
           :'prefix' || lpad(to_hex((g * 2654435761) % 1099511627776), 10, '0')
               || substr(md5(g::text), 1, 4 + (h1 % 7)::int) AS uid,
           h1, h2, h3, h4,
           CASE WHEN h1 % 100 = 0 THEN 20 + (h2 % 41)::int
                ELSE least(10, 1 + floor(ln(((h2 % 1000000) + 1) / 1000000.0) / ln(0.5))::int)
           END AS k,
           to_timestamp(1577836800 + (g * 189302400) / :total + (h3 % 7201) - 3600) AS created
    FROM generate_series(:lo::bigint, :hi::bigint) AS g
    CROSS JOIN LATERAL (
        SELECT hashint8extended(g, 1) & 9223372036854775807 AS h1,
               hashint8extended(g, 2) & 9223372036854775807 AS h2,
               hashint8extended(g, 3) & 9223372036854775807 AS h3,
               hashint8extended(g, 4) & 9223372036854775807 AS h4
    ) AS h
), it AS MATERIALIZED (
    SELECT b.g, b.uid, pos, x,
           50 + x % 49951 AS price,
           (x / 49951 % 11)::int * 5 AS sale
    FROM base b
    CROSS JOIN LATERAL generate_series(0, b.k - 1) AS pos
    CROSS JOIN LATERAL (
        SELECT hashint8extended(b.g * 1000 + pos, 5) & 9223372036854775807 AS x
    ) AS hx
), tot AS (
    SELECT g, sum(price * (100 - sale) / 100) AS goods FROM it GROUP BY g
), o AS (
    INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,
                        delivery_service, shardkey, sm_id, date_created, oof_shard)
    SELECT uid,
           (ARRAY['WBILM', 'WBILT', 'WBRU', 'WBKZ'])[1 + h1 % 4] || lpad((h4 % 1000000000)::text, 9, '0'),
           (ARRAY['WBIL', 'WBRU', 'WBKZ', 'WBBY'])[1 + h2 % 4],
           (ARRAY['en', 'ru', 'ru', 'ru', 'kk', 'be', 'uz'])[1 + h3 % 7],
           CASE WHEN h4 % 10 = 0 THEN md5(uid) ELSE '' END,
           'c' || (h2 % 2000000),
           (ARRAY['meest', 'cdek', 'boxberry', 'dpd', 'russianpost', 'wbexpress'])[1 + h4 % 6],
           (h1 % 10)::text,
           (h3 % 100)::int,
           created,
           (h2 % 4)::text
    FROM base
), d AS (
    INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email)
    SELECT uid,
           first || ' ' || last,
           '+7' || lpad((h4 % 10000000000)::text, 10, '0'),
           lpad((h3 % 1000000)::text, 6, '0'),
           (ARRAY['Moscow', 'Saint Petersburg', 'Kazan', 'Novosibirsk', 'Yekaterinburg',
                  'Nizhny Novgorod', 'Samara', 'Omsk', 'Rostov-on-Don', 'Ufa', 'Krasnoyarsk',
                  'Voronezh', 'Perm', 'Volgograd', 'Almaty', 'Minsk', 'Kiryat Mozkin', 'Tver',
                  'Vladivostok', 'Kaliningrad'])[1 + h1 % 20],
           (ARRAY['Lenina', 'Ploshad Mira', 'Sadovaya', 'Tverskaya', 'Nevsky prospekt',
                  'Gagarina', 'Pushkina', 'Sovetskaya', 'Molodezhnaya', 'Shkolnaya',
                  'Naberezhnaya reki Fontanki', 'Kosmonavtov'])[1 + h2 % 12]
               || ' ' || (1 + h3 % 200)
               || CASE WHEN h4 % 3 = 0 THEN ', apt ' || (1 + h1 % 400) ELSE '' END,
           (ARRAY['Moscow', 'Leningrad Oblast', 'Tatarstan', 'Novosibirsk Oblast',
                  'Sverdlovsk Oblast', 'Kraiot', 'Bashkortostan', 'Krasnodar Krai',
                  'Primorsky Krai', 'Almaty Region'])[1 + h3 % 10],
           lower(first) || '.' || lower(last) || (h4 % 1000)
               || (ARRAY['@gmail.com', '@mail.ru', '@yandex.ru', '@outlook.com', '@inbox.ru'])[1 + h2 % 5]
    FROM base
    CROSS JOIN LATERAL (
        SELECT (ARRAY['Ivan', 'Anna', 'Dmitry', 'Olga', 'Sergey', 'Maria', 'Alexander',
                      'Elena', 'Test', 'Yekaterina', 'Mikhail', 'Svetlana', 'Pavel', 'Nina',
                      'Konstantin', 'Irina', 'Oleg', 'Tatiana', 'Yuri', 'Vera'])[1 + h2 % 20] AS first,
               (ARRAY['Ivanov', 'Smirnova', 'Kuznetsov', 'Popova', 'Vasiliev', 'Petrova',
                      'Sokolov', 'Mikhailova', 'Testov', 'Novikov', 'Fedorova', 'Morozov',
                      'Volkova', 'Alekseev', 'Lebedeva', 'Semenov', 'Konstantinopolsky',
                      'Egorova', 'Pavlov', 'Kozlova'])[1 + h3 % 20] AS last
    ) AS who
), p AS (
    INSERT INTO payments (order_uid, transaction, request_id, currency, provider, amount,
                          payment_dt, bank, delivery_cost, goods_total, custom_fee)
    SELECT uid,
           uid,
           CASE WHEN h1 % 5 = 0 THEN substr(md5(uid || 'r'), 1, 16) ELSE '' END,
           (ARRAY['RUB', 'RUB', 'RUB', 'USD', 'KZT', 'BYN'])[1 + h2 % 6],
           (ARRAY['wbpay', 'wbpay', 'sbp', 'applepay', 'googlepay'])[1 + h3 % 5],
           tot.goods + dc + fee,
           extract(epoch FROM created)::bigint + h4 % 600,
           (ARRAY['alpha', 'sber', 'tinkoff', 'vtb', 'raiffeisen', 'gazprombank'])[1 + h4 % 6],
           dc,
           tot.goods,
           fee
    FROM base
    JOIN tot USING (g)
    CROSS JOIN LATERAL (
        SELECT CASE WHEN h1 % 3 = 0 THEN 0 ELSE 100 * (1 + h2 % 15) END AS dc,
               CASE WHEN h3 % 20 = 0 THEN h4 % 500 ELSE 0 END AS fee
    ) AS c
), i AS (
    INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
                       total_price, nm_id, brand, status)
    SELECT uid,
           pos,
           x % 100000000,
           (ARRAY['WBILM', 'WBILT', 'WBRU', 'WBKZ'])[1 + x % 4] || lpad((x / 7 % 1000000000)::text, 9, '0'),
           price,
           substr(md5(uid || pos), 1, 17 + (x % 5)::int),
           (ARRAY['Mascaras', 'T-shirt', 'Sneakers', 'Phone case', 'USB-C charging cable 2 m',
                  'Coffee beans 1 kg', 'Wireless earbuds', 'Children''s winter jacket',
                  'Notebook A5', 'Face cream', 'LED desk lamp with dimmer', 'Socks (5 pairs)',
                  'Yoga mat', 'Kettle', 'Backpack', 'Board game', 'Vitamin D3 2000 IU',
                  'Stainless steel water bottle 750 ml', 'Lipstick', 'Dog food 3 kg',
                  'Bed linen set, 2-person', 'Screwdriver set', 'Jeans', 'Hoodie',
                  'Smart watch strap', 'Baby diapers size 4', 'Book', 'Umbrella',
                  'Frying pan 28 cm', 'Headphones'])[1 + x / 11 % 30],
           sale,
           (ARRAY['0', 'S', 'M', 'L', 'XL', '42', '44', '46', '38', 'one size'])[1 + x / 13 % 10],
           price * (100 - sale) / 100,
           x / 17 % 10000000,
           (ARRAY['Vivienne Sabo', 'Nike', 'Adidas', 'Samsung', 'Xiaomi', 'Apple', 'Baseus',
                  'Lavazza', 'L''Oreal', 'Gloria Jeans', 'Tefal', 'Bosch', 'Hasbro', 'Pampers',
                  'Nivea', 'IKEA', 'Levi''s', 'Puma', 'Canon', 'Anker', 'Royal Canin',
                  'Maybelline New York', 'Evalar', 'Zara Home', 'Huawei'])[1 + x / 19 % 25],
           (ARRAY[202, 202, 202, 200, 201, 203, 204])[1 + x / 23 % 7]
    FROM it
)
SELECT count(*) AS orders FROM base;
