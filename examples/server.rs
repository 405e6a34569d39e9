//! The order_cache service: `cargo run --example server -- --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use order_cache::trace::Tracer;
use order_cache::{
    app, server, AppConfig, BearerTokens, Compression, IngestConfig, Report, ServerConfig,
    StoreConfig, UnknownFields,
};

// The ingest path allocates and frees many large, short-lived buffers (one
// bind array per column per batch); glibc's allocator spent about 40% of the
// process's time on them, mimalloc a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ingest orders from NATS JetStream into PostgreSQL and serve them over HTTP.
// No `Debug`: the settings hold the passwords; `AppConfig` shows them redacted.
#[derive(Parser)]
#[command(version)]
struct Settings {
    /// PostgreSQL URL (default: the docker-compose database; ./scripts/up
    /// writes the one it used to ./.env, which is read when the environment
    /// does not set it).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5555/order_cache",
        hide_default_value = true,
        hide_env_values = true
    )]
    database_url: String,
    /// NATS server URL(s), comma separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        hide_env_values = true
    )]
    nats_url: String,
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    listen_addr: SocketAddr,
    /// JetStream stream that holds the orders.
    #[arg(long, env = "ORDERS_STREAM", default_value = "ORDERS")]
    orders_stream: String,
    /// Subject orders are published to.
    #[arg(long, env = "ORDERS_SUBJECT", default_value = "orders")]
    orders_subject: String,
    /// Durable consumer name; instances with the same name share the work.
    #[arg(long, env = "ORDERS_CONSUMER", default_value = "order-cache")]
    orders_consumer: String,
    /// Subject rejected messages are published to (kept in stream `<ORDERS_STREAM>_DLQ`).
    #[arg(long, env = "ORDERS_DLQ_SUBJECT", default_value = "orders.dlq")]
    orders_dlq_subject: String,
    /// Copies JetStream keeps of the streams it creates (3 on a NATS cluster survives a node).
    #[arg(long, env = "ORDERS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    orders_replicas: u64,
    /// Most messages stored in one transaction.
    #[arg(long, env = "BATCH_SIZE", default_value_t = 1000)]
    batch_size: usize,
    /// Most PostgreSQL connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 8)]
    database_max_connections: usize,
    /// Seconds to keep trying PostgreSQL and NATS at start before exiting.
    #[arg(long, env = "STARTUP_TIMEOUT", default_value_t = 30)]
    startup_timeout: u64,
    /// Seconds a new HTTP connection has to send its first request header.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT", default_value_t = ServerConfig::default().header_read_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    http_header_read_timeout: u64,
    /// Seconds a kept-alive HTTP connection has to send its next request header.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT", default_value_t = ServerConfig::default().idle_timeout.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    http_idle_timeout: u64,
    /// Most HTTP connections open at once; more wait until one closes.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = ServerConfig::default().max_connections as u64, value_parser = clap::value_parser!(u64).range(1..))]
    http_max_connections: u64,
    /// Most memory the order cache may hold: a byte count (`256MiB`, `2GiB`,
    /// `500MB`, `1073741824`), `auto` (half the memory this process may use:
    /// its cgroup's limit, or the machine's memory) or `unlimited` (every
    /// order, as before budgets existed). Past it the orders read least are
    /// served from PostgreSQL.
    #[arg(long, env = "CACHE_MAX_BYTES", default_value = "auto")]
    cache_max_bytes: Budget,
    /// How the cache keeps orders: `zstd` (compressed with a dictionary
    /// trained on the first 10,000 orders: about half the memory per order
    /// or less, and 1-2 µs per read to decompress) or `none` (as JSON).
    #[arg(long, env = "CACHE_COMPRESSION", default_value = "zstd")]
    cache_compression: Compression,
    /// Fields an order carries that the model does not know: `keep` (store
    /// them and serve them back with the order) or `reject` (dead-letter
    /// the order: a closed schema).
    #[arg(long, env = "UNKNOWN_FIELDS", default_value = "keep")]
    unknown_fields: UnknownFields,
    /// Access tokens the routes holding orders take (`Authorization: Bearer
    /// <token>`), comma separated: several while one is rotated. Unset, anyone
    /// who reaches the port reads every order. Prefer the environment or
    /// API_TOKEN_FILE to this flag, which other users can see in `ps`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true, value_name = "TOKENS")]
    api_token: Option<String>,
    /// A file holding the access tokens (one a line, or comma separated), as
    /// an orchestrator mounts a secret; read once, at start.
    #[arg(long, env = "API_TOKEN_FILE", value_name = "PATH")]
    api_token_file: Option<PathBuf>,
    /// Tokens /metrics takes instead of the access tokens (a scraper's token
    /// then opens no order), comma separated. Unset: the access tokens.
    #[arg(
        long,
        env = "METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKENS"
    )]
    metrics_token: Option<String>,
    /// Whether GET /orders lists the most recent ids (`on`) or is no route
    /// (`off`: reading an order then needs its id).
    #[arg(long, env = "RECENT_ORDERS", default_value = "on", hide_possible_values = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    recent_orders: bool,
    /// Threads serving HTTP and ingesting (default: one per core).
    #[arg(long, env = "WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Log as JSON lines instead of text (LOG_JSON=1, true, yes or on).
    #[arg(long, env = "LOG_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    log_json: bool,
}

fn main() {
    // What ./scripts/up chose (or an operator keeps) in ./.env, under what
    // the environment says: a server started by hand after scripts/up
    // finds the same database and NATS.
    let dotenv = order_cache::dotenv::load();
    let s = Settings::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,order_cache=info".into());
    if s.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        // Colours only for a person at a terminal, not in a log file.
        tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init();
    }
    match dotenv {
        Ok(found) if found.found => {
            tracing::info!(
                taken = found.taken,
                "settings read from ./.env where the environment gives none"
            );
            if let Some(note) = found.skipped_note() {
                tracing::warn!(skipped = found.skipped, "{note}");
            }
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot read ./.env");
            std::process::exit(1);
        }
    }
    // A fatal error is a log line like any other (JSON when asked), then
    // exit status 1.
    if let Err(e) = serve(s) {
        tracing::error!(error = %Report(e.as_ref()), "server cannot run");
        std::process::exit(1);
    }
}

/// `--cache-max-bytes`.
#[derive(Clone, Copy, Debug)]
enum Budget {
    Auto,
    Unlimited,
    Bytes(u64),
}

impl std::str::FromStr for Budget {
    type Err = String;

    fn from_str(s: &str) -> Result<Budget, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Budget::Auto),
            "unlimited" => Ok(Budget::Unlimited),
            _ => match s.parse::<order_cache::ByteSize>() {
                Ok(size) if size.as_u64() == 0 => {
                    Err("0 would cache nothing: give a size, `auto` or `unlimited`".into())
                }
                Ok(size) => Ok(Budget::Bytes(size.as_u64())),
                Err(e) => Err(e.to_string()),
            },
        }
    }
}

impl Budget {
    /// The budget in bytes; `None` for unlimited (or `auto` where the
    /// memory cannot be read).
    fn bytes(self) -> Option<u64> {
        match self {
            Budget::Bytes(n) => Some(n),
            Budget::Unlimited => None,
            Budget::Auto => memory_limit().map(auto_budget),
        }
    }
}

/// Half of `limit`, but never more than leaves the rest of the process its
/// 128 MiB and a quarter of the budget (budget × 1.25 + 128 MiB within
/// `limit`), and at least 16 MiB.
fn auto_budget(limit: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    (limit / 2)
        .min(limit.saturating_sub(128 * MIB) / 5 * 4)
        .max(16 * MIB)
}

/// The memory this process may use: the tightest limit of its own cgroup
/// and the cgroups above it (v2, else v1), or the machine's memory.
fn memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let number = |s: Option<String>| s.and_then(|s| s.trim().parse::<u64>().ok());
    let mut limits = Vec::new();
    for line in read("/proc/self/cgroup").unwrap_or_default().lines() {
        // v2: `0::/path`; v1: `N:memory:/path` (or with other controllers).
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let (root, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        // From the process's cgroup up to the root; "max" (v2) or a huge
        // number (v1) means no limit there.
        for dir in std::path::Path::new(path).ancestors() {
            let file = std::path::Path::new(root)
                .join(dir.strip_prefix("/").unwrap_or(dir))
                .join(file);
            limits.extend(number(std::fs::read_to_string(file).ok()));
        }
    }
    let machine = read("/proc/meminfo").and_then(|m| {
        let kib = m.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
        kib.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    });
    limits.into_iter().chain(machine).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_budget_leaves_room_for_the_process() {
        const MIB: u64 = 1 << 20;
        assert_eq!(auto_budget(24 << 30), 12 << 30);
        // A 256 MiB container: 102.4 MiB, so 1.25 × it + 128 MiB fits.
        let small = auto_budget(256 * MIB);
        assert!(small * 5 / 4 + 128 * MIB <= 256 * MIB, "{small}");
        assert_eq!(auto_budget(64 * MIB), 16 * MIB);
    }

    #[test]
    fn budgets_are_parsed_and_zero_is_refused() {
        assert!(matches!("auto".parse(), Ok(Budget::Auto)));
        assert!(matches!("Unlimited".parse(), Ok(Budget::Unlimited)));
        assert!(matches!("256MiB".parse(), Ok(Budget::Bytes(268_435_456))));
        assert!("0".parse::<Budget>().is_err());
        assert!("lots".parse::<Budget>().is_err());
    }
}

/// The access tokens and the metrics tokens the settings give. A setting
/// given empty is an error, not an open service; errors name the setting
/// and the token's place, never a token.
fn tokens(s: &Settings) -> anyhow::Result<(BearerTokens, Option<BearerTokens>)> {
    // Set but empty counts as set: `API_TOKEN=$UNSET_SECRET` must not
    // open the routes.
    let given = |flag: &Option<String>, var: &str| flag.clone().or_else(|| std::env::var(var).ok());
    let api_token = given(&s.api_token, "API_TOKEN");
    let api = match (api_token, &s.api_token_file) {
        (Some(_), Some(_)) => anyhow::bail!("API_TOKEN and API_TOKEN_FILE are both set: give one"),
        (Some(list), None) => BearerTokens::parse(&list).context("API_TOKEN")?,
        (None, Some(path)) => BearerTokens::read_file(path).context("API_TOKEN_FILE")?,
        (None, None) => BearerTokens::none(),
    };
    let metrics = given(&s.metrics_token, "METRICS_TOKEN")
        .map(|list| BearerTokens::parse(&list).context("METRICS_TOKEN"))
        .transpose()?;
    Ok((api, metrics))
}

fn serve(s: Settings) -> anyhow::Result<()> {
    let traces = Traces::from_env(s.batch_size)?;
    let (api_tokens, metrics_tokens) = tokens(&s)?;
    let mut store = StoreConfig::new(s.database_url);
    store.max_connections = s.database_max_connections;
    let config = AppConfig {
        store,
        nats_url: s.nats_url,
        ingest: IngestConfig {
            stream: s.orders_stream,
            subject: s.orders_subject,
            consumer: s.orders_consumer,
            dlq_subject: s.orders_dlq_subject,
            batch_size: s.batch_size,
            tracer: traces.tracer(),
            replicas: usize::try_from(s.orders_replicas).unwrap_or(1),
            unknown_fields: s.unknown_fields,
            ..IngestConfig::default()
        },
        startup_timeout: Duration::from_secs(s.startup_timeout),
        shutdown_timeout: Duration::from_secs(10),
        http: ServerConfig {
            header_read_timeout: Duration::from_secs(s.http_header_read_timeout),
            idle_timeout: Duration::from_secs(s.http_idle_timeout),
            max_connections: usize::try_from(s.http_max_connections).unwrap_or(usize::MAX),
        },
        cache_max_bytes: s.cache_max_bytes.bytes(),
        cache_compression: s.cache_compression,
        api_tokens,
        metrics_tokens,
        recent_orders: s.recent_orders,
    };
    match config.cache_max_bytes {
        Some(max) => {
            tracing::info!(cache_max_bytes = max, compression = %config.cache_compression, "cache budget")
        }
        None => tracing::info!(compression = %config.cache_compression, "cache budget: unlimited"),
    }
    // Each HTTP connection is a descriptor: the inherited soft limit (often
    // 1,024) would cap the server far below max_connections.
    match server::raise_fd_limit() {
        Ok(limit) if limit.now > limit.before => {
            tracing::info!(
                from = limit.before,
                to = limit.now,
                "raised the open-file limit"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }

    // Migrations run through a blocking harness: a multi-threaded runtime.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = s.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    let served = runtime.block_on(async {
        let listener =
            listen(s.listen_addr).with_context(|| format!("cannot listen on {}", s.listen_addr))?;
        app::run(listener, config, shutdown_signal()).await?;
        Ok(())
    });
    traces.shutdown();
    served
}

/// The OpenTelemetry trace pipeline (feature `otel`): on when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
/// names a collector; the exporter reads the other `OTEL_*` settings itself.
#[derive(Default)]
struct Traces {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Traces {
    #[cfg(not(feature = "otel"))]
    fn from_env(_batch_size: usize) -> anyhow::Result<Traces> {
        Ok(Traces::default())
    }

    #[cfg(feature = "otel")]
    fn from_env(batch_size: usize) -> anyhow::Result<Traces> {
        use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};

        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return Ok(Traces::default());
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("cannot set up the OTLP trace exporter")?;
        let mut resource = Resource::builder();
        let named =
            std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
        if !set("OTEL_SERVICE_NAME") && !named {
            resource = resource.with_service_name("order-cache");
        }
        let mut provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build());
        // A batch span links every message of the batch; the SDK would keep
        // only 128 of them.
        if !set("OTEL_SPAN_LINK_COUNT_LIMIT") {
            let links = u32::try_from(batch_size).unwrap_or(u32::MAX).max(128);
            provider = provider.with_max_links_per_span(links);
        }
        tracing::info!("exporting traces with OTLP");
        Ok(Traces {
            provider: Some(provider.build()),
        })
    }

    fn tracer(&self) -> Tracer {
        #[cfg(feature = "otel")]
        if let Some(provider) = &self.provider {
            return Tracer::new(provider);
        }
        Tracer::default()
    }

    /// Exports the spans still queued.
    fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "cannot export the last spans");
            }
        }
    }
}

/// Binds `addr` with a listen backlog of 4,096 (the kernel caps it at
/// `net.core.somaxconn`) instead of tokio's 1,024: when many clients connect
/// at once, those past the backlog are dropped and retry only a second
/// later, while those in it are accepted as fast as the server can.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's bind does, so a restart can bind while old connections
    // linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
