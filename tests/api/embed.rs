//! The crate embedded as a host service would embed it, following the crate
//! docs: the host's own routes before and after the crate's, one of them
//! failing with the host's own rejection, the crate's metrics in the host's
//! registry, and the crate's page and API answering beside them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use order_cache::prometheus_client::encoding::text::encode;
use order_cache::prometheus_client::metrics::counter::Counter;
use order_cache::prometheus_client::registry::Registry;
use order_cache::{recover, AppConfig, Metrics, Service};
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::helpers::{eventually, example_order, metric, TestDb, TestStreams};

/// The host's own rejection, for one of its routes that fails.
#[derive(Debug)]
struct TeaPot;

impl warp::reject::Reject for TeaPot {}

/// The host's recover: its own rejection first, the crate's for the rest.
async fn host_recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    if rejection.find::<TeaPot>().is_some() {
        return Ok(
            warp::reply::with_status("host says no", StatusCode::IM_A_TEAPOT).into_response(),
        );
    }
    recover(rejection).await.map(Reply::into_response)
}

async fn get(
    app: &(impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + 'static),
    path: &str,
) -> warp::http::Response<bytes::Bytes> {
    warp::test::request().path(path).reply(app).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_mounts_the_routes_at_its_root_beside_its_own() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();

    // The host's registry, with a metric of its own and the crate's.
    let mut registry = Registry::default();
    let host_requests = Counter::<u64>::default();
    registry.register(
        "host_requests",
        "Requests to the host's hello",
        host_requests.clone(),
    );
    let metrics = Metrics::new();
    metrics.register(&mut registry);
    let registry = Arc::new(registry);

    let mut config = AppConfig::new(db.url.clone(), streams.nats_url.clone());
    config.ingest = streams.config.clone();
    config.startup_timeout = Duration::from_secs(10);
    let service = Service::builder(config)
        .metrics(metrics)
        .connect()
        .await
        .expect("the service connects");

    let hello = warp::path("hello").and(warp::path::end()).map(move || {
        host_requests.inc();
        "hello from the host"
    });
    let host_metrics = warp::path("metrics").and(warp::path::end()).map(move || {
        let mut body = String::new();
        encode(&mut body, &registry).expect("encode");
        body
    });
    let broken = warp::path("broken")
        .and(warp::path::end())
        .and_then(|| async { Err::<String, _>(warp::reject::custom(TeaPot)) });
    let after = warp::path("after")
        .and(warp::path::end())
        .map(|| "after the crate");
    let app = hello
        .or(host_metrics)
        .or(broken)
        .or(service.routes())
        .or(after)
        .recover(host_recover)
        .map(Reply::into_response);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let js = async_nats::jetstream::new(
        async_nats::connect(streams.nats_url.as_str())
            .await
            .expect("NATS"),
    );
    let running = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));

    // An order through the pipeline, served by the crate's API.
    let order = example_order("embedded-1");
    js.publish(
        streams.config.subject.clone(),
        serde_json::to_vec(&order).unwrap().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("publish ack");
    let res = eventually(Duration::from_secs(20), "the order is served", || async {
        let res = get(&app, "/orders/embedded-1").await;
        (res.status() == 200).then_some(res)
    })
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(res.body()).unwrap(),
        order
    );
    assert_eq!(res.headers()["x-order-cache"], "hit");
    let res = get(&app, "/getOrder?id=embedded-1").await;
    assert_eq!(res.status(), 200);

    // The gauges are current without the crate's own /metrics or /readyz
    // being asked: the running service refreshes them.
    eventually(
        Duration::from_secs(10),
        "order_cache_ready is 1 in the host's registry",
        || async {
            let text = String::from_utf8(get(&app, "/metrics").await.body().to_vec()).unwrap();
            (metric(&text, "order_cache_ready") == Some(1.0)).then_some(())
        },
    )
    .await;
    assert_eq!(get(&app, "/readyz").await.status(), 200);

    // The crate's page, at the host's root.
    let res = get(&app, "/").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(get(&app, "/app.js").await.status(), 200);

    // The host's routes, before and after the crate's, and its failing one.
    let res = get(&app, "/hello").await;
    assert_eq!(
        (res.status(), res.body().as_ref()),
        (StatusCode::OK, &b"hello from the host"[..])
    );
    let res = get(&app, "/after").await;
    assert_eq!(
        (res.status(), res.body().as_ref()),
        (StatusCode::OK, &b"after the crate"[..])
    );
    let res = get(&app, "/broken").await;
    assert_eq!(
        (res.status(), res.body().as_ref()),
        (StatusCode::IM_A_TEAPOT, &b"host says no"[..])
    );

    // What nobody serves: the crate's JSON errors.
    let res = get(&app, "/nowhere").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.body().as_ref(),
        br#"{"error":"no_route","message":"no such route"}"#
    );
    let res = get(&app, "/orders/no-such-order").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/json");

    // One exposition, the host's, with both the host's and the crate's
    // metrics, valid as a whole (one `# EOF`, at the end).
    let text = String::from_utf8(get(&app, "/metrics").await.body().to_vec()).unwrap();
    assert_eq!(metric(&text, "host_requests_total"), Some(1.0), "{text}");
    assert_eq!(
        metric(&text, "order_cache_orders_ingested_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(text.matches("# EOF").count(), 1);
    assert!(text.trim_end().ends_with("# EOF"));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("run returns after shutdown")
        .expect("run did not panic")
        .expect("run ends cleanly");
}
