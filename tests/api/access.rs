//! Who may read an order. With `API_TOKEN` set, every route but the health
//! checks and the page's own files answers 401 (`WWW-Authenticate: Bearer`,
//! the JSON error) unless the request carries `Authorization: Bearer
//! <token>`; several tokens are accepted at once, for rotation;
//! `API_TOKEN_FILE` reads them from a file; `/metrics` may take its own
//! (`METRICS_TOKEN`); `RECENT_ORDERS=off` removes the listing. Through the
//! server binary, as an operator configures it.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::helpers::http_client::{Client, Response};
use crate::helpers::{eventually, example_order, publish_orders, TestDb, TestStreams};
use crate::services::{temp_dir, ServerProcess};

/// The example order's id.
const ID: &str = "b563feb7b2b84b6test";
/// Two tokens in use at once: the one being retired and its successor.
const OLD: &str = "old-token-0123456789abcdef";
const NEW: &str = "new-token-fedcba9876543210";
/// Prometheus's own.
const SCRAPE: &str = "metrics-token-0123456789";

/// Routes that hold or describe orders: closed without a token.
const CLOSED: &[&str] = &[
    "/orders/b563feb7b2b84b6test",
    "/getOrder?id=b563feb7b2b84b6test",
    "/orders",
    "/status",
];

/// What stays open: the health checks an orchestrator probes, and the page
/// and its files, which hold no order and must load to ask for the token.
const OPEN: &[&str] = &[
    "/healthz",
    "/readyz",
    "/",
    "/app.js",
    "/style.css",
    "/favicon.svg",
    "/openapi.yaml",
];

async fn get(client: &Client, path: &str, authorization: Option<&str>) -> Response {
    let headers: Vec<_> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    client
        .send_with(Method::GET, path, &headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A 401 as the issue asks: the challenge, and the JSON error body.
fn assert_unauthorized(res: &Response, what: &str) {
    assert_eq!(res.status, 401, "{what}");
    let challenge = res.headers["www-authenticate"].to_str().expect("ASCII");
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    assert_eq!(res.headers["content-type"], "application/json", "{what}");
    assert_eq!(res.headers["x-content-type-options"], "nosniff", "{what}");
    let body: Value = serde_json::from_slice(&res.body).expect("JSON error");
    assert_eq!(body["error"], "unauthorized", "{what}");
    assert!(body["message"].is_string(), "{what}");
}

/// Starts the server binary with `env` and the example order stored.
async fn server_with(
    db: &TestDb,
    streams: &TestStreams,
    env: &[(&str, &str)],
) -> (ServerProcess, std::path::PathBuf) {
    let dir = temp_dir("order-cache-access");
    let log = dir.join("server.log");
    let mut server =
        ServerProcess::spawn_with(&db.url, &streams.nats_url, &streams.config, env, Some(&log));
    server.wait_ready(Duration::from_secs(30)).await;
    let nats = async_nats::connect(streams.nats_url.as_str())
        .await
        .expect("NATS");
    let js = async_nats::jetstream::new(nats);
    publish_orders(&js, &streams.config.subject, &[ID.to_owned()]).await;
    (server, dir)
}

/// Waits until `client`, sending `token`, is served the example order.
async fn wait_for_order(client: &Client, token: &str) {
    let client = client.clone().bearer(token);
    eventually(Duration::from_secs(20), "the order is served", || async {
        match client.get(&format!("/orders/{ID}")).await {
            Ok((200, _)) => Ok(()),
            Ok((status, _)) => Err(format!("status {status}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_token_every_route_but_health_and_the_page_answers_401_without_it() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let tokens = format!("{OLD}, {NEW}");
    let (mut server, dir) = server_with(
        &db,
        &streams,
        &[("API_TOKEN", &tokens), ("METRICS_TOKEN", SCRAPE)],
    )
    .await;
    let client = server.client();
    wait_for_order(&client, OLD).await;

    for path in CLOSED.iter().chain(&["/metrics"]) {
        assert_unauthorized(
            &get(&client, path, None).await,
            &format!("{path}, no token"),
        );
        let head = client
            .send_with(Method::HEAD, path, &[])
            .await
            .expect("HEAD");
        assert_eq!(head.status, 401, "HEAD {path}, no token");
        let wrong = get(&client, path, Some("Bearer wrong-token-0123456789")).await;
        assert_unauthorized(&wrong, &format!("{path}, a wrong token"));
        let challenge = wrong.headers["www-authenticate"].to_str().unwrap_or("");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        // A token is a header, never part of an address that lands in logs
        // and browser histories.
        let sep = if path.contains('?') { '&' } else { '?' };
        for query in [format!("access_token={OLD}"), format!("token={OLD}")] {
            let res = get(&client, &format!("{path}{sep}{query}"), None).await;
            assert_eq!(res.status, 401, "{path} with the token in the query");
        }
        for malformed in [
            OLD.to_owned(),
            format!("Basic {OLD}"),
            format!("Bearer {OLD}x"),
            format!("Bearer  {OLD} {OLD}"),
            "Bearer".to_owned(),
        ] {
            let res = get(&client, path, Some(&malformed)).await;
            assert_eq!(res.status, 401, "{path} with `{malformed}`");
        }
    }
    // Both tokens open the order routes, during a rotation; the scheme's
    // name is case-insensitive.
    for authorization in [
        format!("Bearer {OLD}"),
        format!("Bearer {NEW}"),
        format!("bearer {NEW}"),
    ] {
        for path in CLOSED {
            let res = get(&client, path, Some(&authorization)).await;
            assert_eq!(res.status, 200, "{path} with {authorization}");
        }
        // Not /metrics, which has its own.
        let res = get(&client, "/metrics", Some(&authorization)).await;
        assert_eq!(res.status, 401, "/metrics with an API token");
    }
    let res = get(&client, "/metrics", Some(&format!("Bearer {SCRAPE}"))).await;
    assert_eq!(res.status, 200, "/metrics with its own token");
    for path in CLOSED {
        let res = get(&client, path, Some(&format!("Bearer {SCRAPE}"))).await;
        assert_eq!(res.status, 401, "{path} with the metrics token");
    }
    for path in OPEN {
        let res = get(&client, path, None).await;
        assert_eq!(res.status, 200, "{path} stays open");
    }
    assert!(server.is_running());
    let _ = server.terminate(Duration::from_secs(20)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_file_is_read_at_start_one_token_a_line() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let secrets = temp_dir("order-cache-token-file");
    let file = secrets.join("api-token");
    // As an orchestrator mounts a secret: a trailing newline, and here two
    // tokens during a rotation.
    std::fs::write(&file, format!("{OLD}\n{NEW}\n")).expect("write the token file");
    let path = file.to_str().expect("UTF-8 path");
    let (mut server, dir) = server_with(&db, &streams, &[("API_TOKEN_FILE", path)]).await;
    let client = server.client();
    wait_for_order(&client, NEW).await;
    for path in CLOSED.iter().chain(&["/metrics"]) {
        assert_unauthorized(&get(&client, path, None).await, path);
        for token in [OLD, NEW] {
            let res = get(&client, path, Some(&format!("Bearer {token}"))).await;
            assert_eq!(res.status, 200, "{path}: the file's tokens open it");
        }
    }
    assert!(server.is_running());
    let _ = server.terminate(Duration::from_secs(20)).await;
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_listing_off_orders_is_404_and_lookups_still_work() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let (server, dir) = server_with(
        &db,
        &streams,
        &[("RECENT_ORDERS", "off"), ("API_TOKEN", OLD)],
    )
    .await;
    let client = server.client();
    let bearer = format!("Bearer {OLD}");
    wait_for_order(&client, OLD).await;
    for authorization in [None, Some(bearer.as_str())] {
        let res = get(&client, "/orders", authorization).await;
        assert_eq!(res.status, 404, "/orders, token {authorization:?}");
        let body: Value = serde_json::from_slice(&res.body).expect("JSON");
        assert_eq!(body["error"], "no_route");
    }
    let res = get(&client, &format!("/orders/{ID}"), Some(&bearer)).await;
    let order: Value = serde_json::from_slice(&res.body).expect("JSON");
    assert_eq!(order, example_order(ID));
    assert_eq!(
        get(&client, "/status", Some(&bearer)).await.status,
        200,
        "the rest is served"
    );
    let _ = server.terminate(Duration::from_secs(20)).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_cannot_work_stops_the_start() {
    let db = TestDb::create().await;
    let streams = TestStreams::new();
    let dir = temp_dir("order-cache-bad-token");
    let missing = dir.join("no-such-file");
    let missing = missing.to_str().expect("UTF-8 path");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let empty = empty.to_str().expect("UTF-8 path");
    for (i, env) in [
        vec![("API_TOKEN", "short")],
        vec![("API_TOKEN", " , ")],
        vec![("API_TOKEN", "")],
        vec![("METRICS_TOKEN", "short")],
        vec![("API_TOKEN_FILE", missing)],
        vec![("API_TOKEN_FILE", empty)],
        vec![("API_TOKEN", OLD), ("API_TOKEN_FILE", empty)],
    ]
    .into_iter()
    .enumerate()
    {
        let log = dir.join(format!("server-{i}.log"));
        let mut server = ServerProcess::spawn_with(
            &db.url,
            &streams.nats_url,
            &streams.config,
            &env,
            Some(&log),
        );
        let exited = eventually(Duration::from_secs(20), "the server exits", || {
            let running = server.is_running();
            std::future::ready(if running { Err("running") } else { Ok(()) })
        });
        exited.await;
        let text = server.output();
        assert!(
            text.contains("API_TOKEN") || text.contains("METRICS_TOKEN"),
            "{env:?}: the error names the setting:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

// In process, through `warp::test`: the library's filters as a host mounts
// them.

mod in_process {
    use std::convert::Infallible;

    use order_cache::{
        order_lookup, recent_orders, recover, router, routes, Api, BearerTokens, Cache, Metrics,
        Readiness,
    };
    use warp::http::StatusCode;
    use warp::{Filter, Rejection, Reply};

    use super::{CLOSED, ID, NEW, OLD, OPEN, SCRAPE};
    use crate::helpers::example;

    fn api() -> Api {
        let cache = Cache::new();
        cache.insert_orders(&[example(ID)]);
        let readiness = Readiness::new();
        readiness.mark_restored();
        Api::new(cache, Metrics::new(), readiness)
    }

    fn tokens(list: &str) -> BearerTokens {
        BearerTokens::parse(list).expect("valid tokens")
    }

    async fn status(
        app: &(impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + 'static),
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (u16, warp::http::HeaderMap) {
        let mut request = warp::test::request().method(method).path(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let res = request.reply(app).await;
        (res.status().as_u16(), res.headers().clone())
    }

    #[tokio::test]
    async fn without_tokens_every_route_is_served_as_before() {
        let app = router(api());
        for path in CLOSED.iter().chain(OPEN).chain(&["/metrics"]) {
            assert_eq!(status(&app, "GET", path, None).await.0, 200, "{path}");
            // A header the routes do not need is no reason to refuse.
            let res = warp::test::request()
                .path(path)
                .header("authorization", b"Bearer \xff".as_slice())
                .reply(&app)
                .await;
            assert_eq!(res.status(), 200, "{path}");
        }
    }

    #[tokio::test]
    async fn with_tokens_each_closed_route_answers_401_and_each_token_opens_it() {
        let app = router(
            api()
                .with_tokens(tokens(&format!("{OLD},{NEW}")))
                .with_metrics_tokens(tokens(SCRAPE)),
        );
        for path in CLOSED {
            for method in ["GET", "HEAD"] {
                let (code, headers) = status(&app, method, path, None).await;
                assert_eq!(code, 401, "{method} {path}");
                assert_eq!(headers["www-authenticate"], r#"Bearer realm="order_cache""#);
                assert_eq!(headers["x-content-type-options"], "nosniff");
                assert!(headers.contains_key("content-security-policy"));
                let (code, headers) =
                    status(&app, method, path, Some("wrong-token-0123456789")).await;
                assert_eq!(code, 401, "{method} {path}, a wrong token");
                assert_eq!(
                    headers["www-authenticate"],
                    r#"Bearer realm="order_cache", error="invalid_token""#
                );
                for token in [OLD, NEW] {
                    assert_eq!(
                        status(&app, method, path, Some(token)).await.0,
                        200,
                        "{path}"
                    );
                }
                assert_eq!(
                    status(&app, method, path, Some(SCRAPE)).await.0,
                    401,
                    "{path}"
                );
            }
        }
        assert_eq!(status(&app, "GET", "/metrics", Some(OLD)).await.0, 401);
        assert_eq!(status(&app, "GET", "/metrics", Some(SCRAPE)).await.0, 200);
        for path in OPEN {
            assert_eq!(status(&app, "GET", path, None).await.0, 200, "{path}");
        }
        // Without its own tokens, /metrics takes the API's.
        let app = router(api().with_tokens(tokens(OLD)));
        assert_eq!(status(&app, "GET", "/metrics", None).await.0, 401);
        assert_eq!(status(&app, "GET", "/metrics", Some(OLD)).await.0, 200);
    }

    #[tokio::test]
    async fn the_token_is_asked_for_only_where_a_route_would_serve() {
        let app = router(api().with_tokens(tokens(OLD)));
        // An unknown path is still 404, a wrong method still 405.
        assert_eq!(status(&app, "GET", "/nowhere", None).await.0, 404);
        assert_eq!(status(&app, "POST", "/orders/abc", None).await.0, 405);
        assert_eq!(status(&app, "DELETE", "/status", None).await.0, 405);
        // The error body is the JSON shape of every error.
        let res = warp::test::request().path("/orders/abc").reply(&app).await;
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("JSON");
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(res.headers()["content-type"], "application/json");
    }

    #[tokio::test]
    async fn the_listing_turned_off_is_no_route() {
        let app = router(api().with_recent_orders(false));
        assert_eq!(status(&app, "GET", "/orders", None).await.0, 404);
        assert_eq!(status(&app, "POST", "/orders", None).await.0, 404);
        assert_eq!(
            status(&app, "GET", &format!("/orders/{ID}"), None).await.0,
            200
        );
        assert_eq!(
            status(&app, "GET", "/orders/", None).await.0,
            400,
            "an empty id"
        );
    }

    #[tokio::test]
    async fn the_lookup_and_the_listing_mount_apart() {
        let lookup = order_lookup(api()).recover(recover);
        assert_eq!(
            status(&lookup, "GET", &format!("/orders/{ID}"), None)
                .await
                .0,
            200
        );
        assert_eq!(
            status(&lookup, "GET", &format!("/getOrder?id={ID}"), None)
                .await
                .0,
            200
        );
        for path in ["/orders", "/status", "/metrics", "/"] {
            assert_eq!(status(&lookup, "GET", path, None).await.0, 404, "{path}");
        }
        let listing = recent_orders(api()).recover(recover);
        assert_eq!(status(&listing, "GET", "/orders", None).await.0, 200);
        assert_eq!(
            status(&listing, "GET", &format!("/orders/{ID}"), None)
                .await
                .0,
            404
        );
        // Each alone still checks the Api's tokens and sends the headers.
        let closed = order_lookup(api().with_tokens(tokens(OLD))).recover(recover);
        let (code, headers) = status(&closed, "GET", &format!("/orders/{ID}"), None).await;
        assert_eq!(code, 401);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            status(&closed, "GET", &format!("/orders/{ID}"), Some(OLD))
                .await
                .0,
            200
        );
    }

    /// The host's rejection, for requests its own check refuses.
    #[derive(Debug)]
    struct NotSignedIn;
    impl warp::reject::Reject for NotSignedIn {}

    async fn host_recover(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
        if rejection.find::<NotSignedIn>().is_some() {
            let reply = warp::reply::with_status("sign in", StatusCode::FORBIDDEN);
            return Ok(reply.into_response());
        }
        recover(rejection).await.map(Reply::into_response)
    }

    #[tokio::test]
    async fn a_host_wraps_the_routes_in_its_own_check() {
        let signed_in = warp::header::optional::<String>("x-user")
            .and_then(|user: Option<String>| async move {
                match user {
                    Some(_) => Ok(()),
                    None => Err(warp::reject::custom(NotSignedIn)),
                }
            })
            .untuple_one();
        let hello = warp::path("hello").map(|| "open to all");
        // The lookup behind the host's check; no listing; the host's hello
        // open; routes() untouched for everything else under /crate.
        let app = hello
            .or(signed_in.and(order_lookup(api())))
            .or(warp::path("crate").and(routes(api())))
            .recover(host_recover);
        assert_eq!(status(&app, "GET", "/hello", None).await.0, 200);
        let res = warp::test::request()
            .path(&format!("/orders/{ID}"))
            .reply(&app)
            .await;
        assert_eq!(res.status(), 403, "the host's check refuses");
        let res = warp::test::request()
            .path(&format!("/orders/{ID}"))
            .header("x-user", "ann")
            .reply(&app)
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(status(&app, "GET", "/crate/orders", None).await.0, 200);
    }

    /// The answers a request gets from `app`, whole.
    async fn answer(
        app: &(impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + 'static),
        path: &str,
        token: Option<&str>,
    ) -> warp::http::Response<bytes::Bytes> {
        let mut request = warp::test::request().path(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.reply(app).await
    }

    #[tokio::test]
    async fn a_refused_request_is_counted_as_401_not_500() {
        let app = router(
            api()
                .with_tokens(tokens(OLD))
                .with_metrics_tokens(tokens(SCRAPE)),
        );
        assert_eq!(
            status(&app, "GET", &format!("/orders/{ID}"), None).await.0,
            401
        );
        assert_eq!(status(&app, "HEAD", "/status", None).await.0, 401);
        let res = answer(&app, "/metrics", Some(SCRAPE)).await;
        let text = String::from_utf8_lossy(res.body());
        assert!(
            !text.contains(r#"status="500""#),
            "401s counted as 500:\n{text}"
        );
        assert!(
            text.contains(
                r#"order_cache_http_requests_total{route="/orders/{order_uid}",status="401"} 1"#
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_closed_route_is_answered_401_not_passed_on_to_the_host() {
        let app = routes(api().with_tokens(tokens(OLD))).or(warp::any().map(|| "the host's page"));
        for path in [
            &format!("/orders/{ID}") as &str,
            "/orders",
            "/getOrder?id=x",
            "/status",
            "/metrics",
        ] {
            let res = answer(&app, path, None).await;
            assert_eq!(res.status(), 401, "{path}: {:?}", res.body());
            assert_eq!(
                res.headers()["www-authenticate"],
                r#"Bearer realm="order_cache""#,
                "{path}"
            );
        }
        // Under a host's own recover, which knows nothing of ours.
        let app = routes(api().with_tokens(tokens(OLD)))
            .recover(|_: Rejection| async { Ok::<_, Infallible>(StatusCode::IM_A_TEAPOT) });
        let res = answer(&app, &format!("/orders/{ID}"), None).await;
        assert_eq!(res.status(), 401, "{:?}", res.body());
    }

    #[tokio::test]
    async fn no_metrics_tokens_leave_metrics_behind_the_api_tokens() {
        let app = router(
            api()
                .with_tokens(tokens(OLD))
                .with_metrics_tokens(BearerTokens::none()),
        );
        assert_eq!(status(&app, "GET", "/metrics", None).await.0, 401);
        assert_eq!(status(&app, "GET", "/metrics", Some(OLD)).await.0, 200);
    }

    #[tokio::test]
    async fn what_holds_or_describes_orders_is_never_stored_by_a_cache() {
        for app_tokens in [None, Some(OLD)] {
            let api = match app_tokens {
                Some(t) => api().with_tokens(tokens(t)),
                None => api(),
            };
            let app = router(api);
            for path in [
                &format!("/orders/{ID}") as &str,
                "/orders",
                &format!("/getOrder?id={ID}"),
                "/status",
                "/metrics",
            ] {
                for token in [None, app_tokens] {
                    let res = answer(&app, path, token).await;
                    assert_eq!(
                        res.headers().get("cache-control").map(|v| v.as_bytes()),
                        Some(&b"no-store"[..]),
                        "{path} ({}): {:?}",
                        res.status(),
                        res.headers()
                    );
                }
            }
        }
    }
}
