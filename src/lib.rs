//! `order_cache` ingests orders from a NATS JetStream stream, validates them,
//! stores them in PostgreSQL, keeps every order in an in-memory cache, and
//! serves them over HTTP with a small web page to look one up.
//!
//! The pieces, each usable on its own:
//!
//! - [`Order`] ([`model`]): the wire format and its validation rules.
//! - [`Store`] ([`store`]): PostgreSQL through diesel-async; batched,
//!   idempotent inserts and set-based reads.
//! - [`Cache`] ([`cache`]): response bytes by id, in immutable snapshots
//!   published through `arc-swap`; readers never lock.
//! - [`Ingestor`] ([`ingest`]): the durable JetStream consumer that stores,
//!   caches, then acknowledges; dead-letters what it must reject.
//! - [`router`] ([`http`]): the warp filter with the JSON API, the page,
//!   health and metrics.
//! - [`redact`]: connection strings with their passwords and tokens hidden,
//!   for everything the service prints.
//! - [`trace`]: W3C trace context carried through ingestion; with feature
//!   `otel`, OpenTelemetry spans per batch and per database write.
//! - [`server::serve`] ([`server`]): serves such a filter over HTTP/1.1
//!   with header and idle timeouts and a cap on open connections.
//! - [`app::run`]: all of them wired together, as `examples/server.rs` runs
//!   them.
//!
//! # Embedding
//!
//! ```no_run
//! use order_cache::{app, router, server, Api, Cache, IngestConfig, Ingestor, Metrics, Readiness, ServerConfig, Store, StoreConfig};
//! use warp::Filter;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))?;
//! store.migrate().await?;
//! let cache = Cache::new();
//! let metrics = Metrics::new();
//! let readiness = Readiness::new().with_store(store.clone());
//!
//! app::restore(&store, &cache).await?;
//! readiness.mark_restored();
//!
//! let nats = async_nats::connect("127.0.0.1:4222").await?;
//! let ingestor = Ingestor::new(
//!     async_nats::jetstream::new(nats),
//!     store.clone(),
//!     cache.clone(),
//!     metrics.clone(),
//!     IngestConfig::default(),
//! )
//! .await?;
//! tokio::spawn(ingestor.run(std::future::pending()));
//!
//! let api = Api::new(cache, metrics, readiness).with_store(store);
//! let routes = warp::path("orders-api")
//!     .and(router(api))
//!     .or(warp::path("hello").map(|| "hello"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server::serve(listener, warp::service(routes), ServerConfig::default(), std::future::pending()).await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod app;
pub mod cache;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod redact;
mod schema;
pub mod server;
pub mod store;
pub mod trace;

pub use app::{AppConfig, AppError};
pub use cache::Cache;
pub use health::Readiness;
pub use http::{recover, router, routes, Api};
pub use ingest::{IngestConfig, IngestError, Ingestor};
pub use metrics::Metrics;
pub use model::{Order, OrderUid, Rejection};
pub use server::ServerConfig;
pub use store::{Store, StoreConfig, StoreError};

/// The NATS client this crate is built on: a host names its types to give
/// [`Ingestor::new`] a JetStream context and [`Readiness::with_nats`] a
/// client, without adding a matching `async-nats` version by hand.
pub use async_nats;
/// The metrics library of [`Metrics::register`]'s registry.
pub use prometheus_client;
