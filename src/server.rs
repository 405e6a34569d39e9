//! The HTTP server: accepts connections and serves HTTP/1.1 on them with
//! the timeouts and the connection cap that keep slow, idle or half-sent
//! requests from starving everyone else.
//!
//! A client that opens a connection and sends nothing, or sends its request
//! header a byte at a time, costs the server a file descriptor and a task
//! for as long as the server lets it. Without limits a few thousand of them
//! exhaust the descriptors, `accept` fails with `EMFILE`, and new clients
//! (and new PostgreSQL connections) wait forever. [`serve`] bounds each of
//! these:
//!
//! - a new connection must deliver its first request header within
//!   [`ServerConfig::header_read_timeout`];
//! - a kept-alive connection must deliver its next request header within
//!   [`ServerConfig::idle_timeout`] of the previous response;
//! - at most [`ServerConfig::max_connections`] connections are open at once;
//!   past that the server stops accepting (new clients wait in the kernel's
//!   backlog, and are served as soon as a slot frees) instead of running
//!   out of descriptors;
//! - an `accept` that fails (`EMFILE` when the process is out of
//!   descriptors after all) is retried after a growing pause, never in a
//!   busy loop.
//!
//! [`raise_fd_limit`] lifts the process's soft limit on open files to its
//! hard limit, as Go's runtime and nginx do at start; the library never
//! calls it by itself (it changes the whole process), the `server` example
//! does.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::report::Report;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Limits and timeouts of [`serve`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use order_cache::ServerConfig;
///
/// let config = ServerConfig {
///     max_connections: 2_000,
///     idle_timeout: Duration::from_secs(30),
///     ..ServerConfig::default()
/// };
/// assert_eq!(config.header_read_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a new connection may take to deliver its whole first request
    /// header, counted from when it is accepted; the connection is closed
    /// without an answer after that. It is what closes connections that
    /// send nothing, or trickle their header. Default: 10 s.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may take, after a response, to
    /// deliver the whole header of its next request; it is closed after
    /// that. (hyper starts this clock when the connection goes idle and
    /// stops it at the end of the header, so the idle wait and the header
    /// of a later request share it.) It also bounds the first request when
    /// shorter than `header_read_timeout`, and how long a client may stop
    /// reading while an answer is being written to it (one that never reads
    /// would otherwise hold its connection, and a graceful shutdown,
    /// forever). Default: 60 s.
    pub idle_timeout: Duration,
    /// Most connections open at once (at least 1). At the cap the server
    /// stops accepting: new clients wait in the listen backlog and are
    /// served when a connection closes. [`serve`] lowers it, with a
    /// warning, to what the soft limit on open files allows less
    /// [`FD_RESERVE`] for everything else (PostgreSQL, NATS, logs).
    /// Default: 10,000 (an idle connection costs a descriptor and some
    /// 10 KiB of memory, so 100 MiB at the cap, and the header timeout
    /// recycles a slot held by a slow client within seconds).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
        }
    }
}

/// Descriptors [`serve`] leaves to the rest of the process when it fits
/// [`ServerConfig::max_connections`] under the soft limit on open files.
pub const FD_RESERVE: u64 = 128;

/// The soft limit on open files before and after [`raise_fd_limit`]; both
/// `u64::MAX` where there is no such limit (not Unix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit as inherited.
    pub before: u64,
    /// The soft limit now (the hard limit, unless the platform caps it
    /// lower).
    pub now: u64,
}

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) to
/// its hard limit, as Go's runtime and nginx do: the soft limit many
/// environments start a process with (1,024) is far below what a server of
/// many connections needs, while the hard limit is usually much higher.
///
/// It changes the whole process, so the library never calls it by itself:
/// a binary calls it once at start.
///
/// # Errors
///
/// When the limit cannot be read or set.
///
/// # Examples
///
/// ```
/// let limit = order_cache::server::raise_fd_limit().unwrap();
/// assert!(limit.now >= limit.before);
/// ```
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    let Some(before) = soft_fd_limit()? else {
        return Ok(FdLimit {
            before: u64::MAX,
            now: u64::MAX,
        });
    };
    let now = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(FdLimit { before, now })
}

/// The soft limit on open files; `None` where there is none (not Unix).
fn soft_fd_limit() -> std::io::Result<Option<u64>> {
    #[cfg(unix)]
    return rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| Some(soft));
    #[cfg(not(unix))]
    return Ok(None);
}

/// Serves HTTP/1.1 with `service` on connections from `listener` until
/// `shutdown` completes, within the limits of `config` (see the [module
/// docs](self)). Then it stops accepting, lets each connection finish the
/// request it is serving, closes idle ones, and returns when all are
/// closed. Dropping the future closes every connection at once, so a host
/// that will not wait longer drops it (or aborts its task).
///
/// `service` is a tower service, such as a warp filter turned into one
/// by `warp::service`. Only HTTP/1.1 is served (hyper's header timeout is
/// HTTP/1's), and the connection's remote address is not passed to the
/// service, so `warp::addr::remote()` yields `None`.
///
/// # Examples
///
/// ```no_run
/// use order_cache::{router, server, Api, Cache, Metrics, Readiness, ServerConfig};
///
/// # #[tokio::main(flavor = "multi_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let shutdown = async {
///     tokio::signal::ctrl_c().await.ok();
/// };
/// server::serve(listener, warp::service(router(api)), ServerConfig::default(), shutdown).await;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max_connections = fit_to_fd_limit(config.max_connections);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Accepting comes before reaping: when a thousand slow clients time
        // out at once and reconnect, a backlog left to fill drops new
        // clients' connection attempts (they retry a second later).
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            (slot, accepted) = accept(&listener, &slots) => match accepted {
                Ok(stream) => {
                    backoff.reset();
                    let service = service.clone();
                    let config = config.clone();
                    let stopping = stopping.clone();
                    connections.spawn(connection(stream, service, config, stopping, slot));
                    // Closed connections' results stay in the set until
                    // joined; a few at a time keeps it small.
                    for _ in 0..2 {
                        if connections.try_join_next().is_none() {
                            break;
                        }
                    }
                }
                Err(e) if is_connection_error(&e) => debug!(error = %Report(&e), "accept"),
                Err(e) => {
                    let pause = backoff.next(&e);
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}

/// Waits for a free slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (OwnedSemaphorePermit, std::io::Result<TcpStream>) {
    // The semaphore is never closed, so acquiring only waits.
    let slot = match Arc::clone(slots).acquire_owned().await {
        Ok(slot) => slot,
        Err(_) => std::future::pending().await,
    };
    let accepted = listener.accept().await.map(|(stream, _)| stream);
    (slot, accepted)
}

/// Serves one connection until it closes, a timeout closes it, or shutdown
/// has let its request in flight finish. `_slot` frees its place under the
/// cap when dropped.
async fn connection<S, B>(
    stream: TcpStream,
    service: S,
    config: ServerConfig,
    mut stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // hyper's one header timer restarts whenever the connection waits for a
    // request, so it is the idle timeout; the first header's shorter
    // deadline is ours, and this flag says whether it was met.
    let requested = Arc::new(AtomicBool::new(false));
    let service = {
        let requested = Arc::clone(&requested);
        let service = TowerToHyperService::new(service);
        hyper::service::service_fn(move |request| {
            requested.store(true, Ordering::Relaxed);
            service.call(request)
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout)
        .serve_connection(
            TokioIo::new(WriteDeadline::new(stream, config.idle_timeout)),
            service,
        );
    let mut conn = std::pin::pin!(conn);
    let first_header = tokio::time::sleep(config.header_read_timeout);
    let mut first_header = std::pin::pin!(first_header);
    let mut awaiting_first = true;
    let mut draining = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    debug!(error = %Report(&e), "HTTP connection ended");
                }
                return;
            }
            () = &mut first_header, if awaiting_first => {
                if !requested.load(Ordering::Relaxed) {
                    debug!("no request header in time; closing the connection");
                    return;
                }
                awaiting_first = false;
            }
            _ = stopping.wait_for(|stop| *stop), if !draining => {
                // Finishes the request in flight, closes an idle connection.
                conn.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// The cap, lowered to what the soft limit on open files leaves after
/// [`FD_RESERVE`]: past that, `accept` would fail with `EMFILE` and so
/// would the next PostgreSQL connection.
fn fit_to_fd_limit(max_connections: usize) -> usize {
    let wanted = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let Ok(Some(soft)) = soft_fd_limit() else {
        return wanted;
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE))
        .unwrap_or(usize::MAX)
        .max(1);
    if wanted > room {
        warn!(
            max_connections = wanted,
            open_files_soft_limit = soft,
            using = room,
            "the open-file limit is too low for max_connections; serving fewer"
        );
    }
    wanted.min(room)
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// The pause after a failed `accept`, doubling from 5 ms to 1 s as Go's
/// `net/http` does: `EMFILE` lasts until some descriptor is closed, and
/// retrying at once would spin.
#[derive(Debug)]
struct AcceptBackoff {
    pause: Backoff,
    logged: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            pause: Backoff::new(Duration::from_millis(5), Duration::from_secs(1)),
            logged: None,
        }
    }
}

impl AcceptBackoff {
    fn next(&mut self, e: &std::io::Error) -> Duration {
        let pause = self.pause.next();
        // One line a second at most while it lasts.
        if self
            .logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            warn!(error = %Report(&e), retry_in = ?pause, "cannot accept HTTP connections");
            self.logged = Some(Instant::now());
        }
        pause
    }

    fn reset(&mut self) {
        self.pause.reset();
        self.logged = None;
    }
}

/// A connection whose writes fail once the client has taken nothing for
/// `limit`: a client that never reads its answers would otherwise hold its
/// slot under the cap, and a graceful shutdown waiting for that answer,
/// forever.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Running while a write or flush waits for the client.
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// What a write that made progress, or that waits, becomes.
    fn watch<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        poll: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}
