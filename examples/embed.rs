//! Embedding order_cache in another warp application: the order routes are
//! mounted at the root beside the host's own, and the crate's metrics are
//! registered in the host's registry, served by the host's `/metrics`.
//!
//! `cargo run --example embed`, then open http://127.0.0.1:8081/ (the order
//! page), http://127.0.0.1:8081/hello and http://127.0.0.1:8081/metrics.
//! `DATABASE_URL`, `NATS_URL` and `LISTEN` (default 127.0.0.1:8081; port 0
//! picks a free one) say where things are. Ctrl-C stops it.

use anyhow::Context;
use order_cache::prometheus_client::encoding::text::encode;
use order_cache::prometheus_client::registry::Registry;
use order_cache::{recover, server, AppConfig, Metrics, ServerConfig, Service};
use warp::Filter;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5555/order_cache".into());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8081".into());

    // The host's registry, with the crate's metrics in it.
    let mut registry = Registry::default();
    let metrics = Metrics::new();
    metrics.register(&mut registry);

    let service = Service::builder(AppConfig::new(database_url, nats_url))
        .metrics(metrics)
        .connect()
        .await
        .context("starting order_cache")?;

    // The host's own routes: its hello, and its metrics (the crate's among
    // them). Placed before the crate's routes, so the host's `/metrics`
    // wins over the crate's own.
    let registry = std::sync::Arc::new(registry);
    let host_metrics = warp::path("metrics").and(warp::path::end()).map(move || {
        let mut body = String::new();
        let _ = encode(&mut body, &registry);
        body
    });
    let hello = warp::path("hello")
        .and(warp::path::end())
        .map(|| "hello from the host app");
    let app = hello.or(host_metrics).or(service.routes()).recover(recover);

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("serving on http://{}", listener.local_addr()?);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(server::serve(
        listener,
        warp::service(app),
        ServerConfig::default(),
        async {
            http_stopped.await.ok();
        },
    ));

    // Restores the cache (`/readyz` is 503 until then), then consumes
    // orders until ctrl-c; the HTTP server stops after it.
    let ran = service
        .run(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await;
    let _ = stop_http.send(());
    http.await?;
    ran.context("order_cache stopped")
}
