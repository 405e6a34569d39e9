//! Integration tests: the real service against real PostgreSQL and NATS.
//! Each test has its own database and its own streams; fault-injection tests
//! own their PostgreSQL cluster and nats-server outright.

mod access;
#[cfg(feature = "e2e")]
mod browser;
mod compatibility;
mod corpus;
mod dlq_tool;
mod dotenv;
mod embed;
mod failover;
mod faults;
mod hardening;
mod helpers;
mod http;
#[cfg(feature = "e2e")]
mod interop;
mod logs;
mod observability;
#[cfg(feature = "e2e")]
mod openapi;
mod pipeline;
mod producer;
mod purge;
mod review;
mod review2;
mod secrets;
mod server;
mod services;
mod store;
#[cfg(feature = "otel")]
mod trace;
mod unreachable;
