//! The whole service wired together: [`Service`] connects the pieces and
//! hands back what a host mounts and runs; [`run`] is all of it behind one
//! listener, as `examples/server.rs` and the integration tests run it.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{info, warn};
use warp::{Filter, Rejection, Reply};

use crate::backoff::retry_until;
use crate::cache::{Cache, Compression};
use crate::health::Readiness;
use crate::http::{router, routes, Api};
use crate::ingest::{IngestConfig, IngestError, Ingestor};
use crate::metrics::Metrics;
use crate::redact::{redact_database_url, NatsUrl};
use crate::report::Report;
use crate::restore::restore;
use crate::server::{serve, ServerConfig};
use crate::store::{Store, StoreConfig, StoreError};
use crate::tokens::BearerTokens;

/// How long to wait between attempts to reach PostgreSQL or NATS at start.
const START_RETRY: Duration = Duration::from_millis(500);

/// Everything [`run`] needs to know.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::AppConfig;
///
/// let mut config = AppConfig::new("postgres://postgres@127.0.0.1/orders", "nats://127.0.0.1:4222");
/// config.store.max_connections = 4;
/// config.ingest.batch_size = 250;
/// config.startup_timeout = Duration::from_secs(60);
/// config.http.max_connections = 2_000;
/// ```
///
/// `Debug` shows no password or token:
///
/// ```
/// use order_cache::{AppConfig, BearerTokens};
///
/// let mut config = AppConfig::new("postgres://app:s3cret@db/orders", "nats://app:t0ps3cret@nats:4222");
/// config.api_tokens = BearerTokens::parse("api-t0ps3cret-0123456789").unwrap();
/// let debug = format!("{config:?}");
/// assert!(!debug.contains("s3cret") && !debug.contains("t0ps3cret"));
/// assert!(debug.contains("api_tokens: BearerTokens(1 token, hidden)"));
/// ```
#[derive(Clone)]
pub struct AppConfig {
    /// PostgreSQL settings.
    pub store: StoreConfig,
    /// NATS server URL(s), comma separated, each read as [`NatsUrl`] reads
    /// it.
    pub nats_url: String,
    /// Stream, subject and consumer names, and batch tuning.
    pub ingest: IngestConfig,
    /// How long to keep trying to reach PostgreSQL and NATS at start.
    pub startup_timeout: Duration,
    /// How long shutdown may wait for open HTTP connections.
    pub shutdown_timeout: Duration,
    /// HTTP timeouts and connection cap.
    pub http: ServerConfig,
    /// Most bytes the cache may hold ([`Cache::with_max_bytes`]): past it,
    /// the orders read least are evicted and served from PostgreSQL, and a
    /// restore reads the newest orders until it is full. `None` (the
    /// default) caches every order. Ignored when the builder is given a
    /// cache.
    pub cache_max_bytes: Option<u64>,
    /// How the cache keeps bodies ([`Compression`]): `None` (the default)
    /// as JSON; `Zstd` packed, for a fifth to a half of the memory an
    /// order costs and 1-2 µs per read. Ignored when the builder is given
    /// a cache.
    pub cache_compression: Compression,
    /// The tokens the routes holding or describing orders take
    /// ([`Api::with_tokens`]); none (the default) leaves them open, and
    /// [`run`] warns when it then listens beyond loopback.
    pub api_tokens: BearerTokens,
    /// The tokens `/metrics` takes instead of `api_tokens`
    /// ([`Api::with_metrics_tokens`]); `None` (the default): the same.
    pub metrics_tokens: Option<BearerTokens>,
    /// Whether `GET /orders` lists the most recent ids (the default) or is
    /// no route ([`Api::with_recent_orders`]).
    pub recent_orders: bool,
}

impl AppConfig {
    /// Settings with default names and timeouts.
    pub fn new(database_url: impl Into<String>, nats_url: impl Into<String>) -> AppConfig {
        AppConfig {
            store: StoreConfig::new(database_url),
            nats_url: nats_url.into(),
            ingest: IngestConfig::default(),
            startup_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            http: ServerConfig::default(),
            cache_max_bytes: None,
            cache_compression: Compression::None,
            api_tokens: BearerTokens::none(),
            metrics_tokens: None,
            recent_orders: true,
        }
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("store", &self.store)
            .field("nats_url", &NatsUrl::parse(&self.nats_url))
            .field("ingest", &self.ingest)
            .field("startup_timeout", &self.startup_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("http", &self.http)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("cache_compression", &self.cache_compression)
            .field("api_tokens", &self.api_tokens)
            .field("metrics_tokens", &self.metrics_tokens)
            .field("recent_orders", &self.recent_orders)
            .finish()
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The database URL would be misread: an unescaped `@` in a password
    /// given as a parameter makes the client take part of the password for
    /// the user name, which PostgreSQL would then print in its errors.
    #[error(
        "DATABASE_URL {url} cannot be read as meant: percent-encode '@' in the password as %40"
    )]
    MisreadDatabaseUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// PostgreSQL did not answer within the start-up timeout.
    #[error("cannot reach PostgreSQL at {url} within {timeout:?}")]
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// How long we tried.
        timeout: Duration,
        /// The last failure.
        #[source]
        source: StoreError,
    },
    /// Migrations or another start-up query failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// NATS did not answer within the start-up timeout.
    #[error("cannot reach NATS at {url} within {timeout:?}")]
    Nats {
        /// The server list, passwords and tokens redacted.
        url: String,
        /// How long we tried.
        timeout: Duration,
        /// The last failure.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The streams or consumer could not be set up.
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Builds a [`Service`]: the settings, and optionally a [`Metrics`] or
/// [`Cache`] the host already holds (to register the metrics in its own
/// registry, or to share the cache). Nothing happens until
/// [`ServiceBuilder::connect`].
#[derive(Debug)]
#[must_use = "a builder does nothing until connected"]
pub struct ServiceBuilder {
    config: AppConfig,
    metrics: Option<Metrics>,
    cache: Option<Cache>,
}

impl ServiceBuilder {
    /// Count into these metrics, e.g. ones registered in the host's own
    /// registry with [`Metrics::register`].
    pub fn metrics(mut self, metrics: Metrics) -> ServiceBuilder {
        self.metrics = Some(metrics);
        self
    }

    /// Cache into this cache instead of a new one.
    pub fn cache(mut self, cache: Cache) -> ServiceBuilder {
        self.cache = Some(cache);
        self
    }

    /// Connects to PostgreSQL and NATS (trying again until
    /// `startup_timeout`), applies the migrations and sets up the streams
    /// and the durable consumer. It starts no task: the service runs in
    /// [`Service::run`].
    ///
    /// # Errors
    ///
    /// [`AppError`] when a dependency cannot be reached or set up in time.
    /// NATS, if it was reached, is drained before the error returns.
    pub async fn connect(self) -> Result<Service, AppError> {
        let config = self.config;
        let deadline = Instant::now() + config.startup_timeout;
        if crate::redact::database_url_is_misread(&config.store.database_url) {
            return Err(AppError::MisreadDatabaseUrl {
                url: redact_database_url(&config.store.database_url),
            });
        }
        let metrics = self.metrics.unwrap_or_default();
        let cache = self.cache.unwrap_or_else(|| {
            Cache::builder()
                .max_bytes(config.cache_max_bytes)
                .compression(config.cache_compression)
                .build()
        });
        let store = Store::new(config.store.clone())?.with_metrics(metrics.clone());
        retry_until(deadline, START_RETRY, "PostgreSQL", || store.ping())
            .await
            .map_err(|source| AppError::Postgres {
                url: redact_database_url(&config.store.database_url),
                timeout: config.startup_timeout,
                source,
            })?;
        store.migrate().await?;
        let nats = connect_nats(&config, deadline).await?;
        let ingestor = Ingestor::new(
            async_nats::jetstream::new(nats.clone()),
            store.clone(),
            cache.clone(),
            metrics.clone(),
            config.ingest.clone(),
        )
        .await;
        let ingestor = match ingestor {
            Ok(ingestor) => ingestor,
            Err(e) => {
                close_nats(&nats, config.shutdown_timeout).await;
                return Err(e.into());
            }
        };
        let readiness = Readiness::new()
            .with_store(store.clone())
            .with_nats(nats.clone());
        let mut api = Api::new(cache.clone(), metrics.clone(), readiness.clone())
            .with_store(store.clone())
            .with_tokens(config.api_tokens.clone())
            .with_recent_orders(config.recent_orders);
        if let Some(tokens) = &config.metrics_tokens {
            api = api.with_metrics_tokens(tokens.clone());
        }
        Ok(Service {
            config,
            store,
            cache,
            metrics,
            readiness,
            nats,
            ingestor,
            api,
        })
    }
}

/// The service's parts, connected and set up: the routes to mount, and
/// [`Service::run`] to restore the cache and consume orders.
///
/// # Examples
///
/// A host mounting the routes at its root, beside its own, with the
/// crate's metrics in its own registry:
///
/// ```no_run
/// use order_cache::prometheus_client::registry::Registry;
/// use order_cache::{recover, server, AppConfig, Metrics, Service, ServerConfig};
/// use warp::Filter;
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut registry = Registry::default();
/// let metrics = Metrics::new();
/// metrics.register(&mut registry);
///
/// let config = AppConfig::new("postgres://postgres@127.0.0.1/orders", "nats://127.0.0.1:4222");
/// let service = Service::builder(config).metrics(metrics).connect().await?;
///
/// let hello = warp::path("hello").map(|| "hello from the host");
/// let app = hello.or(service.routes()).recover(recover);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let http = tokio::spawn(server::serve(
///     listener,
///     warp::service(app),
///     ServerConfig::default(),
///     async { stopped.await.ok(); },
/// ));
///
/// // Restores the cache (the routes answer 503 on /readyz until then),
/// // then consumes orders until ctrl-c.
/// service.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// let _ = stop.send(());
/// http.await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Service {
    config: AppConfig,
    store: Store,
    cache: Cache,
    metrics: Metrics,
    readiness: Readiness,
    nats: async_nats::Client,
    ingestor: Ingestor,
    api: Api,
}

impl Service {
    /// A builder with these settings.
    pub fn builder(config: AppConfig) -> ServiceBuilder {
        ServiceBuilder {
            config,
            metrics: None,
            cache: None,
        }
    }

    /// What the routes serve from, to build them yourself with
    /// [`routes`] or [`router`].
    pub fn api(&self) -> Api {
        self.api.clone()
    }

    /// The routes alone, to mount beside the host's own and end with
    /// [`recover`](crate::recover): see [`routes`].
    pub fn routes(&self) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
        routes(self.api())
    }

    /// The cache the service fills.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The PostgreSQL store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Restores the cache from PostgreSQL, marks the service ready, then
    /// consumes orders until `shutdown` completes (a shutdown during the
    /// restore ends it at once). On the way out it finishes and
    /// acknowledges the batches in flight, waits until NATS has the acks
    /// (up to `shutdown_timeout`) and drains the connection, whether the
    /// run succeeded or not.
    ///
    /// # Errors
    ///
    /// [`AppError::Store`] when the restore fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let result = self.consume(shutdown).await;
        close_nats(&self.nats, self.config.shutdown_timeout).await;
        result
    }

    /// [`Service::run`] but for closing NATS: restores, then consumes
    /// until `shutdown`, keeping the gauges fresh meanwhile.
    async fn consume(
        &self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let shutdown = shutdown.shared();
        let restored = tokio::select! {
            biased;
            () = shutdown.clone() => return Ok(()),
            r = restore(&self.store, &self.cache) => r?,
        };
        self.metrics.cache(&self.cache.snapshot());
        self.metrics.inconsistent(restored.inconsistent);
        self.readiness.mark_restored();
        info!(orders = restored.orders, "cache restored; consuming");
        tokio::select! {
            () = self.ingestor.clone().run(shutdown) => {}
            () = refresh_gauges(&self.metrics, &self.readiness, &self.cache) => {}
        }
        Ok(())
    }
}

/// Runs the service until `shutdown` completes: connects to PostgreSQL and
/// NATS (giving up after `startup_timeout`), applies migrations, sets up the
/// streams, serves HTTP on `listener` with [`serve`] and the limits in
/// `http` (`/readyz` answers 503 until the cache is restored), restores the
/// cache, then consumes orders. It leaves the process's limit on open files
/// as it is: a binary raises it with
/// [`raise_fd_limit`](crate::server::raise_fd_limit).
///
/// On shutdown it stops pulling, finishes and acknowledges the batches in
/// flight, closes the HTTP server (requests in flight get up to
/// `shutdown_timeout`, then their connections are closed), waits until NATS
/// has received the acks (up to `shutdown_timeout`) and drains the
/// connection.
///
/// # Errors
///
/// [`AppError`] when a dependency cannot be reached or set up at start.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{app, AppConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let config = AppConfig::new("postgres://postgres@127.0.0.1/orders", "nats://127.0.0.1:4222");
/// app::run(listener, config, async {
///     tokio::signal::ctrl_c().await.ok();
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
///
/// A dependency that never answers is an error once `startup_timeout` has
/// passed, not a hang:
///
/// ```
/// use std::time::Duration;
/// use order_cache::{app, AppConfig, AppError};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let mut config = AppConfig::new("postgres://postgres:pw@127.0.0.1:1/x", "nats://127.0.0.1:1");
/// config.startup_timeout = Duration::from_millis(200);
/// let err = app::run(listener, config, std::future::pending()).await.unwrap_err();
/// assert!(matches!(err, AppError::Postgres { .. }));
/// assert!(!err.to_string().contains("pw"), "the password is redacted");
/// # }
/// ```
pub async fn run(
    listener: TcpListener,
    config: AppConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let shutdown = shutdown.shared();
    let (http, shutdown_timeout) = (config.http.clone(), config.shutdown_timeout);
    let open = config.api_tokens.is_empty();
    // Counts only, never the tokens: so an operator sees from the log
    // that the routes are closed.
    let (api_tokens, metrics_tokens) = (
        config.api_tokens.len(),
        config.metrics_tokens.as_ref().map_or(0, |t| t.len()),
    );
    let service = Service::builder(config).connect().await?;
    let local = listener.local_addr();
    if !open {
        info!(
            api_tokens,
            metrics_tokens, "access tokens required on the routes that hold orders"
        );
    }
    if let Ok(local) = &local {
        if open && !is_loopback(local) {
            warn!(
                addr = %local,
                "listening beyond loopback with no access token: anyone who reaches this port \
                 reads every order; set API_TOKEN (or API_TOKEN_FILE)"
            );
        }
    }
    let addr = local.map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
    let mut server = tokio::spawn(serve(
        listener,
        warp::service(router(service.api())),
        http,
        shutdown.clone(),
    ));
    info!(%addr, "listening");

    let result = service.consume(shutdown).await;
    info!("shutting down");
    if result.is_err() {
        // A failed start stops what it started: nothing keeps listening
        // for a service that will not run.
        server.abort();
        let _ = (&mut server).await;
    } else if tokio::time::timeout(shutdown_timeout, &mut server)
        .await
        .is_err()
    {
        warn!("open HTTP connections did not close in time; closing them");
        server.abort();
    }
    close_nats(&service.nats, shutdown_timeout).await;
    result
}

/// Whether only this machine can reach `addr`: 127.0.0.0/8 or ::1 (also as
/// `::ffff:127.0.0.1`), not 0.0.0.0, `::` or an interface's address.
fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Sets the readiness and cache gauges every second, for ever: a host that
/// serves its own registry (with [`Metrics::register`]) and never calls the
/// crate's `/metrics` or `/readyz` still shows them current.
async fn refresh_gauges(metrics: &Metrics, readiness: &Readiness, cache: &Cache) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        metrics.ready(readiness.failing().await.is_empty());
        metrics.cache(&cache.snapshot());
    }
}

/// Waits until NATS has everything sent (the last batch's acks may still
/// sit in the client's write buffer, and a clean stop must leave nothing
/// committed for redelivery), then drains the connection.
async fn close_nats(nats: &async_nats::Client, timeout: Duration) {
    match tokio::time::timeout(timeout, nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn!(error = %Report(&e), "NATS flush failed; unsent acks mean redeliveries")
        }
        Err(_) => warn!("NATS flush timed out; unsent acks mean redeliveries"),
    }
    if let Err(e) = nats.drain().await {
        warn!(error = %Report(&e), "NATS drain failed");
    }
}

async fn connect_nats(
    config: &AppConfig,
    deadline: Instant,
) -> Result<async_nats::Client, AppError> {
    // Credentials go to the client apart from the addresses, which it logs.
    let nats_url = NatsUrl::parse(&config.nats_url);
    let connect = || {
        nats_url.connect(
            async_nats::ConnectOptions::new()
                .name("order_cache")
                .connection_timeout(Duration::from_secs(2)),
        )
    };
    retry_until(deadline, START_RETRY, "NATS", connect)
        .await
        .map_err(|source| AppError::Nats {
            url: nats_url.to_string(),
            timeout: config.startup_timeout,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_addresses_go_without_the_warning() {
        for addr in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_loopback(&addr.parse().unwrap()), "{addr}");
        }
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.0.0.5:8080",
            "[::ffff:10.0.0.5]:80",
        ] {
            assert!(!is_loopback(&addr.parse().unwrap()), "{addr}");
        }
    }
}
