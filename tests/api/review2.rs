//! Defects a second adversarial review found in 741e8f4..6423384; each test
//! failed on that code (6423384).

use std::net::SocketAddr;
use std::time::Duration;

use order_cache::{router, server, Api, Cache, Metrics, Readiness, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use crate::helpers::reqwest_lite;

/// `serve` in this process on a free port with `config`; its address, its
/// stop switch and its task.
fn serve_here(
    config: ServerConfig,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let api = Api::new(Cache::new(), Metrics::new(), Readiness::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server::serve(
        listener,
        warp::service(router(api)),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, handle)
}

/// A client that pipelines many requests for a 10 KB answer and never reads
/// one: once the socket buffers are full the server's write waits forever.
/// Returns the task that owns the socket (abort it to close the socket).
async fn never_reads(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stream = socket.connect(addr).await.expect("connect");
    let task = tokio::spawn(async move {
        let request = b"GET /openapi.yaml HTTP/1.1\r\nHost: slow-reader\r\n\r\n";
        for _ in 0..5_000 {
            if stream.write_all(request).await.is_err() {
                return;
            }
        }
        // Keep the socket open, unread.
        std::future::pending::<()>().await;
    });
    // Let the server fill the buffers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    task
}

fn short_timeouts(max_connections: usize) -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_does_not_hold_a_slot_forever() {
    // Arrange: one slot, taken by a client that asks and never reads.
    let (addr, stop, handle) = serve_here(short_timeouts(1));
    let slow = never_reads(addr).await;

    // Act: a well-behaved client asks, well past every timeout.
    let answer = tokio::time::timeout(
        Duration::from_secs(8),
        reqwest_lite::Client::new(addr).get("/healthz"),
    )
    .await;

    // Assert
    slow.abort();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
    assert!(
        matches!(answer, Ok(Ok((200, _)))),
        "a client that never reads its answers held the only slot for 8 s \
         (header and idle timeouts 1 s): {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_although_a_client_never_reads_its_answers() {
    // Arrange
    let (addr, stop, handle) = serve_here(short_timeouts(100));
    let slow = never_reads(addr).await;

    // Act
    stop.send(()).expect("server running");
    let stopped = tokio::time::timeout(Duration::from_secs(8), handle).await;

    // Assert
    slow.abort();
    assert!(
        stopped.is_ok(),
        "serve did not return within 8 s of shutdown (timeouts 1 s) while a \
         client left its answers unread"
    );
}
