//! How to reach PostgreSQL, and how long to wait for it.

use std::time::Duration;

use crate::redact::redact_database_url;

/// Settings of a [`Store`](super::Store).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::StoreConfig;
///
/// let mut config = StoreConfig::new("postgres://app:s3cret@db.internal:5432/orders");
/// config.max_connections = 16;
/// config.query_timeout = Duration::from_secs(5);
/// // Debug output (and so any log line) never shows the password.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`.
    pub database_url: String,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long to wait for a connection, new or pooled.
    pub connect_timeout: Duration,
    /// How long one statement may run before it counts as failed.
    pub query_timeout: Duration,
}

impl StoreConfig {
    /// Settings with the defaults below for everything but the URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        StoreConfig {
            database_url: database_url.into(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("database_url", &redact_database_url(&self.database_url))
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("query_timeout", &self.query_timeout)
            .finish()
    }
}
