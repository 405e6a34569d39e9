//! The whole service wired together: what `examples/server.rs` runs, and
//! what the integration tests spawn.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cache::{Cache, Snapshot};
use crate::health::Readiness;
use crate::http::{router, Api};
use crate::ingest::{IngestConfig, IngestError, Ingestor};
use crate::metrics::Metrics;
use crate::model::Order;
use crate::redact::{redact_database_url, NatsUrl};
use crate::server::{serve, ServerConfig};
use crate::store::{Scanned, Store, StoreConfig, StoreError};

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
/// use order_cache::AppConfig;
///
/// let config = AppConfig::new("postgres://app:s3cret@db/orders", "nats://app:t0ps3cret@nats:4222");
/// assert!(!format!("{config:?}").contains("s3cret"));
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
    #[error("cannot reach PostgreSQL at {url} within {timeout:?}: {source}")]
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
    #[error("cannot reach NATS at {url} within {timeout:?}: {source}")]
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
    let deadline = Instant::now() + config.startup_timeout;

    if crate::redact::database_url_is_misread(&config.store.database_url) {
        return Err(AppError::MisreadDatabaseUrl {
            url: redact_database_url(&config.store.database_url),
        });
    }
    let metrics = Metrics::new();
    let store = Store::new(config.store.clone())?.with_metrics(metrics.clone());
    wait_for_postgres(&store, &config, deadline).await?;
    store.migrate().await?;
    let nats = connect_nats(&config, deadline).await?;
    let js = async_nats::jetstream::new(nats.clone());

    let cache = Cache::new();
    let ingestor = Ingestor::new(
        js,
        store.clone(),
        cache.clone(),
        metrics.clone(),
        config.ingest.clone(),
    )
    .await?;

    let readiness = Readiness::new()
        .with_store(store.clone())
        .with_nats(nats.clone());
    let api = Api::new(cache.clone(), metrics.clone(), readiness.clone()).with_store(store.clone());
    let addr = listener
        .local_addr()
        .map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
    let mut server = tokio::spawn(serve(
        listener,
        warp::service(router(api)),
        config.http.clone(),
        shutdown.clone(),
    ));
    info!(%addr, "listening");

    let restored = tokio::select! {
        biased;
        () = shutdown.clone() => None,
        r = restore(&store, &cache) => Some(r),
    };
    let result = match restored {
        Some(Ok(scanned)) => {
            metrics.cache(&cache.snapshot());
            metrics.inconsistent(scanned.inconsistent);
            readiness.mark_restored();
            info!(orders = scanned.orders, "cache restored; consuming");
            ingestor.run(shutdown.clone()).await;
            Ok(())
        }
        Some(Err(e)) => Err(AppError::from(e)),
        None => Ok(()),
    };

    info!("shutting down");
    if result.is_err() {
        // A failed start stops what it started: nothing keeps listening
        // for a service that will not run.
        server.abort();
        let _ = (&mut server).await;
    } else if tokio::time::timeout(config.shutdown_timeout, &mut server)
        .await
        .is_err()
    {
        warn!("open HTTP connections did not close in time; closing them");
        server.abort();
    }
    // The last batch's acks may still sit in the client's write buffer:
    // flush waits until the server has them (drain only queues a command
    // and returns, and the connection dies with the process), so a clean
    // stop leaves nothing committed for redelivery.
    match tokio::time::timeout(config.shutdown_timeout, nats.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "NATS flush failed; unsent acks mean redeliveries"),
        Err(_) => warn!("NATS flush timed out; unsent acks mean redeliveries"),
    }
    if let Err(e) = nats.drain().await {
        warn!(error = %e, "NATS drain failed");
    }
    result
}

/// Fills `cache` with every stored order and the recent list. An order whose
/// rows do not add up is logged and counted in [`Scanned::inconsistent`],
/// and left to be answered from PostgreSQL with a clear error; the others
/// restore exactly.
///
/// Decoding rows (on this task) and serialising and indexing the orders (on
/// a blocking thread) overlap; each is seconds of CPU for a million orders.
/// The orders are published in one swap: built on a map nobody else shares,
/// each insert is in place, where publishing in chunks would make every
/// chunk copy the nodes the previous snapshot still shares. Nothing is
/// published when the scan fails.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{app, Cache, Store, StoreConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = Store::new(StoreConfig::new("postgres://postgres@127.0.0.1/orders"))?;
/// let cache = Cache::new();
/// let restored = app::restore(&store, &cache).await?;
/// assert_eq!(cache.len(), restored.orders);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// When PostgreSQL fails during the scan.
pub async fn restore(store: &Store, cache: &Cache) -> Result<Scanned, StoreError> {
    /// Orders handed over at a time, and chunks queued at most.
    const CHUNK: usize = 1024;
    const QUEUED: usize = 4;
    let started = Instant::now();
    let (chunks, queue) = std::sync::mpsc::sync_channel::<Vec<Order>>(QUEUED);
    let builder = tokio::task::spawn_blocking(move || {
        Snapshot::build(
            queue
                .into_iter()
                .flatten()
                .map(|order| (order.order_uid.clone(), order.to_json())),
        )
    });
    let mut chunk = Vec::with_capacity(CHUNK);
    let scanned = store
        .scan(|order| {
            chunk.push(order);
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                hand_over(&chunks, full);
            }
        })
        .await;
    hand_over(&chunks, chunk);
    drop(chunks);
    let built = builder.await;
    let scanned = scanned?;
    // A panic there is a bug here: surface it as if it had happened inline.
    let built = match built {
        Ok(built) => built,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => return Err(StoreError::Stopped),
        },
    };
    cache.merge(built);
    cache.set_recent(store.recent(crate::cache::RECENT as i64).await?);
    info!(
        orders = scanned.orders,
        inconsistent = scanned.inconsistent,
        took = ?started.elapsed(),
        "restored cache from PostgreSQL"
    );
    Ok(scanned)
}

/// Sends a chunk to the restore thread, waiting while its queue is full:
/// the thread does not depend on the runtime, so waiting cannot deadlock,
/// and on a multi-threaded runtime the wait lets this worker's other tasks
/// move to another worker. A thread that died is reported when joined.
fn hand_over(chunks: &std::sync::mpsc::SyncSender<Vec<Order>>, chunk: Vec<Order>) {
    if chunk.is_empty() {
        return;
    }
    let send = || {
        let _ = chunks.send(chunk);
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(send),
        _ => send(),
    }
}

async fn wait_for_postgres(
    store: &Store,
    config: &AppConfig,
    deadline: Instant,
) -> Result<(), AppError> {
    loop {
        match store.ping().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(AppError::Postgres {
                    url: redact_database_url(&config.store.database_url),
                    timeout: config.startup_timeout,
                    source: e,
                })
            }
            Err(e) => {
                warn!(error = %e, "waiting for PostgreSQL");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn connect_nats(
    config: &AppConfig,
    deadline: Instant,
) -> Result<async_nats::Client, AppError> {
    // Credentials go to the client apart from the addresses, which it logs.
    let nats_url = NatsUrl::parse(&config.nats_url);
    loop {
        let attempt = nats_url
            .connect(
                async_nats::ConnectOptions::new()
                    .name("order_cache")
                    .connection_timeout(Duration::from_secs(2)),
            )
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() >= deadline => {
                return Err(AppError::Nats {
                    url: nats_url.to_string(),
                    timeout: config.startup_timeout,
                    source: e,
                })
            }
            Err(e) => {
                warn!(error = %e, "waiting for NATS");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
