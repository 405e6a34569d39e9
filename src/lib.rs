//! `order_cache` ingests orders from a NATS JetStream stream, validates them,
//! stores them in PostgreSQL, keeps them in an in-memory cache, and serves
//! them over HTTP with a small web page to look one up.
//!
//! # Embedding
//!
//! [`Service::builder`] wires everything: it connects to PostgreSQL and
//! NATS, applies the migrations and sets up the streams, and hands back a
//! [`Service`] whose [`routes`](Service::routes) a host mounts beside its
//! own and whose [`run`](Service::run) restores the cache and consumes
//! orders. No builder method spawns a task: the service runs in `run`,
//! and the routes start one task, for cache misses, on the runtime that
//! serves the first miss.
//!
//! ```no_run
//! use order_cache::prometheus_client::registry::Registry;
//! use order_cache::{recover, server, AppConfig, Metrics, ServerConfig, Service};
//! use warp::Filter;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The crate's metrics, in the host's registry (under `order_cache_`).
//! let mut registry = Registry::default();
//! let metrics = Metrics::new();
//! metrics.register(&mut registry);
//!
//! let config = AppConfig::new("postgres://postgres@127.0.0.1/orders", "nats://127.0.0.1:4222");
//! let service = Service::builder(config).metrics(metrics).connect().await?;
//!
//! // Mounted at the root: the host's routes first or last, either works,
//! // because `routes()` rejects what it does not serve. `recover` turns
//! // what nobody served into JSON errors, once, at the top.
//! let hello = warp::path("hello").map(|| "hello from the host");
//! let app = hello.or(service.routes()).recover(recover);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let http = tokio::spawn(server::serve(
//!     listener,
//!     warp::service(app),
//!     ServerConfig::default(),
//!     std::future::pending(),
//! ));
//! service.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # http.abort();
//! # Ok(())
//! # }
//! ```
//!
//! [`app::run`] is the same behind one listener: what `examples/server.rs`
//! runs. `examples/embed.rs` is the example above as a program.
//!
//! # Who may read an order
//!
//! Every order holds a name, a phone number, an e-mail and an address.
//! [`AppConfig::api_tokens`] ([`Api::with_tokens`]) closes the routes that
//! hold or describe orders to requests without `Authorization: Bearer
//! <token>`; [`AppConfig::recent_orders`] turns the listing off. A host that
//! has its own notion of who may read mounts the pieces it wants,
//! [`order_lookup`] and [`recent_orders`], behind its own check, which
//! rejects; one `recover` at the top answers its rejections and the
//! crate's:
//!
//! ```
//! use std::convert::Infallible;
//! use order_cache::{order_lookup, recover, Api, Cache, Metrics, Readiness};
//! use warp::{http::StatusCode, Filter, Rejection, Reply};
//!
//! #[derive(Debug)]
//! struct Forbidden;
//! impl warp::reject::Reject for Forbidden {}
//!
//! /// The host's check: here, a staff header its proxy sets.
//! fn staff() -> impl Filter<Extract = (), Error = Rejection> + Clone {
//!     warp::header::optional::<String>("x-staff")
//!         .and_then(|staff: Option<String>| async move {
//!             staff.map(|_| ()).ok_or_else(|| warp::reject::custom(Forbidden))
//!         })
//!         .untuple_one()
//! }
//!
//! async fn host_recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
//!     if r.find::<Forbidden>().is_some() {
//!         return Ok(warp::reply::with_status("staff only", StatusCode::FORBIDDEN).into_response());
//!     }
//!     recover(r).await.map(Reply::into_response)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
//! // The lookup for staff only; no listing, page or metrics of the crate's.
//! let app = staff().and(order_lookup(api)).recover(host_recover);
//!
//! let res = warp::test::request().path("/orders/abc").reply(&app).await;
//! assert_eq!(res.status(), 403);
//! let res = warp::test::request().path("/orders/abc").header("x-staff", "ann").reply(&app).await;
//! assert_eq!(res.status(), 404, "let through: there is no such order");
//! # }
//! ```
//!
//! # The pieces
//!
//! Each is usable on its own; the builder uses nothing else.
//!
//! - [`Order`] ([`model`]): the wire format and its validation rules.
//! - [`Store`]: PostgreSQL through diesel-async; batched, idempotent
//!   inserts and set-based reads; [`restore`] fills a cache from it.
//! - [`Cache`]: response bytes by id, in immutable snapshots published
//!   through `arc-swap`; readers never lock. [`Cache::builder`] gives it a
//!   byte budget (S3-FIFO eviction) and [`Compression`] (bodies packed
//!   against a dictionary trained on its own orders).
//! - [`Ingestor`] ([`ingest`]): the durable JetStream consumer that stores,
//!   caches, then acknowledges; dead-letters what it must reject.
//! - [`routes`], [`router`], [`recover`] and [`Api`]: the warp filters with
//!   the JSON API, the page, health and metrics; [`order_lookup`] and
//!   [`recent_orders`] apart.
//! - [`BearerTokens`]: the access tokens the routes take, compared in
//!   constant time and never shown.
//! - [`Metrics`] and [`Readiness`]: what `/metrics` and `/readyz` report.
//! - [`server::serve`] ([`server`]): serves a filter over HTTP/1.1 with
//!   header and idle timeouts and a cap on open connections.
//! - [`trace`]: W3C trace context carried through ingestion; with feature
//!   `otel`, OpenTelemetry spans per batch and per database write.
//! - [`Report`]: an error with its causes, for logs.
//! - `demo` (feature `demo`): varied valid orders from a seed, for demos
//!   and benchmarks.
//! - [`dotenv`]: `./.env` read under the environment, for the binaries.
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod app;
mod backoff;
mod cache;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dotenv;
mod health;
mod http;
pub mod ingest;
mod metrics;
pub mod model;
mod redact;
mod report;
mod restore;
mod schema;
pub mod server;
mod store;
mod tokens;
pub mod trace;

pub use app::{AppConfig, AppError, Service, ServiceBuilder};
pub use cache::{
    entry_cost, ByteSize, ByteSizeError, Cache, CacheBuilder, CacheStats, Compression,
    CompressionError, Snapshot, TRAIN_AFTER,
};
pub use health::Readiness;
pub use http::{
    order_lookup, recent_orders, recover, router, routes, Api, CACHE_HEADER, MISS_DEADLINE,
};
pub use ingest::{IngestConfig, IngestError, Ingestor};
pub use metrics::Metrics;
pub use model::{Order, OrderUid, Rejection, UnknownFields};
pub use redact::NatsUrl;
pub use report::Report;
pub use restore::restore;
pub use server::ServerConfig;
pub use store::{Corruption, DatabaseError, Scanned, Store, StoreConfig, StoreError};
pub use tokens::{BearerTokens, TokenError, MIN_TOKEN_LEN};

/// The NATS client this crate is built on: a host names its types to give
/// [`Ingestor::new`] a JetStream context and [`Readiness::with_nats`] a
/// client, without adding a matching `async-nats` version by hand.
pub use async_nats;
/// The metrics library of [`Metrics::register`]'s registry.
pub use prometheus_client;
/// The web framework of [`routes`] and [`router`]: a host composes its own
/// filters with them, so it needs this same version (warp 0.4).
pub use warp;
