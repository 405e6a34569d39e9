//! Integration tests: the real service against real PostgreSQL and NATS.
//! Each test has its own database and its own streams.

mod helpers;
mod http;
mod pipeline;
mod store;
