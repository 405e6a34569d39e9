//! Tests of the cache and of its eviction with a budget.

use super::*;

fn entry(id: &str) -> (OrderUid, Bytes) {
    (
        OrderUid::parse(id).unwrap(),
        Bytes::from(format!("{{\"id\":\"{id}\"}}")),
    )
}

#[test]
fn a_batch_is_published_at_once_and_old_snapshots_stay_intact() {
    let cache = Cache::new();
    cache.insert([entry("a")]);
    let before = cache.snapshot();
    cache.insert([entry("b"), entry("c")]);
    assert_eq!(before.len(), 1);
    assert!(before.get("b").is_none());
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get("c").unwrap(), Bytes::from("{\"id\":\"c\"}"));
}

#[test]
fn a_snapshot_built_aside_merges_with_what_was_cached_meanwhile() {
    let cache = Cache::new();
    // Cached while the restore ran: served already, so it must stay.
    cache.insert([(OrderUid::parse("both").unwrap(), Bytes::from("live"))]);
    cache.insert([entry("live-only")]);
    let built = Snapshot::build(None, [entry("both"), entry("restored"), entry("restored")]);
    assert_eq!(
        built.len(),
        2,
        "the first bytes of an id win inside a build"
    );
    cache.merge(built);

    let snap = cache.snapshot();
    assert_eq!(snap.len(), 3);
    assert_eq!(snap.get("both").unwrap(), Bytes::from("live"));
    assert!(snap.get("restored").is_some() && snap.get("live-only").is_some());
    assert_eq!(snap.recent().collect::<Vec<_>>(), ["live-only", "both"]);
    let bytes: usize = ["both", "restored", "live-only"]
        .iter()
        .map(|id| snap.get(id).unwrap().len())
        .sum();
    assert_eq!(snap.json_bytes(), bytes);
}

#[test]
fn the_first_bytes_of_an_id_win() {
    let cache = Cache::new();
    cache.insert([entry("a")]);
    cache.insert([(OrderUid::parse("a").unwrap(), Bytes::from("other"))]);
    assert_eq!(cache.get("a").unwrap(), Bytes::from("{\"id\":\"a\"}"));
}

#[test]
fn recent_lists_newest_first_and_is_bounded() {
    let cache = Cache::new();
    for i in 0..(RECENT + 5) {
        cache.insert([entry(&format!("o{i}"))]);
    }
    cache.fill([entry("restored")]);
    let snap = cache.snapshot();
    let recent: Vec<&str> = snap.recent().collect();
    assert_eq!(recent.len(), RECENT);
    assert_eq!(recent[0], format!("o{}", RECENT + 4));
    assert!(!recent.contains(&"restored"));
}

// ---- With a byte budget ----

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use proptest::prelude::*;

fn uid(id: &str) -> OrderUid {
    OrderUid::parse(id).unwrap()
}

/// A body that names its id and has the given length, so that a body
/// served for the wrong id, or torn, is seen.
fn body(id: &str, len: usize) -> Bytes {
    let mut text = format!("{{\"id\":\"{id}\",\"pad\":\"");
    let fill = len.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', fill));
    text.push_str("\"}");
    Bytes::from(text)
}

fn body_names(body: &[u8], id: &str) -> bool {
    let head = format!("{{\"id\":\"{id}\",\"pad\":\"");
    body.starts_with(head.as_bytes())
        && body.ends_with(b"\"}")
        && body[head.len()..body.len() - 2].iter().all(|&b| b == b'x')
}

/// Checks what must hold between two writes: the snapshot within its
/// budget, each of its entries in exactly one queue (the same entry, not a
/// copy), and every byte count equal to the sum over the entries.
fn assert_consistent(cache: &Cache) {
    let writer = cache.lock_writer();
    let snapshot = cache.snapshot();
    let policy = writer.as_ref().expect("a cache with a budget");
    let max = snapshot.max_bytes().expect("a budget");
    assert!(snapshot.bytes() <= max, "{} > {max}", snapshot.bytes());

    let mut queued = HashSet::new();
    for entry in policy.entries() {
        assert!(
            queued.insert(entry.uid().to_owned()),
            "{:?} queued twice",
            entry.uid()
        );
        let (slot, ()) = snapshot
            .orders
            .get_key_value(entry.uid())
            .expect("every queued entry is in the map");
        assert!(Arc::ptr_eq(&slot.0, entry), "the queue holds another copy");
    }
    assert_eq!(
        queued.len(),
        snapshot.len(),
        "an entry of the map is in no queue"
    );
    assert!(policy.counts_add_up());
    assert_eq!(policy.bytes(), snapshot.bytes());
    let cost: u64 = snapshot.orders.keys().map(|s| s.0.cost()).sum();
    let json: usize = snapshot.orders.keys().map(|s| s.0.json_len()).sum();
    assert_eq!(snapshot.bytes(), cost);
    assert_eq!(snapshot.json_bytes(), json);
}

#[test]
fn without_a_budget_reads_are_not_counted() {
    let cache = Cache::new();
    cache.insert([entry("a")]);
    for _ in 0..5 {
        assert!(cache.get("a").is_some());
    }
    let snapshot = cache.snapshot();
    assert_eq!(snapshot.slot("a").unwrap().0.frequency(), 0);
    assert_eq!(snapshot.max_bytes(), None);
    assert_eq!(snapshot.evictions(), 0);
}

#[test]
fn with_a_budget_reads_count_up_to_three_and_peeks_do_not() {
    let cache = Cache::with_max_bytes(1 << 20);
    cache.insert([entry("a")]);
    assert!(cache.snapshot().get("a").is_some());
    assert!(cache.contains("a"));
    assert_eq!(cache.snapshot().slot("a").unwrap().0.frequency(), 0);
    for _ in 0..10 {
        cache.get("a");
    }
    assert_eq!(cache.snapshot().slot("a").unwrap().0.frequency(), 3);
}

#[test]
fn an_order_larger_than_the_budget_is_not_cached() {
    let cache = Cache::with_max_bytes(entry_cost("big", 100) - 1);
    cache.insert([(uid("big"), body("big", 100))]);
    assert!(cache.is_empty());
    cache.insert([(uid("small"), body("small", 10))]);
    assert_eq!(cache.len(), 1);
    assert_consistent(&cache);
}

#[test]
fn frequently_read_orders_survive_a_scan_of_one_off_reads() {
    let size = 500;
    let cost = entry_cost("hot-000", size);
    let cache = Cache::with_max_bytes(100 * cost);
    // 30 hot orders, each read a few times, in a full cache.
    let hot: Vec<String> = (0..30).map(|i| format!("hot-{i:03}")).collect();
    cache.insert(hot.iter().map(|id| (uid(id), body(id, size))));
    for round in 0..3 {
        for id in &hot {
            assert!(cache.get(id).is_some(), "round {round}: {id}");
        }
    }
    // A scan: 10,000 ids missed once each, read from the store and admitted,
    // while the hot orders keep being asked for now and then.
    for i in 0..10_000 {
        let id = format!("scan-{i:05}");
        assert!(cache.get(&id).is_none());
        cache.fill([(uid(&id), body(&id, size))]);
        if i % 50 == 0 {
            for id in &hot {
                cache.get(id);
            }
        }
    }
    let missing: Vec<&String> = hot.iter().filter(|id| !cache.contains(id)).collect();
    assert!(missing.is_empty(), "hot orders evicted: {missing:?}");
    assert!(cache.stats().evictions >= 9_900);
    assert_consistent(&cache);
}

#[test]
fn an_id_evicted_and_asked_for_again_soon_goes_to_the_main_queue() {
    let cost = entry_cost("o00", 100);
    let cache = Cache::with_max_bytes(10 * cost);
    for i in 0..11 {
        let id = format!("o{i:02}");
        cache.fill([(uid(&id), body(&id, 100))]);
    }
    assert!(!cache.contains("o00"), "the oldest unread order went first");
    cache.fill([(uid("o00"), body("o00", 100))]);
    assert!(cache.lock_writer().as_ref().unwrap().in_main("o00"));
    assert!(!cache.lock_writer().as_ref().unwrap().in_main("o10"));
    assert_consistent(&cache);
}

#[test]
fn the_recent_list_does_not_keep_evicted_bodies_alive() {
    let cost = entry_cost("o00", 1000);
    let cache = Cache::with_max_bytes(5 * cost);
    cache.insert([(uid("first"), body("first", 1000))]);
    let first = Arc::downgrade(&cache.snapshot().slot("first").unwrap().0);
    for i in 0..10 {
        let id = format!("o{i:02}");
        cache.insert([(uid(&id), body(&id, 1000))]);
    }
    let snapshot = cache.snapshot();
    assert!(snapshot.get("first").is_none());
    assert!(snapshot.recent().any(|id| id == "first"));
    assert!(first.upgrade().is_none(), "the evicted body is still held");
}

#[test]
fn a_restore_within_a_budget_stops_reading_when_full_and_keeps_what_was_cached_meanwhile() {
    let size = 200;
    let cost = entry_cost("r000", size);
    let cache = Cache::with_max_bytes(10 * cost);
    cache.insert([(uid("live"), body("live", size))]);

    // Newest first, as the restore reads.
    let mut pulled = 0;
    let stored = (0..100).map(|i| {
        pulled += 1;
        let id = format!("r{:03}", 99 - i);
        (uid(&id), body(&id, size))
    });
    let (built, full) = Snapshot::build_within(10 * cost, 10 * cost, None, stored);
    assert!(full);
    assert_eq!(built.len(), 10);
    assert_eq!(pulled, 11, "one entry past the budget is read, no more");
    assert!(built.bytes() <= 10 * cost);

    cache.merge(built);
    assert_consistent(&cache);
    let snapshot = cache.snapshot();
    assert_eq!(snapshot.len(), 10);
    assert!(snapshot.get("live").is_some(), "cached meanwhile: kept");
    assert!(snapshot.get("r099").is_some(), "the newest stored: kept");
    assert!(
        snapshot.get("r090").is_none(),
        "the oldest restored: evicted"
    );
    assert_eq!(snapshot.evictions(), 1);

    let (_, full) =
        Snapshot::build_within(10 * cost, 10 * cost, None, [(uid("a"), body("a", size))]);
    assert!(!full);
}

#[test]
fn a_restore_without_order_into_a_budgeted_cache_stays_within_it() {
    let cost = entry_cost("r000", 100);
    let cache = Cache::with_max_bytes(20 * cost);
    cache.insert([(uid("live"), body("live", 100))]);
    cache.merge(Snapshot::build(
        None,
        (0..50).map(|i| {
            let id = format!("r{i:03}");
            (uid(&id), body(&id, 100))
        }),
    ));
    assert_eq!(cache.len(), 20);
    assert!(cache.contains("live"));
    assert_consistent(&cache);
}

#[test]
fn readers_during_eviction_see_whole_bodies_of_their_own_ids() {
    readers_during_eviction(Cache::with_max_bytes(200 * entry_cost("o00000", 2048)));
}

#[test]
fn readers_during_eviction_see_whole_bodies_of_their_own_ids_compressed() {
    let cache = compressed_cache(Some(200 * entry_cost("o00000", 2048) / 8));
    readers_during_eviction(cache.clone());
    assert!(cache.stats().dictionary);
    assert!(cache.stats().json_bytes > 2 * cache.stats().bytes as usize);
}

fn readers_during_eviction(cache: Cache) {
    const IDS: usize = 2_000;
    let ids: Arc<Vec<String>> = Arc::new((0..IDS).map(|i| format!("o{i:05}")).collect());
    // Sizes from 10 bytes to 4 KiB, so that a torn body shows in its length.
    let size = |i: usize| 10 + (i * 7919) % 4096;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (cache, ids, done) = (cache.clone(), ids.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut hits, mut i) = (0u64, r * 7);
                while !done.load(Ordering::Acquire) {
                    i = (i + 13) % IDS;
                    // Hot ids: a tenth of the reads.
                    let id = if i % 10 == 0 { &ids[i % 50] } else { &ids[i] };
                    if let Some(body) = cache.get(id) {
                        assert!(
                            body_names(&body, id),
                            "{id}: {:?}",
                            String::from_utf8_lossy(&body)
                        );
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    for round in 0..5 {
        for chunk in (0..IDS).collect::<Vec<_>>().chunks(16) {
            let batch = chunk
                .iter()
                .map(|&i| (uid(&ids[i]), body(&ids[i], size(i))));
            if round % 2 == 0 {
                cache.insert(batch);
            } else {
                cache.fill(batch);
            }
        }
    }
    done.store(true, Ordering::Release);
    let hits: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(hits > 0, "the readers never hit");
    assert!(cache.stats().evictions > 0);
    assert_consistent(&cache);
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<(u16, usize)>),
    Fill(Vec<(u16, usize)>),
    Read(Vec<u16>),
    Restore(Vec<(u16, usize)>),
}

fn op() -> impl Strategy<Value = Op> {
    let entries = || prop::collection::vec((0u16..300, 0usize..3000), 0..40);
    prop_oneof![
        3 => entries().prop_map(Op::Insert),
        2 => entries().prop_map(Op::Fill),
        3 => prop::collection::vec(0u16..300, 0..60).prop_map(Op::Read),
        1 => entries().prop_map(Op::Restore),
    ]
}

fn batch(entries: &[(u16, usize)]) -> Vec<(OrderUid, Bytes)> {
    entries
        .iter()
        .map(|&(i, len)| {
            let id = format!("o{i}");
            (uid(&id), body(&id, len))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_policy_stays_within_budget_and_consistent(
        max_bytes in 0u64..40_000,
        ops in prop::collection::vec(op(), 1..30),
        compressed in any::<bool>(),
    ) {
        let cache = if compressed {
            compressed_cache(Some(max_bytes))
        } else {
            Cache::with_max_bytes(max_bytes)
        };
        let mut evicted_before = 0;
        for op in ops {
            match op {
                Op::Insert(entries) => cache.insert(batch(&entries)),
                Op::Fill(entries) => cache.fill(batch(&entries)),
                Op::Read(ids) => {
                    for i in ids {
                        let id = format!("o{i}");
                        if let Some(body) = cache.get(&id) {
                            prop_assert!(body_names(&body, &id));
                        }
                    }
                }
                Op::Restore(entries) => {
                    let codec = cache.snapshot().codec.clone();
                    let (built, _) = Snapshot::build_within(max_bytes, max_bytes, codec, batch(&entries));
                    prop_assert!(built.bytes() <= max_bytes);
                    cache.merge(built);
                }
            }
            assert_consistent(&cache);
            let evictions = cache.stats().evictions;
            prop_assert!(evictions >= evicted_before);
            evicted_before = evictions;
        }
    }

    #[test]
    fn a_large_budget_evicts_nothing_and_holds_what_an_unlimited_cache_does(
        ops in prop::collection::vec(op(), 1..20),
    ) {
        let bounded = Cache::with_max_bytes(u64::MAX);
        let unlimited = Cache::new();
        for op in ops {
            for cache in [&bounded, &unlimited] {
                match &op {
                    Op::Insert(entries) => cache.insert(batch(entries)),
                    Op::Fill(entries) => cache.fill(batch(entries)),
                    Op::Read(ids) => ids.iter().for_each(|i| { cache.get(&format!("o{i}")); }),
                    Op::Restore(entries) => cache.merge(Snapshot::build(None, batch(entries))),
                }
            }
        }
        let (a, b) = (bounded.snapshot(), unlimited.snapshot());
        prop_assert_eq!(a.evictions(), 0);
        prop_assert_eq!(a.len(), b.len());
        prop_assert_eq!(a.bytes(), b.bytes());
        prop_assert_eq!(a.recent().collect::<Vec<_>>(), b.recent().collect::<Vec<_>>());
        for (slot, ()) in b.orders.iter() {
            prop_assert_eq!(a.orders.get_key_value(slot.0.uid()).map(|(s, ())| &s.0.body), Some(&slot.0.body));
        }
    }
}

/// Review (issue 10): `build_within` stops at the first order that does not
/// fit (cache.rs:294), so one order costing more than the whole budget,
/// newest in the store, leaves a restore with an empty cache although every
/// order after it would fit. The restore's scan then stops too
/// (restore.rs:130), and the instance starts cold.
#[test]
fn a_restore_past_an_order_larger_than_the_budget_still_fills_it() {
    let size = 200;
    let cost = entry_cost("r000", size);
    let budget = 10 * cost;
    // Newest first: one small order, one too large for the budget, then
    // plenty of small ones.
    let mut stored = vec![(uid("r100"), body("r100", size))];
    stored.push((uid("huge"), body("huge", 20 * size)));
    stored.extend((0..100).map(|i| {
        let id = format!("r{:03}", 99 - i);
        (uid(&id), body(&id, size))
    }));

    let (built, _) = Snapshot::build_within(budget, budget, None, stored);

    assert!(
        built.len() >= 9,
        "the budget holds 10 orders but the restore kept {}",
        built.len()
    );
}

/// A cache (with this budget, if any) whose dictionary is trained already,
/// on bodies such as [`body`] makes.
fn compressed_cache(max_bytes: Option<u64>) -> Cache {
    compressed_on(max_bytes, &training_set(300))
}

/// A cache whose dictionary is trained already, on `samples`.
fn compressed_on(max_bytes: Option<u64>, samples: &[Bytes]) -> Cache {
    let cache = Cache::builder()
        .max_bytes(max_bytes)
        .compression(Compression::Zstd)
        .build();
    cache.inner.training.store(true, Ordering::SeqCst);
    cache.train(samples).expect("a dictionary");
    cache
}

/// Bodies like [`body`]'s, of many lengths.
fn training_set(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| body(&format!("t{i}"), 20 + (i * 7919) % 4096))
        .collect()
}

/// An order's JSON with fields that vary as real ones do.
fn order_json(i: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"order_uid":"{i:016x}test","track_number":"WBILM{}","entry":"WBIL","delivery":{{"name":"Name {}","phone":"+9720000{i:04}","city":"City {}"}},"payment":{{"transaction":"{i:016x}test","amount":{},"currency":"USD"}},"items":[{{"chrt_id":{},"price":{},"name":"Item {}","brand":"Brand {}"}}]}}"#,
        i * 7 % 1000,
        i % 37,
        i % 11,
        i * 131 % 10_000,
        i * 17,
        i * 31 % 5000,
        i % 53,
        i % 19
    ))
}

fn orders(range: std::ops::Range<usize>) -> Vec<(OrderUid, Bytes)> {
    range
        .map(|i| (uid(&format!("{i:016x}test")), order_json(i)))
        .collect()
}

/// Polls until `done` holds, for at most ten seconds.
fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn packed(cache: &Cache, uid: &str) -> bool {
    cache
        .snapshot()
        .slot(uid)
        .is_some_and(|slot| slot.0.codec.is_some())
}

#[test]
fn a_compressed_cache_serves_exact_bodies_and_counts_what_it_keeps() {
    let cache = trained_on_orders();
    let stored = orders(0..500);
    cache.insert(stored.clone());
    let json: usize = stored.iter().map(|(_, json)| json.len()).sum();
    let plain: u64 = stored
        .iter()
        .map(|(id, json)| entry_cost(id.as_str(), json.len()))
        .sum();
    for (id, body) in &stored {
        assert!(packed(&cache, id.as_str()));
        assert_eq!(cache.get(id.as_str()).as_ref(), Some(body));
        assert_eq!(cache.snapshot().get(id.as_str()).as_ref(), Some(body));
    }
    let stats = cache.stats();
    assert_eq!(stats.json_bytes, json);
    // Orders of about 330 bytes: the entry's own 200 weigh most.
    assert!(stats.bytes * 3 < plain * 2, "{} of {plain}", stats.bytes);
}

#[test]
fn ingest_trains_the_dictionary_once_the_cache_holds_enough_orders() {
    let cache = zstd_after(200);
    cache.insert(orders(0..199));
    assert!(!cache.stats().dictionary);
    cache.insert(orders(199..200));
    wait_for("a dictionary", || cache.stats().dictionary);
    cache.insert(orders(200..300));
    assert!(!packed(&cache, orders(0..1)[0].0.as_str()), "cached before");
    for (id, body) in orders(0..300) {
        assert_eq!(cache.get(id.as_str()), Some(body));
    }
    assert!(orders(200..300)
        .iter()
        .all(|(id, _)| packed(&cache, id.as_str())));
}

#[test]
fn without_compression_nothing_is_trained_or_packed() {
    let cache = Cache::builder().train_after(64).build();
    cache.insert(orders(0..300));
    let (codec, entries) = cache.restore_codec(orders(300..400).into_iter());
    assert!(codec.is_none());
    assert_eq!(entries.count(), 100);
    assert!(!cache.stats().dictionary);
    assert!(!packed(&cache, orders(0..1)[0].0.as_str()));
}

#[test]
fn a_restore_trains_on_its_first_orders_and_packs_them_all() {
    let cache = zstd_after(200);
    let (codec, entries) = cache.restore_codec(orders(0..300).into_iter());
    assert!(codec.is_some());
    assert!(cache.stats().dictionary);
    let entries: Vec<_> = entries.collect();
    assert_eq!(entries, orders(0..300), "every order, in its order");
    cache.merge(Snapshot::build(codec, entries));
    for (id, body) in orders(0..300) {
        assert!(packed(&cache, id.as_str()));
        assert_eq!(cache.get(id.as_str()), Some(body));
    }
}

#[test]
fn a_restore_of_too_few_orders_packs_none_and_ingest_trains_later() {
    let cache = zstd_after(200);
    let (codec, entries) = cache.restore_codec(orders(0..150).into_iter());
    assert!(codec.is_none());
    cache.merge(Snapshot::build(codec, entries));
    assert_eq!(cache.len(), 150);
    cache.insert(orders(150..250));
    wait_for("a dictionary", || cache.stats().dictionary);
    cache.insert(orders(250..260));
    assert!(packed(&cache, orders(255..256)[0].0.as_str()));
}

#[test]
fn a_budgeted_restore_counts_packed_orders_and_so_holds_more() {
    let stored = orders(0..2000);
    let max_bytes = 300 * entry_cost(stored[0].0.as_str(), stored[0].1.len());
    let plain = Cache::with_max_bytes(max_bytes);
    let (built, _) = Snapshot::build_within(max_bytes, max_bytes, None, stored.clone());
    plain.merge(built);
    let compressed = Cache::builder()
        .max_bytes(Some(max_bytes))
        .compression(Compression::Zstd)
        .train_after(500)
        .build();
    let (codec, entries) = compressed.restore_codec(stored.clone().into_iter());
    let (built, _) = Snapshot::build_within(max_bytes, max_bytes, codec, entries);
    compressed.merge(built);
    assert_consistent(&compressed);
    assert!(
        2 * compressed.len() > 3 * plain.len(),
        "{} against {}",
        compressed.len(),
        plain.len()
    );
    for (id, body) in &stored[..compressed.len()] {
        assert_eq!(compressed.get(id.as_str()).as_ref(), Some(body));
    }
}

/// An order of about `len` bytes: many items shaped like [`order_json`]'s.
fn large_order(i: usize, len: usize) -> (OrderUid, Bytes) {
    let id = format!("{i:016x}big");
    let mut json = format!(r#"{{"order_uid":"{id}","items":["#);
    let mut item = i * 1000;
    while json.len() < len {
        json.push_str(&String::from_utf8_lossy(&order_json(item)));
        json.push(',');
        item += 1;
    }
    json.push_str("{}]}");
    (uid(&id), Bytes::from(json))
}

/// Issue 10, restore memory: to train its dictionary a restore reads
/// `train_after` orders ahead (`Cache::restore_codec` took exactly that
/// many), whatever their size and before the budget is looked at. Orders
/// may be up to 1 MiB: 10,000 of them held gigabytes, twice over (zstd's
/// trainer copies its samples into one buffer), at every restart. Here 200
/// orders of 128 KiB were 25 MiB read ahead for a 1 MiB budget; the read
/// ahead now stops at 16 MiB of orders, and the dictionary is still
/// trained.
#[test]
fn a_restore_reads_ahead_no_more_than_a_bounded_sample_to_train_on() {
    let cache = Cache::builder()
        .max_bytes(Some(1 << 20))
        .compression(Compression::Zstd)
        .train_after(200)
        .build();
    let size = 128 << 10;
    let pulled = std::cell::Cell::new(0usize);
    let stored = (0..400).map(|i| {
        let order = large_order(i, size);
        pulled.set(pulled.get() + order.1.len());
        order
    });

    let (codec, entries) = cache.restore_codec(stored);

    let read_ahead = pulled.get();
    assert!(
        read_ahead <= (16 << 20) + 2 * size,
        "{} MiB read ahead",
        read_ahead >> 20
    );
    assert!(codec.is_some(), "the dictionary is trained all the same");
    assert_eq!(entries.count(), 400, "every order is handed on");
}

/// Issue 10, compact entries: the cache trained its dictionary from
/// ingest only once it held `train_after` orders (`Cache::train_when_due`),
/// so a budget that holds fewer (a small budget, or large orders: 10,000
/// orders of 30 kB are more than a 256 MiB budget) kept every order as
/// JSON for ever, just where memory is short. A budget that is full now
/// trains on what it holds.
#[test]
fn a_full_budget_smaller_than_the_training_set_still_trains() {
    let (id, json) = &orders(0..1)[0];
    let one = entry_cost(id.as_str(), json.len());
    let cache = Cache::builder()
        .max_bytes(Some(200 * one))
        .compression(Compression::Zstd)
        .train_after(1000)
        .build();
    for first in (0..1000).step_by(100) {
        cache.insert(orders(first..first + 100));
    }
    assert!(
        cache.len() < 1000,
        "the budget holds fewer than train_after"
    );

    wait_for("a dictionary", || cache.stats().dictionary);
    cache.insert(orders(1000..1010));
    assert!(packed(&cache, orders(1009..1010)[0].0.as_str()));
    assert_consistent(&cache);
}

/// Issue 10, compact entries: `Entry::new` kept a frame whenever it was
/// shorter than the JSON, but a packed entry counts `PACKED_OVERHEAD`
/// (48) bytes more, so a frame that saved fewer bytes than that made the
/// entry cost more than the plain JSON would (and every read decompress).
/// Bodies that barely compress: random bytes and a run of `x` of growing
/// length, so that some frames save a few bytes.
#[test]
fn packing_never_makes_an_entry_cost_more_than_its_json() {
    let cache = compressed_cache(None);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let mut packed_some = false;
    for run in 0..120 {
        let id = format!("p{run}");
        let mut json: Vec<u8> = (0..300).map(|_| random()).collect();
        json.extend(std::iter::repeat_n(b'x', run));
        let json = Bytes::from(json);
        cache.insert([(uid(&id), json.clone())]);
        let snapshot = cache.snapshot();
        let slot = snapshot.slot(&id).expect("cached");
        packed_some |= slot.0.codec.is_some();
        assert!(
            slot.0.cost() <= entry_cost(&id, json.len()),
            "{id}: {} packed into {}, costing {} for {} as JSON",
            json.len(),
            slot.0.body.len(),
            slot.0.cost(),
            entry_cost(&id, json.len())
        );
        assert_eq!(cache.get(&id), Some(json));
    }
    assert!(packed_some, "long runs are worth packing");
}

/// Issue 10, compact entries: `Cache::admit` asked whether the order's
/// JSON cost fits the budget, while what the entry keeps is its frame. An
/// order that fits packed was refused on every insert and every miss
/// (and so read from PostgreSQL each time), though a restore, which
/// counts the frame (`Snapshot::build_within`), took it.
#[test]
fn a_compressed_cache_admits_an_order_that_fits_packed() {
    let (id, json) = large_order(1, 8 << 10);
    let budget = entry_cost(id.as_str(), json.len()) - 1;
    let cache = compressed_cache(Some(budget));

    cache.insert([(id.clone(), json.clone())]);

    assert!(cache.contains(id.as_str()), "refused though it fits packed");
    assert_eq!(cache.get(id.as_str()), Some(json));
    assert_consistent(&cache);
}

/// Issue 10, compact entries: a restore that found a training under way
/// (started by orders cached meanwhile) built with no dictionary, though
/// one was installed before it had read its first orders
/// (`Cache::restore_codec` answered `None` whenever the training flag was
/// taken): every restored order stayed JSON. It now takes the dictionary
/// in place once it has read ahead.
#[test]
fn a_restore_takes_the_dictionary_trained_while_it_read_ahead() {
    let cache = zstd_after(200);
    // A training under way, as ingest starts one on a thread of its own.
    cache.inner.training.store(true, Ordering::SeqCst);
    let trainer = cache.clone();
    let samples: Vec<Bytes> = orders(1000..1500)
        .into_iter()
        .map(|(_, json)| json)
        .collect();
    let stored = orders(0..300)
        .into_iter()
        .enumerate()
        .map(move |(i, order)| {
            if i == 100 {
                // It ends while the restore reads ahead.
                trainer.train(&samples).expect("a dictionary");
            }
            order
        });

    let (codec, entries) = cache.restore_codec(stored);

    assert!(codec.is_some(), "the dictionary in place is not used");
    cache.merge(Snapshot::build(codec, entries));
    assert!(packed(&cache, orders(0..1)[0].0.as_str()));
}

#[test]
fn a_large_order_stays_plain_and_its_readers_share_the_cached_bytes() {
    let cache = trained_on_orders();
    let mut large = order_json(7).to_vec();
    large.resize(compact::MAX_PACKED + 1, b' ');
    cache.insert([(uid("large"), Bytes::from(large.clone()))]);
    cache.insert(orders(0..1));
    assert!(!packed(&cache, "large"));
    assert!(packed(&cache, orders(0..1)[0].0.as_str()));
    let (a, b) = (cache.get("large").unwrap(), cache.get("large").unwrap());
    assert_eq!(a, large);
    assert_eq!(a.as_ptr(), b.as_ptr(), "one copy, shared by both reads");
}

/// A cache that packs with zstd once it holds `orders` to train on.
fn zstd_after(orders: usize) -> Cache {
    Cache::builder()
        .compression(Compression::Zstd)
        .train_after(orders)
        .build()
}

/// An unlimited cache whose dictionary is trained on orders like
/// [`order_json`]'s (other ones than the tests store).
fn trained_on_orders() -> Cache {
    let samples: Vec<Bytes> = orders(1000..1500)
        .into_iter()
        .map(|(_, json)| json)
        .collect();
    compressed_on(None, &samples)
}
