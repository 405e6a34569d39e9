//! Criterion benches of the hot paths: `cargo bench --bench main`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use order_cache::{router, Api, BearerTokens, Cache, Metrics, Order, OrderUid, Readiness};

const EXAMPLE: &[u8] = include_bytes!("../examples/example.json");
const CACHED: usize = 1_000_000;

fn order_bytes(uid: &str) -> Vec<u8> {
    let text = std::str::from_utf8(EXAMPLE).expect("utf-8");
    text.replace("b563feb7b2b84b6test", uid).into_bytes()
}

/// A cache of `n` orders with ids `o0000000`, `o0000001`, ...
fn full_cache(n: usize) -> Cache {
    fill(Cache::new(), n)
}

/// `cache` after filling it with `n` orders as [`full_cache`] does.
fn fill(cache: Cache, n: usize) -> Cache {
    let body = Bytes::from(order_bytes("x"));
    for chunk in (0..n).collect::<Vec<_>>().chunks(100_000) {
        cache.fill(chunk.iter().map(|i| {
            (
                OrderUid::parse(&format!("o{i:07}")).expect("id"),
                body.clone(),
            )
        }));
    }
    cache
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode+validate example", |b| {
        b.iter(|| Order::decode(std::hint::black_box(EXAMPLE)).expect("valid"))
    });
    let order = Order::decode(EXAMPLE).expect("valid");
    g.bench_function("serialize example", |b| b.iter(|| order.to_json()));
    g.finish();
}

fn cache(c: &mut Criterion) {
    let cache = full_cache(CACHED);
    let ids: Vec<String> = (0..1024)
        .map(|i| format!("o{:07}", i * 977 % CACHED))
        .collect();
    let mut g = c.benchmark_group("cache");
    lookups_and_inserts(&mut g, &cache, &ids, "at 1M", "insert batch of 1000 at 1M");
    g.finish();
}

/// The same paths in a cache with a byte budget, full and evicting: 1M
/// orders offered to 256 MiB, which holds about a quarter of them.
fn bounded_cache(c: &mut Criterion) {
    let cache = fill(Cache::with_max_bytes(256 << 20), CACHED);
    let held: Vec<String> = (0..CACHED)
        .map(|i| format!("o{:07}", i * 977 % CACHED))
        .filter(|id| cache.contains(id))
        .take(1024)
        .collect();
    assert_eq!(held.len(), 1024, "the budget holds too few orders");
    let stats = cache.stats();
    assert!(stats.evictions > 0);
    let mut g = c.benchmark_group("bounded cache");
    lookups_and_inserts(
        &mut g,
        &cache,
        &held,
        &format!("at 256 MiB ({} orders)", stats.entries),
        "insert batch of 1000 evicting 1000 at 256 MiB",
    );
    g.finish();
}

/// Hits on `ids` (all cached), misses, and batches of 1,000 new orders.
fn lookups_and_inserts(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    cache: &Cache,
    ids: &[String],
    at: &str,
    insert: &str,
) {
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function(format!("lookup hit {at}"), |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            cache.get(&ids[i]).expect("hit")
        })
    });
    g.bench_function(format!("lookup miss {at}"), |b| {
        b.iter(|| cache.get("nope"))
    });

    let body = Bytes::from(order_bytes("x"));
    let mut next = CACHED;
    g.throughput(Throughput::Elements(1000));
    g.bench_function(insert, |b| {
        b.iter_batched(
            || {
                let batch: Vec<(OrderUid, Bytes)> = (next..next + 1000)
                    .map(|i| {
                        (
                            OrderUid::parse(&format!("n{i:08}")).expect("id"),
                            body.clone(),
                        )
                    })
                    .collect();
                next += 1000;
                batch
            },
            |batch| cache.insert(batch),
            BatchSize::SmallInput,
        )
    });
}

fn http(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cache = full_cache(100_000);
    let routes = router(Api::new(cache.clone(), Metrics::new(), Readiness::new()));
    // The same routes behind access tokens, as during a rotation: every
    // token is compared on every request.
    let tokens = BearerTokens::parse("retired-token-0123456789abcdef,bench-token-0123456789abcdef")
        .expect("valid tokens");
    let closed = router(Api::new(cache, Metrics::new(), Readiness::new()).with_tokens(tokens));
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(1));
    g.bench_function("GET /orders/{id} hit, in-process", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let res = warp::test::request()
                    .path("/orders/o0001234")
                    .reply(&routes)
                    .await;
                assert_eq!(res.status(), 200);
            })
        })
    });
    g.bench_function(
        "GET /orders/{id} hit with an access token, in-process",
        |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let res = warp::test::request()
                        .path("/orders/o0001234")
                        .header("authorization", "Bearer bench-token-0123456789abcdef")
                        .reply(&closed)
                        .await;
                    assert_eq!(res.status(), 200);
                })
            })
        },
    );
    g.bench_function("GET /orders/{id} 404, in-process", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let res = warp::test::request()
                    .path("/orders/unknown")
                    .reply(&routes)
                    .await;
                assert_eq!(res.status(), 404);
            })
        })
    });
    g.finish();
}

criterion_group!(benches, decode, cache, bounded_cache, http);
criterion_main!(benches);
