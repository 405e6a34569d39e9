//! Embedding order_cache in another warp application: the order routes are
//! mounted under `/orders-api`, beside the host's own routes.
//!
//! `cargo run --example embed`, then open http://127.0.0.1:8081/orders-api/
//! and http://127.0.0.1:8081/hello.

use anyhow::Context;
use order_cache::{
    app, router, Api, Cache, IngestConfig, Ingestor, Metrics, Readiness, Store, StoreConfig,
};
use warp::Filter;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5555/order_cache".into());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());

    let store = Store::new(StoreConfig::new(database_url))?;
    store.migrate().await.context("migrations")?;
    let cache = Cache::new();
    let metrics = Metrics::new();
    app::restore(&store, &cache).await?;

    let nats = async_nats::connect(nats_url.as_str()).await?;
    let readiness = Readiness::new()
        .with_store(store.clone())
        .with_nats(nats.clone());
    readiness.mark_restored();
    let ingestor = Ingestor::new(
        async_nats::jetstream::new(nats),
        store.clone(),
        cache.clone(),
        metrics.clone(),
        IngestConfig::default(),
    )
    .await?;
    tokio::spawn(ingestor.run(std::future::pending()));

    // The host application's own routes, and ours under a prefix.
    let hello = warp::path("hello")
        .and(warp::path::end())
        .map(|| "hello from the host app");
    let orders = warp::path("orders-api").and(router(
        Api::new(cache, metrics, readiness).with_store(store),
    ));
    let routes = hello.or(orders);

    println!("serving on http://127.0.0.1:8081 (orders under /orders-api/)");
    warp::serve(routes).run(([127, 0, 0, 1], 8081)).await;
    Ok(())
}
