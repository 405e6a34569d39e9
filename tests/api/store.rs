//! The PostgreSQL store on its own.

use order_cache::{Cache, Order, OrderUid, Store, StoreConfig, StoreError};

use crate::helpers::{example, TestDb};

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_batch_is_stored_in_one_statement_and_scans_back_equal() {
    let (db, store) = store().await;
    // Far more rows than 65,535 binds would allow as one multi-row VALUES.
    let orders: Vec<Order> = (0..5000)
        .map(|i| {
            let mut o = example(&format!("bulk{i:05}"));
            o.items = (0..3).map(|_| o.items[0].clone()).collect();
            o.items[2].name = format!("third of {i}");
            o
        })
        .collect();

    let inserted = store.insert(&orders).await.unwrap();

    assert_eq!(inserted.len(), 5000);
    assert_eq!(db.count("SELECT count(*) AS n FROM items").await, 15000);
    let mut scanned = Vec::new();
    assert_eq!(store.scan(|o| scanned.push(o)).await.unwrap().orders, 5000);
    scanned.sort_by(|a, b| a.order_uid.cmp(&b.order_uid));
    assert_eq!(scanned, orders);
}

#[tokio::test(flavor = "multi_thread")]
async fn inserting_again_is_idempotent_and_in_batch_duplicates_keep_the_first() {
    let (db, store) = store().await;
    let first = example("same");
    let mut second = first.clone();
    second.track_number = "SECOND".into();

    let inserted = store
        .insert(&[first.clone(), second, example("other")])
        .await
        .unwrap();
    assert_eq!(inserted.len(), 2);
    let again = store.insert(std::slice::from_ref(&first)).await.unwrap();
    assert!(again.is_empty());

    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 2);
    assert_eq!(store.get(&first.order_uid).await.unwrap(), Some(first));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_row_fails_the_whole_batch_with_a_typed_error() {
    let (db, store) = store().await;
    let mut bad = example("bad");
    bad.items[0].sale = 101; // breaks the CHECK constraint

    let err = store.insert(&[example("fine"), bad]).await.unwrap_err();

    assert!(matches!(err, StoreError::Refused(_)), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_a_transient_error() {
    let mut config = StoreConfig::new("postgres://postgres@127.0.0.1:1/nowhere");
    config.connect_timeout = std::time::Duration::from_millis(500);
    let store = Store::new(config).unwrap();
    let err = store.insert(&[example("x")]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(store.ping().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_can_run_twice_and_concurrently() {
    let (db, store) = store().await;
    let other = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    // Two tasks, as two instances starting together would be: the migration
    // harness blocks its thread, so inside one task (`join!`) one run would
    // stall the other's connection handshake until it timed out under load.
    let a = tokio::spawn(async move { store.migrate().await });
    let b = tokio::spawn(async move { other.migrate().await });
    a.await.unwrap().expect("first migration run");
    b.await.unwrap().expect("second migration run");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_during_writes_never_see_an_order_without_its_items() {
    let (_db, store) = store().await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..100 {
                let orders: Vec<Order> =
                    (0..20).map(|i| example(&format!("w{batch}x{i}"))).collect();
                store.insert(&orders).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        store
            .scan(|o| assert_eq!(o.items.len(), 1, "{} read without its items", o.order_uid))
            .await
            .unwrap();
        for i in 0..20 {
            let uid = order_cache::OrderUid::parse(&format!("w{reads}x{i}")).unwrap();
            if let Some(o) = store.get(&uid).await.unwrap() {
                assert_eq!(o.items.len(), 1);
            }
        }
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 1, "the reads overlapped the writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_caches_every_stored_order_across_many_chunks_and_keeps_live_entries() {
    let (_db, store) = store().await;
    let orders = store_orders_for_restore(&store).await;
    restore_and_check(&store, &orders).await;
}

/// Restore hands chunks to a thread and waits when its queue is full: that
/// must not deadlock on a single-threaded runtime either. (Migrations need
/// a multi-threaded one, so the data is prepared on one.)
#[test]
fn restore_works_on_a_current_thread_runtime() {
    let setup = tokio::runtime::Runtime::new().unwrap();
    let (db, orders) = setup.block_on(async {
        let (db, store) = store().await;
        let orders = store_orders_for_restore(&store).await;
        (db, orders)
    });
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    single.block_on(async {
        let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
        restore_and_check(&store, &orders).await;
    });
    drop(single);
    setup.block_on(async move { drop(db) });
}

/// More of restore's hand-over chunks than its queue holds, and a last
/// partial one.
async fn store_orders_for_restore(store: &Store) -> Vec<Order> {
    let orders: Vec<Order> = (0..6000)
        .map(|i| {
            let mut o = example(&format!("rs{i:05}"));
            o.items = (0..1 + i % 3).map(|_| o.items[0].clone()).collect();
            o
        })
        .collect();
    store.insert(&orders).await.unwrap();
    orders
}

async fn restore_and_check(store: &Store, orders: &[Order]) {
    let cache = Cache::new();
    // Served before the restore finished: must survive it unchanged.
    let live = OrderUid::parse("rs00007").unwrap();
    cache.fill([(live.clone(), bytes::Bytes::from_static(b"{\"live\":true}"))]);

    let restored = order_cache::restore(store, &cache).await.unwrap();

    assert_eq!(restored.orders, 6000);
    assert_eq!(cache.len(), 6000);
    for order in orders {
        let served = cache.get(order.order_uid.as_str()).unwrap();
        if order.order_uid == live {
            assert_eq!(served, "{\"live\":true}");
        } else {
            assert_eq!(served, order.to_json());
        }
    }
    // Stored in batch order, so the newest are the last 20, newest first.
    let recent: Vec<String> = cache.snapshot().recent().map(str::to_owned).collect();
    let expected: Vec<String> = (5980..6000).rev().map(|i| format!("rs{i:05}")).collect();
    assert_eq!(recent, expected);
}

#[tokio::test(flavor = "current_thread")]
async fn migrations_run_on_a_current_thread_runtime_too() {
    let db = TestDb::create().await;
    let store = Store::new(StoreConfig::new(db.url.clone())).unwrap();
    // The harness blocks its thread, which a current-thread runtime forbids.
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(db.count("SELECT count(*) AS n FROM orders").await, 0);
    store.insert(&[example("current")]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_into_a_budget_reads_the_newest_orders_until_it_is_full() {
    let (_db, store) = store().await;
    // Five batches, so the newest are the last batch's.
    let mut orders = Vec::new();
    for batch in 0..5 {
        let chunk: Vec<Order> = (0..4000)
            .map(|i| example(&format!("b{batch}o{i:04}")))
            .collect();
        store.insert(&chunk).await.unwrap();
        orders.extend(chunk);
    }
    let one = order_cache::entry_cost("b0o0000", orders[0].to_json().len());
    let budget = 3000 * one;
    let cache = Cache::with_max_bytes(budget);

    let restored = order_cache::restore(&store, &cache).await.unwrap();

    let stats = cache.stats();
    assert!(stats.bytes <= budget, "{stats:?} over {budget}");
    assert!((2900..=3000).contains(&cache.len()), "{}", cache.len());
    // The scan stopped soon after the budget was full, far from the end.
    assert!(restored.orders < 12_000, "{restored:?}");
    // Newest first: the newest 2,500 are all there, the oldest not at all.
    for order in &orders[17_500..] {
        assert_eq!(
            cache.snapshot().get(order.order_uid.as_str()),
            Some(order.to_json())
        );
    }
    assert!(orders[..10_000]
        .iter()
        .all(|o| !cache.contains(o.order_uid.as_str())));

    // An order left out is served from PostgreSQL, then from the cache.
    served_from_store_then_cache(&cache, &store, &orders[1]).await;
    assert!(cache.stats().bytes <= budget);
}

/// Asks twice for an order the cache does not hold: the first answer comes
/// from PostgreSQL, the second from the cache, both the order's JSON.
async fn served_from_store_then_cache(cache: &Cache, store: &Store, order: &Order) {
    assert!(!cache.contains(order.order_uid.as_str()));
    let api = order_cache::Api::new(
        cache.clone(),
        order_cache::Metrics::new(),
        order_cache::Readiness::new(),
    )
    .with_store(store.clone());
    let routes = order_cache::router(api);
    for source in ["store", "hit"] {
        let res = warp::test::request()
            .path(&format!("/orders/{}", order.order_uid.as_str()))
            .reply(&routes)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-order-cache"], source);
        assert_eq!(res.body(), &order.to_json());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_restore_trains_on_the_newest_orders_and_holds_more_of_them() {
    let (_db, store) = store().await;
    let orders: Vec<Order> = (0..6000).map(|i| example(&format!("z{i:04}"))).collect();
    store.insert(&orders).await.unwrap();
    let one = order_cache::entry_cost("z0000", orders[0].to_json().len());
    let budget = 1000 * one;
    let cache = Cache::builder()
        .max_bytes(Some(budget))
        .compression(order_cache::Compression::Zstd)
        .train_after(500)
        .build();

    order_cache::restore(&store, &cache).await.unwrap();

    let stats = cache.stats();
    assert!(stats.dictionary, "{stats:?}");
    assert!(stats.bytes <= budget, "{stats:?} over {budget}");
    // Packed, the same budget holds more than twice the orders.
    assert!(cache.len() > 2000, "{stats:?}");
    for order in &orders[6000 - cache.len()..] {
        assert_eq!(cache.get(order.order_uid.as_str()), Some(order.to_json()));
    }
    // An order left out is read back, admitted packed, and served whole.
    served_from_store_then_cache(&cache, &store, &orders[0]).await;
    assert!(cache.stats().bytes <= budget);
}

/// Review (issue 10): the restore builds up to the whole budget
/// (restore.rs:113 passes `max_bytes`, not what is left) while the live
/// cache, filled by misses served during the restore (the HTTP server runs
/// before it, app.rs:439), may already hold the whole budget too. Both are
/// alive until the merge (cache.rs:608) evicts the surplus: twice the budget
/// resident, past the contract's budget x 1.25 + 128 MiB once the budget is
/// over ~170 MiB. Every eviction at the merge is an order that was read,
/// serialised and held beside a full cache.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_into_a_cache_filled_meanwhile_builds_only_what_fits_beside_it() {
    let (_db, store) = store().await;
    let orders: Vec<Order> = (0..4000).map(|i| example(&format!("m{i:04}"))).collect();
    store.insert(&orders).await.unwrap();
    let one = order_cache::entry_cost("m0000", orders[0].to_json().len());
    let budget = 1000 * one;
    let cache = Cache::with_max_bytes(budget);
    // Misses served while the restore runs: the oldest orders, read back.
    cache.fill(
        orders[..1000]
            .iter()
            .map(|o| (o.order_uid.clone(), o.to_json())),
    );
    assert!(cache.stats().bytes > budget * 9 / 10, "{:?}", cache.stats());

    order_cache::restore(&store, &cache).await.unwrap();

    let stats = cache.stats();
    assert!(stats.bytes <= budget);
    assert_eq!(
        stats.evictions, 0,
        "the restore held {} orders it then evicted beside a full cache",
        stats.evictions
    );
}
